//! Test harness shared by every crate's integration tests: a real etcd per
//! test, child-process guards, polling with a deadline, the CI rule that
//! Docker tests fail (never skip) when `CI=true` and no engine answers, and a
//! Marathon API stub (`marathon_stub`).
//!
//! Dev-only: never a dependency of product code.

pub mod docker;
pub mod docker_proxy;
pub mod etcd;
pub mod fuzz;
pub mod images;
pub mod marathon_stub;
pub mod process;
pub mod tls;

pub use etcd::{free_port, Etcd, EtcdCluster};
pub use process::{eventually, eventually_async, ChildGuard};
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
