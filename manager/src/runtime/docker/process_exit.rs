//! The earliest exit path: the container's own process, watched through a
//! pidfd. containerd's `/tasks/exit` comes only after the container's shim
//! has reaped the process and published the exit, and containerd has
//! passed it on: 3 ms later at p50 on a 2-core machine, and much more when
//! the machine is busy (the shim, containerd and the engine all need a core
//! then, and tearing the container down keeps them busy). A pidfd is
//! readable the moment the process ends.
//!
//! The exit status comes from the process itself: until its parent (the
//! shim) reaps it, an ended process is a zombie whose `/proc/<pid>/stat`
//! still holds it (field 52, for a reader allowed to trace it: the manager
//! as root, as it runs beside a local engine). The propagation benchmark
//! found it still readable at the pidfd's wake-up in 86 of 100 `docker
//! kill`s. When it is not (reaped already, or not ours to read), the other
//! paths report the exit (or, with this path alone, the engine is asked:
//! `inspect` until it says the container stopped). Every path goes through
//! [`Shared::claim_exit`], so an exit is reported once, by the first.
//!
//! A SIGKILL status is checked against the memory cgroup's OOM-kill counter
//! as containerd's path does (the OOM killer and `docker kill` look the
//! same otherwise).
//!
//! Which process: the container's `State.Pid`, opened as a pidfd, then
//! proven to be that container's (its cgroup names the container) while
//! still running (the pidfd not readable after the check): a pid reused by
//! another process is never watched. A manager in another pid namespace than
//! the engine's finds no such process and leaves the exit to the other paths.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use daemon::Backoff;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::containerd::{oom_kills, SIGKILL_STATUS};
use super::recover::classify_code;
use super::shared::{message_of, Shared};
use crate::runtime::procfs;
use crate::runtime::Exit;

const INSPECT_START: Duration = Duration::from_millis(10);
const INSPECT_MAX: Duration = Duration::from_secs(2);

/// A wait status as containerd and Docker report it (pure): the exit code,
/// or 128 + the signal that ended the process.
pub(super) fn status_of_wait(wait: i64) -> i64 {
    let signal = wait & 0x7f;
    if signal != 0 {
        128 + signal
    } else {
        (wait >> 8) & 0xff
    }
}

/// Whether `/proc/<pid>/cgroup` places the process in `container_id`'s
/// cgroup (any hierarchy, cgroupfs or systemd driver).
fn in_container(pid: i32, container_id: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|text| text.lines().any(|l| l.contains(container_id)))
}

/// The container's process, proven, with what tells its exit later.
struct Watched {
    fd: AsyncFd<OwnedFd>,
    pid: i32,
    start: u64,
    /// Its exit status will be readable (we may trace it).
    readable: bool,
}

fn watch(pid: i32, container_id: &str) -> std::io::Result<Option<Watched>> {
    let Some(fd) = procfs::pidfd(pid)? else {
        return Ok(None);
    };
    let Some(stat) = procfs::stat(pid) else {
        return Ok(None);
    };
    if !in_container(pid, container_id) || ended(&fd) {
        // Another process now, or already over: nothing to prove it by.
        return Ok(None);
    }
    Ok(Some(Watched {
        fd: procfs::readiness(fd)?,
        pid,
        start: stat.start,
        readable: stat.start_code != Some(1),
    }))
}

/// Whether the pidfd's process has ended (it is readable), without waiting.
fn ended(fd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

impl Watched {
    /// The exit status of the ended process while it is still unreaped
    /// (None once reaped, or when it is not ours to read).
    fn exit_status(&self) -> Option<i64> {
        if !self.readable {
            return None;
        }
        let stat = procfs::stat(self.pid)?;
        if stat.state != 'Z' || stat.start != self.start {
            return None;
        }
        stat.exit_code.map(status_of_wait)
    }
}

/// Watches one container's process until it ends (or `cancel`), then
/// reports its exit unless another path did. When the process cannot be
/// watched or its status read, `ask_engine` says whether to ask the engine
/// (`inspect` until it says the container stopped) or to leave the exit to
/// the other paths.
pub(super) async fn process_exit(
    shared: Arc<Shared>,
    task_id: String,
    container_id: String,
    cancel: CancellationToken,
    ask_engine: bool,
) {
    if let Some(exit) = from_process(&shared, &task_id, &container_id, &cancel).await {
        shared.exited(&task_id, &container_id, exit).await;
        return;
    }
    if cancel.is_cancelled() || !ask_engine {
        return;
    }
    // Reaped already, not ours to read, or never watched: the engine
    // knows once it has taken the exit in.
    let mut backoff = Backoff::new(INSPECT_START, INSPECT_MAX);
    while shared.still_running(&task_id, &container_id)
        && !shared.report_if_stopped(&task_id, &container_id).await
    {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// The container's exit as its process tells it: None when the process
/// cannot be watched, its status was not readable, or `cancel`.
async fn from_process(
    shared: &Shared,
    task_id: &str,
    container_id: &str,
    cancel: &CancellationToken,
) -> Option<Exit> {
    let pid = match shared.inspect(container_id).await {
        Ok(info) => info.state.and_then(|s| s.pid).unwrap_or(0),
        Err(e) => {
            debug!(task_id, error = %message_of(&e), "no process to watch");
            return None;
        }
    };
    let watched = match i32::try_from(pid).ok().filter(|p| *p > 0) {
        Some(pid) => watch(pid, container_id),
        None => Ok(None),
    };
    let watched = match watched {
        Ok(Some(w)) => w,
        Ok(None) => {
            debug!(
                task_id,
                pid, "the container's process is not one this manager can watch"
            );
            return None;
        }
        Err(e) => {
            debug!(task_id, pid, error = %e, "cannot watch the container's process");
            return None;
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => return None,
        ready = watched.fd.readable() => drop(ready.ok()?),
    }
    if !shared.still_running(task_id, container_id) {
        return None;
    }
    let status = watched.exit_status()?;
    let oom = match status {
        SIGKILL_STATUS => oom_kills(container_id)? > 0,
        _ => false,
    };
    Some(classify_code(status, oom, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_read_as_the_engine_reports_them() {
        for (wait, status) in [
            (0, 0),
            (3 << 8, 3),
            (255 << 8, 255),
            (9, 137),
            (15, 143),
            // Killed by SIGSEGV with a core dump (0x80).
            (0x80 | 11, 139),
        ] {
            assert_eq!(status_of_wait(wait), status, "wait status {wait:#x}");
        }
    }

    #[test]
    fn an_unreaped_child_reads_as_its_exit_status() {
        // A child of this test stays a zombie until waited for: its status
        // is readable through the same path as a container's process.
        for (script, want) in [("exit 3", 3), ("exit 0", 0), ("kill -9 $$", 137)] {
            let mut child = std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .spawn()
                .unwrap();
            let pid = child.id() as i32;
            let stat = procfs::stat(pid).unwrap();
            let watched_fd = procfs::pidfd(pid).unwrap().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !ended(&watched_fd) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{script}: never ended"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let w = Watched {
                fd: watch_fd_for_test(watched_fd),
                pid,
                start: stat.start,
                readable: true,
            };
            assert_eq!(w.exit_status(), Some(want), "{script}");
            // Another start time: not the process we watched.
            let other = Watched {
                start: stat.start + 1,
                ..w
            };
            assert_eq!(other.exit_status(), None);
            child.wait().unwrap();
            // Reaped: nothing left to read.
            assert_eq!(other.exit_status(), None);
        }
    }

    fn watch_fd_for_test(fd: OwnedFd) -> AsyncFd<OwnedFd> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let fd = procfs::readiness(fd).unwrap();
        // The runtime may go: the AsyncFd only needs it to register.
        std::mem::forget(rt);
        fd
    }

    #[test]
    fn a_process_outside_the_container_is_not_watched() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(!in_container(pid, "f88cd5a46927a051a55dc2787a7b95503"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(watch(pid, "f88cd5a46927a051a55dc2787a7b95503")
            .unwrap()
            .is_none());
        assert!(watch(i32::MAX, "x").unwrap().is_none(), "no such process");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
