//! HTTP surface: `POST /callback` (callback mode only), `GET|POST /cleanup`,
//! `GET /info`, `GET /health`, `GET /metrics`, `GET /ping`.
//!
//! With `--auth-token`, every route but `/ping` and `/health` needs
//! `Authorization: Bearer <token>`; `POST /callback` also takes the token
//! as its `token` query parameter, which is how Marathon's deliveries carry
//! it (Marathon cannot add headers to callbacks, so the subscriber
//! subscribes its callback URL with `?token=...`). Compared in constant time.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::Mode;
use crate::intake::accept;
use crate::metrics::Metrics;
use crate::record_store::Instance;
use crate::resync::CleanupRequest;
use crate::writer::EventSink;

pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub sink: EventSink,
    pub cleanup: mpsc::Sender<CleanupRequest>,
    pub registry: registry::Registry,
    pub resync_interval: Duration,
    pub auth_token: Option<String>,
    /// The deployer's dashboard, linked from /info.
    pub dashboard_url: Option<String>,
}

/// Marathon's error body with the right status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String, Vec<String>),
    #[error("Invalid username or password.")]
    Unauthorized,
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: String,
    details: &'a [String],
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let details: &[String] = match self {
            ApiError::BadRequest(_, d) => d,
            _ => &[],
        };
        HttpResponse::build(self.status_code()).json(ErrorBody {
            message: self.to_string(),
            details,
        })
    }
}

/// The routes; `POST /callback` only in callback mode (in SSE mode nothing
/// may post events: 404).
pub fn routes(cfg: &mut web::ServiceConfig, mode: Mode) {
    cfg.route("/ping", web::get().to(ping))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/cleanup", web::get().to(cleanup))
        .route("/cleanup", web::post().to(cleanup))
        .route("/info", web::get().to(info));
    if mode == Mode::Callback {
        cfg.route(CALLBACK_PATH, web::post().to(callback));
    }
}

/// Where events are posted in callback mode.
pub const CALLBACK_PATH: &str = "/callback";

/// The query parameter carrying the token on callback deliveries.
pub const TOKEN_PARAM: &str = "token";

/// Bearer-token check on every route except `/ping` and `/health`.
pub async fn auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let open = daemon::http::is_open_path(req.path());
    if let (Some(state), false) = (state, open) {
        if let Some(token) = &state.auth_token {
            let bearer = daemon::http::bearer_ok(req.headers(), token);
            let in_query = || {
                req.path() == CALLBACK_PATH
                    && url::form_urlencoded::parse(req.query_string().as_bytes())
                        .filter(|(k, _)| k == TOKEN_PARAM)
                        .any(|(_, v)| {
                            daemon::http::constant_time_eq(v.as_bytes(), token.as_bytes())
                        })
            };
            if !bearer && !in_query() {
                let refused = daemon::http::unauthorized();
                return Ok(req.into_response(refused).map_into_right_body());
            }
        }
    }
    next.call(req).await.map(|r| r.map_into_left_body())
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("pong")
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    match state.metrics.health(state.resync_interval) {
        Ok(msg) => HttpResponse::Ok().content_type("text/plain").body(msg),
        Err(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(why),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(daemon::metrics::CONTENT_TYPE)
        .body(state.metrics.render())
}

async fn callback(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::BadRequest("Invalid JSON".into(), vec!["body is not UTF-8".into()])
    })?;
    accept(text, &state.sink, &state.metrics)
        .map_err(|e| ApiError::BadRequest("Invalid JSON".into(), vec![e]))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"accepted": true})))
}

#[derive(Deserialize)]
struct CleanupQuery {
    dry_run: Option<String>,
}

#[derive(Serialize)]
struct CleanupBody {
    added: usize,
    updated: usize,
    removed: usize,
    unchanged: usize,
    took_ms: u64,
    dry_run: bool,
}

/// How long `/cleanup` waits for etcd to answer a one-key read before it
/// answers 503 (nothing is queued then).
const CLEANUP_PROBE: Duration = Duration::from_secs(3);

/// The longest `/cleanup` waits for its resync (Marathon and etcd both
/// answering slowly, or etcd lost mid-way) before it answers 503; the resync
/// itself goes on.
const CLEANUP_BOUND: Duration = Duration::from_secs(30);

/// A one-key read (the prefix itself, keys only), bounded by
/// [`CLEANUP_PROBE`]: not a range, which etcd would walk to count every
/// record. Any answer from etcd (an expired auth token or a refused key
/// included: the resync re-authenticates) counts; no connection or no
/// answer does not.
async fn etcd_answers(registry: &registry::Registry) -> Result<(), String> {
    let mut client = registry.client();
    let options = registry::etcd_client::GetOptions::new().with_keys_only();
    match tokio::time::timeout(CLEANUP_PROBE, client.get(registry.prefix(), Some(options))).await {
        Ok(Ok(_)) => Ok(()),
        // gRPC codes 2 (unknown), 4 (deadline exceeded) and 14
        // (unavailable) are what a lost connection gives.
        Ok(Err(registry::etcd_client::Error::GRpcStatus(s)))
            if !matches!(i32::from(s.code()), 2 | 4 | 14) =>
        {
            Ok(())
        }
        Ok(Err(e)) => Err(format!("etcd: {e}")),
        Err(_) => Err(format!(
            "etcd did not answer within {} s",
            CLEANUP_PROBE.as_secs()
        )),
    }
}

async fn cleanup(
    state: web::Data<AppState>,
    q: web::Query<CleanupQuery>,
) -> Result<HttpResponse, ApiError> {
    let dry_run = match q.dry_run.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(
                "Invalid query parameter".into(),
                vec![format!("dry_run must be true or false, not {other:?}")],
            ))
        }
    };
    let started = Instant::now();
    etcd_answers(&state.registry)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cleanup not started: {e}")))?;
    tracing::debug!(
        probe_ms = started.elapsed().as_millis() as u64,
        "cleanup: etcd answers"
    );
    let (reply, rx) = oneshot::channel();
    let resync = async {
        state
            .cleanup
            .send(CleanupRequest { dry_run, reply })
            .await
            .map_err(|_| ApiError::Unavailable("shutting down".into()))?;
        rx.await
            .map_err(|_| ApiError::Unavailable("shutting down".into()))?
            .map_err(|e| ApiError::Unavailable(format!("resync failed: {e}")))
    };
    let summary = tokio::time::timeout(CLEANUP_BOUND, resync)
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "the resync did not finish within {} s (is etcd or Marathon unreachable?)",
                CLEANUP_BOUND.as_secs()
            ))
        })??;
    Ok(HttpResponse::Ok().json(CleanupBody {
        added: summary.added,
        updated: summary.updated,
        removed: summary.removed,
        unchanged: summary.unchanged,
        took_ms: started.elapsed().as_millis() as u64,
        dry_run,
    }))
}

async fn info(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let snap = state
        .registry
        .list_all()
        .await
        .map_err(|e| ApiError::Unavailable(format!("etcd: {e}")))?;
    let records: Vec<&Instance> = snap.instances().collect();
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "instances": records })));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(info_html(&records, state.dashboard_url.as_deref())))
}

/// The `/info` page: one row per container, `name=host:port` per port.
/// `dashboard`: the deployer's dashboard, linked at the top.
pub fn info_html(records: &[&Instance], dashboard: Option<&str>) -> String {
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>subscriber: registry</title>\
         <style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style>\
         </head><body><h1>Registered instances</h1>",
    );
    if let Some(url) = dashboard {
        let _ = write!(
            s,
            "<p>The registry's own view. Services, health and deployments: <a id=\"dashboard-link\" href=\"{}\">the dashboard</a>.</p>",
            esc(url)
        );
    }
    let _ = write!(s, "<p>{} instance(s)</p>", records.len());
    s.push_str("<table><tr><th>service</th><th>group</th><th>container</th><th>ports (host:port)</th><th>internal</th><th>healthy</th><th>owner</th></tr>");
    for r in records {
        let ports: Vec<String> = r
            .ports
            .iter()
            .map(|(name, p)| format!("{}={}:{}", esc(name), esc(&r.host), p.external))
            .collect();
        let internal: Vec<String> = match &r.internal_address {
            Some(ip) => r
                .ports
                .iter()
                .map(|(name, p)| format!("{}={}:{}", esc(name), esc(ip), p.exposed))
                .collect(),
            None => Vec::new(),
        };
        let healthy = match r.healthy {
            None => "-",
            Some(true) => "yes",
            Some(false) => "no",
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.service),
            esc(&r.group),
            esc(&r.container),
            ports.join("<br>"),
            internal.join("<br>"),
            healthy,
            esc(&r.owner)
        );
    }
    s.push_str("</table></body></html>");
    s
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
