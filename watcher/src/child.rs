//! `watcher [options] -- CMD...`: the application runs as our child; the
//! signals we get are forwarded to it and its exit code becomes ours.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tracing::{debug, warn};

/// Starts `argv` directly (no shell), inheriting stdio and environment.
pub fn spawn(argv: &[String]) -> std::io::Result<Child> {
    let (program, args) = argv.split_first().expect("a command was given");
    Command::new(program).args(args).kill_on_drop(false).spawn()
}

/// Sends `signal` to the child if it is still running.
pub fn forward(child: &Child, signal: Signal) {
    let Some(id) = child.id() else { return };
    debug!(pid = id, %signal, "forwarding signal to the child");
    if let Err(e) = kill(Pid::from_raw(id as i32), signal) {
        warn!(pid = id, %signal, error = %e, "cannot forward signal to the child");
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        // Killed by SIGTERM (15).
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
