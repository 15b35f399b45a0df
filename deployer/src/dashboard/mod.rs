//! The dashboard at `/`: every service with its health colour, endpoints
//! from the registry, deployments in progress, each service's tasks with
//! their health checks, log lines and registry records, and a strip of the
//! latest events, kept live by one shared `/v2/events` relay (SSE).
//!
//! Routes: `GET /` (the page), `GET /dashboard/live` (the part the script
//! swaps in after an event), `GET /dashboard/app?id=` (one service's tasks;
//! `&fragment=1` without the page around it), `GET /dashboard/events`
//! (SSE), the sign-in of a token-protected deployer ([`login`]) and the
//! page's two assets. Marathon and the registry are reached
//! only through [`cluster::Cluster`].

pub mod cluster;
pub mod login;
pub mod model;
pub mod relay;
pub mod render;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use futures::future::join_all;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::http::State;
use cluster::Cluster;
use model::Dashboard;
use relay::Relay;
use render::{Shell, TaskDetail};

const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// Most tasks whose log lines one opened service shows.
const MAX_LOGS: usize = 25;

/// What the dashboard shares between requests.
pub struct Board {
    pub cluster: Arc<Cluster>,
    pub relay: Arc<Relay>,
    /// Ends every page's event stream (shutdown).
    pub streams_end: CancellationToken,
    /// The subscriber's `/info`, linked from the page.
    pub registry_view: Option<String>,
    /// The session cookie's value for a token-protected deployer ([`login`]).
    pub session_secret: String,
}

impl Board {
    pub fn new(cluster: Cluster, registry_view: Option<String>) -> std::io::Result<Board> {
        Ok(Board {
            cluster: Arc::new(cluster),
            relay: Arc::new(Relay::default()),
            streams_end: CancellationToken::new(),
            registry_view,
            session_secret: login::new_secret()?,
        })
    }

    /// Pumps Marathon's events to the pages until `streams_end` is cancelled.
    pub async fn run_relay(&self) {
        self.relay
            .clone()
            .run(self.cluster.clone(), self.streams_end.clone())
            .await
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/dashboard/live", web::get().to(live))
        .route("/dashboard/app", web::get().to(app))
        .route("/dashboard/events", web::get().to(events))
        .route("/dashboard/login", web::get().to(login::show))
        .route("/dashboard/login", web::post().to(login::sign_in))
        .route("/dashboard/app.js", web::get().to(script))
        .route("/dashboard/style.css", web::get().to(style));
}

fn shell<'a>(state: &'a State, marathon_url: &'a str) -> Shell<'a> {
    Shell {
        marathon_url,
        registry_view: state.board.registry_view.as_deref(),
        token_required: state.config.auth_token.is_some(),
    }
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// The Marathon API failed: a page that says so (the script keeps trying).
fn unavailable(state: &State, e: &marathon::Error) -> HttpResponse {
    state
        .metrics
        .inc("deployer_marathon_errors_total", "unreachable_or_failed");
    HttpResponse::BadGateway()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mdo dashboard</title>\
<link rel=\"stylesheet\" href=\"/dashboard/style.css\"></head><body><main>\
<p class=\"warning\" id=\"marathon-error\">The Marathon API at <code>{}</code> could not be read: {}</p>\
<p><a href=\"/\">Try again</a></p></main></body></html>\n",
            render::esc(&state.board.cluster.marathon_url()),
            render::esc(&e.to_string())
        ))
}

async fn dashboard(state: &State) -> Result<Dashboard, marathon::Error> {
    let snapshot = state.board.cluster.snapshot().await?;
    Ok(model::build(&snapshot))
}

async fn index(state: web::Data<State>) -> HttpResponse {
    match dashboard(&state).await {
        Ok(d) => {
            let url = state.board.cluster.marathon_url();
            html(render::page(
                &d,
                &state.board.relay.recent(),
                &state.board.relay.upstream(),
                &shell(&state, &url),
            ))
        }
        Err(e) => unavailable(&state, &e),
    }
}

async fn live(state: web::Data<State>) -> HttpResponse {
    match dashboard(&state).await {
        Ok(d) => html(render::live_region(&d)),
        Err(e) => unavailable(&state, &e),
    }
}

/// `GET /dashboard/app`'s query string.
#[derive(serde::Deserialize)]
struct AppQuery {
    id: Option<String>,
    fragment: Option<String>,
}

async fn app(
    state: web::Data<State>,
    query: Result<web::Query<AppQuery>, actix_web::Error>,
) -> HttpResponse {
    let query = match query {
        Ok(q) => q.into_inner(),
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(serde_json::json!({"message": format!("query string: {e}")}))
        }
    };
    let Some(app_id) = query.id.filter(|id| !id.is_empty()) else {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"message": "query parameter id (the app id) is required"}));
    };
    let fragment = query.fragment.is_some_and(|v| v == "1" || v == "true");
    let snapshot = match state.board.cluster.snapshot().await {
        Ok(s) => s,
        Err(e) => return unavailable(&state, &e),
    };
    let d = model::build(&snapshot);
    let row = d.services.iter().find(|s| s.view.app_id == app_id);
    let app_json = snapshot.apps.get(&app_id);
    let records: &[registry::Instance] = match &snapshot.registry {
        Some(Ok(r)) => r,
        _ => &[],
    };
    let raw_tasks: Vec<&serde_json::Value> = app_json
        .and_then(|a| a.get("tasks"))
        .and_then(|t| t.as_array())
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    let logs = join_all(raw_tasks.iter().enumerate().map(|(i, t)| {
        let id = t
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let cluster = state.board.cluster.clone();
        async move {
            if i >= MAX_LOGS {
                return Err(format!("only the first {MAX_LOGS} tasks show their log"));
            }
            cluster.task_log(&id).await
        }
    }))
    .await;
    let mut tasks: Vec<TaskDetail> = Vec::with_capacity(raw_tasks.len());
    for (t, log) in raw_tasks.iter().zip(logs) {
        let s = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let id = s("id");
        let view_task = row.and_then(|r| r.view.tasks.iter().find(|vt| vt.id == id));
        let ports = match view_task {
            Some(vt) => vt
                .endpoints
                .iter()
                .map(|(name, hp)| {
                    format!("{name}={}", hp.rsplit_once(':').map(|x| x.1).unwrap_or(hp))
                })
                .collect(),
            None => Vec::new(),
        };
        let record = records
            .iter()
            .find(|r| r.container == id)
            .and_then(|r| serde_json::to_string_pretty(r).ok());
        tasks.push(TaskDetail {
            host: s("host"),
            ports,
            state: s("state"),
            started: s("startedAt"),
            health: t
                .get("healthCheckResults")
                .and_then(|h| h.as_array())
                .cloned()
                .unwrap_or_default(),
            log,
            record,
            id,
        });
    }
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let detail = render::app_detail(row, &app_id, &tasks);
    if fragment {
        return html(detail);
    }
    let url = state.board.cluster.marathon_url();
    let status = if row.is_some() {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::NOT_FOUND
    };
    let mut resp = html(render::app_page(
        &detail,
        &app_id,
        &state.board.relay.upstream(),
        &shell(&state, &url),
    ));
    *resp.status_mut() = status;
    resp
}

/// The page's live stream: the upstream's state first, then every relayed
/// frame, with a comment every [`relay::HEARTBEAT`]. Ends at shutdown.
async fn events(state: web::Data<State>) -> HttpResponse {
    let board = &state.board;
    let rx = board.relay.subscribe();
    // A page reconnects 1 s after losing the stream.
    let first = format!("retry: 1000\n\n{}", board.relay.upstream_frame());
    let end = board.streams_end.clone();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + relay::HEARTBEAT,
        relay::HEARTBEAT,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures::stream::unfold(
        (rx, Some(first), tick, end),
        |(mut rx, mut first, mut tick, end)| async move {
            if let Some(f) = first.take() {
                return Some((Ok(web::Bytes::from(f)), (rx, None, tick, end)));
            }
            let chunk: String = tokio::select! {
                _ = end.cancelled() => return None,
                r = rx.recv() => match r {
                    Ok(frame) => frame.to_string(),
                    // Too slow a reader: tell it to refresh instead.
                    Err(RecvError::Lagged(_)) => relay::frame("changed", &serde_json::json!({"eventType": "lagged"})),
                    Err(RecvError::Closed) => return None,
                },
                _ = tick.tick() => ": heartbeat\n\n".to_string(),
            };
            Some((
                Ok::<_, actix_web::Error>(web::Bytes::from(chunk)),
                (rx, None, tick, end),
            ))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SCRIPT)
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(STYLE)
}
