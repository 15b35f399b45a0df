//! `cluster-setup`: one command to a running mdo stack on this machine.

use std::process::ExitCode;

use clap::Parser;
use cluster_setup::{run, Cli, SetupError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help / --version print and exit 0; usage errors exit 64.
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(SetupError::Usage(msg)) => {
            eprintln!("cluster-setup: {msg}");
            ExitCode::from(64)
        }
        Err(SetupError::Other(e)) => {
            eprintln!("cluster-setup: {e:#}");
            ExitCode::from(1)
        }
    }
}
