//! `cluster-setup` brings the whole mdo stack up on this machine: etcd, the
//! manager, the subscriber and the deployer, each a background process with a
//! log file and a pid file under a state folder. It also builds the Debian
//! base image without a registry and the example image, and deploys the demo.
//!
//! It owns process supervision for the single-machine setup only; multi-host
//! installs use the systemd units in `cluster-setup/systemd/`.

pub mod cli;
pub mod components;
pub mod etcd_auth;
pub mod images;
pub mod install;
pub mod procs;

pub use cli::Cli;

use std::path::PathBuf;

use anyhow::Context;

/// Errors the binary maps to exit codes: usage -> 64, anything else -> 1.
#[derive(Debug)]
pub enum SetupError {
    Usage(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for SetupError {
    fn from(e: anyhow::Error) -> Self {
        SetupError::Other(e)
    }
}

pub type Result<T> = std::result::Result<T, SetupError>;

/// Runs one subcommand.
pub async fn run(cli: Cli) -> Result<()> {
    use cli::Command;
    match cli.command {
        Command::Up(args) => components::up(&args).await,
        Command::Status(args) => components::status(&args).await,
        Command::Down(args) => components::down(&args).await,
        Command::BaseImage(args) => images::base_image(&args, true).map_err(Into::into),
        Command::ExampleImage(args) => images::example_image(&args, true).map_err(Into::into),
    }
}

/// The workspace root when running from a checkout (where `cargo` can build
/// the binaries), found from the current directory upwards.
pub fn workspace_root() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let manifest = dir.join("Cargo.toml");
        if manifest.is_file()
            && std::fs::read_to_string(&manifest)
                .map(|s| s.contains("[workspace]") && s.contains("\"manager\""))
                .unwrap_or(false)
        {
            return Some(dir);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Makes a path absolute against the current directory.
pub fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current directory")?
            .join(path))
    }
}
