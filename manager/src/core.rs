//! The control plane's heart: the shared state, the one write path for app
//! changes (validate -> persist in etcd -> apply -> deployment -> events),
//! and the operations the API calls. Scheduling lives in
//! [`crate::reconcile`]; the decisions themselves in [`crate::scheduler`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use marathon::{
    App, DeploymentAction, DeploymentResult, DeploymentStep, TaskState, Timestamp, VersionInfo,
};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::config::Config;
use crate::error::ApiError;
use crate::event_json;
use crate::runtime::Runtime;
use crate::state::{DeploymentRecord, State, TaskRecord};
use crate::store::{Store, Write};
use crate::validation::{self, Limits};

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
}

pub struct Core {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub bus: Bus,
    pub node: Node,
    pub runtimes: Vec<Arc<dyn Runtime>>,
    pub counters: Counters,
    pub started_at: Timestamp,
    pub(crate) state: Mutex<State>,
    /// Serialises changes: validation, persistence and application happen
    /// against one consistent view.
    pub(crate) writes: tokio::sync::Mutex<()>,
    pub(crate) wake: Notify,
    pub(crate) tracker: TaskTracker,
    pub shutdown: CancellationToken,
    /// Cancelled first at shutdown: long-lived streaming responses (task log
    /// follow) end, so they do not hold the graceful HTTP stop.
    pub streams_end: CancellationToken,
    last_version: Mutex<i64>,
    port_cursor: AtomicU64,
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
        bus: Bus,
        node: Node,
        runtimes: Vec<Arc<dyn Runtime>>,
        state: State,
        shutdown: CancellationToken,
    ) -> Core {
        Core {
            port_cursor: AtomicU64::new(u64::from(cfg.port_range.0)),
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

    /// Wraps the core in an `Arc` that background work can reach.
    pub fn into_arc(self) -> Arc<Core> {
        let core = Arc::new(self);
        let _ = core.me.set(Arc::downgrade(&core));
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

    pub(crate) fn next_port_start(&self) -> u16 {
        let (lo, hi) = self.cfg.port_range;
        let width = u64::from(hi - lo) + 1;
        let n = self.port_cursor.fetch_add(1, Ordering::Relaxed);
        lo + ((n - u64::from(lo)) % width) as u16
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

    /// Service ports used by apps other than `except`.
    fn used_service_ports(state: &State, except: &str) -> BTreeSet<u32> {
        state
            .apps
            .values()
            .filter(|a| a.id != except)
            .flat_map(App::service_ports)
            .filter(|p| *p != 0)
            .collect()
    }

    /// Normalises, validates and assigns service ports of a new definition.
    fn prepare(
        &self,
        state: &State,
        mut app: App,
        previous: Option<&App>,
    ) -> Result<App, ApiError> {
        validation::normalise(&mut app);
        let violations = validation::validate(&app, &self.limits());
        if !violations.is_empty() {
            return Err(ApiError::Invalid(violations));
        }
        let used = Self::used_service_ports(state, &app.id);
        validation::assign_service_ports(&mut app, previous, &used, self.cfg.service_port_range)?;
        Ok(app)
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

    /// Applies changes as one deployment (the caller holds `writes`).
    async fn commit(
        &self,
        changes: Vec<Change>,
        force: bool,
        version: Timestamp,
    ) -> Result<DeploymentRecord, ApiError> {
        self.commit_replacing(changes, force, version, None).await
    }

    /// [`Core::commit`], also removing `replaced` (a deployment this one
    /// rolls back) in the same etcd transaction. Everything the change
    /// writes (apps, their new versions, the versions dropped beyond
    /// `--max-versions`, cancelled deployments, the new deployment) is ONE
    /// transaction: a change too large for one is refused (422) and nothing
    /// is written.
    async fn commit_replacing(
        &self,
        changes: Vec<Change>,
        force: bool,
        version: Timestamp,
        replaced: Option<&DeploymentRecord>,
    ) -> Result<DeploymentRecord, ApiError> {
        let ids: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Put { app, .. } => app.id.clone(),
                Change::Delete { app_id } => app_id.clone(),
            })
            .collect();
        let (conflicts, original) = {
            let s = self.state();
            let mut conflicts: Vec<String> =
                ids.iter().flat_map(|id| s.deployments_of(id)).collect();
            conflicts.retain(|id| replaced.is_none_or(|r| r.id != *id));
            conflicts.sort();
            conflicts.dedup();
            let original: BTreeMap<String, Option<App>> = ids
                .iter()
                .map(|id| (id.clone(), s.apps.get(id).cloned()))
                .collect();
            (conflicts, original)
        };
        if !conflicts.is_empty() && !force {
            return Err(ApiError::Locked(conflicts));
        }
        let actions: Vec<DeploymentAction> = changes
            .iter()
            .map(|c| match c {
                Change::Put { app, action } => DeploymentAction::app(action, app.id.clone()),
                Change::Delete { app_id } => DeploymentAction::app(
                    marathon::deployment::action::STOP_APPLICATION,
                    app_id.clone(),
                ),
            })
            .collect();
        let deployment = DeploymentRecord {
            id: uuid::Uuid::new_v4().to_string(),
            version,
            affected_apps: ids.clone(),
            steps: vec![DeploymentStep { actions }],
            original,
        };
        let mut writes = Vec::new();
        let mut dropped: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
        for c in &changes {
            match c {
                Change::Put { app, .. } => {
                    writes.push(Store::put(self.store.app_key(&app.id)?, app)?);
                    let v = app.version.unwrap_or(version);
                    writes.push(Store::put(self.store.version_key(&app.id, &v)?, app)?);
                    let old = self
                        .store
                        .versions_to_drop(self.state().versions.get(&app.id), v);
                    for ts in &old {
                        writes.push(Write::Delete(self.store.version_key(&app.id, ts)?));
                    }
                    dropped.insert(app.id.clone(), old);
                }
                Change::Delete { app_id } => {
                    writes.push(Write::Delete(self.store.app_key(app_id)?));
                    writes.push(Write::DeletePrefix(self.store.versions_prefix(app_id)?));
                }
            }
        }
        for id in conflicts.iter().chain(replaced.map(|r| &r.id)) {
            writes.push(Write::Delete(self.store.deployment_key(id)?));
        }
        writes.push(Store::put(
            self.store.deployment_key(&deployment.id)?,
            &deployment,
        )?);
        self.store.apply(writes).await?;
        if let Some(r) = replaced {
            self.state().deployments.remove(&r.id);
            self.counters
                .deployments_failed
                .fetch_add(1, Ordering::Relaxed);
            self.bus
                .publish_value(event_json::deployment_failed(r, "cancelled"));
        }

        let cancelled = {
            let mut s = self.state();
            let cancelled: Vec<DeploymentRecord> = conflicts
                .iter()
                .filter_map(|id| s.deployments.remove(id))
                .collect();
            for c in changes {
                match c {
                    Change::Put { app, .. } => {
                        let v = app.version.unwrap_or(version);
                        let prev_cfg = s.apps.get(&app.id).map(Self::config_version);
                        if prev_cfg != Some(Self::config_version(&app)) {
                            s.backoff.remove(&app.id);
                        }
                        let versions = s.versions.entry(app.id.clone()).or_default();
                        versions.insert(v, app.clone());
                        for ts in dropped.get(&app.id).into_iter().flatten() {
                            versions.remove(ts);
                        }
                        s.apps.insert(app.id.clone(), app);
                    }
                    Change::Delete { app_id } => {
                        s.apps.remove(&app_id);
                        s.versions.remove(&app_id);
                        s.backoff.remove(&app_id);
                        s.queue.remove(&app_id);
                        s.last_failure.remove(&app_id);
                    }
                }
            }
            s.deployments
                .insert(deployment.id.clone(), deployment.clone());
            cancelled
        };
        for c in &cancelled {
            self.counters
                .deployments_failed
                .fetch_add(1, Ordering::Relaxed);
            self.bus.publish_value(event_json::deployment_failed(
                c,
                "cancelled by a forced deployment",
            ));
        }
        self.counters
            .deployments_started
            .fetch_add(1, Ordering::Relaxed);
        self.bus
            .publish_value(event_json::group_change_success(version));
        self.bus
            .publish_value(event_json::deployment_info(&deployment));
        self.wake();
        Ok(deployment)
    }

    /// `POST /v2/apps`.
    pub async fn create_app(
        &self,
        body: Value,
        force: bool,
    ) -> Result<(App, DeploymentRecord), ApiError> {
        let app = validation::app_from_value(body)?;
        let _w = self.writes.lock().await;
        let app = {
            let s = self.state();
            let app = self.prepare(&s, app, None)?;
            if s.apps.contains_key(&app.id) {
                return Err(ApiError::Conflict(format!(
                    "An app with id [{}] already exists.",
                    app.id
                )));
            }
            if s.apps
                .keys()
                .any(|k| k.starts_with(&format!("{}/", app.id)))
            {
                return Err(ApiError::Conflict(format!(
                    "An app with id [{}] already exists.",
                    app.id
                )));
            }
            crate::ports::check_fixed_ports(&s, &[&app], false)?;
            app
        };
        let mut app = app;
        let version = self.next_version();
        Self::stamp(&mut app, None, version, true);
        let d = self
            .commit(
                vec![Change::Put {
                    app: app.clone(),
                    action: marathon::deployment::action::START_APPLICATION,
                }],
                force,
                version,
            )
            .await?;
        Ok((app, d))
    }

    /// Builds the change for an update (or creation) of one app from a body.
    fn change_for(
        &self,
        s: &State,
        id: &str,
        body: &Map<String, Value>,
        partial: bool,
        version: Timestamp,
    ) -> Result<(Change, bool), ApiError> {
        let existing = s.apps.get(id);
        // Rollback: {"version": ts} (id allowed beside it).
        if let Some(v) = body.get("version") {
            let only_version = body.keys().all(|k| k == "version" || k == "id");
            if !only_version {
                return Err(ApiError::invalid(
                    "/",
                    "The 'version' field may only be combined with the 'id' field.",
                ));
            }
            let ts: Timestamp = v
                .as_str()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| ApiError::invalid("/version", "is not a valid timestamp"))?;
            let existing = existing.ok_or_else(|| ApiError::app_not_found(id))?;
            let old = s
                .versions
                .get(id)
                .and_then(|vs| vs.get(&ts))
                .cloned()
                .ok_or_else(|| {
                    ApiError::NotFound(format!("App '{id}' does not exist in version {ts}"))
                })?;
            let mut app = old;
            let upgrade = validation::is_upgrade(existing, &app);
            Self::stamp(&mut app, Some(existing), version, upgrade);
            let action = action_for(Some(existing), &app, upgrade);
            return Ok((Change::Put { app, action }, false));
        }
        let (mut app, created) = match existing {
            Some(e) if partial => (validation::merge_update(e, body)?, false),
            _ => {
                let mut b = body.clone();
                b.insert("id".into(), Value::String(id.to_string()));
                (
                    validation::app_from_value(Value::Object(b))?,
                    existing.is_none(),
                )
            }
        };
        app.id = id.to_string();
        app = self.prepare(s, app, existing)?;
        let upgrade = existing.is_none_or(|e| validation::is_upgrade(e, &app));
        Self::stamp(&mut app, existing, version, upgrade);
        let action = action_for(existing, &app, upgrade);
        Ok((Change::Put { app, action }, created))
    }

    /// `PUT|PATCH /v2/apps/{id}`; returns (created, deployment, app).
    pub async fn update_app(
        &self,
        id: &str,
        body: Value,
        partial: bool,
        force: bool,
        may_create: bool,
    ) -> Result<(bool, DeploymentRecord, App), ApiError> {
        let Value::Object(body) = body else {
            return Err(ApiError::InvalidJson("error.expected.jsobject".into()));
        };
        let _w = self.writes.lock().await;
        let version = self.next_version();
        let (change, created) = {
            let s = self.state();
            if !may_create && !s.apps.contains_key(id) {
                return Err(ApiError::app_not_found(id));
            }
            let (change, created) = self.change_for(&s, id, &body, partial, version)?;
            if let Change::Put { app, .. } = &change {
                crate::ports::check_fixed_ports(&s, &[app], false)?;
            }
            (change, created)
        };
        let app = match &change {
            Change::Put { app, .. } => app.clone(),
            Change::Delete { .. } => unreachable!("updates never delete"),
        };
        let d = self.commit(vec![change], force, version).await?;
        Ok((created, d, app))
    }

    /// `PUT|PATCH /v2/apps` with several apps: one deployment.
    pub async fn update_many(
        &self,
        body: Value,
        partial: bool,
        force: bool,
        may_create: bool,
    ) -> Result<DeploymentRecord, ApiError> {
        let Value::Array(items) = body else {
            return Err(ApiError::InvalidJson("error.expected.jsarray".into()));
        };
        let _w = self.writes.lock().await;
        let version = self.next_version();
        let changes = {
            let s = self.state();
            let mut changes = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let Value::Object(obj) = item else {
                    return Err(ApiError::InvalidJson(format!(
                        "/{i}: error.expected.jsobject"
                    )));
                };
                let raw_id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
                if let Err(e) = crate::ids::validate_app_id(raw_id) {
                    return Err(ApiError::invalid(&format!("/{i}/id"), &e));
                }
                let id = crate::ids::canonical(raw_id);
                if !seen.insert(id.clone()) {
                    return Err(ApiError::invalid(&format!("/{i}/id"), "is given twice"));
                }
                if !may_create && !s.apps.contains_key(&id) {
                    return Err(ApiError::app_not_found(&id));
                }
                let (change, _) = self
                    .change_for(&s, &id, obj, partial, version)
                    .map_err(|e| match e {
                        ApiError::Invalid(v) => ApiError::Invalid(
                            v.into_iter()
                                .map(|mut x| {
                                    x.path =
                                        format!("/{i}{}", if x.path == "/" { "" } else { &x.path });
                                    x
                                })
                                .collect(),
                        ),
                        other => other,
                    })?;
                changes.push(change);
            }
            let apps: Vec<&App> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Put { app, .. } => Some(app),
                    Change::Delete { .. } => None,
                })
                .collect();
            crate::ports::check_fixed_ports(&s, &apps, true)?;
            changes
        };
        if changes.is_empty() {
            return Err(ApiError::BadRequest("no apps given".into()));
        }
        self.commit(changes, force, version).await
    }

    /// `DELETE /v2/apps/{id}`.
    pub async fn delete_app(&self, id: &str, force: bool) -> Result<DeploymentRecord, ApiError> {
        let _w = self.writes.lock().await;
        if !self.state().apps.contains_key(id) {
            return Err(ApiError::app_not_found(id));
        }
        let version = self.next_version();
        let d = self
            .commit(
                vec![Change::Delete {
                    app_id: id.to_string(),
                }],
                force,
                version,
            )
            .await?;
        self.bus.publish_value(event_json::app_terminated(id));
        Ok(d)
    }

    /// `POST /v2/apps/{id}/restart`.
    pub async fn restart_app(&self, id: &str, force: bool) -> Result<DeploymentRecord, ApiError> {
        let _w = self.writes.lock().await;
        let version = self.next_version();
        let app = {
            let s = self.state();
            let existing = s.apps.get(id).ok_or_else(|| ApiError::app_not_found(id))?;
            let mut app = existing.clone();
            Self::stamp(&mut app, Some(existing), version, true);
            app
        };
        self.commit(
            vec![Change::Put {
                app,
                action: marathon::deployment::action::RESTART_APPLICATION,
            }],
            force,
            version,
        )
        .await
    }

    /// Kills tasks (ids already resolved). With `scale`, the apps'
    /// `instances` drop by the number killed (one deployment).
    pub async fn kill_tasks(
        &self,
        task_ids: &[String],
        scale: bool,
        force: bool,
    ) -> Result<(Vec<marathon::Task>, Option<DeploymentRecord>), ApiError> {
        let _w = self.writes.lock().await;
        let mut deployment = None;
        if scale {
            let version = self.next_version();
            let changes = {
                let s = self.state();
                let mut per_app: BTreeMap<String, u32> = BTreeMap::new();
                for id in task_ids {
                    if let Some(t) = s.tasks.get(id).filter(|t| t.state != TaskState::Killing) {
                        *per_app.entry(t.app_id.clone()).or_default() += 1;
                    }
                }
                let mut changes = Vec::new();
                for (app_id, n) in per_app {
                    if let Some(existing) = s.apps.get(&app_id) {
                        let mut app = existing.clone();
                        app.instances = app.instances.saturating_sub(n);
                        Self::stamp(&mut app, Some(existing), version, false);
                        changes.push(Change::Put {
                            app,
                            action: marathon::deployment::action::SCALE_APPLICATION,
                        });
                    }
                }
                changes
            };
            if !changes.is_empty() {
                deployment = Some(self.commit(changes, force, version).await?);
            }
        }
        let killed = self.start_kills(task_ids, "killed on request").await;
        Ok((killed, deployment))
    }

    /// `DELETE /v2/deployments/{id}`: force = stop only; else roll back.
    pub async fn cancel_deployment(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Option<DeploymentRecord>, ApiError> {
        let _w = self.writes.lock().await;
        let Some(d) = self.state().deployments.get(id).cloned() else {
            return Err(ApiError::NotFound(format!(
                "DeploymentPlan {id} does not exist"
            )));
        };
        if force {
            self.store.delete_deployment(id).await?;
            self.state().deployments.remove(id);
            self.counters
                .deployments_failed
                .fetch_add(1, Ordering::Relaxed);
            self.bus
                .publish_value(event_json::deployment_failed(&d, "cancelled"));
            return Ok(None);
        }
        // The rollback replaces it: one transaction removes it and stores
        // the rollback (its apps, versions and deployment).
        let version = self.next_version();
        let changes: Vec<Change> = {
            let s = self.state();
            d.original
                .iter()
                .map(|(app_id, orig)| match orig {
                    Some(o) => {
                        let mut app = o.clone();
                        app.version = Some(version);
                        if let Some(vi) = app.version_info.as_mut() {
                            vi.last_scaling_at = version;
                        }
                        let action = action_for(
                            s.apps.get(app_id),
                            &app,
                            s.apps
                                .get(app_id)
                                .is_none_or(|c| validation::is_upgrade(c, &app)),
                        );
                        Change::Put { app, action }
                    }
                    None => Change::Delete {
                        app_id: app_id.clone(),
                    },
                })
                .collect()
        };
        Ok(Some(
            self.commit_replacing(changes, true, version, Some(&d))
                .await?,
        ))
    }

    /// Marks tasks KILLING and kills them in the background; returns their
    /// Marathon view (as of the kill).
    pub async fn start_kills(&self, task_ids: &[String], reason: &str) -> Vec<marathon::Task> {
        let mut out = Vec::new();
        let mut to_kill = Vec::new();
        {
            let mut s = self.state();
            for id in task_ids {
                let Some(t) = s.tasks.get_mut(id) else {
                    continue;
                };
                if t.state.is_terminal() {
                    continue;
                }
                if t.state != TaskState::Killing {
                    t.state = TaskState::Killing;
                    to_kill.push(t.clone());
                }
                let t = t.clone();
                out.push(s.task_json(&t));
            }
        }
        // KILLING is in etcd before the caller answers: a manager killed
        // right after still carries the kill out once it is back.
        let writes: Vec<Write> = to_kill
            .iter()
            .filter_map(|t| Store::put(self.store.task_key(&t.id).ok()?, t).ok())
            .collect();
        if !writes.is_empty() {
            if let Err(e) = self.store.apply_chunked(writes).await {
                tracing::warn!(error = %e, "persisting TASK_KILLING failed; killing anyway");
            }
        }
        for t in to_kill {
            self.announce(&t, reason);
            self.spawn_kill_persisted(t);
        }
        out
    }

    /// Publishes `status_update_event` + `instance_changed_event`.
    pub fn announce(&self, t: &TaskRecord, message: &str) {
        self.bus
            .publish_value(event_json::status_update(t, message));
        self.bus.publish_value(event_json::instance_changed(t));
    }

    /// `DELETE /v2/queue/{id}/delay`.
    pub fn reset_delay(&self, app_id: &str) -> Result<(), ApiError> {
        let mut s = self.state();
        if !s.apps.contains_key(app_id) {
            return Err(ApiError::app_not_found(app_id));
        }
        s.backoff.remove(app_id);
        drop(s);
        self.wake();
        Ok(())
    }

    /// Resolves task ids given in any historic format to known task ids.
    /// Err(id) = not a task id at all.
    pub fn resolve_task_ids(&self, ids: &[String]) -> Result<Vec<String>, String> {
        let s = self.state();
        let mut out = Vec::new();
        for id in ids {
            if s.tasks.contains_key(id) {
                out.push(id.clone());
                continue;
            }
            let Some((_app, uuid)) = crate::ids::parse_task_id(id) else {
                return Err(id.clone());
            };
            out.extend(
                s.tasks
                    .keys()
                    .filter(|k| crate::ids::parse_task_id(k).is_some_and(|(_, u)| u == uuid))
                    .cloned(),
            );
        }
        out.dedup();
        Ok(out)
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
