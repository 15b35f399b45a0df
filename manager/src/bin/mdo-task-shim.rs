//! `mdo-task-shim <task-dir>`: supervises one command task for the manager's
//! command runtime (see `manager::runtime::command::shim`). Not for direct use.

fn main() -> std::process::ExitCode {
    manager::runtime::command::shim::main()
}
