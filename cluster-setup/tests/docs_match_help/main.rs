//! The documents tell the truth about the command lines.
//!
//! Every `--flag` and every environment variable that README.md, docs/*.md
//! and the crate READMEs (`<crate>/README.md`) name must be in the `--help` of
//! the binary they name it with, as the real binaries print it (with every
//! subcommand's `--help` for the deployer and cluster-setup). Who a flag
//! belongs to:
//! - a command line (a line of a code block, or an inline code span that
//!   starts with a program) belongs to its program: one of our binaries
//!   (also through `cargo run -p X -- ...`, with its subcommand when it names
//!   one); after our binary's bare `--` (the watcher's child) a new command
//!   line starts. Flags of other programs (curl, etcdctl, cargo...) are
//!   skipped by that context; a flag after a program this test does not know
//!   is reported, so nothing is skipped by accident;
//! - a table row belongs to the binaries it names (at least one of them must
//!   have the flag); a paragraph or list item to the one binary it names;
//!   prose naming none or several: the crate's binary in a crate README, else
//!   any binary;
//! - environment variables (UPPER_CASE names in backticks, and `NAME=` before
//!   one of our binaries in a command line) follow the same rule, except the
//!   names in [`NOT_SETTINGS`], which are not settings of any binary.
//!
//! Tables with a `flag` and a `default` column must show the default that
//! each binary's `--help` gives. Besides: every flag of every binary has an
//! environment variable, and every binary rejects a bad flag with exit code
//! 64 and one line on stderr.

mod claims;
mod help;
mod tables;
mod words;

use claims::*;
use help::*;
use tables::*;

#[test]
fn every_flag_and_variable_the_docs_name_is_in_a_help() {
    let helps = helps();
    let mut found = Found::default();
    let docs = documents();
    for doc in &docs {
        scan_doc(doc, helps, &mut found);
    }
    // The scan found the documents' claims at all (a broken scanner passes
    // everything): the settings table of docs/environment.md, a command line.
    assert!(
        found.claims.len() > 100,
        "only {} claims",
        found.claims.len()
    );
    assert!(found
        .claims
        .iter()
        .any(|c| c.at.starts_with("docs/environment.md")
            && c.what == What::Flag("--listen".into())
            && c.owner == Owner::Named(vec!["manager"])));
    assert!(found
        .claims
        .iter()
        .any(|c| c.at.starts_with("deployer/README.md")
            && c.what == What::Flag("--labels".into())
            && c.owner
                == Owner::Command {
                    bin: "deployer",
                    sub: Some("remove".into())
                }));
    assert!(found.defaults.len() >= 5, "{:?}", found.defaults);
    let problems = check(&found, helps);
    assert!(
        problems.is_empty(),
        "the documents name flags or variables that no --help of the binary they name shows \
         (fix the text, or the binary's --help):\n{}",
        problems.join("\n")
    );
}

/// The check itself: made-up flags and variables are caught wherever they
/// are written, other programs' flags are not.
#[test]
fn made_up_flags_and_variables_are_caught() {
    let helps = helps();
    let doc = Doc {
        name: "made-up.md".into(),
        text: [
            "# Made up",
            "",
            "```sh",
            "manager --listen 127.0.0.1:1 --no-such-flag",
            "cargo run -p deployer -- status --json --jsonx",
            "deployer apply x.yaml --json         # status has --json, apply not",
            "WATCHES=a MADE_UP_WATCH=1 watcher --debounce 1s -- python3 app.py --child-flag",
            "curl --data-binary @x http://127.0.0.1:5000/deploy",
            "cargo build --release -p watcher",
            "frobnicate --frob",
            "    cmd: \"watcher --methods x.py --no-such-watch -- python3 app.py --child\"",
            "```",
            "",
            "| setting | flag | env | default |",
            "|---|---|---|---|",
            "| manager listen | `--listen` | `MANAGER_LISTEN` | `127.0.0.1:9999` |",
            "| manager prefix | `--prefix` | `REGISTRY_PREFIX` | none |",
            "",
            "Run the subscriber with `--mode sse` or `--moda sse`; `SUBSCRIBER_NO_SUCH` too.",
            "",
            "Any binary: `--etcd-ca` and `--etcd-cax`, `CONTAINER_NAME`, `ETCDCTL_API=3 etcdctl \
             --endpoints x endpoint health`, `up --demox`.",
        ]
        .join("\n"),
        crate_bin: None,
    };
    let mut found = Found::default();
    scan_doc(&doc, helps, &mut found);
    let problems = check(&found, helps);
    let expected = [
        "made-up.md:10: `--frob` follows `frobnicate`, which is neither an mdo binary nor a \
         program this test knows (OTHER_PROGRAMS)",
        "made-up.md:11: flag `--no-such-watch` is not in `watcher --help`",
        "made-up.md:16: default `127.0.0.1:9999` of `--listen` is not what `manager --help` gives",
        "made-up.md:17: flag `--prefix` is not in the --help of manager",
        "made-up.md:17: variable `REGISTRY_PREFIX` is not in the --help of manager",
        "made-up.md:19: flag `--moda` is not in the --help of subscriber",
        "made-up.md:19: variable `SUBSCRIBER_NO_SUCH` is not in the --help of subscriber",
        "made-up.md:21: flag `--demox` is not in `cluster-setup up --help`",
        "made-up.md:21: flag `--etcd-cax` is not in any binary's --help",
        "made-up.md:4: flag `--no-such-flag` is not in `manager --help`",
        "made-up.md:5: flag `--jsonx` is not in `deployer status --help`",
        "made-up.md:6: flag `--json` is not in `deployer apply --help`",
        "made-up.md:7: variable `MADE_UP_WATCH` is not in `watcher --help`",
    ];
    assert_eq!(problems, expected, "\n{}", problems.join("\n"));
}

#[test]
fn every_flag_has_an_environment_variable() {
    let mut missing = Vec::new();
    for page in &helps().0 {
        for (flag, block) in &page.options {
            if flag != "--help" && flag != "--version" && !block.contains("[env: ") {
                let sub = page
                    .sub
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default();
                missing.push(format!("{}{sub} {flag}", page.binary));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags without an environment variable: {missing:?}"
    );
    assert!(helps().has_flag("manager", None, "--etcd-host-address"));
}

#[test]
fn bad_flags_exit_64_with_one_line_help_and_version_exit_0() {
    let cases: &[(&str, &[&str])] = &[
        ("manager", &["--no-such-flag"]),
        ("subscriber", &["--no-such-flag"]),
        ("watcher", &["--no-such-flag"]),
        ("deployer", &["--no-such-flag"]),
        ("deployer", &["status", "--no-such-flag"]),
        ("deployer", &["remove", "web", "--label", "x"]),
        ("deployer", &["apply"]),
        ("deployer", &[]),
        ("cluster-setup", &["--no-such-flag"]),
        ("cluster-setup", &["up", "--docker", "sometimes"]),
        ("cluster-setup", &["down", "--no-such-flag"]),
        ("cluster-setup", &[]),
        ("mdo-task-shim", &["--no-such-flag"]),
        ("mdo-task-shim", &[]),
        ("mdo-task-shim", &["/tmp/a", "/tmp/b"]),
    ];
    for (bin, args) in cases {
        let out = run(bin, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bin} {args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{bin} {args:?}: one line, got:\n{err}"
        );
        assert!(
            err.starts_with(&format!("{bin}: ")),
            "{bin} {args:?}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{bin} {args:?}: {}",
            text(&out.stdout)
        );
        if let Some(flag) = args.iter().find(|a| a.starts_with("--")) {
            assert!(err.contains(flag), "{bin} {args:?}: {err}");
        }
    }
    for bin in BINARIES {
        for (flag, expect) in [("--help", "Usage:"), ("--version", *bin)] {
            let out = run(bin, &[flag]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{bin} {flag}: {}",
                text(&out.stderr)
            );
            assert!(
                text(&out.stdout).contains(expect),
                "{bin} {flag}: {}",
                text(&out.stdout)
            );
        }
    }
}

/// The log format is one flag in every binary but the task shim (daemon's
/// `LogArgs`): on the top page and on every subcommand's page.
#[test]
fn every_binary_takes_the_log_format() {
    let helps = helps();
    for bin in BINARIES.iter().filter(|b| **b != "mdo-task-shim") {
        for page in helps.pages(bin) {
            let block = page.options.get("--log-format").unwrap_or_else(|| {
                panic!("{bin} {:?}: no --log-format in\n{}", page.sub, page.text)
            });
            assert!(block.contains("[env: LOG_FORMAT"), "{bin}: {block}");
        }
    }
}
