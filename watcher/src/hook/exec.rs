//! `--exec CMD`: `sh -c CMD` with the change in its environment.
//!
//! Linux caps one environment string at 128 KiB, so a JSON list larger than
//! [`ENV_LIMIT`] (a service with hundreds of instances) is written to a
//! temporary file instead: `WATCH_NODES` is then absent and
//! `WATCH_NODES_FILE` names the file (same for ADDED and REMOVED). The file
//! is removed when the command ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tracing::warn;

use super::{HookError, Notification};
use crate::delta::Node;

/// Largest JSON list passed inline in the environment.
pub const ENV_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ExecHook {
    command: String,
    /// Zero: no bound.
    timeout: Duration,
}

impl ExecHook {
    pub fn new(command: String) -> ExecHook {
        ExecHook {
            command,
            timeout: Duration::ZERO,
        }
    }

    /// Bounds each run (zero: no bound).
    pub fn with_timeout(mut self, timeout: Duration) -> ExecHook {
        self.timeout = timeout;
        self
    }

    /// Runs the command to completion, in its own process group. stdout and
    /// stderr are the watcher's; stdin is closed. Past the timeout, or if
    /// the watcher stops meanwhile, the whole group is killed (what the
    /// command left running after it ended normally is left alone).
    pub async fn run(&self, n: &Notification) -> Result<(), HookError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .env("WATCH_SERVICE", &n.watch)
            .env("WATCH_DELTA", n.change.delta.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let mut spilled = TempFiles::default();
        for (name, nodes) in [
            ("WATCH_ADDED", &n.change.added),
            ("WATCH_REMOVED", &n.change.removed),
            ("WATCH_NODES", &n.change.nodes),
        ] {
            let json = to_json(nodes);
            if json.len() <= ENV_LIMIT {
                cmd.env(name, json);
            } else {
                let path = spilled.write(name, &json).await.map_err(HookError::Spawn)?;
                cmd.env_remove(name).env(format!("{name}_FILE"), path);
            }
        }
        let mut child = cmd.spawn().map_err(HookError::Spawn)?;
        let mut group = GroupGuard(child.id());
        let status = if self.timeout.is_zero() {
            child.wait().await
        } else {
            match tokio::time::timeout(self.timeout, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    warn!(command = %self.command, timeout = ?self.timeout, pgid = group.0.unwrap_or(0),
                        "callback ran past --hook-timeout; killing its process group");
                    group.kill();
                    let _ = child.wait().await;
                    return Err(HookError::TimedOut(self.timeout));
                }
            }
        }
        .map_err(HookError::Spawn)?;
        group.0 = None;
        drop(spilled);
        if status.success() {
            Ok(())
        } else {
            Err(HookError::Failed(status))
        }
    }
}

fn to_json(nodes: &[Node]) -> String {
    serde_json::to_string(nodes).expect("records serialise")
}

/// The process group of a running command (its leader's pid): killed on
/// drop unless cleared (the command ended).
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Temporary files removed on drop.
#[derive(Default)]
struct TempFiles(Vec<PathBuf>);

impl TempFiles {
    async fn write(&mut self, name: &str, content: &str) -> std::io::Result<PathBuf> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "mdo-watcher-{}-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            name.to_ascii_lowercase()
        ));
        tokio::fs::write(&path, content).await?;
        self.0.push(path.clone());
        Ok(path)
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Change;
    use serde_json::json;

    fn notification(instances: usize) -> Notification {
        let nodes: Vec<Node> = (0..instances)
            .map(|i| {
                let c = format!("container-{i:05}");
                Node::new(
                    c.clone(),
                    json!({"container": c, "host": "10.0.0.1", "pad": "x".repeat(300)}),
                )
            })
            .collect();
        Notification {
            watch: "svc".into(),
            change: Change {
                added: nodes.clone(),
                removed: vec![],
                nodes,
                delta: instances as i64,
            },
        }
    }

    #[tokio::test]
    async fn small_lists_inline_large_lists_in_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hook = ExecHook::new(format!(
            r#"{{ echo "$WATCH_SERVICE $WATCH_DELTA"; printf %s "${{WATCH_NODES:-none}}" | head -c 20; echo; echo "${{WATCH_NODES_FILE:-nofile}}"; if [ -n "$WATCH_NODES_FILE" ]; then wc -c < "$WATCH_NODES_FILE"; fi; }} > {}"#,
            out.display()
        ));
        hook.run(&notification(2)).await.unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "svc 2");
        assert!(lines[1].starts_with("[{"), "{text}");
        assert_eq!(lines[2], "nofile");

        // 1,000 instances: far above the kernel's limit for one variable.
        let big = notification(1000);
        hook.run(&big).await.unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "svc 1000");
        assert_eq!(lines[1], "none");
        let file = PathBuf::from(lines[2]);
        assert_eq!(
            lines[3].trim(),
            to_json(&big.change.nodes).len().to_string()
        );
        assert!(!file.exists(), "removed after the command");
    }

    #[tokio::test]
    async fn a_slow_command_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        // A grandchild in the background that would outlive `sh`.
        let hook = ExecHook::new(format!(
            "sleep 300 & echo $! > {}; wait",
            pid_file.display()
        ))
        .with_timeout(Duration::from_millis(300));
        match hook.run(&notification(1)).await {
            Err(HookError::TimedOut(d)) => assert_eq!(d, Duration::from_millis(300)),
            other => panic!("{other:?}"),
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // Gone (or a zombie nobody reaps: its state is Z).
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild {pid} still alive"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A quick command under the same bound is untouched.
        let ok = ExecHook::new("true".into()).with_timeout(Duration::from_secs(30));
        ok.run(&notification(1)).await.unwrap();
    }

    #[tokio::test]
    async fn failure_status_is_reported() {
        let hook = ExecHook::new("exit 5".into());
        match hook.run(&notification(1)).await {
            Err(HookError::Failed(status)) => assert_eq!(status.code(), Some(5)),
            other => panic!("{other:?}"),
        }
    }
}
