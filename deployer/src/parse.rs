//! Bounded parsing of a deploy document (YAML or JSON) into a JSON value.
//!
//! Both formats go through one `DeserializeSeed` that counts every node it
//! builds (aliases included, so a YAML "billion laughs" stops after the
//! budget, not after the memory is gone) and limits the nesting depth.
//! YAML is read by `serde-saphyr`, whose own budget is set to the same node
//! and depth limits (it stops a deep or alias-heavy document while reading,
//! before our seed sees it; the messages are ours either way). The size
//! limit is checked on the body before parsing. Duplicate keys, YAML tags
//! and a second document (`---`) are rejected.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Limits applied while parsing one document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body accepted, in bytes (checked before parsing).
    pub max_bytes: usize,
    /// Most nodes (scalars, sequences, mappings) the document may expand to.
    pub max_nodes: usize,
    /// Deepest nesting accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
            max_nodes: 200_000,
            max_depth: 48,
        }
    }
}

/// The syntax of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// Picks the format from a Content-Type (None = sniff from the body).
    /// `Err(())` for a media type that is neither.
    #[allow(clippy::result_unit_err)]
    pub fn from_content_type(content_type: Option<&str>, body: &[u8]) -> Result<Format, ()> {
        let essence = content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        match essence.as_str() {
            "application/json" | "text/json" => Ok(Format::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
                Ok(Format::Yaml)
            }
            ""
            | "text/plain"
            | "application/octet-stream"
            | "*/*"
            | "application/x-www-form-urlencoded" => Ok(Format::sniff(body)),
            e if e.ends_with("+json") => Ok(Format::Json),
            e if e.ends_with("+yaml") => Ok(Format::Yaml),
            _ => Err(()),
        }
    }

    /// JSON when the first non-blank byte opens an object or array.
    pub fn sniff(body: &[u8]) -> Format {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Why a body could not be turned into a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Malformed text (or a limit hit while reading it): line and column are 1-based.
    #[error("{message}")]
    Syntax {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Hit {
    Nodes,
    Depth,
}

struct Budget {
    left: Cell<usize>,
    max_depth: usize,
    hit: Cell<Option<Hit>>,
}

impl Budget {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => {
                self.hit.set(Some(Hit::Nodes));
                Err(E::custom("node budget exceeded"))
            }
        }
    }
}

/// Parses `body` (YAML or JSON) into a JSON value within `limits`.
pub fn parse(body: &[u8], format: Format, limits: &Limits) -> Result<Value, ParseError> {
    if body.len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            size: body.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        let (line, column) = line_col(body, e.valid_up_to());
        ParseError::Syntax {
            message: format!("body is not UTF-8 text (line {line}, column {column})"),
            line: Some(line),
            column: Some(column),
        }
    })?;
    let budget = Budget {
        left: Cell::new(limits.max_nodes),
        max_depth: limits.max_depth,
        hit: Cell::new(None),
    };
    let seed = ValueSeed {
        budget: &budget,
        depth: 0,
    };
    let (result, kind) = match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let r = seed.deserialize(&mut de).and_then(|v| de.end().map(|_| v));
            (
                r.map_err(|e| (e.to_string(), Some((e.line(), e.column())))),
                "JSON",
            )
        }
        Format::Yaml => {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            let r = serde_saphyr::with_deserializer_from_str_with_options(
                text,
                yaml_options(limits),
                |de| seed.deserialize(de),
            );
            (
                r.map_err(|e| {
                    let loc = e
                        .location()
                        .map(|l| (l.line() as usize, l.column() as usize));
                    (yaml_message(&e, limits), loc)
                }),
                "YAML",
            )
        }
    };
    result.map_err(|(raw, loc)| {
        let what = match budget.hit.get() {
            Some(Hit::Nodes) => format!(
                "document expands to more than {} nodes (YAML alias bomb?)",
                limits.max_nodes
            ),
            Some(Hit::Depth) => {
                format!("document nests deeper than {} levels", limits.max_depth)
            }
            None => strip_location(&raw),
        };
        let (line, column) = match loc {
            Some((l, c)) if l > 0 => (Some(l), Some(c)),
            _ => (None, None),
        };
        let message = match (line, column) {
            (Some(l), Some(c)) => format!("Invalid {kind} at line {l}, column {c}: {what}"),
            _ => format!("Invalid {kind}: {what}"),
        };
        ParseError::Syntax {
            message,
            line,
            column,
        }
    })
}

/// The YAML reader's settings: serde_yaml's reading of untyped scalars
/// (YAML 1.2 booleans only, `0755` and `1_000` stay text, `<<` is an
/// ordinary key, non-finite numbers reach our visitor, which refuses them),
/// repeated keys refused, unknown tags refused, one document.
/// The reader enforces our node budget (it counts the nodes aliases replay)
/// and depth limit itself while it reads, as its own budget; its other limits
/// (events, aliases, anchors, alias replay) are set from the node budget, so
/// a document within ours never reaches them. [`yaml_message`] words each
/// breach as our limit.
fn yaml_options(limits: &Limits) -> serde_saphyr::Options {
    let nodes = limits.max_nodes;
    // `max_depth` counts levels below the top one.
    let depth = limits.max_depth.saturating_add(1);
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = nodes;
    budget.max_events = nodes.saturating_mul(2).saturating_add(16);
    budget.max_aliases = nodes;
    budget.max_anchors = nodes;
    budget.max_depth = depth;
    budget.flow_nesting_limit = depth;
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(limits.max_bytes);
    // Aliases are paid for node by node in our budget; no ratio guess.
    budget.enforce_alias_anchor_ratio = false;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = nodes.saturating_mul(2).saturating_add(16);
    options.alias_limits.max_replay_stack_depth = depth;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::AsOrdinary;
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    options.reject_unsupported_tags = true;
    options.with_snippet = false;
    options
}

/// The reader's error in our words where it is one of our limits.
fn yaml_message(e: &serde_saphyr::Error, limits: &Limits) -> String {
    use serde_saphyr::budget::BudgetBreach;
    use serde_saphyr::granit_parser::ErrorKind;
    use serde_saphyr::{Error as E, ExternalMessageSource};
    let deeper = || format!("document nests deeper than {} levels", limits.max_depth);
    let bomb = || {
        format!(
            "document expands to more than {} nodes (YAML alias bomb?)",
            limits.max_nodes
        )
    };
    match e {
        E::Budget {
            breach: BudgetBreach::Depth { .. },
            ..
        } => deeper(),
        E::Budget {
            breach: BudgetBreach::Documents { .. },
            ..
        }
        | E::MultipleDocuments { .. } => {
            "more than one YAML document (---): a deploy document is one".to_string()
        }
        E::Budget {
            breach:
                BudgetBreach::Nodes { .. }
                | BudgetBreach::Events { .. }
                | BudgetBreach::Aliases { .. }
                | BudgetBreach::Anchors { .. },
            ..
        } => bomb(),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => {
            "too many alias expansions (YAML alias bomb?)".to_string()
        }
        E::AliasError { error, .. } => yaml_message(error, limits),
        E::ExternalMessage { source, .. }
            if matches!(
                &**source,
                ExternalMessageSource::Parser(scan)
                    if matches!(scan.kind(), ErrorKind::RecursionLimitExceeded)
            ) =>
        {
            deeper()
        }
        E::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key \"{key}\""),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_string(),
        E::UnsupportedTag { tag, .. } => format!("YAML tags (!tag) are not supported: {tag}"),
        other => strip_location(&other.to_string()),
    }
}

/// serde_json appends " at line X column Y"; we say it ourselves.
fn strip_location(raw: &str) -> String {
    match raw.find(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.to_string(),
    }
}

fn line_col(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset.min(body.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}

struct ValueSeed<'a> {
    budget: &'a Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.budget.take()?;
        if self.depth > self.budget.max_depth {
            self.budget.hit.set(Some(Hit::Depth));
            return Err(de::Error::custom("too deep"));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        ValueSeed {
            budget: self.budget,
            depth: self.depth,
        }
        .deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        ValueSeed {
            budget: self.budget,
            depth: self.depth,
        }
        .deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            budget: self.budget,
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(ValueSeed {
                budget: self.budget,
                depth: self.depth + 1,
            })?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom("YAML tags (!tag) are not supported"))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported"))
    }
}

/// Mapping keys: any scalar, as text.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom("a mapping key is empty (null)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(s: &str) -> Result<Value, ParseError> {
        parse(s.as_bytes(), Format::Yaml, &Limits::default())
    }

    #[test]
    fn yaml_and_json_give_the_same_value() {
        let y = yaml("deploy:\n  web:\n    image: nginx\n    ports: {http: 80}\n").unwrap();
        let j = parse(
            br#"{"deploy":{"web":{"image":"nginx","ports":{"http":80}}}}"#,
            Format::Json,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(y, j);
        assert_eq!(
            y,
            json!({"deploy":{"web":{"image":"nginx","ports":{"http":80}}}})
        );
    }

    #[test]
    fn malformed_yaml_names_line_and_column() {
        let err = yaml("deploy:\n  web:\n    image: [nginx\n    cpus: 1\n").unwrap_err();
        match err {
            ParseError::Syntax {
                line,
                column,
                message,
            } => {
                assert!(line.is_some() && column.is_some(), "{message}");
                assert!(message.contains("line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = parse(b"{\n \"deploy\": {,}\n}", Format::Json, &Limits::default()).unwrap_err();
        match err {
            ParseError::Syntax {
                line: Some(2),
                column: Some(_),
                message,
            } => {
                assert!(message.starts_with("Invalid JSON at line 2"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let err = yaml(&doc).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        match err {
            ParseError::Syntax { message, .. } => {
                assert!(message.contains("alias bomb"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quadratic_alias_expansion_hits_the_node_budget() {
        // One large anchored list referenced many times: few aliases, but
        // far over the node budget once they are replayed.
        let big: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        let mut doc = format!("big: &b [{}]\nrefs:\n", big.join(", "));
        for _ in 0..2000 {
            doc.push_str("  - *b\n");
        }
        let err = yaml(&doc).unwrap_err();
        assert!(err.to_string().contains("alias bomb"), "{err}");
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let doc = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let err = yaml(&doc).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("deeper") || msg.contains("recursion"), "{msg}");
        let err = parse(doc.as_bytes(), Format::Json, &Limits::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("deeper") || msg.contains("recursion"), "{msg}");
    }

    #[test]
    fn size_limit() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let err = parse(b"deploy: {web: {image: x}}", Format::Yaml, &limits).unwrap_err();
        assert!(matches!(
            err,
            ParseError::TooLarge {
                size: 25,
                limit: 10
            }
        ));
    }

    #[test]
    fn duplicate_keys_and_tags_are_rejected() {
        assert_eq!(
            yaml("a: 1\na: 2\n").unwrap_err().to_string(),
            "Invalid YAML at line 2, column 1: duplicate key \"a\""
        );
        assert!(yaml("a: !foo 1\n")
            .unwrap_err()
            .to_string()
            .contains("tags"));
    }

    #[test]
    fn untyped_scalars_read_as_serde_yaml_read_them() {
        let doc = "a: yes\nb: 0755\nc: 1_000\nd: 0x1F\ne: ~\nf: 1e3\ng: 0o17\nh: True\n\
                   i: on\nj: NULL\nk: 2001-12-14\nl: 1:20\nm: -1\nn: .5\n";
        assert_eq!(
            yaml(doc).unwrap(),
            json!({"a": "yes", "b": "0755", "c": "1_000", "d": 31, "e": null, "f": 1000.0,
                   "g": 15, "h": true, "i": "on", "j": null, "k": "2001-12-14", "l": "1:20",
                   "m": -1, "n": 0.5})
        );
        for bad in ["a: .nan\n", "a: .inf\n", "a: -.inf\n"] {
            let e = yaml(bad).unwrap_err().to_string();
            assert!(e.contains("number is not finite"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_document_anchors_and_merge_keys() {
        assert_eq!(
            yaml("x: &a [1, 2]\ny: *a\n").unwrap(),
            json!({"x": [1, 2], "y": [1, 2]})
        );
        // `<<` is an ordinary key (the spec then names it as an unknown field).
        assert_eq!(yaml("<<: {a: 1}\n").unwrap(), json!({"<<": {"a": 1}}));
        let e = yaml("a: 1\n---\nb: 2\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid YAML at line 3, column 1: more than one YAML document (---): a deploy document is one"
        );
        let e = yaml("x: *nope\n").unwrap_err().to_string();
        assert!(e.starts_with("Invalid YAML at line 1, column 4:"), "{e}");
    }

    #[test]
    fn numeric_keys_become_text_and_empty_is_null() {
        assert_eq!(yaml("80: web\n").unwrap(), json!({"80": "web"}));
        assert_eq!(yaml("  \n").unwrap(), Value::Null);
    }

    #[test]
    fn format_from_content_type() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8"), b"a: 1"),
            Ok(Format::Json)
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-yaml"), b"{}"),
            Ok(Format::Yaml)
        );
        assert_eq!(
            Format::from_content_type(None, b"  {\"a\":1}"),
            Ok(Format::Json)
        );
        assert_eq!(Format::from_content_type(None, b"a: 1"), Ok(Format::Yaml));
        assert_eq!(
            Format::from_content_type(Some("image/png"), b"a: 1"),
            Err(())
        );
    }
}
