//! Marathon's error body and this crate's client error.

use serde::{Deserialize, Serialize};

use crate::app::DeploymentRef;

/// Marathon's error body: `{"message": ..., "details": ...}`, plus
/// `deployments` when an app is locked (409).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployments: Option<Vec<DeploymentRef>>,
}

impl ErrorBody {
    /// `{"message": message}`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: None,
            deployments: None,
        }
    }

    /// `{"message":"Object is not valid","details":[...]}` (422).
    pub fn invalid(details: Vec<ErrorDetail>) -> Self {
        Self {
            message: "Object is not valid".to_owned(),
            details: Some(ErrorDetails::List(details)),
            deployments: None,
        }
    }

    /// `{"message":"Invalid JSON","details":"<parser text>"}` (400).
    pub fn invalid_json(parser_message: impl Into<String>) -> Self {
        Self {
            message: "Invalid JSON".to_owned(),
            details: Some(ErrorDetails::Text(parser_message.into())),
            deployments: None,
        }
    }
}

/// `details`: a string (bad JSON) or a list of `{path, errors}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorDetails {
    Text(String),
    List(Vec<ErrorDetail>),
}

/// `{"path":"/upgradeStrategy/minimumHealthCapacity","errors":["is greater than 1"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub path: String,
    pub errors: Vec<String>,
}

impl ErrorDetail {
    /// One error at one JSON path.
    pub fn new(path: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            errors: vec![error.into()],
        }
    }
}

/// What can go wrong talking to Marathon. The HTTP variants carry
/// Marathon's message so callers can show it or act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: unknown app, task, group or deployment.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// 409: duplicate id, or the app is locked by these deployments.
    #[error("conflict: {message}")]
    Conflict {
        message: String,
        deployments: Vec<String>,
    },
    /// 401 or 403: missing or wrong credentials, or not allowed.
    #[error("unauthorized ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Any other 4xx (400 bad JSON, 422 validation, ...), with the full body.
    #[error("rejected ({status}): {}{}", body.message, details_suffix(body))]
    Invalid { status: u16, body: ErrorBody },
    /// 5xx.
    #[error("server error ({status}): {message}")]
    Server { status: u16, message: String },
    /// A status this client does not expect (e.g. a redirect without `Location`).
    #[error("unexpected response ({status}): {message}")]
    Unexpected { status: u16, message: String },
    /// The base URL or an id could not be turned into a URL.
    #[error("invalid URL: {0}")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("transport: {}", describe_transport(.0))]
    Transport(#[source] reqwest::Error),
    /// The event stream sent nothing (not even a heartbeat) for too long.
    #[error("event stream idle for {seconds} s")]
    Idle { seconds: u64 },
    /// The body was not the JSON we expected.
    #[error("decoding response: {0}")]
    Decode(#[source] serde_json::Error),
}

fn details_suffix(body: &ErrorBody) -> String {
    match &body.details {
        None => String::new(),
        Some(ErrorDetails::Text(t)) => format!(" ({t})"),
        Some(ErrorDetails::List(l)) => {
            let parts: Vec<String> = l
                .iter()
                .map(|d| format!("{}: {}", d.path, d.errors.join(", ")))
                .collect();
            format!(" ({})", parts.join("; "))
        }
    }
}

/// What went wrong with a request, cause included: reqwest's own message
/// hides it ("error sending request"), so the chain of sources is walked
/// ("connection failed: tcp connect error: Connection refused (os error
/// 111)"). The URL is left out (its query may hold a callback URL with a
/// token).
pub fn describe_transport(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_owned());
    } else if e.is_connect() {
        parts.push("connection failed".to_owned());
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    if parts.is_empty() {
        let mut text = e.to_string();
        if let Some(u) = e.url() {
            text = text.replace(u.as_str(), "<url>");
        }
        parts.push(text);
    }
    parts.join(": ")
}

impl Error {
    /// The HTTP status, for the variants that come from a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(409),
            Self::Unauthorized { status, .. }
            | Self::Invalid { status, .. }
            | Self::Server { status, .. }
            | Self::Unexpected { status, .. } => Some(*status),
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// Worth retrying later (server or transport trouble, not a client mistake).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Server { .. } | Self::Transport(_) | Self::Idle { .. } | Self::Unexpected { .. }
        )
    }

    /// Maps a non-success status and its body to an error.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let message = parsed
            .as_ref()
            .map(|b| b.message.clone())
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    text.chars().take(500).collect()
                }
            });
        match status {
            404 => Self::NotFound { message },
            409 => Self::Conflict {
                message,
                deployments: parsed
                    .and_then(|b| b.deployments)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| d.id)
                    .collect(),
            },
            401 | 403 => Self::Unauthorized { status, message },
            400..=499 => Self::Invalid {
                status,
                body: parsed.unwrap_or_else(|| ErrorBody::new(message)),
            },
            500..=599 => Self::Server { status, message },
            _ => Self::Unexpected { status, message },
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shapes() {
        let b: ErrorBody =
            serde_json::from_str(r#"{"message":"Invalid JSON","details":"unexpected end"}"#)
                .unwrap();
        assert_eq!(b, ErrorBody::invalid_json("unexpected end"));
        let v = serde_json::to_value(ErrorBody::invalid(vec![ErrorDetail::new(
            "/id",
            "error.expected.jsstring",
        )]))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"message":"Object is not valid",
                "details":[{"path":"/id","errors":["error.expected.jsstring"]}]})
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("App '/x' does not exist")).unwrap(),
            r#"{"message":"App '/x' does not exist"}"#
        );
    }

    #[test]
    fn statuses_map_to_variants() {
        let locked = br#"{"message":"App is locked","deployments":[{"id":"d1"}]}"#;
        match Error::from_response(409, locked) {
            Error::Conflict {
                message,
                deployments,
            } => {
                assert_eq!(message, "App is locked");
                assert_eq!(deployments, ["d1"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Error::from_response(404, br#"{"message":"App '/x' does not exist"}"#),
            Error::NotFound { message } if message == "App '/x' does not exist"
        ));
        let e = Error::from_response(
            422,
            br#"{"message":"Object is not valid","details":[{"path":"/cpus","errors":["bad"]}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "rejected (422): Object is not valid (/cpus: bad)"
        );
        assert!(matches!(
            Error::from_response(401, b""),
            Error::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            Error::from_response(503, b"<html>down</html>"),
            Error::Server { status: 503, message } if message == "<html>down</html>"
        ));
    }
}
