//! `mdo-task-shim -`: the spawner, one process per command runtime that
//! forks each task's shim, so a launch costs a fork instead of an exec of the
//! shim binary plus its start-up.
//!
//! Protocol (pipes; the runtime's side is `launcher.rs`):
//! - stdin: one request per line, `<seq> <task dir>` (the directory as raw
//!   bytes, no newline in it);
//! - stdout: answers, `<seq> started <pid>` or `<seq> failed <reason>`, each
//!   written in one `write` of at most `PIPE_BUF` bytes by the forked shim
//!   itself (or by the spawner when it cannot fork); and `<seq> ended
//!   <status>` from the spawner when it reaps a shim (the runtime ignores it
//!   unless that shim died before it answered).
//!
//! The spawner is single-threaded (fork is then sound) and reads no task
//! file. Each child leaves the spawner's session (`setsid`), points its
//! stdin and stderr at /dev/null (its diagnostics go to the task's
//! `shim.log`, created by the first line), lets go of
//! the answer pipe once it has answered, and from then on is exactly the shim
//! of `mdo-task-shim <TASK_DIR>`. The spawner reaps its children (no zombies)
//! and exits at the end of its stdin, i.e. when the manager is gone; the
//! shims, in sessions of their own, are not signalled and keep running.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::shim::{self, Answer};

/// How often ended shims are reaped while no request comes.
const REAP_EVERY_MS: u16 = 200;

/// Runs the spawner until its stdin ends.
pub fn serve() -> ExitCode {
    let stdin = std::io::stdin();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    // Our shims by pid: the request each one answers.
    let mut shims: HashMap<Pid, u64> = HashMap::new();
    loop {
        reap(&mut shims);
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(REAP_EVERY_MS)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("mdo-task-shim: spawner: poll: {e}");
                return ExitCode::from(70);
            }
        }
        let n = match nix::unistd::read(stdin.as_raw_fd(), &mut chunk) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => {
                eprintln!("mdo-task-shim: spawner: reading requests: {e}");
                return ExitCode::from(70);
            }
        };
        if n == 0 {
            // The runtime is gone (or let go of us); the shims live on.
            reap(&mut shims);
            return ExitCode::SUCCESS;
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some((pid, seq)) = handle(&line[..line.len() - 1]) {
                shims.insert(pid, seq);
            }
        }
    }
}

/// Reaps every ended child, without waiting, and says so (a shim that died
/// before it answered would otherwise leave its launch waiting).
fn reap(shims: &mut HashMap<Pid, u64>) {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exit status {code}")),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, format!("signal {sig}")),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if let Some(seq) = shims.remove(&pid) {
            Answer::numbered(seq, false).send(&format!("ended {status}"));
        }
    }
}

/// One request, `<seq> <task dir>`: forks its shim (pid and seq returned).
fn handle(line: &[u8]) -> Option<(Pid, u64)> {
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        eprintln!("mdo-task-shim: spawner: a request without a task directory");
        return None;
    };
    let Some(seq) = std::str::from_utf8(&line[..space])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        eprintln!("mdo-task-shim: spawner: a request without a number");
        return None;
    };
    let dir = Path::new(OsStr::from_bytes(&line[space + 1..]));
    match fork() {
        Ok(ForkResult::Parent { child }) => Some((child, seq)),
        Ok(ForkResult::Child) => std::process::exit(i32::from(self::child(seq, dir))),
        Err(e) => {
            Answer::numbered(seq, false).send(&format!("failed cannot fork: {e}"));
            None
        }
    }
}

/// Forks this process.
#[allow(unsafe_code)]
fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the spawner never starts a thread (no runtime, no helper
    // threads: `serve` is all it runs), so the child is a full copy of a
    // single-threaded process and may do anything, allocation included.
    unsafe { nix::unistd::fork() }
}

/// The forked shim of one task.
fn child(seq: u64, dir: &Path) -> u8 {
    let answer = Answer::numbered(seq, true);
    // Not the spawner's requests (their pipe must close when the spawner
    // dies), nor the manager's stderr (kept open by every shim otherwise):
    // diagnostics go to the task's shim.log, created by the first line.
    shim::log_to(dir);
    for fd in [0, 2] {
        if let Err(e) = redirect_null(fd) {
            answer.send(&format!("failed /dev/null: {e}"));
            return 70;
        }
    }
    if let Err(e) = nix::unistd::setsid() {
        shim::diag(format_args!("setsid: {e}"));
    }
    shim::run(dir, &answer)
}

/// Points `fd` at /dev/null.
fn redirect_null(fd: i32) -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), fd)?;
    Ok(())
}

/// A forked shim's stdout after its answer: /dev/null, so the answer pipe
/// ends once the spawner and the shims still starting are gone.
pub(super) fn detach_stdout() {
    if let Err(e) = redirect_null(1) {
        shim::diag(format_args!("releasing the answer pipe: {e}"));
    }
}
