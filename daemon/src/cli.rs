//! Parsing a binary's command line the same way everywhere: `--help` and
//! `--version` print and exit 0; any other mistake is one line on stderr,
//! `<binary>: <what is wrong>`, and exit code 64 (EX_USAGE).

use std::process::ExitCode;

use clap::error::ErrorKind;

/// Parses the process's arguments into `C`. `Err` carries the exit code
/// once `--help` / `--version` has been printed (0) or the usage mistake
/// has been written as one line (64, [`usage_line`]).
pub fn parse_cli<C: clap::Parser>() -> Result<C, ExitCode> {
    C::try_parse().map_err(|e| {
        if !e.use_stderr() {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        let cmd = C::command();
        eprintln!("{}: {}", cmd.get_name(), usage_line(&e, &cmd));
        ExitCode::from(64)
    })
}

/// A usage error as one line: clap's message without its `error: ` prefix,
/// with its continuation lines (missing arguments, possible values, a tip)
/// but without the usage and the `--help` hint. A missing subcommand lists
/// `cmd`'s subcommands.
pub fn usage_line(e: &clap::Error, cmd: &clap::Command) -> String {
    let bin = cmd.get_name();
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let names: Vec<&str> = cmd
            .get_subcommands()
            .map(|c| c.get_name())
            .filter(|n| *n != "help")
            .collect();
        return format!(
            "a command is required ({}); see {bin} --help",
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
        format!("invalid arguments; see {bin} --help")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    #[derive(Debug, Parser)]
    #[command(name = "tool")]
    struct Cli {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        Up {
            #[arg(long, value_parser = ["a", "b"])]
            mode: Option<String>,
        },
        Down {
            name: String,
        },
    }

    fn line(args: &[&str]) -> String {
        let mut all = vec!["tool"];
        all.extend_from_slice(args);
        let e = Cli::try_parse_from(all).unwrap_err();
        usage_line(&e, &Cli::command())
    }

    #[test]
    fn mistakes_are_one_line_naming_what_is_wrong() {
        type Case<'a> = (&'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], &["a command is required (up, down); see tool --help"]),
            (&["up", "--no-such"], &["--no-such"]),
            (&["up", "--mode", "c"], &["'c'", "--mode", "a, b"]),
            (&["down"], &["<NAME>"]),
            (&["sideways"], &["sideways"]),
        ];
        for (args, words) in cases {
            let got = line(args);
            assert!(!got.contains('\n'), "{args:?}: {got}");
            assert!(!got.starts_with("error:"), "{args:?}: {got}");
            assert!(!got.contains("Usage:"), "{args:?}: {got}");
            assert!(!got.contains("For more information"), "{args:?}: {got}");
            for w in *words {
                assert!(got.contains(w), "{args:?}: {w:?} missing from {got}");
            }
        }
    }
}
