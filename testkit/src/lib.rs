//! Test harness shared by every crate's integration tests: a real etcd per
//! test, child-process guards, polling with a deadline, the CI rule that
//! Docker tests fail (never skip) when `CI=true` and no engine answers, the
//! workspace's binaries built on demand, the manager and the subscriber
//! binaries as a test's processes (`manager`, `subscriber`), a Marathon API
//! stub (`marathon_stub`), sample registry records (`records`), an etcd
//! refusing anonymous clients with the credentials a container gets for it
//! (`secured`), and one request sent and read whole (`http`).
//!
//! Dev-only: never a dependency of product code.

pub mod docker;
pub mod docker_proxy;
pub mod etcd;
pub mod fuzz;
pub mod http;
pub mod images;
pub mod manager;
pub mod marathon_stub;
pub mod process;
pub mod records;
pub mod secured;
pub mod subscriber;
pub mod tls;

pub use etcd::{free_port, Etcd, EtcdCluster};
pub use process::{eventually, eventually_async, ChildGuard, ServedProcess};
pub use secured::SecuredEtcd;
pub use tls::EtcdTls;

use std::path::PathBuf;

/// Looks a program up on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// True when running under CI (`CI=true`): tests that need Docker must fail
/// instead of skipping there.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// The workspace root (where the top-level Cargo.toml lives).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .expect("testkit lives one level below the root")
        .to_path_buf()
}

/// The cargo target directory tests should find built binaries in.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Path of a workspace binary (`manager`, `subscriber`, ...), built by
/// `cargo build -p <name>` once per test process, so never stale. A crate's
/// own binaries are better taken from `env!("CARGO_BIN_EXE_<name>")`.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let status = daemon::cargo_command()
            .args(["build", "-q", "-p", name])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p {name} failed");
        built.push(name.to_string());
    }
    target_dir().join("debug").join(name)
}
