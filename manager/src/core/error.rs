//! The control plane's error type: what went wrong in a change, in terms a
//! caller can act on. It knows nothing of HTTP; the API layer maps each
//! variant to a status and Marathon's body (`From<CoreError> for ApiError`
//! in [`crate::error`]).

use crate::state_store::StoreError;

/// One validation failure: a JSON path and its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub errors: Vec<String>,
}

impl Violation {
    pub fn new(path: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            errors: vec![error.into()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The body is not JSON, or not of the expected JSON type (the parser's text).
    #[error("Invalid JSON")]
    InvalidJson(String),
    /// A request that makes no sense as a whole (e.g. no apps given).
    #[error("{0}")]
    BadRequest(String),
    /// Something named does not exist (Marathon's message).
    #[error("{0}")]
    NotFound(String),
    /// A duplicate (Marathon's message).
    #[error("{0}")]
    Conflict(String),
    /// The apps are locked by these deployments (no `force`).
    #[error("App is locked by one or more deployments.")]
    Locked(Vec<String>),
    /// The definition is not valid: every violation found.
    #[error("Object is not valid")]
    Invalid(Vec<Violation>),
    /// The state store refused or could not be reached; nothing was changed
    /// unless the store says otherwise.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an impossible state; never shown to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub fn app_not_found(id: &str) -> Self {
        Self::NotFound(format!("App '{id}' does not exist"))
    }

    pub fn task_not_found(id: &str) -> Self {
        Self::NotFound(format!("Task '{id}' does not exist"))
    }

    pub fn invalid(path: &str, msg: &str) -> Self {
        Self::Invalid(vec![Violation::new(path, msg)])
    }
}
