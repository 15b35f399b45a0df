//! `cluster-setup`: one command to a running mdo stack on this machine.

use std::process::ExitCode;

use cluster_setup::{run, Cli, SetupError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli: Cli = match daemon::parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    daemon::init_logging(cli.log.log_format, "warn");
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
