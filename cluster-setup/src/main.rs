//! `cluster-setup`: one command to a running mdo stack on this machine.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use cluster_setup::{run, Cli, SetupError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cluster-setup: {}", usage_line(&e));
            return ExitCode::from(64);
        }
    };
    daemon::init_logging(daemon::LogFormat::Text, "warn");
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

/// A usage error as one line: clap's message without its `error: ` prefix,
/// with its continuation lines (missing arguments, possible values, a tip)
/// but without the usage and the `--help` hint.
fn usage_line(e: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .filter(|n| n != "help")
            .collect();
        return format!(
            "a command is required ({}); see cluster-setup --help",
            names.join(", ")
        );
    }
    let text = e.to_string();
    let mut line = String::new();
    for part in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if part.starts_with("Usage:") || part.starts_with("For more information") {
            break;
        }
        let part = part.trim_start_matches("error: ");
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(part);
    }
    if line.is_empty() {
        "invalid arguments; see cluster-setup --help".into()
    } else {
        line
    }
}
