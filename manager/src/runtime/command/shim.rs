//! `mdo-task-shim <task-dir>`: the supervisor of one command task.
//!
//! The runtime has one shim per task. The shim leaves the manager's session
//! (`setsid`), so it survives the manager (SIGTERM, kill -9, Ctrl-C) and keeps
//! the task's output and exit status while nobody watches:
//! - starts the spec's program (sent with the spawner's request, or
//!   `spec.json` when run alone) in its own process group (pgid = task pid),
//!   stdin from /dev/null, stdout and stderr into one pipe it copies to the
//!   size-capped `output.log` (created by the first output);
//! - writes `task.json` (pids + start times, and the spec) and answers
//!   `started <pid> <shim pid> <shim start> <task start>` (or `failed
//!   <reason>` and an exit record);
//! - on SIGTERM (a kill request; grace in the `kill` file): SIGTERM to the
//!   group, SIGKILL to the group after the grace period;
//! - when the task's leader ends, SIGKILLs what is left of its group (task
//!   processes never outlive their task), then writes `exit.json` and exits.
//!
//! A shim is one thread with one `poll` loop (a signalfd for SIGTERM and
//! SIGCHLD, the output pipe, a timeout for the kill deadline and the orphan
//! check): no async runtime, no helper thread, no file it does not need, as
//! every launch pays for what a shim sets up.
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
use std::time::Instant;

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
TASK_DIR/task.json (pids, start times and the spec) and prints `started <pid> <shim pid> <shim \
start> <task start>` (or `failed <reason>`) on stdout. On SIGTERM it \
stops the task's process group (SIGTERM, then SIGKILL after the grace period in TASK_DIR/kill); \
when the task ends it writes TASK_DIR/exit.json and exits.\n\n\
`mdo-task-shim -` is how the manager uses it: one spawner process reads lines `<seq> <length of \
TASK_DIR> <TASK_DIR><spec as JSON>` on stdin and forks one shim per line, as above but with the \
spec from the line (its diagnostics go to TASK_DIR/shim.log), which answers `<seq> started ...` \
or `<seq> failed <reason>` on the spawner's stdout; the spawner \
reaps the shims and adds `<seq> ended <status>` when one ends. The spawner exits at the end of \
its stdin; the shims it started keep running.\n\n\
Environment: the shim reads no variable itself; the task gets only the environment of its spec.",
    after_help = "Exit codes: 0 after the task ended (its status is in exit.json) or, for `-`, \
at the end of stdin; 64 bad arguments; 70 the task could not be supervised."
)]
struct ShimCli {
    /// The task's directory, `<data-dir>/tasks/<task-id>/`, holding spec.json (what to run) and
    /// sandbox/; `-` to serve launch requests from stdin.
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
    ExitCode::from(run(&dir, None, &Answer::plain()))
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
            diag(format_args!("answering: {e}"));
        }
        if self.release {
            spawner::detach_stdout();
        }
    }
}

/// Where a forked shim's diagnostics go: its task's `shim.log`, created by
/// the first line (most shims never write one); unset (stderr) when the
/// shim runs alone.
static LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sends the shim's diagnostics (and its panics) to `dir`'s `shim.log`.
pub(super) fn log_to(dir: &Path) {
    let _ = LOG.set(dir.join(files::SHIM_LOG));
    std::panic::set_hook(Box::new(|info| diag(format_args!("{info}"))));
}

/// One line of diagnostics: `shim.log` (see [`log_to`]) or stderr.
pub(super) fn diag(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    match LOG.get() {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path);
            if let Ok(mut f) = file {
                let _ = writeln!(f, "mdo-task-shim: {message}");
            }
        }
        None => eprintln!("mdo-task-shim: {message}"),
    }
}

/// Supervises the task of `dir` in this process (already in a session of its
/// own) until it ends; the exit code of the shim. The spec is `dir`'s
/// `spec.json` when not given.
pub(super) fn run(dir: &Path, spec: Option<TaskSpec>, answer: &Answer) -> u8 {
    match supervise(dir, spec, answer) {
        Ok(()) => 0,
        Err(e) => {
            diag(format_args!("{e}"));
            answer.send(&format!("failed {e}"));
            70
        }
    }
}

/// How often the shim checks that its task's directory still exists.
const ORPHAN_CHECK: Duration = Duration::from_secs(1);

/// How long output is still copied after the task's leader ended (processes
/// that left its group may hold the pipe).
const DRAIN: Duration = Duration::from_secs(2);

/// The shim's one loop, single-threaded and without a runtime (a shim per
/// task: what it costs is paid per launch): the task's exit and SIGTERM come
/// through a signalfd, its output through a non-blocking pipe, both polled
/// with the kill deadline and the orphan check as the timeout.
fn supervise(dir: &Path, spec: Option<TaskSpec>, answer: &Answer) -> std::io::Result<()> {
    use nix::sys::signal::SigSet;
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use std::os::unix::process::CommandExt;

    let spec: TaskSpec = match spec {
        Some(spec) => spec,
        None => files::read_json(&dir.join(files::SPEC))?
            .ok_or_else(|| std::io::Error::other("spec.json missing"))?,
    };
    let (reader, writer) = std::io::pipe()?;
    let writer2 = writer.try_clone()?;
    let mut cmd = std::process::Command::new(&spec.program);
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
    // pump sees EOF once the task's processes are gone.
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
    let pid = child.id() as i32;
    // The weight its `cpus` asks for (see `weight`): the task's group now,
    // the session once answered.
    if let Err(e) = super::weight::lower_group(pid, spec.nice) {
        diag(format_args!(
            "lowering the task's priority to nice {}: {e}",
            spec.nice
        ));
    }
    // SIGTERM and SIGCHLD are read from a signalfd, so blocked: only now,
    // as a blocked mask would be the task's too (std's spawn does not
    // always reset it). Before the marker is written, no one knows this
    // shim's pid to signal it; an exit before the block is seen by the
    // first `try_wait`.
    let setup = || -> std::io::Result<(SignalFd, Output, Marker)> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(std::io::Error::from)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let output = Output::new(reader, dir, spec.log_limit)?;
        let me = std::process::id() as i32;
        let marker = Marker {
            shim_pid: me,
            shim_start: procfs::stat(me).map(|s| s.start).unwrap_or(0),
            pid,
            task_start: procfs::stat(pid).map(|s| s.start).unwrap_or(0),
        };
        let task = files::TaskFile {
            marker,
            spec: Some(spec.clone()),
        };
        files::write_json(&dir.join(files::TASK), &task)?;
        Ok((signals, output, marker))
    };
    let (signals, mut output, marker) = match setup() {
        Ok(s) => s,
        Err(e) => {
            // Not supervised, so not left running.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = child.wait();
            return Err(e);
        }
    };
    answer.send(&format!("started {}", marker.to_answer()));
    // Retried at each orphan check while the kernel says "not now" (it
    // takes one autogroup change per 100 ms from an unprivileged user).
    let mut session_unweighed = !weigh_session(spec.nice);

    let pgid = Pid::from_raw(pid);
    let mut killed = false;
    let mut kill_at: Option<Instant> = None;
    let mut orphan_check = Instant::now() + ORPHAN_CHECK;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if kill_at.is_some_and(|at| at <= now) {
            let _ = killpg(pgid, Signal::SIGKILL);
            kill_at = None;
        }
        if orphan_check <= now {
            orphan_check = now + ORPHAN_CHECK;
            if session_unweighed {
                session_unweighed = !weigh_session(spec.nice);
            }
            // The task's directory was removed (data dir wiped, test temp
            // dir dropped): no manager can ever adopt this task.
            if !killed && !dir.join(files::TASK).exists() {
                diag(format_args!("task directory removed; stopping the task"));
                killed = true;
                kill_at = Some(terminate(pgid, spec.kill_grace_ms));
            }
        }
        let wake = kill_at.map_or(orphan_check, |at| at.min(orphan_check));
        let (signalled, _) = wait_for(&signals, output.open(), wake)?;
        if signalled {
            while let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo == Signal::SIGTERM as u32 && !killed {
                    killed = true;
                    let grace = std::fs::read_to_string(dir.join(files::KILL))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(spec.kill_grace_ms);
                    kill_at = Some(terminate(pgid, grace));
                }
            }
        }
        output.pump();
    };
    // Whatever the leader left behind in its group dies with it.
    let _ = killpg(pgid, Signal::SIGKILL);
    // Processes that left the group (setsid) may still hold the pipe: do not wait forever.
    let drained = Instant::now() + DRAIN;
    while output.open().is_some() && Instant::now() < drained {
        wait_for(&signals, output.open(), drained)?;
        output.pump();
    }

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

/// Gives the shim's session the task's CPU weight (see `weight`); false
/// when the kernel asks to try again later.
fn weigh_session(nice: i32) -> bool {
    match super::weight::lower_session(Path::new("/proc"), nice) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => {
            diag(format_args!(
                "lowering the session's CPU weight to nice {nice}: {e}"
            ));
            true
        }
    }
}

/// SIGTERM to the task's group; when SIGKILL follows (after the grace).
fn terminate(pgid: Pid, grace_ms: u64) -> Instant {
    let _ = killpg(pgid, Signal::SIGTERM);
    Instant::now() + Duration::from_millis(grace_ms.min(crate::bounds::MAX_KILL_GRACE_SECS * 1000))
}

/// Polls the signalfd and the output pipe (when still open) until one is
/// ready or `until`; which of them is ready.
fn wait_for(
    signals: &nix::sys::signalfd::SignalFd,
    output: Option<std::os::fd::BorrowedFd<'_>>,
    until: Instant,
) -> std::io::Result<(bool, bool)> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let left = until.saturating_duration_since(Instant::now());
    // Rounded up: a timeout of 0 for a deadline 0.4 ms away would spin.
    let ms = u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX);
    let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    if let Some(fd) = output {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
    Ok((ready(&fds[0]), fds.get(1).is_some_and(ready)))
}

/// Reads of the output pipe per turn of the shim's loop (64 KiB each).
const PUMP_READS: usize = 16;

/// The task's output pipe and its copy in `output.log` (opened on the first
/// bytes: a quiet task costs no file), rotated to `output.log.1` when the
/// next write would pass the limit.
struct Output {
    pipe: Option<std::io::PipeReader>,
    path: PathBuf,
    old: PathBuf,
    limit: u64,
    file: Option<(std::fs::File, u64)>,
    /// Writing failed: the rest is read and dropped.
    broken: bool,
    /// Allocated at the first read: a quiet task's shim never touches its
    /// 64 KiB (16 pages to fault in and zero, per launch).
    buf: Vec<u8>,
}

impl Output {
    fn new(pipe: std::io::PipeReader, dir: &Path, limit: u64) -> std::io::Result<Output> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use std::os::fd::AsRawFd;
        fcntl(pipe.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(std::io::Error::from)?;
        Ok(Output {
            pipe: Some(pipe),
            path: dir.join(files::OUTPUT),
            old: dir.join(files::OUTPUT_OLD),
            limit,
            file: None,
            broken: false,
            buf: Vec::new(),
        })
    }

    fn open(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.pipe.as_ref().map(|p| p.as_fd())
    }

    /// Copies what the pipe holds now; at EOF (or a read error) the pipe is
    /// closed and a write error drops the output from then on (the task
    /// keeps running: its writes are read and discarded).
    fn pump(&mut self) {
        use std::io::Read;
        // Bounded, so a task that writes as fast as it is read cannot keep
        // the loop from its signals, its exit and its kill deadline.
        for _ in 0..PUMP_READS {
            let Some(pipe) = self.pipe.as_mut() else {
                return;
            };
            if self.buf.is_empty() {
                self.buf = vec![0u8; 64 * 1024];
            }
            let n = match pipe.read(&mut self.buf) {
                Ok(0) => {
                    self.pipe = None;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    diag(format_args!("output: {e}"));
                    self.pipe = None;
                    return;
                }
            };
            if self.broken {
                continue;
            }
            if let Err(e) = self.write(n) {
                diag(format_args!("output: {e}"));
                self.broken = true;
            }
        }
    }

    fn write(&mut self, n: usize) -> std::io::Result<()> {
        use std::io::Write;
        let open = |path: &Path, truncate: bool| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(!truncate)
                .write(true)
                .truncate(truncate)
                .mode(0o600)
                .open(path)
        };
        if self.file.is_none() {
            let f = open(&self.path, false)?;
            let size = f.metadata()?.len();
            self.file = Some((f, size));
        }
        let (file, size) = self.file.as_mut().expect("opened above");
        if *size > 0 && *size + n as u64 > self.limit {
            std::fs::rename(&self.path, &self.old)?;
            *file = open(&self.path, true)?;
            *size = 0;
        }
        file.write_all(&self.buf[..n])?;
        *size += n as u64;
        Ok(())
    }
}
