//! Scheduling strategies of an app: `upgradeStrategy`, `killSelection`,
//! `unreachableStrategy`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn one() -> f64 {
    1.0
}

/// `upgradeStrategy`: capacity bounds of a rolling restart, both in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    #[serde(default = "one")]
    #[serde(serialize_with = "crate::app::number")]
    pub minimum_health_capacity: f64,
    #[serde(default = "one")]
    #[serde(serialize_with = "crate::app::number")]
    pub maximum_over_capacity: f64,
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        Self {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

/// `killSelection`: which instances die first on scale-down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KillSelection {
    #[default]
    YoungestFirst,
    OldestFirst,
}

/// `unreachableStrategy`: the string `"disabled"` or the two timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableStrategy {
    Disabled,
    Enabled {
        inactive_after_seconds: u64,
        expunge_after_seconds: u64,
    },
}

impl Default for UnreachableStrategy {
    /// `{"inactiveAfterSeconds":0,"expungeAfterSeconds":0}` (Marathon >= 1.6).
    fn default() -> Self {
        Self::Enabled {
            inactive_after_seconds: 0,
            expunge_after_seconds: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnreachableEnabled {
    #[serde(default)]
    inactive_after_seconds: u64,
    #[serde(default)]
    expunge_after_seconds: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UnreachableRepr {
    Text(String),
    Enabled(UnreachableEnabled),
}

impl Serialize for UnreachableStrategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Disabled => s.serialize_str("disabled"),
            Self::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => UnreachableEnabled {
                inactive_after_seconds,
                expunge_after_seconds,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for UnreachableStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match UnreachableRepr::deserialize(d)? {
            UnreachableRepr::Text(t) if t == "disabled" => Ok(Self::Disabled),
            UnreachableRepr::Text(t) => Err(serde::de::Error::custom(format!(
                "unreachableStrategy must be \"disabled\" or an object, got {t:?}"
            ))),
            UnreachableRepr::Enabled(e) => Ok(Self::Enabled {
                inactive_after_seconds: e.inactive_after_seconds,
                expunge_after_seconds: e.expunge_after_seconds,
            }),
        }
    }
}
