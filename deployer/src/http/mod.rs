//! The HTTP API: `POST /deploy`, `GET /services`, `GET /` (viewer),
//! `GET /health`, `GET /ping`, `GET /metrics`.

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
}

/// The bound server.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and builds the server.
    pub fn build(config: ServeConfig) -> std::io::Result<Application> {
        let marathon = Marathon::new(&config.settings.marathon).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(config.listen)?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(State {
            config,
            marathon,
            metrics: Metrics::default(),
            apply_lock: tokio::sync::Mutex::new(()),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(authorize))
                .route("/deploy", web::post().to(deploy::deploy))
                .route("/services", web::get().to(services_json))
                .route("/", web::get().to(viewer))
                .route("/health", web::get().to(health))
                .route("/ping", web::get().to(ping))
                .route("/metrics", web::get().to(metrics))
                .default_service(web::to(not_found))
        })
        .disable_signals()
        .workers(2)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` is cancelled, then stops gracefully.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = self.server;
        tokio::select! {
            r = &mut server => return r,
            _ = shutdown.cancelled() => {}
        }
        info!("stopping the HTTP server");
        let (_, r) = tokio::join!(handle.stop(true), server);
        r
    }
}

async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<State>>().cloned();
    if let Some(token) = state.as_ref().and_then(|s| s.config.auth_token.clone()) {
        let open = matches!(req.path(), "/ping" | "/health");
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !open && !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return Err(ApiError::Unauthorized.into());
        }
    }
    next.call(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn services_json(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let apps = state.marathon.apps().await.inspect_err(|_| {
        state
            .metrics
            .inc("deployer_marathon_errors_total", "unreachable_or_failed")
    })?;
    Ok(HttpResponse::Ok().json(services::view(&apps)))
}

async fn viewer(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let apps = state.marathon.apps().await?;
    let page = services::html(&services::view(&apps), state.marathon.url());
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page))
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
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(req.path().to_string()))
}
