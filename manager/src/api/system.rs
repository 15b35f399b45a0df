//! `/ping`, `/health`, `/v2/info`, `/v2/leader`, `/v2/nodes`, `/metrics`
//! (JSON, Dropwizard-like) and `/metrics/prometheus`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use marathon::{HttpConfig, Info, MarathonConfig, TaskState, ZookeeperConfig};
use serde_json::json;

use daemon::metrics::{Family, Registry, Scraped, Value};

use super::CoreData;
use crate::core::Core;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ping", web::get().to(ping))
        .route("/health", web::get().to(health))
        .route("/v2/info", web::get().to(info))
        .route("/v2/leader", web::get().to(leader))
        .route("/v2/leader", web::delete().to(abdicate))
        .route("/v2/nodes", web::get().to(nodes))
        .route("/metrics", web::get().to(metrics))
        .route("/metrics/prometheus", web::get().to(prometheus));
}

async fn ping(req: HttpRequest) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/json") && !accept.contains("text/plain") {
        HttpResponse::Ok()
            .content_type("application/json")
            .body("\"pong\"")
    } else {
        HttpResponse::Ok().content_type("text/plain").body("pong")
    }
}

/// Truthful health: the state store answers.
async fn health(core: CoreData) -> HttpResponse {
    let mut client = core.store.client();
    match tokio::time::timeout(std::time::Duration::from_secs(2), client.status()).await {
        Ok(Ok(_)) => HttpResponse::Ok().json(json!({"status": "ok", "etcd": "ok"})),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "degraded", "etcd": e.to_string()})),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "degraded", "etcd": "timeout"})),
    }
}

fn leader_address(core: &Core, req: &HttpRequest) -> String {
    let host = req.app_config().host().to_string();
    if host.is_empty() || host == "localhost:8080" {
        format!(
            "{}:{}",
            core.node.address,
            req.app_config().local_addr().port()
        )
    } else {
        host
    }
}

async fn info(core: CoreData, req: HttpRequest) -> HttpResponse {
    let port = req.app_config().local_addr().port();
    let info = Info {
        name: "marathon".into(),
        version: "1.11.0".into(),
        buildref: Some(format!("mdo-manager-{}", env!("CARGO_PKG_VERSION"))),
        elected: true,
        leader: Some(leader_address(&core, &req)),
        framework_id: Some(format!("mdo-{}", core.node.name)),
        marathon_config: MarathonConfig {
            master: Some("local".into()),
            hostname: Some(core.node.name.clone()),
            framework_name: Some("marathon".into()),
            ha: Some(false),
            checkpoint: Some(true),
            executor: Some("//cmd".into()),
            failover_timeout: Some(604800),
            features: Some(Vec::new()),
            local_port_min: Some(u32::from(core.cfg.service_port_range.0)),
            local_port_max: Some(u32::from(core.cfg.service_port_range.1)),
            mesos_role: Some("*".into()),
            mesos_user: None,
            env_vars_prefix: None,
            default_network_name: None,
            webui_url: None,
            task_launch_timeout: Some(300000),
            maintenance_mode: Some(false),
            extra: Default::default(),
        },
        zookeeper_config: ZookeeperConfig {
            zk: Some(format!(
                "etcd://{}{}",
                core.cfg.etcd.endpoints.join(","),
                core.cfg.internal_prefix
            )),
            zk_timeout: Some(10000),
            zk_session_timeout: Some(10000),
            zk_max_versions: Some(core.cfg.max_versions as u64),
            extra: Default::default(),
        },
        http_config: HttpConfig {
            http_port: Some(port),
            https_port: Some(8443),
            assets_path: None,
        },
        event_subscriber: None,
    };
    HttpResponse::Ok().json(info)
}

async fn leader(core: CoreData, req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().json(json!({"leader": leader_address(&core, &req)}))
}

async fn abdicate() -> HttpResponse {
    // One manager: it stays leader; Marathon's answer is kept for clients.
    HttpResponse::Ok().json(json!({"message": "Leadership abdicated"}))
}

async fn nodes(core: CoreData) -> HttpResponse {
    let s = core.state();
    let active = s.tasks.values().filter(|t| t.is_active());
    let (cpus, mem, n) = active.fold((0.0, 0.0, 0), |(c, m, n), t| (c + t.cpus, m + t.mem, n + 1));
    HttpResponse::Ok().json(json!({"nodes": [{
        "name": core.node.name,
        "address": core.node.address,
        "attributes": core.node.attributes,
        "runtimes": core.runtimes.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "resources": {"cpus": core.node.cpus, "mem": core.node.mem},
        "allocated": {"cpus": cpus, "mem": mem},
        "tasks": n,
    }]}))
}

/// (name, kind, value) of every metric.
fn samples(core: &Core) -> Vec<(&'static str, &'static str, f64)> {
    let s = core.state();
    let c = &core.counters;
    let count_state = |st: TaskState| s.tasks.values().filter(|t| t.state == st).count() as f64;
    // `+ 0.0` turns the -0.0 of an empty f64 sum into 0.
    let out = vec![
        ("apps_active", "gauge", s.apps.len() as f64),
        ("tasks_running", "gauge", count_state(TaskState::Running)),
        (
            "tasks_staging",
            "gauge",
            count_state(TaskState::Staging) + count_state(TaskState::Starting),
        ),
        ("tasks_killing", "gauge", count_state(TaskState::Killing)),
        ("tasks_unresolved", "gauge", s.unresolved.len() as f64),
        ("deployments_active", "gauge", s.deployments.len() as f64),
        (
            "apps_refused_at_start",
            "gauge",
            c.apps_refused_at_start.load(Ordering::Relaxed) as f64,
        ),
        (
            "queue_size",
            "gauge",
            s.queue.values().map(|w| w.count as f64).sum(),
        ),
        (
            "cpus_allocated",
            "gauge",
            s.tasks
                .values()
                .filter(|t| t.is_active())
                .map(|t| t.cpus)
                .sum(),
        ),
        (
            "mem_allocated",
            "gauge",
            s.tasks
                .values()
                .filter(|t| t.is_active())
                .map(|t| t.mem)
                .sum(),
        ),
    ];
    let totals = c.totals().map(|(name, n)| (name, "counter", n as f64));
    out.into_iter()
        .chain(totals)
        .map(|(n, k, v)| (n, k, v + 0.0))
        .collect()
}

async fn metrics(core: CoreData) -> HttpResponse {
    let mut gauges = serde_json::Map::new();
    let mut counters = serde_json::Map::new();
    for (name, kind, value) in samples(&core) {
        let key = format!("marathon.{}", name.replace('_', "."));
        if kind == "gauge" {
            gauges.insert(format!("{key}.gauge"), json!({"value": value}));
        } else {
            counters.insert(format!("{key}.counter"), json!({"count": value as u64}));
        }
    }
    {
        let m = core.bus.metrics();
        for (t, n) in &m.published {
            counters.insert(
                format!("marathon.events.published.{t}.counter"),
                json!({"count": n}),
            );
        }
        gauges.insert(
            "marathon.http.event-streams.active.gauge".into(),
            json!({"value": m.sse_clients}),
        );
        gauges.insert(
            "marathon.events.callback.subscriptions.gauge".into(),
            json!({"value": m.callback_subscriptions}),
        );
        counters.insert(
            "marathon.events.callback.deliveries.counter".into(),
            json!({"count": m.callback_deliveries}),
        );
        counters.insert(
            "marathon.events.callback.failures.counter".into(),
            json!({"count": m.callback_failures}),
        );
    }
    HttpResponse::Ok().json(json!({
        "version": "4.0.0",
        "counters": counters,
        "gauges": gauges,
        "histograms": {},
        "meters": {},
        "timers": {},
    }))
}

/// The manager's one metrics registry: every value is read from the state
/// and the event bus at each scrape of `/metrics/prometheus`.
pub fn registry(core: Arc<Core>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scraped(move || families(&core))));
    registry
}

fn families(core: &Core) -> Vec<Family> {
    let mut out: Vec<Family> = samples(core)
        .into_iter()
        .map(|(name, kind, value)| {
            let help = help(name);
            if kind == "counter" {
                // prometheus-client adds `_total` back.
                let name = format!(
                    "mdo_manager_{}",
                    name.strip_suffix("_total").unwrap_or(name)
                );
                Family::single(&name, help, Value::Counter(value as u64))
            } else {
                Family::single(&format!("mdo_manager_{name}"), help, Value::Gauge(value))
            }
        })
        .collect();
    out.extend(core.bus.metrics().families());
    out
}

/// The help text of each of [`samples`]' metrics.
fn help(name: &str) -> &'static str {
    match name {
        "apps_active" => "Apps defined",
        "tasks_running" => "Tasks running",
        "tasks_staging" => "Tasks staging or starting",
        "tasks_killing" => "Tasks being killed",
        "tasks_unresolved" => "Tasks loaded at start-up that no runtime has answered for yet",
        "deployments_active" => "Deployments in progress",
        "apps_refused_at_start" => {
            "Apps whose definition in etcd failed validation at start-up (not run)"
        }
        "queue_size" => "Task launches waiting in the queue",
        "cpus_allocated" => "CPUs allocated to active tasks",
        "mem_allocated" => "Memory allocated to active tasks, in MiB",
        "tasks_launched_total" => "Tasks launched",
        "tasks_failed_total" => "Tasks that failed",
        "tasks_finished_total" => "Tasks that finished",
        "tasks_killed_total" => "Tasks killed",
        "deployments_started_total" => "Deployments started",
        "deployments_succeeded_total" => "Deployments that succeeded",
        "deployments_failed_total" => "Deployments that failed or were cancelled",
        "health_check_failures_total" => "Failed health checks",
        "http_requests_total" => "HTTP requests served",
        "http_errors_total" => "HTTP requests answered with an error",
        "loop_panics_total" => "Panics caught in one app's work by a long-running loop",
        "recovery_failures_total" => {
            "Recovery attempts of a runtime that failed (its tasks kept, retried)"
        }
        "task_record_writes_total" => "Task records written to etcd (puts and deletes)",
        "task_record_flushes_total" => {
            "Rounds of task record writes to etcd (several records each)"
        }
        "recovery_skipped_total" => {
            "Tasks a recovery attempt skipped (e.g. an unreadable task file)"
        }
        _ => "See the manager's README",
    }
}

async fn prometheus(registry: web::Data<Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(daemon::metrics::CONTENT_TYPE)
        .body(daemon::metrics::encode(&registry))
}
