//! Waiting for a shim's end. The shims are the spawner's children (or, after
//! a manager restart, nobody's the runtime knows), so the runtime watches
//! them through a pidfd: woken when the process ends, whoever its parent is.
//! Where pidfds are missing (Linux before 5.3), it polls /proc and the exit
//! record instead.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use super::procfs;

/// How often a shim is looked at when no pidfd can watch it.
const POLL: Duration = Duration::from_millis(100);

/// Returns once the process `pid` that started at `start` (kernel clock
/// ticks, as in the task marker) has ended, or at once when it does not run.
/// `exit_record`: the file its end is recorded in (for polling).
pub(super) async fn shim_ended(pid: i32, start: u64, exit_record: &Path) {
    match pidfd(pid, start) {
        Ok(None) => return,
        Ok(Some(fd)) => match procfs::readiness(fd) {
            Ok(fd) => {
                if fd.readable().await.is_ok() {
                    return;
                }
            }
            Err(e) => tracing::debug!(pid, error = %e, "cannot watch a pidfd; polling"),
        },
        Err(e) => tracing::debug!(pid, error = %e, "no pidfd; polling"),
    }
    while !exit_record.exists() && procfs::same_process_alive(pid, start) {
        tokio::time::sleep(POLL).await;
    }
}

/// A pidfd of `pid` if it is still the process that started at `start`.
fn pidfd(pid: i32, start: u64) -> std::io::Result<Option<OwnedFd>> {
    // Checked after the open: the pidfd holds this very process, so a start
    // time that still matches proves it is the one we mean.
    Ok(procfs::pidfd(pid)?.filter(|_| procfs::same_process_alive(pid, start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_when_a_process_that_is_not_our_child_ends() {
        // `sh` starts `sleep` and exits: `sleep` is nobody's child we wait for.
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 2 >/dev/null 2>&1 & echo $!"])
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let start = procfs::stat(pid).unwrap().start;
        let none = Path::new("/nonexistent/exit.json");
        tokio::time::timeout(Duration::from_secs(20), shim_ended(pid, start, none))
            .await
            .expect("woken when the process ended");
        assert!(!procfs::same_process_alive(pid, start));
        // A start time that does not match: not the process meant, no wait.
        let me = std::process::id() as i32;
        let mine = procfs::stat(me).unwrap().start;
        tokio::time::timeout(Duration::from_secs(5), shim_ended(me, mine + 1, none))
            .await
            .expect("a recycled pid is not waited for");
    }
}
