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

/// Installs the Debian packages whose programs are missing. `needs` maps a
/// program to the package that provides it.
pub fn ensure_packages(needs: &[(&str, &str)], allow_install: bool) -> Result<()> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !allow_install {
        bail!(
            "missing Debian packages: {} (install them with: apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "missing Debian packages {}; run as root or install them first: sudo apt-get install {}",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("installing {} ...", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
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
pub fn binaries(bin_dir: Option<&Path>, release: bool) -> Result<PathBuf> {
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
    let profile = if release { "release" } else { "debug" };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // cargo decides what is stale; when everything is built this takes well under a second.
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
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
