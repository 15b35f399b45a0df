//! Query-string helpers shared by server and client.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A boolean query parameter as Marathon (JAX-RS) parses it: case-insensitive
/// `true`/`false` (marathon-python sends `True`/`False`), plus `1`/`0`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct QueryBool(pub bool);

impl QueryBool {
    pub fn get(self) -> bool {
        self.0
    }
}

/// A query value that is not a boolean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid boolean {0:?} (expected true or false)")]
pub struct ParseQueryBoolError(pub String);

impl FromStr for QueryBool {
    type Err = ParseQueryBoolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("true") || t == "1" {
            Ok(Self(true))
        } else if t.eq_ignore_ascii_case("false") || t == "0" {
            Ok(Self(false))
        } else {
            Err(ParseQueryBoolError(s.to_owned()))
        }
    }
}

impl From<bool> for QueryBool {
    fn from(b: bool) -> Self {
        Self(b)
    }
}

impl From<QueryBool> for bool {
    fn from(b: QueryBool) -> Self {
        b.0
    }
}

impl fmt::Display for QueryBool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "true" } else { "false" })
    }
}

impl Serialize for QueryBool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for QueryBool {
    /// Accepts a JSON/bool value or any string `FromStr` accepts.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = QueryBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<QueryBool, E> {
                Ok(QueryBool(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<QueryBool, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<QueryBool, E> {
                match v {
                    0 => Ok(QueryBool(false)),
                    1 => Ok(QueryBool(true)),
                    _ => Err(E::custom(format!("invalid boolean {v}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Strips Marathon's `embed` prefixes (`apps.`, `app.`, `group.apps.`):
/// `"apps.tasks"` -> `"tasks"`. Unknown values are returned unchanged; the
/// caller ignores what it does not know, as Marathon does.
pub fn embed_suffix(embed: &str) -> &str {
    ["group.apps.", "apps.", "app."]
        .iter()
        .find_map(|p| embed.strip_prefix(p))
        .unwrap_or(embed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bool_accepts_python_and_numeric_spellings() {
        for (s, b) in [
            ("True", true),
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("False", false),
            ("false", false),
            ("0", false),
        ] {
            assert_eq!(s.parse::<QueryBool>().unwrap(), QueryBool(b), "{s}");
            let q: QueryBool = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(q.get(), b);
        }
        assert!("yes".parse::<QueryBool>().is_err());
        assert!("".parse::<QueryBool>().is_err());
        assert_eq!(
            serde_json::from_str::<QueryBool>("true").unwrap(),
            QueryBool(true)
        );
    }

    #[test]
    fn embed_prefixes_are_stripped() {
        assert_eq!(embed_suffix("apps.tasks"), "tasks");
        assert_eq!(embed_suffix("app.counts"), "counts");
        assert_eq!(embed_suffix("group.apps.deployments"), "deployments");
        assert_eq!(embed_suffix("lastTaskFailure"), "lastTaskFailure");
    }
}
