//! Words of the documents: binary names, flags, variable names and shell words.

use crate::tables::*;

pub(crate) fn is_binary(word: &str) -> Option<&'static str> {
    BINARIES.iter().copied().find(|b| *b == word)
}

/// The binaries a text names, as whole words.
pub(crate) fn binaries_named(text: &str) -> Vec<&'static str> {
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
pub(crate) fn flag_word(word: &str) -> Option<String> {
    let name = word.split('=').next()?;
    valid_flag(name).then(|| name.to_string())
}

pub(crate) fn valid_flag(name: &str) -> bool {
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
pub(crate) fn prose_flags(text: &str) -> Vec<String> {
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
pub(crate) fn env_name(s: &str) -> bool {
    let plain = s.replace("<NAME>", "");
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && plain
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The variables an inline code span names when it is only that: `NAME`,
/// `NAME=value`, `NAME[:NAME]`.
pub(crate) fn env_span(span: &str) -> Option<Vec<String>> {
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
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) quoted: bool,
}

/// A command line split into commands (at `|`, `;`, `&`, `$(`, `(`, `)`),
/// and its comment.
pub(crate) fn shell_split(line: &str) -> (Vec<Vec<Word>>, Option<String>) {
    let mut commands = vec![Vec::new()];
    let mut word: Option<Word> = None;
    let mut comment = None;
    let mut chars = line.chars().peekable();
    pub(crate) fn end(word: &mut Option<Word>, commands: &mut [Vec<Word>]) {
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
