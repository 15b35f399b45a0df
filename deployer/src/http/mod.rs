//! The HTTP API: `POST /deploy` (`?dry_run=true`: the plan only),
//! `POST /scale`, `POST /restart`, `POST /remove`, `GET /services`, `GET /health`,
//! `GET /ping`, `GET /metrics`, and the dashboard's routes
//! ([`crate::dashboard`]: `GET /` and `/dashboard/...`).

mod actions;
mod deploy;
pub mod error;

use std::net::TcpListener;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ServeConfig;
use crate::dashboard::{self, cluster::Cluster, Board};
use crate::metrics::Metrics;
use crate::services;
use crate::upstream::Marathon;
use error::ApiError;

/// Shared by every request.
pub struct State {
    pub config: ServeConfig,
    pub marathon: Marathon,
    pub metrics: Metrics,
    /// Serialises deploys.
    pub apply_lock: tokio::sync::Mutex<()>,
    /// The dashboard's door to Marathon and the registry, and its event relay.
    pub board: Board,
}

/// The bound server.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: web::Data<State>,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and builds the server.
    pub fn build(config: ServeConfig) -> std::io::Result<Application> {
        let marathon = Marathon::new(&config.settings.marathon).map_err(std::io::Error::other)?;
        let cluster = Cluster::new(&config.settings.marathon, config.registry.clone())
            .map_err(std::io::Error::other)?;
        let board = Board::new(cluster, config.registry_view_url.clone())?;
        let listener = TcpListener::bind(config.listen)?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(State {
            config,
            marathon,
            metrics: Metrics::default(),
            apply_lock: tokio::sync::Mutex::new(()),
            board,
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(from_fn(authorize))
                .route("/deploy", web::post().to(deploy::deploy))
                .route("/scale", web::post().to(actions::scale))
                .route("/restart", web::post().to(actions::restart))
                .route("/remove", web::post().to(actions::remove))
                .route("/services", web::get().to(services_json))
                .configure(dashboard::configure)
                .route("/health", web::get().to(health))
                .route("/ping", web::get().to(ping))
                .route("/metrics", web::get().to(metrics))
                .default_service(web::to(not_found))
        })
        .disable_signals()
        // Every response and dashboard SSE frame goes out when written
        // (Nagle's algorithm would hold it for the client's delayed ACK).
        .tcp_nodelay(true)
        .workers(2)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves (and relays Marathon's events to the dashboard's pages) until
    /// `shutdown` is cancelled, then stops gracefully: the pages' event
    /// streams end first, so they do not hold the stop.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = self.server;
        let state = self.state;
        let streams_end = state.board.streams_end.clone();
        let serve = async move {
            let ended = tokio::select! {
                r = &mut server => Some(r),
                _ = shutdown.cancelled() => None,
            };
            streams_end.cancel();
            if let Some(r) = ended {
                return r;
            }
            info!("stopping the HTTP server");
            let (_, r) = tokio::join!(handle.stop(true), server);
            r
        };
        let (r, ()) = tokio::join!(serve, state.board.run_relay());
        r
    }
}

async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<State>>().cloned();
    if let Some(state) = state.filter(|s| s.config.auth_token.is_some()) {
        let token = state.config.auth_token.as_deref().unwrap_or_default();
        let method = req.method().clone();
        let open = daemon::http::is_open_path(req.path())
            || dashboard::login::is_open(&method, req.path());
        let bearer = daemon::http::bearer_ok(req.headers(), token);
        // A signed-in browser may read the dashboard (never act: actions need the bearer).
        let session = || {
            let cookies = req.headers().get("cookie").and_then(|v| v.to_str().ok());
            dashboard::login::session_allows(
                &method,
                dashboard::login::cookie_value(cookies),
                &state.board.session_secret,
            )
        };
        if !open && !bearer && !session() {
            let accept = req.headers().get("accept").and_then(|v| v.to_str().ok());
            if dashboard::login::is_page(&method, req.path(), accept) {
                let form = dashboard::login::form(actix_web::http::StatusCode::UNAUTHORIZED, None);
                return Ok(req.into_response(form).map_into_right_body());
            }
            let refused = daemon::http::unauthorized();
            return Ok(req.into_response(refused).map_into_right_body());
        }
    }
    next.call(req).await.map(|r| r.map_into_left_body())
}

async fn services_json(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let apps = state.marathon.apps().await.inspect_err(|_| {
        state
            .metrics
            .inc("deployer_marathon_errors_total", "unreachable_or_failed")
    })?;
    Ok(HttpResponse::Ok().json(services::view(&apps)))
}

/// Healthy when the Marathon API answers: the deployer is useless without it.
async fn health(state: web::Data<State>) -> HttpResponse {
    match state.marathon.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok", "marathon": "reachable"})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unhealthy", "marathon": e.to_string()})),
    }
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("pong")
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(daemon::metrics::CONTENT_TYPE)
        .body(state.metrics.render())
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(req.path().to_string()))
}
