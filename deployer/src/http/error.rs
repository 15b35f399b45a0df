//! The one error type of the HTTP API: a status and Marathon's error body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::apply::{DeployError, ServiceReport};
use crate::parse::ParseError;
use crate::spec::Detail;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Vec<Detail>,
    },
    #[error("Invalid username or password.")]
    Unauthorized,
    #[error("URI not found: {0}")]
    NotFound(String),
    #[error("app {0} does not exist")]
    AppNotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("unsupported media type {0}: send YAML or JSON")]
    UnsupportedMediaType(String),
    #[error("Object is not valid")]
    Invalid(Vec<Detail>),
    /// The manager could not be reached or failed; `applied` lists what was done.
    #[error("{message}")]
    Upstream {
        message: String,
        details: Value,
        applied: Vec<ServiceReport>,
    },
    /// The manager refused a definition (4xx): a client mistake in the document.
    #[error("{message}")]
    Rejected {
        status: u16,
        message: String,
        details: Value,
        applied: Vec<ServiceReport>,
    },
}

impl ApiError {
    fn body(&self) -> Value {
        match self {
            ApiError::BadRequest { details, .. } | ApiError::Invalid(details) => {
                json!({"message": self.to_string(), "details": details})
            }
            ApiError::Upstream {
                details, applied, ..
            }
            | ApiError::Rejected {
                details, applied, ..
            } => {
                let details = if details.is_null() {
                    json!([])
                } else {
                    details.clone()
                };
                json!({"message": self.to_string(), "details": details, "applied": applied})
            }
            _ => json!({"message": self.to_string()}),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) | ApiError::AppNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Rejected { status, .. } => match *status {
                409 => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            ParseError::Syntax {
                message,
                line,
                column,
            } => {
                let error = match (line, column) {
                    (Some(l), Some(c)) => format!("line {l}, column {c}"),
                    _ => "the document could not be read".to_string(),
                };
                ApiError::BadRequest {
                    message,
                    details: vec![Detail {
                        path: "/".into(),
                        errors: vec![error],
                    }],
                }
            }
        }
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        upstream(e, Vec::new())
    }
}

fn upstream(e: UpstreamError, applied: Vec<ServiceReport>) -> ApiError {
    let done = if applied.is_empty() {
        String::new()
    } else {
        let ids: Vec<&str> = applied.iter().map(|r| r.app_id.as_str()).collect();
        format!(" (already applied: {})", ids.join(", "))
    };
    match e {
        UpstreamError::Status {
            status,
            what,
            message,
            details,
        } if (400..500).contains(&status) && status != 401 && status != 403 => ApiError::Rejected {
            status,
            message: format!("the Marathon API refused {what}: {message}{done}"),
            details,
            applied,
        },
        UpstreamError::Status {
            status,
            what,
            message,
            details,
        } => ApiError::Upstream {
            message: format!("the Marathon API failed ({status}) on {what}: {message}{done}"),
            details,
            applied,
        },
        other => ApiError::Upstream {
            message: format!("{other}{done}"),
            details: Value::Null,
            applied,
        },
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Parse(p) => p.into(),
            DeployError::Invalid(d) => ApiError::Invalid(d),
            DeployError::Upstream { source, applied } => upstream(source, applied),
        }
    }
}
