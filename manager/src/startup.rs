//! [`Application`]: connects to etcd, loads the state, wires the runtimes,
//! recovers tasks, binds the listener (port 0 works) and runs until the
//! shutdown token is cancelled.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpServer};
use marathon::App;
use tokio_util::sync::CancellationToken;

use crate::api::{self, CoreData};
use crate::config::Config;
use crate::config::DockerMode;
use crate::core::{Core, Node};
use crate::events::{EventBus, EventsConfig};
use crate::runtime::command::CommandRuntime;
use crate::runtime::docker::{DockerConfig, DockerRuntime, LateDocker};
use crate::runtime::{Runtime, RuntimeEvent};
use crate::state::{DeploymentRecord, State, TaskRecord};
use crate::state_store::{Store, StoreError, Write};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// Connecting or loading the state failed: which etcd, which prefix, why.
    #[error("cannot load the state from etcd at {endpoints} under {prefix}: {cause}")]
    Load {
        endpoints: String,
        prefix: String,
        cause: String,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("event bus: {0}")]
    Events(String),
}

pub struct Application {
    core: Arc<Core>,
    port: u16,
    server: actix_web::dev::Server,
    runtime_events: tokio::sync::mpsc::UnboundedReceiver<RuntimeEvent>,
    shutdown: CancellationToken,
}

/// Loads apps, versions, tasks and deployments from etcd, each folder in
/// pages (any amount of state loads). Versions beyond `--max-versions` (a
/// history written before the limit, or a lower limit than before) are
/// dropped, oldest first, in etcd too: idempotent deletes, in chunks.
pub async fn load_state(store: &Store) -> Result<State, StoreError> {
    let mut state = State::default();
    for (_, app) in store.load::<App>("apps").await? {
        state.apps.insert(app.id.clone(), app);
    }
    for (key, app) in store.load::<App>("versions").await? {
        if let Some(ts) = store.version_of_key(&key) {
            state
                .versions
                .entry(app.id.clone())
                .or_default()
                .insert(ts, app);
        }
    }
    for (_, t) in store.load::<TaskRecord>("tasks").await? {
        state.tasks.insert(t.id.clone(), t);
    }
    for (_, d) in store.load::<DeploymentRecord>("deployments").await? {
        state.deployments.insert(d.id.clone(), d);
    }
    trim_versions(store, &mut state).await?;
    Ok(state)
}

/// Drops the oldest versions beyond `--max-versions` of every app.
async fn trim_versions(store: &Store, state: &mut State) -> Result<(), StoreError> {
    let max = store.max_versions();
    let mut writes = Vec::new();
    for (app_id, versions) in state.versions.iter_mut() {
        while versions.len() > max {
            let Some((ts, _)) = versions.pop_first() else {
                break;
            };
            writes.push(Write::Delete(store.version_key(app_id, &ts)?));
        }
    }
    if !writes.is_empty() {
        tracing::info!(
            versions = writes.len(),
            max_versions = max,
            "dropping app versions beyond --max-versions"
        );
        store.apply_chunked(writes).await?;
    }
    Ok(())
}

fn host_resources() -> (f64, f64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(1024.0, |kb| (kb / 1024.0).floor());
    (cpus, mem)
}

async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let core = req.app_data::<CoreData>().cloned();
    let token = core.as_ref().and_then(|c| c.cfg.auth_token.clone());
    if !api::authorised(token.as_deref(), &req) {
        return Ok(req.into_response(daemon::http::unauthorized()));
    }
    let res = next.call(req).await?.map_into_boxed_body();
    if let Some(core) = core {
        api::count(&core, &res);
    }
    Ok(res)
}

impl Application {
    pub async fn build(cfg: Config) -> Result<Application, StartError> {
        let cfg = Arc::new(cfg);
        let settings = cfg
            .etcd
            .clone()
            .with_prefix(&cfg.internal_prefix)
            .map_err(StoreError::from)?;
        let load_failed = |e: StoreError| StartError::Load {
            endpoints: daemon::redact_urls(&settings.endpoints).join(","),
            prefix: cfg.internal_prefix.clone(),
            cause: e.cause(),
        };
        let store = Store::connect(&settings, cfg.max_versions)
            .await
            .map_err(load_failed)?;
        let mut state = load_state(&store).await.map_err(load_failed)?;
        let refused = crate::validation::refuse_invalid_loaded(
            &mut state,
            &crate::validation::Limits::from_config(&cfg),
        );
        tracing::info!(
            apps = state.apps.len(),
            tasks = state.tasks.len(),
            deployments = state.deployments.len(),
            "state loaded"
        );

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StartError::Runtime(format!("{}: {e}", cfg.data_dir.display())))?;
        let command = CommandRuntime::new(cfg.data_dir.clone(), tx.clone())
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let mut runtimes: Vec<Arc<dyn Runtime>> = vec![Arc::new(command)];
        let mut gateway = None;
        let manager_id = store.manager_id().await?;
        if cfg.docker != DockerMode::Off {
            let mut dc = DockerConfig::new(manager_id.clone());
            dc.allow_privileged = cfg.allow_host_access;
            dc.socket = cfg.docker_socket.clone();
            dc.containerd_socket = cfg.containerd_socket.clone();
            dc.watch_processes =
                crate::runtime::docker::containerd::engine_is_local(cfg.docker_socket.as_deref());
            match DockerRuntime::new(dc.clone(), tx.clone()).await {
                Ok(d) => {
                    gateway = d.bridge_gateway().await;
                    runtimes.push(Arc::new(d))
                }
                Err(e) if cfg.docker == DockerMode::On => {
                    return Err(StartError::Runtime(format!("docker: {e}")))
                }
                Err(e) => {
                    // Connected later, by a recovery retry; its tasks are
                    // kept meanwhile and DOCKER apps wait in the queue.
                    tracing::info!(error = %e, "Docker not available yet: DOCKER apps wait in the queue; retrying in the background");
                    runtimes.push(Arc::new(LateDocker::new(dc, tx.clone())));
                }
            }
        }

        let (host_cpus, host_mem) = host_resources();
        let mut reported = None;
        for rt in &runtimes {
            if let Some(r) = rt.node_resources().await {
                reported = Some(r);
                break;
            }
        }
        let mut attributes: BTreeMap<String, String> = cfg.node_attributes.clone();
        attributes.insert("hostname".into(), cfg.node_name.clone());
        let node = Node {
            name: cfg.node_name.clone(),
            address: cfg.advertise_address.clone(),
            cpus: cfg
                .node_cpus
                .or(reported.as_ref().map(|r| r.cpus))
                .unwrap_or(host_cpus),
            mem: cfg
                .node_mem
                .or(reported.as_ref().map(|r| r.mem_mib))
                .unwrap_or(host_mem),
            attributes,
        };
        let shutdown = CancellationToken::new();
        let events = EventBus::new(
            store.client(),
            cfg.internal_prefix.clone(),
            EventsConfig::for_manager(&cfg).map_err(StartError::Events)?,
        )
        .await
        .map_err(|e| StartError::Events(e.to_string()))?;
        let core = Core::new(
            cfg.clone(),
            store,
            events.clone(),
            node,
            runtimes,
            state,
            shutdown.child_token(),
        );
        if let (Some(gw), false) = (gateway, cfg.container_etcd_endpoints_explicit) {
            let _ = core
                .container_net_etcd_endpoints
                .set(crate::env::rewrite_loopback(
                    &cfg.container_etcd_endpoints,
                    &gw,
                ));
        }
        core.counters
            .apps_refused_at_start
            .store(refused.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let core = core.into_arc();
        core.recover().await;

        let listener = TcpListener::bind(cfg.listen).map_err(|source| StartError::Bind {
            addr: cfg.listen.to_string(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: cfg.listen.to_string(),
                source,
            })?
            .port();
        let data: CoreData = web::Data::new(core.clone());
        let events_data = web::Data::new(events);
        let metrics_data = web::Data::new(api::system::registry(core.clone()));
        let server = HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .app_data(events_data.clone())
                .app_data(metrics_data.clone())
                .wrap(from_fn(guard))
                .configure(api::configure)
                .configure(EventBus::configure)
                .default_service(web::to(api::not_found))
        })
        .disable_signals()
        // Every response and SSE frame goes out when written: with Nagle's
        // algorithm a small write waits for the ACK of the previous one,
        // which a client may delay by up to 40 ms.
        .tcp_nodelay(true)
        .workers(2)
        // Workers close what is still open once the shutdown bound is over.
        .shutdown_timeout(cfg.shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(|source| StartError::Bind {
            addr: cfg.listen.to_string(),
            source,
        })?
        .run();
        tracing::info!(address = %cfg.listen.ip(), port, version = env!("CARGO_PKG_VERSION"), "manager listening");
        Ok(Application {
            core,
            port,
            server,
            runtime_events: rx,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn core(&self) -> Arc<Core> {
        self.core.clone()
    }

    /// Serves until `stop` is cancelled, then shuts down within
    /// `shutdown_timeout`: open SSE streams and log follows end first (they
    /// would otherwise hold the graceful HTTP stop), then the HTTP server stops
    /// gracefully, then the background loops and callback deliveries stop.
    /// Each stage gets what is left of the bound; tasks keep running.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> std::io::Result<()> {
        let Application {
            core,
            server,
            runtime_events,
            shutdown,
            ..
        } = self;
        let handle: ServerHandle = server.handle();
        let reconciler = tokio::spawn(core.clone().run_reconciler());
        let events = tokio::spawn(core.clone().run_runtime_events(runtime_events));
        let health = tokio::spawn(core.clone().run_health_checks());
        let mut server = tokio::spawn(server);
        let bound = core.cfg.shutdown_timeout;
        let bus = core.bus.clone();
        let (result, deadline) = tokio::select! {
            r = &mut server => (
                r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
                tokio::time::Instant::now() + bound,
            ),
            _ = stop.cancelled() => {
                let deadline = tokio::time::Instant::now() + bound;
                tracing::info!(timeout_secs = bound.as_secs(), "shutting down");
                core.streams_end.cancel();
                bus.end_streams();
                if tokio::time::timeout_at(deadline, handle.stop(true)).await.is_err() {
                    // The workers close them (their shutdown timeout is the
                    // same bound); the process does not wait for that.
                    tracing::warn!("HTTP connections still open at the shutdown bound");
                }
                (Ok(()), deadline)
            }
        };
        shutdown.cancel();
        bus.shutdown_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        core.tracker.close();
        let drained = tokio::time::timeout_at(deadline, async {
            let _ = reconciler.await;
            let _ = events.await;
            let _ = health.await;
            core.tracker.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                timeout_secs = bound.as_secs(),
                "background work still running at the shutdown bound; leaving it"
            );
        }
        result
    }
}
