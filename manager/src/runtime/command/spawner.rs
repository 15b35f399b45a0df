//! `mdo-task-shim -`: the spawner, one process per command runtime that
//! forks each task's shim, so a launch costs a fork instead of an exec of the
//! shim binary plus its start-up.
//!
//! Protocol (pipes; the runtime's side is `launcher.rs`):
//! - stdin: one request per line, `<seq> <length> <task dir><spec>`: the
//!   directory as raw bytes (no newline in it) of the given length, then
//!   the task's spec as one line of JSON;
//! - stdout: answers, `<seq> started <pid> <shim pid> <shim start> <task
//!   start>` or `<seq> failed <reason>`, each
//!   written in one `write` of at most `PIPE_BUF` bytes by the forked shim
//!   itself (or by the spawner when it cannot fork); and `<seq> ended
//!   <status>` from the spawner when it reaps a shim (the runtime ignores it
//!   unless that shim died before it answered).
//!
//! The spawner is single-threaded (fork is then sound), reads no task file
//! and does not parse the spec (the forked child does). Each child leaves the spawner's session (`setsid`), points its
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

use super::files::TaskSpec;
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

/// One request, `<seq> <length> <task dir><spec>`: forks its shim (pid
/// and seq returned), which reads the rest.
fn handle(line: &[u8]) -> Option<(Pid, u64)> {
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        eprintln!("mdo-task-shim: spawner: a request without a task");
        return None;
    };
    let Some(seq) = std::str::from_utf8(&line[..space])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        eprintln!("mdo-task-shim: spawner: a request without a number");
        return None;
    };
    let request = &line[space + 1..];
    match fork() {
        Ok(ForkResult::Parent { child }) => Some((child, seq)),
        Ok(ForkResult::Child) => std::process::exit(i32::from(self::child(seq, request))),
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

/// The request's task directory and spec.
pub(super) fn parse_request(request: &[u8]) -> Result<(&Path, TaskSpec), String> {
    let space = request
        .iter()
        .position(|&b| b == b' ')
        .ok_or("no task directory")?;
    let len: usize = std::str::from_utf8(&request[..space])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("no length of the task directory")?;
    let rest = &request[space + 1..];
    if len == 0 || len > rest.len() {
        return Err(format!("a task directory of {len} bytes in {}", rest.len()));
    }
    let dir = Path::new(OsStr::from_bytes(&rest[..len]));
    let spec = serde_json::from_slice(&rest[len..]).map_err(|e| format!("the task spec: {e}"))?;
    Ok((dir, spec))
}

/// The request line of `dir` and `spec` (without `<seq> ` and the newline).
pub(super) fn request(dir: &Path, spec: &[u8]) -> Vec<u8> {
    let dir = dir.as_os_str().as_bytes();
    let mut line = Vec::with_capacity(dir.len() + spec.len() + 8);
    line.extend_from_slice(format!("{} ", dir.len()).as_bytes());
    line.extend_from_slice(dir);
    line.extend_from_slice(spec);
    line
}

/// The forked shim of one task.
fn child(seq: u64, request: &[u8]) -> u8 {
    let answer = Answer::numbered(seq, true);
    let (dir, spec) = match parse_request(request) {
        Ok(r) => r,
        Err(e) => {
            answer.send(&format!("failed bad launch request: {e}"));
            return 64;
        }
    };
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
    shim::run(dir, Some(spec), &answer)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json() -> Vec<u8> {
        let spec = TaskSpec {
            task_id: "web.1".into(),
            app_id: "/web".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo 'a\nb'".into()],
            env: [("K".to_string(), "v w".to_string())].into(),
            kill_grace_ms: 3000,
            log_limit: 1024,
            nice: 0,
        };
        serde_json::to_vec(&spec).unwrap()
    }

    #[test]
    fn a_request_carries_the_directory_and_the_spec_on_one_line() {
        let json = spec_json();
        // A directory with a space and a brace in its name.
        let dir = Path::new("/data dir/{x}/tasks/web.1");
        let line = request(dir, &json);
        assert!(!line.contains(&b'\n'), "one line");
        let (got_dir, spec) = parse_request(&line).unwrap();
        assert_eq!(got_dir, dir);
        assert_eq!(serde_json::to_vec(&spec).unwrap(), json);
    }

    #[test]
    fn a_bad_request_is_refused_with_its_reason() {
        let json = spec_json();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"no-space".to_vec(), "no task directory"),
            (b"x /dir{}".to_vec(), "no length"),
            (b"0 {}".to_vec(), "a task directory of 0 bytes"),
            (b"99 /short{}".to_vec(), "a task directory of 99 bytes"),
            (b"4 /dir{not json".to_vec(), "the task spec"),
            (
                [b"4 /dir".as_slice(), &json[..json.len() - 1]].concat(),
                "the task spec",
            ),
        ];
        for (line, want) in cases {
            let err = parse_request(&line).unwrap_err();
            assert!(
                err.starts_with(want),
                "{:?}: {err}",
                String::from_utf8_lossy(&line)
            );
        }
    }
}
