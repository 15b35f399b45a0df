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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Our binaries (the manager's package also builds `mdo-task-shim`).
const BINARIES: &[&str] = &[
    "manager",
    "subscriber",
    "deployer",
    "watcher",
    "cluster-setup",
    "mdo-task-shim",
];

/// Programs the documents show that are not ours: their flags are theirs.
const OTHER_PROGRAMS: &[&str] = &[
    "apt-get",
    "bash",
    "cargo",
    "cp",
    "curl",
    "debootstrap",
    "docker",
    "etcd",
    "etcdctl",
    "haproxy",
    "install",
    "maturin",
    "pip",
    "pytest",
    "python",
    "python3",
    "sh",
    "systemctl",
];

/// Shell words that come before the program of a command.
const SHELL_PREFIXES: &[&str] = &[
    "do", "then", "else", "elif", "if", "while", "until", "time", "exec", "!", "{",
];

/// Names in backticks that look like environment variables but are no
/// setting of any binary, so no `--help` lists them.
const NOT_SETTINGS: &[(&str, &str)] = &[
    // HTTP methods, named beside the routes they call.
    ("GET", "HTTP method"),
    ("POST", "HTTP method"),
    ("PUT", "HTTP method"),
    ("PATCH", "HTTP method"),
    ("DELETE", "HTTP method"),
    // The environment the manager gives every task (docs/environment.md).
    ("PORT0", "task environment"),
    ("PORT", "task environment"),
    ("PORTS", "task environment"),
    ("PORT_<NAME>", "task environment"),
    ("HOST", "task environment"),
    ("MESOS_TASK_ID", "task environment"),
    ("MARATHON_APP_ID", "task environment"),
    ("MARATHON_APP_VERSION", "task environment"),
    ("MARATHON_APP_DOCKER_IMAGE", "task environment"),
    ("MARATHON_APP_RESOURCE_CPUS", "task environment"),
    (
        "MEM",
        "task environment: written as the suffix of MARATHON_APP_RESOURCE_",
    ),
    (
        "DISK",
        "task environment: written as the suffix of MARATHON_APP_RESOURCE_",
    ),
    (
        "GPUS",
        "task environment: written as the suffix of MARATHON_APP_RESOURCE_",
    ),
    ("MARATHON_APP_LABELS", "task environment"),
    ("MARATHON_APP_LABEL_<NAME>", "task environment"),
    ("MARATHON_APP_LABEL_SERVICE_NAME", "task environment"),
    ("CONTAINER_NAME", "task environment"),
    ("CONTAINER_HOST_ADDRESS", "task environment"),
    (
        "SERVICE_NAME",
        "task environment, and an app label the deployer sets",
    ),
    (
        "SERVICE_GROUP",
        "task environment, and an app label the deployer sets",
    ),
    (
        "LABELS",
        "task environment the deployer sets in each app's env",
    ),
    (
        "ETCD_CACERT",
        "guestutils' earlier name for ETCD_CA, still read (a library: no --help)",
    ),
    // App labels the deployer sets (deployer/README.md).
    ("SERVICE_LABELS", "app label"),
    ("MDO_MANAGED_BY", "app label"),
    ("MDO_FIXED_HOST", "app label"),
    // Marathon task states (docs/registry.md).
    ("TASK_RUNNING", "task state"),
    ("TASK_KILLING", "task state"),
    // Variables of other programs.
    (
        "CI",
        "read by scripts/test.sh and the tests, not by a binary",
    ),
    ("PYO3_PYTHON", "pyo3's build setting (watcher/README.md)"),
    ("CARGO_TARGET_DIR", "cargo's setting (watcher/README.md)"),
    (
        "LD_LIBRARY_PATH",
        "the dynamic loader's setting (watcher/README.md)",
    ),
    (
        "ETCD_NAME",
        "etcd server configuration (docs/multi-host.md)",
    ),
    (
        "ETCD_INITIAL_CLUSTER",
        "etcd server configuration (docs/multi-host.md)",
    ),
    (
        "ETCD_CLIENT_CERT_AUTH",
        "etcd server configuration (docs/multi-host.md)",
    ),
    (
        "ETCD_ADVERTISE_CLIENT_URLS",
        "etcd server configuration (docs/multi-host.md)",
    ),
];

// ---------------------------------------------------------------------------
// The binaries and their --help

fn workspace_root() -> PathBuf {
    testkit::workspace_root()
}

/// Path of one of our binaries; the others than cluster-setup are built once
/// per test process (so never stale).
fn binary(name: &str) -> PathBuf {
    if name == "cluster-setup" {
        return PathBuf::from(env!("CARGO_BIN_EXE_cluster-setup"));
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
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
fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One `--help` page.
struct Help {
    binary: &'static str,
    /// The subcommand, `None` for the binary's own page.
    sub: Option<String>,
    text: String,
    /// Option name (`--listen`) -> its block of help text.
    options: BTreeMap<String, String>,
}

struct Helps(Vec<Help>);

impl Helps {
    fn load() -> Helps {
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

    fn pages<'a>(&'a self, bin: &'a str) -> impl Iterator<Item = &'a Help> + 'a {
        self.0.iter().filter(move |h| h.binary == bin)
    }

    fn subcommands(&self, bin: &str) -> Vec<String> {
        self.pages(bin).filter_map(|h| h.sub.clone()).collect()
    }

    /// Whether `flag` is an option of `bin` (of its subcommand `sub`, or of
    /// any of its pages when `sub` is `None`).
    fn has_flag(&self, bin: &str, sub: Option<&str>, flag: &str) -> bool {
        self.pages(bin)
            .filter(|h| sub.is_none() || h.sub.as_deref() == sub)
            .any(|h| h.options.contains_key(flag))
    }

    /// Whether a page of `bin` names the variable `name`.
    fn mentions(&self, bin: &str, name: &str) -> bool {
        self.pages(bin).any(|h| upper_words(&h.text).contains(name))
    }

    fn flag_blocks<'a>(&'a self, bin: &'a str, flag: &'a str) -> impl Iterator<Item = &'a str> {
        self.pages(bin)
            .filter_map(move |h| h.options.get(flag).map(String::as_str))
    }
}

fn help_page(bin: &'static str, sub: Option<String>) -> Help {
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
fn subcommands_of(page: &str) -> Vec<String> {
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
fn options_of(page: &str) -> BTreeMap<String, String> {
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
    options
        .into_iter()
        .map(|(name, block)| (name, block.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

/// The words of a text that could be variable names (`WATCH_<NAME>_FILE`
/// stays one word).
fn upper_words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '<' || c == '>'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect()
}

fn helps() -> &'static Helps {
    static HELPS: OnceLock<Helps> = OnceLock::new();
    HELPS.get_or_init(Helps::load)
}

// ---------------------------------------------------------------------------
// What the documents claim

/// Whose help a claim is checked against.
#[derive(Debug, Clone, PartialEq)]
enum Owner {
    /// A command line of `bin` (its subcommand `sub` when it named one).
    Command {
        bin: &'static str,
        sub: Option<String>,
    },
    /// At least one of these binaries.
    Named(Vec<&'static str>),
    /// Any binary.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
enum What {
    Flag(String),
    Env(String),
}

#[derive(Debug)]
struct Claim {
    at: String,
    what: What,
    owner: Owner,
}

/// A `default` cell of a table row that also has a `flag` cell.
#[derive(Debug)]
struct DefaultClaim {
    at: String,
    flags: Vec<String>,
    value: String,
    /// The binaries the row names; empty: every binary that has the flag.
    bins: Vec<&'static str>,
}

#[derive(Default)]
struct Found {
    claims: Vec<Claim>,
    defaults: Vec<DefaultClaim>,
    /// Flags whose program the scan cannot tell.
    problems: Vec<String>,
}

struct Doc {
    /// Path shown in reports.
    name: String,
    text: String,
    /// The binary of a crate README (`watcher/README.md` -> watcher).
    crate_bin: Option<&'static str>,
}

fn documents() -> Vec<Doc> {
    let root = workspace_root();
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| Path::new("docs").join(p.file_name().expect("file name")))
        .collect();
    docs.sort();
    paths.extend(docs);
    let mut crates: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("workspace root")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "target")
        .map(|n| Path::new(&n).join("README.md"))
        .filter(|p| root.join(p).is_file())
        .collect();
    crates.sort();
    paths.extend(crates);
    paths
        .into_iter()
        .map(|p| {
            let crate_dir = p
                .parent()
                .and_then(|d| d.to_str())
                .filter(|d| !d.is_empty() && *d != "docs")
                .map(str::to_string);
            Doc {
                name: p.display().to_string(),
                text: std::fs::read_to_string(root.join(&p))
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
                crate_bin: crate_dir.and_then(|d| BINARIES.iter().copied().find(|b| *b == d)),
            }
        })
        .collect()
}

fn is_binary(word: &str) -> Option<&'static str> {
    BINARIES.iter().copied().find(|b| *b == word)
}

/// The binaries a text names, as whole words.
fn binaries_named(text: &str) -> Vec<&'static str> {
    let lower = text.to_ascii_lowercase();
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    BINARIES
        .iter()
        .copied()
        .filter(|b| {
            lower.match_indices(b).any(|(i, _)| {
                let before = lower[..i].chars().next_back();
                let after = lower[i + b.len()..].chars().next();
                !before.is_some_and(word_char) && !after.is_some_and(word_char)
            })
        })
        .collect()
}

/// A whole word that is a flag: `--name` or `--name=value`.
fn flag_word(word: &str) -> Option<String> {
    let name = word.split('=').next()?;
    valid_flag(name).then(|| name.to_string())
}

fn valid_flag(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("--") else {
        return false;
    };
    rest.starts_with(|c: char| c.is_ascii_lowercase())
        && !rest.ends_with('-')
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Flags in running text: `--name` not glued to a word before it, and not
/// followed by more of a word (`--bollard-->` is an arrow).
fn prose_flags(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for (i, _) in text.match_indices("--") {
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b"-_!<".contains(&b[i - 1])) {
            continue;
        }
        let end = text[i + 2..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .map_or(text.len(), |e| i + 2 + e);
        let name = &text[i..end];
        let next = text[end..].chars().next();
        if valid_flag(name)
            && !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '>')
        {
            out.push(name.to_string());
        }
    }
    out
}

/// `NAME`, `PORT_<NAME>`, an env-like name.
fn env_name(s: &str) -> bool {
    let plain = s.replace("<NAME>", "");
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && plain
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The variables an inline code span names when it is only that: `NAME`,
/// `NAME=value`, `NAME[:NAME]`.
fn env_span(span: &str) -> Option<Vec<String>> {
    let s = span.trim();
    if let Some((a, b)) = s.split_once("[:") {
        let b = b.strip_suffix(']')?;
        return (env_name(a) && env_name(b)).then(|| vec![a.to_string(), b.to_string()]);
    }
    let (name, value) = s.split_once('=').unwrap_or((s, ""));
    (env_name(name) && !value.contains(char::is_whitespace)).then(|| vec![name.to_string()])
}

/// A shell word, and whether part of it was quoted.
#[derive(Debug)]
struct Word {
    text: String,
    quoted: bool,
}

/// A command line split into commands (at `|`, `;`, `&`, `$(`, `(`, `)`),
/// and its comment.
fn shell_split(line: &str) -> (Vec<Vec<Word>>, Option<String>) {
    let mut commands = vec![Vec::new()];
    let mut word: Option<Word> = None;
    let mut comment = None;
    let mut chars = line.chars().peekable();
    fn end(word: &mut Option<Word>, commands: &mut [Vec<Word>]) {
        if let Some(w) = word.take() {
            commands.last_mut().expect("one command").push(w);
        }
    }
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end(&mut word, &mut commands),
            '\'' | '"' => {
                let w = word.get_or_insert(Word {
                    text: String::new(),
                    quoted: true,
                });
                w.quoted = true;
                while let Some(q) = chars.next() {
                    if q == c {
                        break;
                    }
                    if q == '\\' && c == '"' {
                        if let Some(n) = chars.next() {
                            w.text.push(n);
                        }
                        continue;
                    }
                    w.text.push(q);
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    word.get_or_insert(Word {
                        text: String::new(),
                        quoted: false,
                    })
                    .text
                    .push(n);
                }
            }
            '#' if word.is_none() => {
                comment = Some(chars.by_ref().collect());
            }
            '|' | ';' | '&' | '(' | ')' | '`' => {
                end(&mut word, &mut commands);
                commands.push(Vec::new());
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                end(&mut word, &mut commands);
                commands.push(Vec::new());
            }
            _ => word
                .get_or_insert(Word {
                    text: String::new(),
                    quoted: false,
                })
                .text
                .push(c),
        }
    }
    end(&mut word, &mut commands);
    commands.retain(|c| !c.is_empty());
    (commands, comment)
}

/// Scans one command line; returns our binary (and subcommand) of its first
/// command, if it is ours.
fn scan_command_line(
    line: &str,
    at: &str,
    comment_default: &Owner,
    helps: &Helps,
    found: &mut Found,
) -> Option<Owner> {
    let (commands, comment) = shell_split(line);
    let mut first = None;
    for (i, words) in commands.iter().enumerate() {
        let owner = scan_command(words, at, helps, found);
        if i == 0 {
            first = owner;
        }
    }
    if let Some(comment) = comment {
        let owner = first.clone().unwrap_or_else(|| comment_default.clone());
        scan_prose(&comment, at, false, &owner, helps, found);
    }
    first
}

fn scan_command(words: &[Word], at: &str, helps: &Helps, found: &mut Found) -> Option<Owner> {
    let mut k = 0;
    let mut assigned = Vec::new();
    while let Some(w) = words.get(k) {
        let t = w.text.as_str();
        if t.split_once('=').is_some_and(|(n, _)| env_name(n)) {
            assigned.push(
                t.split_once('=')
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_default(),
            );
        } else if !(t.ends_with(':') && !w.quoted || t == "-" || SHELL_PREFIXES.contains(&t)) {
            break;
        }
        k += 1;
    }
    let program_word = words.get(k)?;
    if program_word.quoted && program_word.text.contains(' ') {
        // `cmd: "watcher --methods ... -- python3 app.py"`: the string is the command.
        let owner = scan_command_line(&program_word.text, at, &Owner::Any, helps, found);
        scan_command(&words[k + 1..], at, helps, found);
        return owner;
    }
    let program = program_word
        .text
        .rsplit('/')
        .next()
        .unwrap_or(&program_word.text);
    let args = &words[k + 1..];
    if let Some(bin) = is_binary(program) {
        return Some(scan_ours(bin, args, &assigned, at, helps, found));
    }
    if program == "cargo" && args.iter().any(|w| w.text == "run") {
        let target = args.windows(2).find_map(|p| {
            ["-p", "--package", "--bin"]
                .contains(&p[0].text.as_str())
                .then(|| is_binary(&p[1].text))
                .flatten()
        });
        let dashdash = args.iter().position(|w| w.text == "--" && !w.quoted);
        if let (Some(bin), Some(d)) = (target, dashdash) {
            return Some(scan_ours(bin, &args[d + 1..], &assigned, at, helps, found));
        }
    }
    // `up --demo`: a subcommand written without its binary.
    let owners: Vec<&'static str> = BINARIES
        .iter()
        .copied()
        .filter(|b| helps.subcommands(b).iter().any(|s| s == program))
        .collect();
    if let [bin] = owners.as_slice() {
        return Some(scan_ours(bin, &words[k..], &assigned, at, helps, found));
    }
    if !owners.is_empty() {
        for w in args {
            if let Some(flag) = flag_word(&w.text) {
                found.claims.push(Claim {
                    at: at.to_string(),
                    what: What::Flag(flag),
                    owner: Owner::Named(owners.clone()),
                });
            }
        }
        return Some(Owner::Named(owners));
    }
    if !OTHER_PROGRAMS.contains(&program) {
        for w in args {
            if let Some(flag) = flag_word(&w.text) {
                found.problems.push(format!(
                    "{at}: `{flag}` follows `{program}`, which is neither an mdo binary nor a \
                     program this test knows (OTHER_PROGRAMS)"
                ));
            }
        }
    }
    for w in args.iter().filter(|w| w.quoted && w.text.contains(' ')) {
        scan_command_line(&w.text, at, &Owner::Any, helps, found);
    }
    None
}

fn scan_ours(
    bin: &'static str,
    args: &[Word],
    assigned: &[String],
    at: &str,
    helps: &Helps,
    found: &mut Found,
) -> Owner {
    let subs = helps.subcommands(bin);
    let end = args
        .iter()
        .position(|w| w.text == "--" && !w.quoted)
        .unwrap_or(args.len());
    let sub = args[..end]
        .iter()
        .find(|w| !w.quoted && subs.contains(&w.text))
        .map(|w| w.text.clone());
    let owner = Owner::Command { bin, sub };
    for name in assigned {
        found.claims.push(Claim {
            at: at.to_string(),
            what: What::Env(name.clone()),
            owner: owner.clone(),
        });
    }
    for w in &args[..end] {
        if let Some(flag) = flag_word(&w.text) {
            found.claims.push(Claim {
                at: at.to_string(),
                what: What::Flag(flag),
                owner: owner.clone(),
            });
        } else if w.quoted && w.text.contains(' ') {
            scan_command_line(&w.text, at, &Owner::Any, helps, found);
        }
    }
    if end < args.len() {
        scan_command(&args[end + 1..], at, helps, found);
    }
    owner
}

/// The inline code spans of a text, and the text without them.
fn code_spans(text: &str) -> (Vec<&str>, String) {
    let mut spans = Vec::new();
    let mut rest = String::new();
    let mut parts = text.split('`');
    if let Some(p) = parts.next() {
        rest.push_str(p);
    }
    let mut inside = true;
    for p in parts {
        if inside {
            spans.push(p);
            rest.push(' ');
        } else {
            rest.push_str(p);
        }
        inside = !inside;
    }
    (spans, rest)
}

/// One prose unit (paragraph, list item, table row, code comment).
/// `is_row`: a table row names its binaries; prose only one (else `default`).
fn scan_prose(
    text: &str,
    at: &str,
    is_row: bool,
    default: &Owner,
    helps: &Helps,
    found: &mut Found,
) -> Owner {
    let named = binaries_named(text);
    let owner = if (is_row && !named.is_empty()) || named.len() == 1 {
        Owner::Named(named)
    } else {
        default.clone()
    };
    let (spans, rest) = code_spans(text);
    let mut loose = vec![rest];
    for span in spans {
        if let Some(names) = env_span(span) {
            for name in names {
                found.claims.push(Claim {
                    at: at.to_string(),
                    what: What::Env(name),
                    owner: owner.clone(),
                });
            }
            continue;
        }
        let (commands, _) = shell_split(span);
        let program_like = commands
            .first()
            .and_then(|c| {
                c.iter()
                    .find(|w| !w.text.split_once('=').is_some_and(|(n, _)| env_name(n)))
            })
            .is_some_and(|w| !w.text.starts_with('-'));
        if program_like && !prose_flags(span).is_empty() {
            scan_command_line(span, at, &owner, helps, found);
        } else {
            loose.push(span.to_string());
        }
    }
    for part in loose {
        for flag in prose_flags(&part) {
            found.claims.push(Claim {
                at: at.to_string(),
                what: What::Flag(flag),
                owner: owner.clone(),
            });
        }
    }
    owner
}

/// Table cells, split at `|` not escaped as `\|`.
fn cells(row: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = row.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                out.last_mut().expect("a cell").push('|');
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().expect("a cell").push(c),
        }
    }
    if out.last().is_some_and(|c| c.trim().is_empty()) {
        out.pop();
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

fn scan_doc(doc: &Doc, helps: &Helps, found: &mut Found) {
    let default = doc
        .crate_bin
        .map(|b| Owner::Named(vec![b]))
        .unwrap_or(Owner::Any);
    let lines: Vec<&str> = doc.text.lines().collect();
    let mut i = 0;
    let mut unit: Vec<(usize, &str)> = Vec::new();
    let flush = |unit: &mut Vec<(usize, &str)>, found: &mut Found| {
        if let Some((n, _)) = unit.first() {
            let text: Vec<&str> = unit.iter().map(|(_, l)| *l).collect();
            let at = format!("{}:{}", doc.name, n + 1);
            scan_prose(&text.join("\n"), &at, false, &default, helps, found);
        }
        unit.clear();
    };
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            flush(&mut unit, found);
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                // One logical line: continuations joined.
                let start = i;
                let mut logical = lines[i].to_string();
                while logical.ends_with('\\') && i + 1 < lines.len() {
                    logical.pop();
                    i += 1;
                    logical.push(' ');
                    logical.push_str(lines[i]);
                }
                let at = format!("{}:{}", doc.name, start + 1);
                scan_command_line(&logical, &at, &default, helps, found);
                i += 1;
            }
            i += 1;
            continue;
        }
        if trimmed.starts_with('|') {
            flush(&mut unit, found);
            let header = cells(trimmed);
            let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
            let (flag_col, default_col) = (col("flag"), col("default"));
            i += 1;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                let row = lines[i].trim();
                let at = format!("{}:{}", doc.name, i + 1);
                if !row.chars().all(|c| "|-: ".contains(c)) {
                    scan_prose(row, &at, true, &default, helps, found);
                    let cells = cells(row);
                    if let (Some(f), Some(d)) = (flag_col, default_col) {
                        let value = cells.get(d).map(String::as_str).unwrap_or("");
                        let inner = value.strip_prefix('`').and_then(|v| v.strip_suffix('`'));
                        if let Some(value) = inner.filter(|v| !v.contains('`')) {
                            found.defaults.push(DefaultClaim {
                                at,
                                flags: prose_flags(cells.get(f).map(String::as_str).unwrap_or("")),
                                value: value.to_string(),
                                bins: binaries_named(row),
                            });
                        }
                    }
                }
                i += 1;
            }
            continue;
        }
        let new_item = trimmed.starts_with("- ")
            || trimmed.starts_with("* ")
            || trimmed.starts_with('#')
            || trimmed
                .split_once(". ")
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if trimmed.is_empty() || trimmed.starts_with("<!--") {
            flush(&mut unit, found);
        } else {
            if new_item {
                flush(&mut unit, found);
            }
            unit.push((i, line));
            if trimmed.starts_with('#') {
                flush(&mut unit, found);
            }
        }
        i += 1;
    }
    flush(&mut unit, found);
}

/// What is wrong with the claims: one line each.
fn check(found: &Found, helps: &Helps) -> Vec<String> {
    let mut problems = found.problems.clone();
    let not_setting = |n: &str| NOT_SETTINGS.iter().any(|(name, _)| *name == n);
    for c in &found.claims {
        let ok = match (&c.what, &c.owner) {
            (What::Env(n), _) if not_setting(n) => true,
            (What::Flag(f), Owner::Command { bin, sub }) => helps.has_flag(bin, sub.as_deref(), f),
            (What::Flag(f), Owner::Named(bins)) => bins.iter().any(|b| helps.has_flag(b, None, f)),
            (What::Flag(f), Owner::Any) => BINARIES.iter().any(|b| helps.has_flag(b, None, f)),
            (What::Env(n), Owner::Command { bin, .. }) => helps.mentions(bin, n),
            (What::Env(n), Owner::Named(bins)) => bins.iter().any(|b| helps.mentions(b, n)),
            (What::Env(n), Owner::Any) => BINARIES.iter().any(|b| helps.mentions(b, n)),
        };
        if !ok {
            let (kind, name) = match &c.what {
                What::Flag(f) => ("flag", f),
                What::Env(n) => ("variable", n),
            };
            let whose = match &c.owner {
                Owner::Command { bin, sub: Some(s) } => format!("`{bin} {s} --help`"),
                Owner::Command { bin, sub: None } => format!("`{bin} --help`"),
                Owner::Named(bins) => format!("the --help of {}", bins.join(" or ")),
                Owner::Any => "any binary's --help".to_string(),
            };
            problems.push(format!("{}: {kind} `{name}` is not in {whose}", c.at));
        }
    }
    for d in &found.defaults {
        for flag in &d.flags {
            let bins: Vec<&str> = if d.bins.is_empty() {
                BINARIES.to_vec()
            } else {
                d.bins.clone()
            };
            for bin in bins.into_iter().filter(|b| helps.has_flag(b, None, flag)) {
                if !helps.flag_blocks(bin, flag).any(|b| b.contains(&d.value)) {
                    problems.push(format!(
                        "{}: default `{}` of `{flag}` is not what `{bin} --help` gives",
                        d.at, d.value
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

// ---------------------------------------------------------------------------
// The tests

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
