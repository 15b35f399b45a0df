//! Marathon timestamps: UTC, always exactly three millisecond digits
//! (`2015-09-30T09:09:17.614Z`), used for app versions, `stagedAt`, event
//! `timestamp` and deployment versions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time as Marathon writes it. Ordered, hashable, and serialised
/// as `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`. Parsing accepts any RFC 3339 time
/// (other offsets are converted to UTC); precision below a millisecond is
/// truncated so that a parsed value prints back exactly as Marathon would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to milliseconds.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// Wraps a chrono time, truncated to milliseconds.
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        let ms = t.timestamp_millis();
        Self::from_millis(ms).unwrap_or(Self(t))
    }

    /// From milliseconds since the Unix epoch; `None` if out of range.
    pub fn from_millis(ms: i64) -> Option<Self> {
        Utc.timestamp_millis_opt(ms).single().map(Self)
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The inner chrono value.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Formats a chrono time the way Marathon does (3 ms digits, `Z`).
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(&self.0))
    }
}

/// Error for a string that is not an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct ParseTimestampError {
    input: String,
    reason: chrono::ParseError,
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Self::from_datetime(t.with_timezone(&Utc)))
            .map_err(|reason| ParseTimestampError {
                input: s.to_owned(),
                reason,
            })
    }
}

impl Default for Timestamp {
    /// The Unix epoch (a placeholder; real values come from [`Timestamp::now`]).
    fn default() -> Self {
        Self(DateTime::<Utc>::UNIX_EPOCH)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self::from_datetime(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_three_millisecond_digits() {
        let t = Timestamp::from_millis(1_443_604_157_614).unwrap();
        assert_eq!(t.to_string(), "2015-09-30T09:09:17.614Z");
        let whole = Timestamp::from_millis(1_443_604_157_000).unwrap();
        assert_eq!(whole.to_string(), "2015-09-30T09:09:17.000Z");
    }

    #[test]
    fn parses_and_round_trips() {
        for s in ["2015-09-30T09:09:17.614Z", "2026-01-01T00:00:00.000Z"] {
            let t: Timestamp = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }
    }

    #[test]
    fn normalises_other_precisions_and_offsets() {
        let t: Timestamp = "2015-09-30T11:09:17.614999+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2015-09-30T09:09:17.614Z");
        let t: Timestamp = "2015-09-30T09:09:17Z".parse().unwrap();
        assert_eq!(t.to_string(), "2015-09-30T09:09:17.000Z");
        assert!("yesterday".parse::<Timestamp>().is_err());
    }
}
