//! The control plane's heart: the shared state, the one write path for app
//! changes (validate -> persist in etcd -> apply -> deployment -> events),
//! and the operations the API calls, by concern: `apps` (app changes),
//! `deployments` (the one commit path, cancel and rollback), `tasks`
//! (kills, announcements). Scheduling lives in
//! [`crate::reconcile`]; the decisions themselves in [`crate::scheduler`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use marathon::{App, DeploymentResult, Timestamp, VersionInfo};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::events::EventBus;
use crate::runtime::Runtime;
use crate::state::{DeploymentRecord, State};
use crate::state_store::Store;
use crate::validation::Limits;

mod apps;
mod deployments;
mod error;
mod groups;
mod tasks;

pub use error::{CoreError, Violation};
pub use groups::{body_group_id, plan_group, GroupApp, GroupPlan, MAX_GROUP_DEPTH};

/// What this node offers.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub address: String,
    pub cpus: f64,
    pub mem: f64,
    /// Constraint attributes (`hostname` included).
    pub attributes: BTreeMap<String, String>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub tasks_launched: AtomicU64,
    pub tasks_failed: AtomicU64,
    pub tasks_killed: AtomicU64,
    pub tasks_finished: AtomicU64,
    pub deployments_started: AtomicU64,
    pub deployments_succeeded: AtomicU64,
    pub deployments_failed: AtomicU64,
    pub http_requests: AtomicU64,
    pub http_errors: AtomicU64,
    pub health_failures: AtomicU64,
    /// Panics caught in one app's work by a long-lived loop ([`crate::contain`]).
    pub loop_panics: AtomicU64,
    /// Recovery attempts of a runtime that failed (its tasks kept, retried).
    pub recovery_failures: AtomicU64,
    /// Tasks a recovery attempt skipped (e.g. an unreadable task file).
    pub recovery_skipped: AtomicU64,
    /// Apps whose definition in etcd failed validation at start-up (not run).
    pub apps_refused_at_start: AtomicU64,
    /// Task records written (puts and deletes) by the task writer.
    pub task_writes: AtomicU64,
    /// Write rounds of the task writer that succeeded (each one or more
    /// transactions, many records).
    pub task_flushes: AtomicU64,
}

impl Counters {
    /// Every count that only grows, by its metric name (`apps_refused_at_start`
    /// is a gauge: it is counted again at each start).
    pub fn totals(&self) -> [(&'static str, u64); 15] {
        let all = [
            ("tasks_launched_total", &self.tasks_launched),
            ("tasks_failed_total", &self.tasks_failed),
            ("tasks_finished_total", &self.tasks_finished),
            ("tasks_killed_total", &self.tasks_killed),
            ("deployments_started_total", &self.deployments_started),
            ("deployments_succeeded_total", &self.deployments_succeeded),
            ("deployments_failed_total", &self.deployments_failed),
            ("health_check_failures_total", &self.health_failures),
            ("http_requests_total", &self.http_requests),
            ("http_errors_total", &self.http_errors),
            ("loop_panics_total", &self.loop_panics),
            ("recovery_failures_total", &self.recovery_failures),
            ("recovery_skipped_total", &self.recovery_skipped),
            ("task_record_writes_total", &self.task_writes),
            ("task_record_flushes_total", &self.task_flushes),
        ];
        all.map(|(name, n)| (name, n.load(Ordering::Relaxed)))
    }
}

pub struct Core {
    pub cfg: Arc<Config>,
    pub store: Store,
    /// The one event bus: SSE clients, callback URLs, local observers.
    pub bus: EventBus,
    pub node: Node,
    pub runtimes: Vec<Arc<dyn Runtime>>,
    pub counters: Counters,
    pub started_at: Timestamp,
    pub(crate) state: Mutex<State>,
    /// Serialises changes: validation, persistence and application happen
    /// against one consistent view.
    pub(crate) writes: tokio::sync::Mutex<()>,
    pub(crate) wake: Notify,
    /// The task writer's wake-up and outcomes ([`crate::task_writer`]).
    pub(crate) task_writes: crate::task_writer::TaskWrites,
    pub(crate) tracker: TaskTracker,
    pub shutdown: CancellationToken,
    /// Cancelled first at shutdown: long-lived streaming responses (task log
    /// follow) end, so they do not hold the graceful HTTP stop.
    pub streams_end: CancellationToken,
    last_version: Mutex<i64>,
    /// Where the next dynamic port search starts ([`crate::scheduler::Offer::port_cursor`]).
    pub(crate) port_cursor: AtomicU64,
    /// Launches planned whose outcome (`TASK_RUNNING`, or the end) is not
    /// announced yet: what [`crate::reconcile::MAX_LAUNCHING`] bounds.
    pub(crate) launches_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    me: std::sync::OnceLock<std::sync::Weak<Core>>,
    pub(crate) health: crate::health::Schedule,
    /// ETCD_ENDPOINTS for containers with their own network (bridge/user).
    /// Set at start, or when a Docker engine that was not answering at
    /// start is connected later (`--docker auto`).
    pub container_net_etcd_endpoints: std::sync::OnceLock<String>,
    pub(crate) http: reqwest::Client,
}

/// One app change of a deployment.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per deployment, never stored in bulk
pub enum Change {
    Put { app: App, action: &'static str },
    Delete { app_id: String },
}

impl Core {
    pub fn new(
        cfg: Arc<Config>,
        store: Store,
        bus: EventBus,
        node: Node,
        runtimes: Vec<Arc<dyn Runtime>>,
        state: State,
        shutdown: CancellationToken,
    ) -> Core {
        Core {
            port_cursor: AtomicU64::new(u64::from(cfg.port_range.0)),
            launches_in_flight: Default::default(),
            cfg,
            store,
            bus,
            node,
            runtimes,
            counters: Counters::default(),
            started_at: Timestamp::now(),
            state: Mutex::new(state),
            writes: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            task_writes: Default::default(),
            tracker: TaskTracker::new(),
            shutdown,
            streams_end: CancellationToken::new(),
            last_version: Mutex::new(0),
            me: std::sync::OnceLock::new(),
            health: crate::health::Schedule::default(),
            container_net_etcd_endpoints: std::sync::OnceLock::new(),
            http: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    /// Wraps the core in an `Arc` that background work can reach, and
    /// starts the task writer (recovery already writes through it); call
    /// inside a Tokio runtime.
    pub fn into_arc(self) -> Arc<Core> {
        let core = Arc::new(self);
        let _ = core.me.set(Arc::downgrade(&core));
        core.tracker.spawn(core.clone().run_task_writer());
        core
    }

    pub(crate) fn self_arc(&self) -> Option<Arc<Core>> {
        self.me.get().and_then(std::sync::Weak::upgrade)
    }

    /// The state, locked briefly (never across an await).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the reconcile loop to run now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A new version timestamp, strictly after the previous one.
    pub fn next_version(&self) -> Timestamp {
        let mut last = self.last_version.lock().unwrap_or_else(|p| p.into_inner());
        let now = Timestamp::now().as_millis().max(*last + 1);
        *last = now;
        Timestamp::from_millis(now).unwrap_or_else(Timestamp::now)
    }

    fn limits(&self) -> Limits {
        Limits::from_config(&self.cfg)
    }

    /// Stamps versions on a changed app: `config` = config change (restart).
    fn stamp(app: &mut App, previous: Option<&App>, version: Timestamp, config: bool) {
        let last_config = match (previous, config) {
            (Some(p), false) => p
                .version_info
                .map(|vi| vi.last_config_change_at)
                .or(p.version)
                .unwrap_or(version),
            _ => version,
        };
        app.version = Some(version);
        app.version_info = Some(VersionInfo {
            last_scaling_at: version,
            last_config_change_at: last_config,
        });
    }

    /// The config version tasks of this app must run.
    pub fn config_version(app: &App) -> Timestamp {
        app.version_info
            .map(|v| v.last_config_change_at)
            .or(app.version)
            .unwrap_or_else(|| Timestamp::from_millis(0).expect("epoch"))
    }

    pub fn deployment_result(d: &DeploymentRecord) -> DeploymentResult {
        DeploymentResult {
            deployment_id: d.id.clone(),
            version: d.version,
        }
    }
}

fn action_for(existing: Option<&App>, _app: &App, upgrade: bool) -> &'static str {
    use marathon::deployment::action::*;
    match (existing, upgrade) {
        (None, _) => START_APPLICATION,
        (Some(_), true) => RESTART_APPLICATION,
        (Some(_), false) => SCALE_APPLICATION,
    }
}
