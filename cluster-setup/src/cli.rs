//! Command line: every flag has its environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Bring the mdo stack up on this machine, show its health, take it down, and
/// build the images the demo needs (no registry required).
#[derive(Debug, Parser)]
#[command(name = "cluster-setup", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    // `--log-format` / `LOG_FORMAT`, as in every mdo binary (global: before
    // or after the command).
    #[command(flatten)]
    pub log: daemon::LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install what is missing, build, start etcd, manager, subscriber and
    /// deployer (each once), wait until each is healthy, print the URLs.
    Up(UpArgs),
    /// Show each component's process and health.
    Status(CommonArgs),
    /// Remove every app through the manager (not only the demo's), then stop
    /// every process `up` started (by pid file), and nothing else.
    Down(CommonArgs),
    /// Build the Debian base image (debootstrap minbase + python3, the
    /// watcher's libpython and haproxy, then `docker import`), tagged for reuse.
    BaseImage(ImageArgs),
    /// Build the example image on the base image, with the guestutils wheel
    /// and the watcher binary.
    ExampleImage(ImageArgs),
}

#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Folder for data, logs and pid files.
    #[arg(long, env = "MDO_STATE_DIR", default_value = ".state")]
    pub state_dir: PathBuf,

    /// etcd client port (loopback, plus the Docker bridge gateway when Docker answers).
    #[arg(long, env = "MDO_ETCD_PORT", default_value_t = 2379)]
    pub etcd_port: u16,

    /// etcd peer port (loopback only).
    #[arg(long, env = "MDO_ETCD_PEER_PORT", default_value_t = 2380)]
    pub etcd_peer_port: u16,

    /// Manager listen port (loopback).
    #[arg(long, env = "MDO_MANAGER_PORT", default_value_t = 8080)]
    pub manager_port: u16,

    /// Deployer listen port (loopback).
    #[arg(long, env = "MDO_DEPLOYER_PORT", default_value_t = 5000)]
    pub deployer_port: u16,

    /// Subscriber listen port (loopback).
    #[arg(long, env = "MDO_SUBSCRIBER_PORT", default_value_t = 5001)]
    pub subscriber_port: u16,

    /// Bearer token required by every component's HTTP API (optional). Never logged.
    #[arg(long, env = "MDO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Folder holding prebuilt `manager`, `subscriber`, `deployer` and
    /// `watcher` binaries. Default: build them with cargo from this checkout.
    #[arg(long, env = "MDO_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Build and use release binaries instead of debug ones.
    #[arg(long, env = "MDO_RELEASE", value_parser = daemon::parse_bool)]
    pub release: bool,

    /// Seconds to wait for each component to become healthy.
    #[arg(long, env = "MDO_WAIT_SECS", default_value_t = 60)]
    pub wait_secs: u64,
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// After the stack is up, build the images and deploy the example
    /// (example-image/deploy.yml).
    #[arg(long, env = "MDO_DEMO", value_parser = daemon::parse_bool)]
    pub demo: bool,

    /// Use Docker: auto (when the engine answers), on (fail without it), off.
    #[arg(long, env = "MDO_DOCKER", default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub docker: String,

    /// Do not install missing Debian packages (etcd-server...); fail instead.
    #[arg(long, env = "MDO_NO_INSTALL", value_parser = daemon::parse_bool)]
    pub no_install: bool,

    /// Leave etcd without authentication (anyone who reaches it may read and
    /// write everything). By default `up` turns it on with one user per part
    /// and passwords under <state-dir>/etcd-auth; once on in a state folder
    /// it stays on there.
    #[arg(long, env = "MDO_NO_ETCD_AUTH", value_parser = daemon::parse_bool)]
    pub no_etcd_auth: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ImageArgs {
    /// Tag of the Debian base image.
    #[arg(long, env = "MDO_BASE_IMAGE", default_value = crate::images::BASE_TAG)]
    pub base_tag: String,

    /// Tag of the example image.
    #[arg(long, env = "MDO_EXAMPLE_IMAGE", default_value = crate::images::EXAMPLE_TAG)]
    pub example_tag: String,

    /// Debian mirror for debootstrap (default: the first one apt uses).
    #[arg(long, env = "MDO_DEBIAN_MIRROR")]
    pub mirror: Option<String>,

    /// Rebuild even when the tag already exists.
    #[arg(long, env = "MDO_FORCE_REBUILD", value_parser = daemon::parse_bool)]
    pub force: bool,

    /// Folder for build caches (the rootfs tarball, the wheel...).
    #[arg(long, env = "MDO_STATE_DIR", default_value = ".state")]
    pub state_dir: PathBuf,

    /// Folder holding a prebuilt `watcher` binary for the example image.
    /// Default: build it with cargo from this checkout.
    #[arg(long, env = "MDO_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
}
