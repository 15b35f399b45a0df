//! The Marathon v2 HTTP API, split by resource. Handlers are thin: parse the
//! request, call [`crate::core::Core`], shape the response with the
//! `marathon` crate's types.

use std::sync::Arc;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::core::Core;
use crate::error::ApiError;
use crate::state::DeploymentRecord;
use crate::validation;

pub mod apps;
pub mod deployments;
pub mod groups;
pub mod system;
pub mod tasks;

pub type CoreData = web::Data<Arc<Core>>;

/// Registers every control-plane route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    system::configure(cfg);
    apps::configure(cfg);
    tasks::configure(cfg);
    deployments::configure(cfg);
    groups::configure(cfg);
}

/// `{"<key>": value}` without building a `serde_json::Value` tree first.
pub fn wrap<'a, T: serde::Serialize>(key: &'static str, value: &'a T) -> Wrapped<'a, T> {
    Wrapped { key, value }
}

pub struct Wrapped<'a, T> {
    key: &'static str,
    value: &'a T,
}

impl<T: serde::Serialize> serde::Serialize for Wrapped<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.key, self.value)?;
        m.end()
    }
}

/// The query string as ordered pairs (repeated keys kept).
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn of(req: &HttpRequest) -> Query {
        Query(
            url::form_urlencoded::parse(req.query_string().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean flag (`true`/`True`/`false`/`False`...); bad value -> 400.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some("") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "Invalid value for query parameter {key}: {v:?}"
            ))),
        }
    }

    /// `scale` and `force` of a task kill (both default false); `wipe` with
    /// `scale` is refused.
    pub fn kill_flags(&self) -> Result<(bool, bool), ApiError> {
        let scale = self.flag("scale", false)?;
        let force = self.flag("force", false)?;
        if scale && self.flag("wipe", false)? {
            return Err(ApiError::bad_request(
                "You cannot use scale and wipe at the same time.",
            ));
        }
        Ok((scale, force))
    }
}

/// Reads the body up to the configured limit (413 beyond it).
pub async fn read_body(
    core: &Core,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<bytes::Bytes, ApiError> {
    daemon::http::read_body(req, payload, core.cfg.max_body)
        .await
        .map_err(|e| match e {
            daemon::http::BodyError::TooLarge { .. } => ApiError::TooLarge,
            daemon::http::BodyError::Read(e) => ApiError::bad_request(format!("reading body: {e}")),
        })
}

/// The `force` query flag (default false) and the body as JSON: what every
/// write that starts a deployment reads first, in this order.
pub async fn force_and_body(
    core: &Core,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(bool, serde_json::Value), ApiError> {
    let force = Query::of(req).flag("force", false)?;
    let body = validation::parse_json(&read_body(core, req, payload).await?)?;
    Ok((force, body))
}

/// The answer to a change that started deployment `d`: `status`, the
/// `Marathon-Deployment-Id` header, `Location` when given, and the
/// deployment's id and version as the body.
pub fn deployment_response(
    status: StatusCode,
    d: &DeploymentRecord,
    location: Option<&str>,
) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    b.insert_header(("Marathon-Deployment-Id", d.id.clone()));
    if let Some(l) = location {
        b.insert_header((header::LOCATION, l.to_string()));
    }
    b.json(Core::deployment_result(d))
}

/// Client address for `api_post_event`.
pub fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// 404 for unknown routes, with Marathon 1.6's body.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::uri_not_found(req.path()).error_response()
}

/// Bearer-token check (every route but `/ping` and `/health`).
pub fn authorised(token: Option<&str>, req: &ServiceRequest) -> bool {
    let Some(token) = token else { return true };
    daemon::http::is_open_path(req.path()) || daemon::http::bearer_ok(req.headers(), token)
}

/// Counts requests and 4xx/5xx answers for `/metrics`.
pub fn count(core: &Core, res: &ServiceResponse) {
    use std::sync::atomic::Ordering;
    core.counters.http_requests.fetch_add(1, Ordering::Relaxed);
    if res.status().is_client_error() || res.status().is_server_error() {
        core.counters.http_errors.fetch_add(1, Ordering::Relaxed);
    }
}
