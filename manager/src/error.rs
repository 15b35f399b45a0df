//! One error type for the HTTP API: each variant maps to a status and
//! Marathon's error body (`{"message":..,"details":..}`). 500s never echo
//! internals; the cause is logged once here. The control plane's own error
//! ([`CoreError`]) knows nothing of HTTP; it is mapped here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::core::CoreError;
use crate::state_store::StoreError;

pub use crate::core::Violation;

/// What a request can fail with: everything the control plane refuses
/// ([`CoreError`], mapped to a status in one place, [`ApiError::status_code`]
/// and [`ApiError::body`]), plus the two refusals only HTTP knows.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400, 404, 409, 422, 500 or 503 by the core's variant.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// 401.
    #[error("Invalid username or password.")]
    Unauthorized,
    /// 413.
    #[error("Request body too large")]
    TooLarge,
}

impl ApiError {
    /// 400 with a plain message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        CoreError::BadRequest(message.into()).into()
    }

    /// 400 `Invalid JSON` with the parser's text.
    pub fn invalid_json(details: impl Into<String>) -> Self {
        CoreError::InvalidJson(details.into()).into()
    }

    /// 404 with Marathon's message.
    pub fn not_found(message: impl Into<String>) -> Self {
        CoreError::NotFound(message.into()).into()
    }

    /// 404 for a path no route answers, with Marathon 1.6's body.
    pub fn uri_not_found(path: &str) -> Self {
        Self::not_found(format!("URI not found: {path}"))
    }

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
        let Self::Core(core) = self else {
            return json!({"message": self.to_string()});
        };
        match core {
            CoreError::InvalidJson(details) => {
                json!({"message": "Invalid JSON", "details": details})
            }
            CoreError::Locked(ids) => {
                let first = ids.first().cloned().unwrap_or_default();
                json!({
                    "message": format!("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{first}'."),
                    "deployments": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                })
            }
            CoreError::Invalid(violations) => invalid_body(violations),
            // Refused before anything was written: the client sends less.
            CoreError::Store(StoreError::TooLarge(why)) => invalid_body(&[Violation::new(
                "/",
                format!("{why}; nothing was changed, send fewer or smaller apps per request"),
            )]),
            CoreError::Store(e @ StoreError::Etcd(_)) => {
                json!({"message": format!("state store unavailable: {e}")})
            }
            CoreError::Store(_) | CoreError::Internal(_) => {
                json!({"message": "An unexpected server error occurred."})
            }
            other => json!({"message": other.to_string()}),
        }
    }
}

/// `422 Object is not valid` with every violation.
fn invalid_body(violations: &[Violation]) -> Value {
    json!({
        "message": "Object is not valid",
        "details": violations.iter().map(|v| json!({"path": v.path, "errors": v.errors})).collect::<Vec<_>>(),
    })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        let core = match self {
            Self::Unauthorized => return StatusCode::UNAUTHORIZED,
            Self::TooLarge => return StatusCode::PAYLOAD_TOO_LARGE,
            Self::Core(core) => core,
        };
        match core {
            CoreError::InvalidJson(_) | CoreError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CoreError::NotFound(_) => StatusCode::NOT_FOUND,
            CoreError::Conflict(_) | CoreError::Locked(_) => StatusCode::CONFLICT,
            CoreError::Invalid(_) | CoreError::Store(StoreError::TooLarge(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            CoreError::Store(StoreError::Etcd(_)) => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::Store(_) | CoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // The cause, once: 500 bodies never carry it.
            tracing::error!(cause = %self, status = status.as_u16(), "request failed");
        }
        HttpResponse::build(status).json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        CoreError::Store(e).into()
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
                ApiError::invalid_json("eof"),
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
                ApiError::from(CoreError::Internal("secret".into())),
                500,
                json!({"message":"An unexpected server error occurred."}),
            ),
        ];
        for (err, status, body) in cases {
            assert_eq!(err.status_code().as_u16(), status);
            assert_eq!(err.body(), body);
        }
        let locked = ApiError::from(CoreError::Locked(vec!["d1".into()])).body();
        assert_eq!(locked["deployments"], json!([{"id":"d1"}]));
        assert!(locked["message"]
            .as_str()
            .unwrap()
            .contains("/v2/deployments/d1"));
    }

    /// A store error of `kind` over a registry error.
    fn store(kind: fn(Box<registry::Error>) -> StoreError) -> StoreError {
        kind(Box::new(registry::Error::InvalidSettings("x".into())))
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
            (CoreError::Store(store(StoreError::TooLarge)), 422),
            (CoreError::Store(store(StoreError::Etcd)), 503),
            (CoreError::Store(store(StoreError::Key)), 500),
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
        let too_large = ApiError::from(store(StoreError::TooLarge)).body();
        assert_eq!(too_large["details"][0]["path"], "/");
        let unavailable = ApiError::from(store(StoreError::Etcd)).body();
        assert!(unavailable["message"]
            .as_str()
            .unwrap()
            .starts_with("state store unavailable: "));
        assert_eq!(
            ApiError::from(store(StoreError::Key)).body(),
            json!({"message":"An unexpected server error occurred."})
        );
    }
}
