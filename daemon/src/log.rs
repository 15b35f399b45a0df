//! Logging, the same in every binary: `--log-format` / `LOG_FORMAT`
//! (text or json), lines on stderr, the level filter from `RUST_LOG`.
//! Flatten [`LogArgs`] into a binary's clap `Parser` and call [`init`] once
//! the command line is valid:
//!
//! ```
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     log: daemon::LogArgs,
//! }
//! ```
//!
//! Names of earlier releases (`MANAGER_LOG_FORMAT`, `DEPLOYER_LOG_FORMAT`)
//! are read by [`crate::apply_env_aliases`] before parsing.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The log flag group.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LogArgs {
    /// Log format on stderr: text or json (the level comes from RUST_LOG).
    /// Names of earlier releases are also accepted: MANAGER_LOG_FORMAT by the
    /// manager, DEPLOYER_LOG_FORMAT by the deployer.
    #[arg(long, env = "LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Installs the global tracing subscriber: `format` lines on stderr,
/// filtered by `RUST_LOG`, else by `default_filter` (e.g. `"info"`).
/// Call once, early in `main`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn the_flag_parses_text_and_json_and_refuses_others() {
        let parse = |args: &[&str]| {
            let mut all = vec!["t"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.log.log_format)
        };
        // The default when neither flag nor LOG_FORMAT is given (the test
        // process does not set LOG_FORMAT).
        if std::env::var_os("LOG_FORMAT").is_none() {
            assert_eq!(parse(&[]).unwrap(), LogFormat::Text);
        }
        assert_eq!(parse(&["--log-format", "json"]).unwrap(), LogFormat::Json);
        assert_eq!(parse(&["--log-format", "text"]).unwrap(), LogFormat::Text);
        assert!(parse(&["--log-format", "xml"]).is_err());
    }
}
