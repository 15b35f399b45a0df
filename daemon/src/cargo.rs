//! Running `cargo` from a process that cargo started (a test, `cargo run`).

use std::ffi::OsStr;
use std::process::Command;

/// Variables cargo sets for one package's build or run, by name or prefix:
/// some build scripts (ring's) declare them as inputs, so a nested `cargo
/// build` that inherits them sees those scripts' inputs changed, reruns
/// them and rebuilds everything above them (rustls, tonic, etcd-client,
/// every binary): tens of seconds, and again whenever the next caller comes
/// from another package.
const PACKAGE_VARS: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_BIN_EXE_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_CFG_",
    "OUT_DIR",
];

/// Whether `name` is one of [`PACKAGE_VARS`].
pub fn is_package_var(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    PACKAGE_VARS.iter().any(|p| name.starts_with(p))
}

/// `cargo` (the one that started us when `CARGO` says so), without the
/// variables of the package that started us ([`PACKAGE_VARS`]): its builds
/// reuse what the plain `cargo build` built.
pub fn cargo_command() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        if is_package_var(&name) {
            cmd.env_remove(name);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_variables_are_the_ones_cargo_sets_per_package() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_EXE_manager",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
        ] {
            assert!(is_package_var(OsStr::new(name)), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO_PROFILE_DEV_DEBUG",
            "CARGO_INCREMENTAL",
            "PATH",
        ] {
            assert!(!is_package_var(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn the_command_drops_this_tests_package_variables() {
        // cargo runs this test with its package's variables set.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let cmd = cargo_command();
        let removed: Vec<String> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|k| k == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(removed.iter().any(|k| k == "CARGO_PKG_NAME"), "{removed:?}");
        assert!(removed.iter().all(|k| k != "CARGO_HOME" && k != "PATH"));
    }
}
