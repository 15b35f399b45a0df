//! Installing what a fresh machine of this kind lacks (Debian packages) and
//! building the binaries from this checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Something the stack needs from the system, and the Debian package that
/// provides it.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// A program on PATH.
    Program(&'static str, &'static str),
    /// Python's C headers and libpython (the watcher embeds CPython).
    PythonHeaders(&'static str),
    /// Python's `venv` with `ensurepip` (Debian splits it out).
    PythonVenv(&'static str),
}

impl Need {
    pub fn package(&self) -> &'static str {
        match self {
            Need::Program(_, p) | Need::PythonHeaders(p) | Need::PythonVenv(p) => p,
        }
    }

    pub fn present(&self) -> bool {
        match self {
            Need::Program(program, _) => which(program).is_some(),
            Need::PythonHeaders(_) => python_ok(
                "import os, sysconfig; \
                 raise SystemExit(0 if os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)",
            ),
            Need::PythonVenv(_) => python_ok("import ensurepip, venv"),
        }
    }
}

fn python_ok(code: &str) -> bool {
    Command::new("python3")
        .args(["-c", code])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// What `cluster-setup up` needs before it can build and start the stack:
/// etcd, protoc (etcd-client's build) and Python's headers (the watcher).
pub const STACK_NEEDS: [Need; 4] = [
    Need::Program("etcd", "etcd-server"),
    Need::Program("protoc", "protobuf-compiler"),
    Need::Program("python3", "python3"),
    Need::PythonHeaders("python3-dev"),
];

/// What `--demo` needs on top: debootstrap for the base image and a Python
/// virtualenv for maturin (the guestutils wheel).
pub const DEMO_NEEDS: [Need; 2] = [
    Need::Program("debootstrap", "debootstrap"),
    Need::PythonVenv("python3-venv"),
];

/// Installs the Debian packages for whatever in `needs` is missing, saying one
/// line of what it does. With `allow_install` false, without root or without
/// apt-get, it fails with one line naming the command to run instead.
pub fn ensure(needs: &[Need], allow_install: bool) -> Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    for need in needs {
        if !missing.contains(&need.package()) && !need.present() {
            missing.push(need.package());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !allow_install {
        bail!("missing Debian packages {list} (--no-install): run `sudo apt-get install {list}`");
    }
    if which("apt-get").is_none() {
        bail!(
            "missing {list} and no apt-get on this system: install them with its package manager"
        );
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("missing Debian packages {list}: run `sudo apt-get install {list}` (or run this as root)");
    }
    println!("installing {list} (apt-get install) ...");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if let Some(still) = needs.iter().find(|n| !n.present()) {
        bail!(
            "installed {list}, but {} is still missing: {still:?}",
            still.package()
        );
    }
    Ok(())
}

/// The maturin requirement, kept in step with scripts/requirements-dev.txt.
const MATURIN: &str = "maturin>=1.7,<2";

/// A `maturin` to build the guestutils wheel: the one on PATH when there is
/// one, else one installed with pip into a virtualenv under
/// `<state>/tools/venv` (never into the system Python).
pub fn maturin(state_dir: &Path, allow_install: bool) -> Result<PathBuf> {
    maturin_with(which("maturin"), state_dir, allow_install)
}

fn maturin_with(
    on_path: Option<PathBuf>,
    state_dir: &Path,
    allow_install: bool,
) -> Result<PathBuf> {
    if let Some(m) = on_path {
        return Ok(m);
    }
    let venv = state_dir.join("tools").join("venv");
    let in_venv = venv.join("bin").join("maturin");
    if in_venv.is_file() {
        return Ok(in_venv);
    }
    if !allow_install {
        bail!(
            "maturin not found (--no-install): run `python3 -m venv {v} && {v}/bin/pip install '{MATURIN}'`",
            v = venv.display()
        );
    }
    ensure(
        &[
            Need::Program("python3", "python3"),
            Need::PythonVenv("python3-venv"),
        ],
        true,
    )?;
    println!("installing {MATURIN} into {} (pip) ...", venv.display());
    if !venv.join("bin").join("python").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating the tools virtualenv")?;
    }
    run(Command::new(venv.join("bin").join("python")).args([
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        MATURIN,
    ]))
    .context("installing maturin")?;
    if !in_venv.is_file() {
        bail!(
            "pip installed maturin, but {} is missing",
            in_venv.display()
        );
    }
    Ok(in_venv)
}

/// Runs a command, failing with its output when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The folder holding the stack's binaries: `bin_dir` when given, else the
/// cargo target folder of this checkout after building what is missing or stale.
pub fn binaries(bin_dir: Option<&Path>, release: bool, allow_install: bool) -> Result<PathBuf> {
    const BINS: [&str; 4] = ["manager", "subscriber", "deployer", "watcher"];
    if let Some(dir) = bin_dir {
        // The manager's command tasks run under `mdo-task-shim`, found beside it.
        for b in BINS.iter().chain(&["mdo-task-shim"]) {
            if !dir.join(b).is_file() {
                bail!("{} has no `{b}` binary", dir.display());
            }
        }
        return Ok(dir.to_path_buf());
    }
    let Some(root) = crate::workspace_root() else {
        bail!("not inside the mdo checkout and no --bin-dir given: run from the repository or pass --bin-dir");
    };
    ensure(&STACK_NEEDS, allow_install)?;
    let profile = if release { "release" } else { "debug" };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // cargo decides what is stale; when everything is built this takes well under a second.
    let mut cmd = daemon::cargo_command();
    cmd.current_dir(&root).arg("build").arg("--quiet");
    if release {
        cmd.arg("--release");
    }
    for b in BINS {
        cmd.args(["-p", b]);
    }
    eprintln!("building the stack's binaries ({profile}) ...");
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(target.join(profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_package_without_install_names_the_command() {
        let needs = [
            Need::Program("sh", "dash"),
            Need::Program("mdo-no-such-program-a", "pkg-a"),
            Need::Program("mdo-no-such-program-b", "pkg-b"),
            Need::Program("mdo-no-such-program-c", "pkg-a"),
        ];
        let err = ensure(&needs, false).unwrap_err().to_string();
        assert_eq!(
            err,
            "missing Debian packages pkg-a pkg-b (--no-install): run `sudo apt-get install pkg-a pkg-b`"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn nothing_missing_installs_nothing() {
        ensure(&[Need::Program("sh", "dash")], false).unwrap();
    }

    #[test]
    fn maturin_without_install_names_the_venv_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = maturin_with(None, dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("python3 -m venv"), "{err}");
        assert!(err.contains("pip install 'maturin"), "{err}");
        assert!(!dir.path().join("tools").exists(), "nothing created");
    }
}
