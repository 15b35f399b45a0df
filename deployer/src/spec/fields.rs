//! Field parsers: each reads one JSON value at one path, records what is
//! wrong with it in `Problems` and yields the typed value when it is right.

use serde_json::{Map, Value};

use super::Detail;
use registry::naming;

/// Collects problems while walking the document.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Detail>);

impl Problems {
    pub(super) fn add(&mut self, path: &str, error: impl Into<String>) {
        let error = error.into();
        match self.0.iter_mut().find(|d| d.path == path) {
            Some(d) => d.errors.push(error),
            None => self.0.push(Detail {
                path: path.to_string(),
                errors: vec![error],
            }),
        }
    }
}

/// The closest known name to `unknown`, when it is close enough to be a typo.
pub fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    let u = norm(unknown);
    if let Some(k) = known.iter().find(|k| norm(k) == u) {
        return Some(k);
    }
    let (best, dist) = known
        .iter()
        .map(|k| (*k, strsim::levenshtein(&u, &norm(k))))
        .min_by_key(|(_, d)| *d)?;
    let allowed = if u.len() <= 4 {
        1
    } else if u.len() <= 8 {
        2
    } else {
        3
    };
    (dist <= allowed).then_some(best)
}

pub(super) fn check_fields(obj: &Map<String, Value>, known: &[&str], path: &str, p: &mut Problems) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            let msg = match suggest(key, known) {
                Some(s) => format!("unknown field \"{key}\"; did you mean \"{s}\"?"),
                None => format!(
                    "unknown field \"{key}\"; known fields: {}",
                    known.join(", ")
                ),
            };
            p.add(&format!("{path}/{}", escape(key)), msg);
        }
    }
}

/// JSON-pointer escaping of one path segment.
pub(super) fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn as_map<'a>(
    v: &'a Value,
    path: &str,
    p: &mut Problems,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            p.add(
                path,
                format!("expected a mapping, got {}", type_name(other)),
            );
            None
        }
    }
}

pub(super) fn as_string(v: &Value, path: &str, p: &mut Problems) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::String(_) => {
            p.add(path, "must not be empty");
            None
        }
        other => {
            p.add(path, format!("expected a string, got {}", type_name(other)));
            None
        }
    }
}

/// Strings, numbers and booleans as text (YAML users write `PORT: 80`).
pub(super) fn as_scalar_text(v: &Value, path: &str, p: &mut Problems) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            p.add(
                path,
                format!(
                    "expected a string, number or boolean, got {}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

pub(super) fn as_number(v: &Value, path: &str, p: &mut Problems) -> Option<f64> {
    match v.as_f64() {
        Some(n) => Some(n),
        None => {
            p.add(path, format!("expected a number, got {}", type_name(v)));
            None
        }
    }
}

pub(super) fn as_uint(v: &Value, path: &str, p: &mut Problems) -> Option<u64> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => Some(u),
            None if n.as_i64().is_some() => {
                p.add(path, format!("must not be negative, got {n}"));
                None
            }
            None => {
                p.add(path, format!("expected a whole number, got {n}"));
                None
            }
        },
        other => {
            p.add(
                path,
                format!("expected a whole number, got {}", type_name(other)),
            );
            None
        }
    }
}

pub(super) fn as_list<'a>(v: &'a Value, path: &str, p: &mut Problems) -> Option<&'a Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        other => {
            p.add(path, format!("expected a list, got {}", type_name(other)));
            None
        }
    }
}

pub(super) fn labels_at(v: Option<&Value>, path: &str, p: &mut Problems) -> Vec<String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(items) = as_list(v, path, p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}/{i}");
        if let Some(s) = as_scalar_text(item, &ipath, p) {
            match naming::name_problem(&s) {
                Some(problem) => p.add(&ipath, format!("label {problem}")),
                None if out.contains(&s) => p.add(&ipath, format!("duplicate label \"{s}\"")),
                None => out.push(s),
            }
        }
    }
    naming::canonical_labels(&out)
}

/// One mapping of the document at its path: `at` is a field's path, `field`
/// its value (a null field counts as absent).
#[derive(Clone, Copy)]
pub(super) struct Fields<'a> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) path: &'a str,
}

impl<'a> Fields<'a> {
    pub(super) fn at(&self, f: &str) -> String {
        format!("{}/{f}", self.path)
    }

    pub(super) fn field(&self, f: &str) -> Option<&'a Value> {
        self.map.get(f).filter(|v| !v.is_null())
    }
}
