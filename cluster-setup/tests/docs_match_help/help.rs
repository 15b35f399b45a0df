//! The binaries and their `--help` pages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::tables::*;

pub(crate) fn workspace_root() -> PathBuf {
    testkit::workspace_root()
}

/// Path of one of our binaries; the others than cluster-setup are built once
/// per test process (so never stale).
pub(crate) fn binary(name: &str) -> PathBuf {
    if name == "cluster-setup" {
        return PathBuf::from(env!("CARGO_BIN_EXE_cluster-setup"));
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = daemon::cargo_command()
            .args([
                "build",
                "-q",
                "-p",
                "manager",
                "-p",
                "subscriber",
                "-p",
                "deployer",
                "-p",
                "watcher",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
    });
    testkit::target_dir().join("debug").join(name)
}

/// Runs a binary with a clean environment (values of settings would show in
/// `--help` and change what a parse error is).
pub(crate) fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One `--help` page.
pub(crate) struct Help {
    pub(crate) binary: &'static str,
    /// The subcommand, `None` for the binary's own page.
    pub(crate) sub: Option<String>,
    pub(crate) text: String,
    /// Option name (`--listen`) -> its block of help text.
    pub(crate) options: BTreeMap<String, String>,
}

pub(crate) struct Helps(pub(crate) Vec<Help>);

impl Helps {
    pub(crate) fn load() -> Helps {
        let mut pages = Vec::new();
        for &bin in BINARIES {
            let top = help_page(bin, None);
            let subs = subcommands_of(&top.text);
            pages.push(top);
            for sub in subs {
                pages.push(help_page(bin, Some(sub)));
            }
        }
        Helps(pages)
    }

    pub(crate) fn pages<'a>(&'a self, bin: &'a str) -> impl Iterator<Item = &'a Help> + 'a {
        self.0.iter().filter(move |h| h.binary == bin)
    }

    pub(crate) fn subcommands(&self, bin: &str) -> Vec<String> {
        self.pages(bin).filter_map(|h| h.sub.clone()).collect()
    }

    /// Whether `flag` is an option of `bin` (of its subcommand `sub`, or of
    /// any of its pages when `sub` is `None`).
    pub(crate) fn has_flag(&self, bin: &str, sub: Option<&str>, flag: &str) -> bool {
        self.pages(bin)
            .filter(|h| sub.is_none() || h.sub.as_deref() == sub)
            .any(|h| h.options.contains_key(flag))
    }

    /// Whether a page of `bin` names the variable `name`.
    pub(crate) fn mentions(&self, bin: &str, name: &str) -> bool {
        self.pages(bin).any(|h| upper_words(&h.text).contains(name))
    }

    pub(crate) fn flag_blocks<'a>(
        &'a self,
        bin: &'a str,
        flag: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        self.pages(bin)
            .filter_map(move |h| h.options.get(flag).map(String::as_str))
    }
}

pub(crate) fn help_page(bin: &'static str, sub: Option<String>) -> Help {
    let mut args: Vec<&str> = sub.iter().map(String::as_str).collect();
    args.push("--help");
    let out = run(bin, &args);
    assert!(
        out.status.success(),
        "{bin} {args:?}: {:?}\n{}",
        out.status,
        text(&out.stderr)
    );
    let page = text(&out.stdout);
    assert!(
        page.contains("Usage:"),
        "{bin} {args:?}: no usage in\n{page}"
    );
    Help {
        binary: bin,
        sub,
        options: options_of(&page),
        text: page,
    }
}

/// The subcommands listed under `Commands:` (without `help`).
pub(crate) fn subcommands_of(page: &str) -> Vec<String> {
    page.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && l.starts_with(' '))
        .filter(|l| l.len() - l.trim_start().len() == 2)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// Options of a help page with their blocks (whitespace runs made one space,
/// as clap wraps lines anywhere). An option line is indented by at most 6
/// spaces and starts with `-`; its description lines are indented further; a
/// line at column 0 (a section) ends it.
pub(crate) fn options_of(page: &str) -> BTreeMap<String, String> {
    let mut options = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in page.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        let is_option = trimmed.starts_with('-') && (1..=6).contains(&indent);
        if is_option || (indent == 0 && !trimmed.is_empty()) {
            if let Some((name, block)) = current.take() {
                options.insert(name, block);
            }
        }
        if is_option {
            let name = trimmed
                .split(|c: char| c.is_whitespace() || c == ',')
                .find(|w| w.starts_with("--"))
                .map(|w| {
                    w.split(['<', '=', '['])
                        .next()
                        .unwrap_or(w)
                        .trim_end_matches(',')
                        .to_string()
                });
            if let Some(name) = name {
                current = Some((name, format!("{line}\n")));
            }
        } else if let Some((_, block)) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    if let Some((name, block)) = current {
        options.insert(name, block);
    }
    let mut out: BTreeMap<String, String> = options
        .into_iter()
        .map(|(name, block)| (name, block.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    // clap's visible aliases (`[alias: --old]`, `[aliases: --a, --b]`) are
    // flags the binary accepts and its --help shows: they name the same block.
    let aliases: Vec<(String, String)> = out
        .values()
        .flat_map(|block| {
            block
                .split('[')
                .filter_map(|part| {
                    let rest = part
                        .strip_prefix("aliases: ")
                        .or_else(|| part.strip_prefix("alias: "))?;
                    Some(rest.split(']').next().unwrap_or_default())
                })
                .flat_map(|list| list.split(',').map(str::trim))
                .filter(|a| a.starts_with("--"))
                .map(|a| (a.to_string(), block.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    for (alias, block) in aliases {
        out.entry(alias).or_insert(block);
    }
    out
}

/// The words of a text that could be variable names (`WATCH_<NAME>_FILE`
/// stays one word).
pub(crate) fn upper_words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '<' || c == '>'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect()
}

pub(crate) fn helps() -> &'static Helps {
    static HELPS: OnceLock<Helps> = OnceLock::new();
    HELPS.get_or_init(Helps::load)
}
