//! One error type for the HTTP API: each variant maps to a status and
//! Marathon's error body (`{"message":..,"details":..}`). 500s never echo
//! internals; the cause is logged once here. The control plane's own error
//! ([`CoreError`]) knows nothing of HTTP; it is mapped here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::core::CoreError;

pub use crate::core::Violation;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `Invalid JSON` with the parser's text.
    #[error("Invalid JSON")]
    InvalidJson(String),
    /// 400 with a plain message.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("Invalid username or password.")]
    Unauthorized,
    /// 404 with Marathon's message.
    #[error("{0}")]
    NotFound(String),
    /// 409 duplicate.
    #[error("{0}")]
    Conflict(String),
    /// 409 app locked by deployments.
    #[error("App is locked by one or more deployments.")]
    Locked(Vec<String>),
    /// 413.
    #[error("Request body too large")]
    TooLarge,
    /// 422 `Object is not valid`.
    #[error("Object is not valid")]
    Invalid(Vec<Violation>),
    /// 503 (etcd unreachable...).
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged, never echoed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The same 404 as [`CoreError::app_not_found`].
    pub fn app_not_found(id: &str) -> Self {
        CoreError::app_not_found(id).into()
    }

    /// The same 404 as [`CoreError::task_not_found`].
    pub fn task_not_found(id: &str) -> Self {
        CoreError::task_not_found(id).into()
    }

    /// The same 422 as [`CoreError::invalid`].
    pub fn invalid(path: &str, msg: &str) -> Self {
        CoreError::invalid(path, msg).into()
    }

    /// The JSON body Marathon sends for this error.
    pub fn body(&self) -> Value {
        match self {
            Self::InvalidJson(details) => json!({"message": "Invalid JSON", "details": details}),
            Self::Locked(ids) => {
                let first = ids.first().cloned().unwrap_or_default();
                json!({
                    "message": format!("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{first}'."),
                    "deployments": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                })
            }
            Self::Invalid(violations) => json!({
                "message": "Object is not valid",
                "details": violations.iter().map(|v| json!({"path": v.path, "errors": v.errors})).collect::<Vec<_>>(),
            }),
            Self::Internal(_) => json!({"message": "An unexpected server error occurred."}),
            other => json!({"message": other.to_string()}),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::Locked(_) => StatusCode::CONFLICT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(%cause, "request failed");
        }
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidJson(details) => ApiError::InvalidJson(details),
            CoreError::BadRequest(m) => ApiError::BadRequest(m),
            CoreError::NotFound(m) => ApiError::NotFound(m),
            CoreError::Conflict(m) => ApiError::Conflict(m),
            CoreError::Locked(ids) => ApiError::Locked(ids),
            CoreError::Invalid(v) => ApiError::Invalid(v),
            CoreError::Store(e) => e.into(),
            CoreError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<crate::state_store::StoreError> for ApiError {
    fn from(e: crate::state_store::StoreError) -> Self {
        use crate::state_store::StoreError;
        match e {
            // Refused before anything was written: the client sends less.
            StoreError::TooLarge(why) => ApiError::Invalid(vec![Violation::new(
                "/",
                format!("{why}; nothing was changed, send fewer or smaller apps per request"),
            )]),
            StoreError::Key(_) | StoreError::Encode { .. } => ApiError::Internal(e.to_string()),
            StoreError::Etcd(_) => {
                tracing::error!(error = %e, "etcd");
                ApiError::Unavailable(format!("state store unavailable: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_statuses() {
        let cases: Vec<(ApiError, u16, Value)> = vec![
            (
                ApiError::app_not_found("/x"),
                404,
                json!({"message":"App '/x' does not exist"}),
            ),
            (
                ApiError::InvalidJson("eof".into()),
                400,
                json!({"message":"Invalid JSON","details":"eof"}),
            ),
            (
                ApiError::invalid("/id", "bad"),
                422,
                json!({"message":"Object is not valid","details":[{"path":"/id","errors":["bad"]}]}),
            ),
            (
                ApiError::Unauthorized,
                401,
                json!({"message":"Invalid username or password."}),
            ),
            (
                ApiError::Internal("secret".into()),
                500,
                json!({"message":"An unexpected server error occurred."}),
            ),
        ];
        for (err, status, body) in cases {
            assert_eq!(err.status_code().as_u16(), status);
            assert_eq!(err.body(), body);
        }
        let locked = ApiError::Locked(vec!["d1".into()]).body();
        assert_eq!(locked["deployments"], json!([{"id":"d1"}]));
        assert!(locked["message"]
            .as_str()
            .unwrap()
            .contains("/v2/deployments/d1"));
    }

    #[test]
    fn core_errors_map_to_statuses() {
        let cases: Vec<(CoreError, u16)> = vec![
            (CoreError::InvalidJson("eof".into()), 400),
            (CoreError::BadRequest("no apps given".into()), 400),
            (CoreError::app_not_found("/x"), 404),
            (CoreError::Conflict("dup".into()), 409),
            (CoreError::Locked(vec!["d1".into()]), 409),
            (CoreError::invalid("/id", "bad"), 422),
            (CoreError::Internal("bug".into()), 500),
        ];
        for (core, status) in cases {
            let what = format!("{core:?}");
            let api = ApiError::from(core);
            assert_eq!(api.status_code().as_u16(), status, "{what}");
        }
        assert_eq!(
            ApiError::from(CoreError::app_not_found("/x")).body(),
            ApiError::app_not_found("/x").body()
        );
    }
}
