//! What the documents claim: reading README.md, docs/*.md and the crate
//! READMEs into claims (`scan_doc`), and checking them against the helps
//! (`check`).

use std::path::{Path, PathBuf};

use crate::help::*;
use crate::tables::*;
use crate::words::*;

/// Whose help a claim is checked against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Owner {
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
pub(crate) enum What {
    Flag(String),
    Env(String),
}

#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) at: String,
    pub(crate) what: What,
    pub(crate) owner: Owner,
}

/// A `default` cell of a table row that also has a `flag` cell.
#[derive(Debug)]
pub(crate) struct DefaultClaim {
    pub(crate) at: String,
    pub(crate) flags: Vec<String>,
    pub(crate) value: String,
    /// The binaries the row names; empty: every binary that has the flag.
    pub(crate) bins: Vec<&'static str>,
}

#[derive(Default)]
pub(crate) struct Found {
    pub(crate) claims: Vec<Claim>,
    pub(crate) defaults: Vec<DefaultClaim>,
    /// Flags whose program the scan cannot tell.
    pub(crate) problems: Vec<String>,
}

pub(crate) struct Doc {
    /// Path shown in reports.
    pub(crate) name: String,
    pub(crate) text: String,
    /// The binary of a crate README (`watcher/README.md` -> watcher).
    pub(crate) crate_bin: Option<&'static str>,
}

pub(crate) fn documents() -> Vec<Doc> {
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

/// Scans one command line; returns our binary (and subcommand) of its first
/// command, if it is ours.
pub(crate) fn scan_command_line(
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

pub(crate) fn scan_command(
    words: &[Word],
    at: &str,
    helps: &Helps,
    found: &mut Found,
) -> Option<Owner> {
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

pub(crate) fn scan_ours(
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
pub(crate) fn code_spans(text: &str) -> (Vec<&str>, String) {
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
pub(crate) fn scan_prose(
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
pub(crate) fn cells(row: &str) -> Vec<String> {
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

pub(crate) fn scan_doc(doc: &Doc, helps: &Helps, found: &mut Found) {
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
pub(crate) fn check(found: &Found, helps: &Helps) -> Vec<String> {
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
