//! Images without a registry: a Debian base made with debootstrap and loaded
//! with `docker import`, and the example image built on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::ImageArgs;
use crate::install;

/// Bumped whenever [`BASE_PACKAGES`] changes, so an older base image is not
/// reused for a demo that needs the new packages.
pub const BASE_TAG: &str = "mdo/base:bookworm-2";
pub const EXAMPLE_TAG: &str = "mdo/example:latest";
const SUITE: &str = "bookworm";
/// python3 for the apps and guestutils; libpython3.11 for the watcher's
/// embedded interpreter; haproxy for the demo's load balancer.
const BASE_PACKAGES: &str = "python3,libpython3.11,ca-certificates,haproxy";

/// What the Docker engine tells about itself.
#[derive(Debug, Clone)]
pub struct DockerInfo {
    pub server_version: String,
    /// The default bridge's gateway: how containers reach this host.
    pub bridge_gateway: Option<String>,
}

/// `Some` when the engine answers.
pub fn docker_info() -> Option<DockerInfo> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let server_version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if server_version.is_empty() {
        return None;
    }
    let gw = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(default_bridge_gateway);
    Some(DockerInfo {
        server_version,
        bridge_gateway: gw,
    })
}

/// The default bridge often lists only its subnet: Docker gives the gateway
/// the subnet's first address.
fn default_bridge_gateway() -> Option<String> {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    first_host_of(String::from_utf8_lossy(&out.stdout).trim())
}

/// `172.17.0.0/16` -> `172.17.0.1`.
pub fn first_host_of(subnet: &str) -> Option<String> {
    let (net, bits) = subnet.split_once('/')?;
    let addr: std::net::Ipv4Addr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if !(1..=30).contains(&bits) {
        return None;
    }
    let mask = u32::MAX << (32 - bits);
    let first = (u32::from(addr) & mask) + 1;
    Some(std::net::Ipv4Addr::from(first).to_string())
}

pub fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The Debian mirror apt uses on this machine (debootstrap needs the same one).
pub fn apt_mirror() -> String {
    let candidates = [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ];
    for file in candidates {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("URIs:") {
                if let Some(uri) = rest.split_whitespace().find(|u| !u.contains("security")) {
                    return uri.to_string();
                }
            }
            if let Some(rest) = line.strip_prefix("deb ") {
                let uri = rest.split_whitespace().find(|w| w.starts_with("http"));
                if let Some(uri) = uri.filter(|u| !u.contains("security")) {
                    return uri.to_string();
                }
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// `cluster-setup base-image`: debootstrap minbase with python3, imported as
/// [`BASE_TAG`]. The root filesystem tarball is cached in the state folder.
pub fn base_image(args: &ImageArgs, allow_install: bool) -> Result<()> {
    if image_exists(&args.base_tag) && !args.force {
        println!("base image {} already built", args.base_tag);
        return Ok(());
    }
    install::ensure(&[install::DEMO_NEEDS[0]], allow_install)?;
    if !nix::unistd::geteuid().is_root() {
        bail!("debootstrap needs root: run `sudo cluster-setup base-image`");
    }
    let cache = crate::absolute(&args.state_dir)?.join("cache");
    std::fs::create_dir_all(&cache)?;
    let tarball = cache.join(format!("{}.tar", args.base_tag.replace([':', '/'], "-")));
    if !tarball.is_file() || args.force {
        let rootfs = cache.join(format!("rootfs-{SUITE}"));
        if rootfs.exists() {
            std::fs::remove_dir_all(&rootfs)
                .with_context(|| format!("removing the old {}", rootfs.display()))?;
        }
        let mirror = args.mirror.clone().unwrap_or_else(apt_mirror);
        println!("debootstrap {SUITE} (minbase + {BASE_PACKAGES}) from {mirror} ...");
        install::run(
            Command::new("debootstrap")
                .arg("--variant=minbase")
                .arg(format!("--include={BASE_PACKAGES}"))
                .arg(SUITE)
                .arg(&rootfs)
                .arg(&mirror),
        )
        .context("debootstrap failed")?;
        // Keep the image small: package lists and caches are not needed.
        for junk in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            let p = rootfs.join(junk);
            if p.is_dir() {
                for entry in std::fs::read_dir(&p)?.flatten() {
                    if entry.path().is_file() {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        let partial = cache.join(format!("base-{SUITE}.tar.partial"));
        install::run(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("--numeric-owner")
                .arg("-cf")
                .arg(&partial)
                .arg("."),
        )?;
        std::fs::rename(&partial, &tarball)?;
        std::fs::remove_dir_all(&rootfs)?;
    }
    println!("docker import -> {}", args.base_tag);
    install::run(
        Command::new("docker")
            .args([
                "import",
                "--change",
                "CMD [\"/bin/bash\"]",
                "--change",
                "ENV LANG=C.UTF-8",
            ])
            .arg(&tarball)
            .arg(&args.base_tag),
    )?;
    Ok(())
}

/// `cluster-setup example-image`: the base image plus the guestutils wheel,
/// the watcher binary and the demo app.
pub fn example_image(args: &ImageArgs, allow_install: bool) -> Result<()> {
    if !image_exists(&args.base_tag) {
        base_image(args, allow_install)?;
    }
    let root = crate::workspace_root()
        .ok_or_else(|| anyhow!("example-image builds from the mdo checkout: run it there"))?;
    let context_dir = root.join("example-image");
    let dist = context_dir.join("dist");
    std::fs::create_dir_all(&dist)?;
    let maturin = install::maturin(&crate::absolute(&args.state_dir)?, allow_install)?;
    let wheel = build_wheel(&root, &dist, &maturin)?;
    let watcher = install::binaries(args.bin_dir.as_deref(), false, allow_install)?.join("watcher");
    std::fs::copy(&watcher, dist.join("watcher"))
        .with_context(|| format!("copying {}", watcher.display()))?;
    println!(
        "docker build -> {} (wheel {})",
        args.example_tag,
        wheel.display()
    );
    install::run(
        Command::new("docker")
            .arg("build")
            .arg("--build-arg")
            .arg(format!("BASE={}", args.base_tag))
            .arg("-t")
            .arg(&args.example_tag)
            .arg(&context_dir)
            .env("DOCKER_BUILDKIT", "0"),
    )?;
    Ok(())
}

/// Builds the guestutils abi3 wheel with maturin into `dist` (one wheel kept).
fn build_wheel(root: &Path, dist: &Path, maturin: &Path) -> Result<PathBuf> {
    for entry in std::fs::read_dir(dist)?.flatten() {
        if entry
            .path()
            .extension()
            .map(|e| e == "whl")
            .unwrap_or(false)
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    install::run(
        Command::new(maturin)
            .current_dir(root)
            .args([
                "build",
                "--release",
                "-m",
                "guestutils/python/Cargo.toml",
                "-o",
            ])
            .arg(dist),
    )
    .context("building the guestutils wheel")?;
    std::fs::read_dir(dist)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().map(|e| e == "whl").unwrap_or(false))
        .ok_or_else(|| anyhow!("maturin produced no wheel in {}", dist.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn gateway_is_the_first_host_of_the_subnet() {
        assert_eq!(
            super::first_host_of("172.17.0.0/16").as_deref(),
            Some("172.17.0.1")
        );
        assert_eq!(
            super::first_host_of("10.1.2.0/24").as_deref(),
            Some("10.1.2.1")
        );
        assert_eq!(super::first_host_of("nonsense"), None);
        assert_eq!(super::first_host_of("10.0.0.0/32"), None);
    }
}
