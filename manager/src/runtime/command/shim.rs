//! `mdo-task-shim <task-dir>`: the supervisor of one command task.
//!
//! The runtime has one shim per task. The shim leaves the manager's session
//! (`setsid`), so it survives the manager (SIGTERM, kill -9, Ctrl-C) and keeps
//! the task's output and exit status while nobody watches:
//! - starts `spec.json`'s program in its own process group (pgid = task pid),
//!   stdin from /dev/null, stdout and stderr into one pipe it copies to the
//!   size-capped `output.log`;
//! - writes `marker.json` (pids + start times) and answers `started <pid>`
//!   (or `failed <reason>` and an exit record);
//! - on SIGTERM (a kill request; grace in the `kill` file): SIGTERM to the
//!   group, SIGKILL to the group after the grace period;
//! - when the task's leader ends, SIGKILLs what is left of its group (task
//!   processes never outlive their task), then writes `exit.json` and exits.
//!
//! The runtime does not exec one shim per task: it runs `mdo-task-shim -`
//! once, the spawner ([`super::spawner`]), which forks each task's shim
//! (same code, [`run`]) and relays the answers. `mdo-task-shim <TASK_DIR>`
//! still supervises one task by itself and answers on its stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use super::files::{self, ExitRecord, Marker, TaskSpec};
use super::procfs;
use super::spawner;

/// The shim's command line: one task directory.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mdo-task-shim",
    version,
    about = "Internal helper of the mdo manager: supervises one command task. Not for direct use.",
    long_about = "Internal helper of the mdo manager: supervises one command task. Not for direct \
use: the manager's command runtime runs one supervisor per command task, and finds \
mdo-task-shim beside the manager binary (install both in the same folder).\n\n\
The shim leaves the manager's session (so tasks survive a manager restart, even kill -9), runs \
the program of TASK_DIR/spec.json in its own process group with exactly the environment written \
there, copies its output to TASK_DIR/output.log (size-capped, rotated to output.log.1), writes \
TASK_DIR/marker.json and prints `started <pid>` (or `failed <reason>`) on stdout. On SIGTERM it \
stops the task's process group (SIGTERM, then SIGKILL after the grace period in TASK_DIR/kill); \
when the task ends it writes TASK_DIR/exit.json and exits.\n\n\
`mdo-task-shim -` is how the manager uses it: one spawner process reads lines `<seq> <TASK_DIR>` \
on stdin and forks one shim per line, as above (its diagnostics go to TASK_DIR/shim.log), which \
answers `<seq> started <pid>` or `<seq> failed <reason>` on the spawner's stdout; the spawner \
reaps the shims and adds `<seq> ended <status>` when one ends. The spawner exits at the end of \
its stdin; the shims it started keep running.\n\n\
Environment: the shim reads no variable itself; the task gets only the environment of spec.json.",
    after_help = "Exit codes: 0 after the task ended (its status is in exit.json) or, for `-`, \
at the end of stdin; 64 bad arguments; 70 the task could not be supervised."
)]
struct ShimCli {
    /// The task's directory, `<data-dir>/tasks/<task-id>/`, holding spec.json (written by the
    /// manager before it starts the shim); `-` to serve launch requests from stdin.
    #[arg(value_name = "TASK_DIR")]
    task_dir: PathBuf,
}

/// Entry point of the `mdo-task-shim` binary.
pub fn main() -> ExitCode {
    let cli = match <ShimCli as clap::Parser>::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let line = match e.kind() {
                clap::error::ErrorKind::MissingRequiredArgument => "no task directory given",
                _ => text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("bad arguments")
                    .trim_start_matches("error: "),
            };
            eprintln!(
                "mdo-task-shim: {line}; usage: mdo-task-shim <TASK_DIR> (started by the mdo manager)"
            );
            return ExitCode::from(64);
        }
    };
    if cli.task_dir.as_os_str() == "-" {
        return spawner::serve();
    }
    let dir = cli.task_dir;
    // Leave the manager's session and process group: its death or its
    // terminal's signals must not reach the task.
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("mdo-task-shim: setsid: {e}");
    }
    ExitCode::from(run(&dir, &Answer::plain()))
}

/// Where a shim answers `started <pid>` or `failed <reason>` (once): its
/// stdout, with the spawner's request number in front when forked by it.
pub(super) struct Answer {
    prefix: String,
    /// Forked by the spawner: stdout is the spawner's answer pipe, shared
    /// with the other shims; let go of it once answered, so the runtime sees
    /// the pipe's end when the spawner is gone.
    release: bool,
    sent: std::cell::Cell<bool>,
}

/// Room for one answer: a pipe write up to `PIPE_BUF` (4096) bytes is never
/// interleaved with another shim's.
const MAX_ANSWER: usize = 4000;

impl Answer {
    fn plain() -> Answer {
        Answer {
            prefix: String::new(),
            release: false,
            sent: Default::default(),
        }
    }

    /// The answer to the spawner's request `seq`, from the forked shim
    /// (`release`: it lets go of the pipe afterwards) or the spawner itself.
    pub(super) fn numbered(seq: u64, release: bool) -> Answer {
        Answer {
            prefix: format!("{seq} "),
            release,
            sent: Default::default(),
        }
    }

    /// Sends `line`; later ones are dropped (the runtime reads one answer).
    pub(super) fn send(&self, line: &str) {
        if self.sent.replace(true) {
            return;
        }
        let mut text = format!("{}{}", self.prefix, line.replace('\n', " "));
        if text.len() > MAX_ANSWER {
            let mut cut = MAX_ANSWER;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text.push('\n');
        // One write: the whole line or nothing.
        if let Err(e) = nix::unistd::write(std::io::stdout(), text.as_bytes()) {
            eprintln!("mdo-task-shim: answering: {e}");
        }
        if self.release {
            spawner::detach_stdout();
        }
    }
}

/// Supervises the task of `dir` in this process (already in a session of its
/// own) until it ends; the exit code of the shim.
pub(super) fn run(dir: &Path, answer: &Answer) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mdo-task-shim: tokio: {e}");
            answer.send(&format!("failed tokio: {e}"));
            return 70;
        }
    };
    match rt.block_on(supervise(dir, answer)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mdo-task-shim: {e}");
            answer.send(&format!("failed {e}"));
            70
        }
    }
}

async fn supervise(dir: &Path, answer: &Answer) -> std::io::Result<()> {
    let spec: TaskSpec = files::read_json(&dir.join(files::SPEC))?
        .ok_or_else(|| std::io::Error::other("spec.json missing"))?;
    // Installed before the task starts, so a kill right after `started` is seen.
    let mut term = signal(SignalKind::terminate())?;

    // Created before the task runs, so the directory holds no surprise later.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(files::OUTPUT))?;
    let (reader, writer) = std::io::pipe()?;
    let writer2 = writer.try_clone()?;
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(dir.join(files::SANDBOX))
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    let spawned = cmd.spawn();
    // The Command holds our copies of the pipe's write end: drop them so the
    // output pump sees EOF once the task's processes are gone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let message = format!("Failed to start '{}': {e}", spec.program);
            files::write_json(
                &dir.join(files::EXIT),
                &ExitRecord {
                    error: Some(message.clone()),
                    ..Default::default()
                },
            )?;
            answer.send(&format!("failed {message}"));
            return Ok(());
        }
    };
    let pid = child
        .id()
        .map(|p| p as i32)
        .ok_or_else(|| std::io::Error::other("task exited at once"))?;
    let me = std::process::id() as i32;
    let marker = Marker {
        shim_pid: me,
        shim_start: procfs::stat(me).map(|s| s.start).unwrap_or(0),
        pid,
        task_start: procfs::stat(pid).map(|s| s.start).unwrap_or(0),
    };
    files::write_json(&dir.join(files::MARKER), &marker)?;

    let (pump_done_tx, pump_done) = tokio::sync::oneshot::channel();
    let pump_dir = dir.to_path_buf();
    let limit = spec.log_limit;
    std::thread::spawn(move || {
        if let Err(e) = files::pump_output(reader, &pump_dir, limit) {
            eprintln!("mdo-task-shim: output: {e}");
        }
        let _ = pump_done_tx.send(());
    });
    answer.send(&format!("started {pid}"));

    let pgid = Pid::from_raw(pid);
    let mut killed = false;
    let mut orphan_check = tokio::time::interval(Duration::from_secs(1));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = term.recv() => {
                killed = true;
                let grace = std::fs::read_to_string(dir.join(files::KILL))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(spec.kill_grace_ms);
                break terminate(&mut child, pgid, Duration::from_millis(grace)).await?;
            }
            _ = orphan_check.tick() => {
                // The task's directory was removed (data dir wiped, test
                // temp dir dropped): no manager can ever adopt this task.
                if !dir.join(files::SPEC).exists() {
                    eprintln!("mdo-task-shim: task directory removed; stopping the task");
                    killed = true;
                    break terminate(&mut child, pgid, Duration::from_millis(spec.kill_grace_ms)).await?;
                }
            }
        }
    };
    // Whatever the leader left behind in its group dies with it.
    let _ = killpg(pgid, Signal::SIGKILL);
    // Processes that left the group (setsid) may still hold the pipe: do not wait forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), pump_done).await;

    use std::os::unix::process::ExitStatusExt;
    let record = ExitRecord {
        code: status.code(),
        signal: status.signal(),
        killed,
        error: None,
    };
    if !dir.exists() {
        return Ok(());
    }
    files::write_json(&dir.join(files::EXIT), &record)
}

/// SIGTERM to the task's group; SIGKILL to it after `grace`.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: Pid,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let _ = killpg(pgid, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = killpg(pgid, Signal::SIGKILL);
            child.wait().await
        }
    }
}
