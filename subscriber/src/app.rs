//! Wiring: [`Application::build`] connects, binds the listener (port 0
//! works) and prepares every task; [`Application::run_until_stopped`] runs
//! them until the shutdown token fires, then stops gracefully.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware::from_fn, web, App, HttpServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::config::{Config, Mode};
use crate::http::{self, AppState};
use crate::intake;
use crate::metrics::Metrics;
use crate::record_store::EtcdStore;
use crate::resync::{CleanupRequest, ResyncDriver};
use crate::writer::{Channels, Writer, WriterConfig};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid Marathon URL: {0}")]
    MarathonUrl(#[source] marathon::Error),
    #[error("etcd: {0}")]
    Registry(#[from] registry::Error),
    #[error("http server: {0}")]
    Server(#[source] std::io::Error),
    #[error("{0} stopped unexpectedly")]
    TaskDied(&'static str),
}

pub struct Application {
    port: u16,
    config: Config,
    server: actix_web::dev::Server,
    writer: Writer<EtcdStore, marathon::Client>,
    channels: Channels,
    cleanup_rx: mpsc::Receiver<CleanupRequest>,
    api: marathon::Client,
    metrics: Arc<Metrics>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, AppError> {
        let registry = registry::Registry::connect(&config.etcd).await?;
        let api = crate::source::client(&config.marathon_url, config.marathon_token.clone())
            .map_err(AppError::MarathonUrl)?;
        let metrics = Arc::new(Metrics::default());
        let (writer, channels) = Writer::new(
            EtcdStore {
                registry: registry.clone(),
            },
            Arc::new(api.clone()),
            WriterConfig {
                owner: config.owner.clone(),
                require_healthy: config.require_healthy,
                tombstone_ttl: (config.resync_interval * 3).max(Duration::from_secs(600)),
            },
            metrics.clone(),
            config.queue_capacity,
        );
        let (cleanup_tx, cleanup_rx) = mpsc::channel(16);
        let state = web::Data::new(AppState {
            metrics: metrics.clone(),
            sink: channels.sink.clone(),
            cleanup: cleanup_tx,
            registry,
            resync_interval: config.resync_interval,
            auth_token: config.auth_token.clone(),
            dashboard_url: config.dashboard_url.clone(),
        });
        let listener = TcpListener::bind(config.listen).map_err(|source| AppError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        let port = listener.local_addr().map_err(AppError::Server)?.port();
        let mode = config.mode;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
                .wrap(from_fn(http::auth))
                .configure(|c| http::routes(c, mode))
        })
        .disable_signals()
        // Answers go out when written (Nagle's algorithm would hold a small
        // write for the client's delayed ACK, up to 40 ms).
        .tcp_nodelay(true)
        .workers(2)
        .shutdown_timeout(5)
        .listen(listener)
        .map_err(AppError::Server)?
        .run();
        Ok(Application {
            port,
            config,
            server,
            writer,
            channels,
            cleanup_rx,
            api,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` is cancelled (graceful) or a critical task dies
    /// (error: the supervisor should restart us).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        info!(port = self.port, marathon = %daemon::redact_url(&self.config.marathon_url), owner = %self.config.owner, mode = ?self.config.mode,
            version = env!("CARGO_PKG_VERSION"), "subscriber listening");
        let inner = CancellationToken::new();
        let tracker = TaskTracker::new();
        let handle = self.server.handle();
        let mut writer_task = tracker.spawn(self.writer.run(inner.clone()));
        let driver = ResyncDriver {
            source: Arc::new(self.api.clone()),
            writer: self.channels.tx.clone(),
            clock: self.channels.clock.clone(),
            trigger: self.channels.resync.clone(),
            requests: self.cleanup_rx,
            interval: self.config.resync_interval,
            metrics: self.metrics.clone(),
        };
        let mut driver_task = tracker.spawn(driver.run(inner.clone()));
        let intake_cancel = CancellationToken::new();
        let mut intake_task = match (self.config.mode, self.config.callback_url.clone()) {
            (Mode::Callback, Some(url)) => tracker.spawn(intake::run_callback(
                self.api,
                intake::CallbackUrl::new(&url, self.config.auth_token.as_deref()),
                self.channels.sink.clone(),
                self.metrics.clone(),
                self.config.resync_interval.min(Duration::from_secs(30)),
                intake_cancel.clone(),
            )),
            _ => tracker.spawn(intake::run_sse(
                self.api,
                self.channels.sink.clone(),
                self.metrics.clone(),
                intake_cancel.clone(),
            )),
        };
        tracker.close();
        let mut server_task = tokio::spawn(self.server);
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            r = &mut server_task => match r {
                Ok(Err(e)) => Err(AppError::Server(e)),
                _ => Err(AppError::TaskDied("http server")),
            },
            _ = &mut writer_task => Err(AppError::TaskDied("writer")),
            _ = &mut driver_task => Err(AppError::TaskDied("resync driver")),
            _ = &mut intake_task => Err(AppError::TaskDied("event intake")),
        };
        if let Err(e) = &outcome {
            error!(error = %e, "critical task died; stopping");
        } else {
            info!("shutting down");
        }
        // Stop taking events first (callback mode unsubscribes here), then
        // the HTTP server, then the writer and the driver.
        intake_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(6), &mut intake_task).await;
        handle.stop(true).await;
        inner.cancel();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            error!("tasks did not stop within 10 s");
        }
        drop(self.channels);
        outcome
    }
}
