//! Docker in tests: is the engine there, the CI rule (fail, never skip), and a
//! guard that removes a test's containers on drop.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Label every test container carries so [`ContainerGuard`] can find it.
pub const TEST_LABEL: &str = "mdo.test";

/// True when the Docker engine answers (`docker version` within 10 s).
pub fn docker_available() -> bool {
    let Ok(mut child) = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Call first in every Docker test: `if !testkit::docker::require_docker() { return; }`.
///
/// Under CI (`CI=true`) a missing engine is a failure (panics with a clear
/// message); elsewhere the test returns early with a printed note.
pub fn require_docker() -> bool {
    if docker_available() {
        return true;
    }
    if crate::in_ci() {
        panic!("CI=true but the Docker engine does not answer (`docker version` failed): Docker tests must run in CI");
    }
    eprintln!("note: Docker engine not available; skipping this Docker test (it would fail under CI=true)");
    false
}

/// A unique id for one test (label value, manager id, name prefix).
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// Removes (`docker rm -f`) on drop every container carrying
/// `mdo.test=<id>` or `mdo.manager=<id>`, so a test can use [`Self::id`] both
/// as its test label and as the manager id of the runtime under test.
pub struct ContainerGuard {
    id: String,
}

impl ContainerGuard {
    pub fn new(prefix: &str) -> Self {
        ContainerGuard {
            id: unique_id(prefix),
        }
    }

    /// The unique id of this test.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `(TEST_LABEL, id)`: put it on containers the test starts.
    pub fn label(&self) -> (String, String) {
        (TEST_LABEL.to_string(), self.id.clone())
    }

    /// Ids of this test's containers (running or not).
    pub fn containers(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for filter in [
            format!("label={TEST_LABEL}={}", self.id),
            format!("label=mdo.manager={}", self.id),
        ] {
            if let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--no-trunc", "--filter", &filter])
                .output()
            {
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let line = line.trim();
                    if !line.is_empty() && !ids.iter().any(|i| i == line) {
                        ids.push(line.to_string());
                    }
                }
            }
        }
        ids
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let ids = self.containers();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
