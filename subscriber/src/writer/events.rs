//! Turning one event into changes, keeping the writer's view of running
//! tasks, app definitions and its records up to date.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};

use tracing::{debug, warn};

use super::{Tracked, Writer, Written};
use crate::metrics::kind;
use crate::model::{status_effect, task_matches, AppSpec, StatusEffect, TaskEvent, TaskInfo};
use crate::plan::{record_keys, Change};
use crate::record::{record_from_task, wanted};
use crate::record_store::Store;
use crate::source::{AppSource, SourceError};

/// App definitions fetched at once for one batch of events, at most.
const PREFETCH_CONCURRENCY: usize = 16;

/// Definitions fetched ahead ([`Writer::fetch_early`]) at once, at most.
const EARLY_FETCHES: usize = 64;

impl<S: Store, A: AppSource> Writer<S, A> {
    /// Fetches, all at once (at most [`PREFETCH_CONCURRENCY`] in flight),
    /// the definitions that the batch's running tasks need and the cache
    /// lacks, so that a batch of new tasks of many apps (a deployment
    /// scaling 100 apps) waits for one round trip instead of one per app.
    /// Only warms the cache: events are still applied in order by
    /// [`Writer::on_event`], which fetches (and reports failures) itself
    /// for anything missing here.
    pub(super) async fn prefetch_apps(&mut self, batch: &[TaskEvent]) {
        let mut wanted: Vec<(String, String)> = Vec::new();
        for ev in batch {
            let TaskEvent::Status(task) = ev else {
                continue;
            };
            let Some(version) = task.app_version.as_deref() else {
                continue;
            };
            let key = (task.app_id.clone(), version.to_string());
            let needed = status_effect(&task.state) == StatusEffect::Running
                && !self.apps.contains_key(&key)
                && !self.early.contains_key(&key);
            if needed
                && !wanted
                    .iter()
                    .any(|(id, v)| *id == task.app_id && v == version)
            {
                wanted.push((task.app_id.clone(), version.to_string()));
            }
        }
        // One app: `on_event` fetches it just the same, in its turn.
        if wanted.len() < 2 {
            return;
        }
        let source = self.source.clone();
        let fetched: Vec<_> = futures::stream::iter(wanted)
            .map(|(id, version)| {
                let source = source.clone();
                async move {
                    let spec = source.app(&id).await;
                    (id, version, spec)
                }
            })
            .buffer_unordered(PREFETCH_CONCURRENCY)
            .collect()
            .await;
        for (id, version, spec) in fetched {
            if let Ok(spec) = spec {
                self.cache_app(&id, Some(&version), spec);
            }
        }
    }

    /// Starts fetching, in the background, the definition of each app
    /// version the cache lacks as soon as a task of it is staged
    /// (`TASK_STAGING` / `TASK_STARTING`, which Marathon sends too), so
    /// that its `TASK_RUNNING` finds it fetched: the round trip to Marathon
    /// leaves the path of a new instance (a scaled app's tasks are all of
    /// a version not seen before). At most [`EARLY_FETCHES`] at once;
    /// fetches that ended are moved into the cache here.
    pub(super) fn fetch_early(&mut self, batch: &[TaskEvent]) {
        let ended: Vec<(String, String)> = self
            .early
            .iter()
            .filter(|(_, fetch)| fetch.is_finished())
            .map(|(key, _)| key.clone())
            .collect();
        for key in ended {
            let fetched = self.early.remove(&key).and_then(|f| f.now_or_never());
            if let Some(Ok(Ok(spec))) = fetched {
                self.cache_app(&key.0, Some(&key.1), spec);
            }
        }
        for ev in batch {
            let TaskEvent::Status(task) = ev else {
                continue;
            };
            if !matches!(task.state.as_str(), "TASK_STAGING" | "TASK_STARTING") {
                continue;
            }
            let Some(version) = task.app_version.as_deref() else {
                continue;
            };
            let key = (task.app_id.clone(), version.to_string());
            if self.early.len() >= EARLY_FETCHES
                || self.apps.contains_key(&key)
                || self.early.contains_key(&key)
            {
                continue;
            }
            let source = self.source.clone();
            let id = task.app_id.clone();
            self.early
                .insert(key, tokio::spawn(async move { source.app(&id).await }));
        }
    }

    /// Caches a fetched definition by its own version and by `version`
    /// (the one a task event named), and returns it.
    fn cache_app(&mut self, app_id: &str, version: Option<&str>, spec: AppSpec) -> Arc<AppSpec> {
        let spec = Arc::new(spec);
        self.apps
            .insert((app_id.to_string(), spec.version.clone()), spec.clone());
        if let Some(v) = version {
            self.apps
                .insert((app_id.to_string(), v.to_string()), spec.clone());
        }
        self.metrics
            .apps_cached
            .set(i64::try_from(self.apps.len()).unwrap_or(i64::MAX));
        spec
    }

    async fn app_for(&mut self, app_id: &str, version: Option<&str>) -> Option<Arc<AppSpec>> {
        if let Some(v) = version {
            let key = (app_id.to_string(), v.to_string());
            if let Some(a) = self.apps.get(&key) {
                return Some(a.clone());
            }
            // Fetched ahead since the task was staged: wait for that one.
            if let Some(fetch) = self.early.remove(&key) {
                if let Ok(Ok(spec)) = fetch.await {
                    return Some(self.cache_app(app_id, version, spec));
                }
            }
        }
        match self.source.app(app_id).await {
            Ok(spec) => Some(self.cache_app(app_id, version, spec)),
            Err(SourceError::NotFound(_)) => {
                debug!(app_id, "app gone before its task event was handled");
                None
            }
            Err(e) => {
                self.metrics.error(kind::MARATHON);
                warn!(app_id, error = %e, "cannot fetch app definition; scheduling a resync");
                self.resync.notify_one();
                None
            }
        }
    }

    /// The app definition of a task that just died, to find its record
    /// by: the cached one, else (when this process does not know where the
    /// record is) Marathon's. `None` when the app is gone: the app id
    /// still names the key of apps made by the deployer.
    async fn app_of_dead_task(&mut self, task: &TaskInfo) -> Option<Arc<AppSpec>> {
        if let Some(v) = task.app_version.as_deref() {
            if let Some(a) = self.apps.get(&(task.app_id.clone(), v.to_string())) {
                return Some(a.clone());
            }
        }
        if self.written.contains_key(&task.id) {
            return None;
        }
        self.app_for(&task.app_id, task.app_version.as_deref())
            .await
    }

    /// Computes the changes for one event, updating the in-memory view.
    pub(super) async fn on_event(&mut self, ev: TaskEvent, changes: &mut Vec<Change>) {
        match ev {
            TaskEvent::Status(task) => {
                self.touch(&task.id);
                let effect = status_effect(&task.state);
                if matches!(effect, StatusEffect::Final | StatusEffect::Away) {
                    let tracked = self.tasks.remove(&task.id);
                    if effect == StatusEffect::Final {
                        if self.tombstones.contains(&task.id)
                            && !self.written.contains_key(&task.id)
                        {
                            // TASK_KILLED after TASK_KILLING: the first
                            // final event already removed the record.
                            return;
                        }
                        self.tombstones.insert(&task.id);
                    }
                    let app = match tracked {
                        Some(t) => Some(t.app),
                        None => self.app_of_dead_task(&task).await,
                    };
                    self.remove_record(&task.id, app.as_deref(), &task.app_id, changes);
                } else if effect == StatusEffect::Running {
                    if self.tombstones.contains(&task.id) {
                        debug!(task_id = %task.id, "running event for a killed task ignored");
                        return;
                    }
                    let Some(app) = self
                        .app_for(&task.app_id, task.app_version.as_deref())
                        .await
                    else {
                        return;
                    };
                    let mut task = task;
                    // Keep health learnt earlier (a status event carries none).
                    if task.healthy.is_none() {
                        task.healthy = self.tasks.get(&task.id).and_then(|t| t.task.healthy);
                    }
                    self.tasks.insert(
                        task.id.clone(),
                        Tracked {
                            task: task.clone(),
                            app,
                        },
                    );
                    self.refresh(&task.id, changes);
                }
            }
            TaskEvent::Health { id, healthy, .. } => {
                let ids: Vec<String> = self
                    .tasks
                    .keys()
                    .filter(|t| task_matches(t, &id))
                    .cloned()
                    .collect();
                for tid in ids {
                    self.touch(&tid);
                    if let Some(t) = self.tasks.get_mut(&tid) {
                        t.task.healthy = healthy;
                    }
                    self.refresh(&tid, changes);
                }
            }
            TaskEvent::Other => {}
        }
    }

    /// Puts or removes the record of a tracked task according to its state.
    fn refresh(&mut self, task_id: &str, changes: &mut Vec<Change>) {
        let Some(t) = self.tasks.get(task_id) else {
            return;
        };
        if !wanted(&t.app, &t.task, self.cfg.require_healthy) {
            let (app, app_id) = (t.app.clone(), t.task.app_id.clone());
            self.remove_record(task_id, Some(&app), &app_id, changes);
            return;
        }
        let node = t.task.node.clone().unwrap_or_else(|| t.task.host.clone());
        match record_from_task(&t.app, &t.task, &self.cfg.owner, &node) {
            Ok(rec) => {
                let new = Written::of(&rec);
                if let Some(old) = self.written.get(task_id) {
                    if old.json == new.json {
                        return;
                    }
                    if old.service != new.service || old.group != new.group {
                        // Names changed (labels edited): drop the old key.
                        changes.push(old.delete(task_id));
                    }
                }
                self.written.insert(task_id.to_string(), new);
                changes.push(Change::Put(rec));
            }
            Err(e) => {
                self.metrics.error(kind::INVALID_NAME);
                warn!(task_id, error = %e, "record not written: invalid name");
                // A record written under earlier (valid) names goes, as a
                // resync would remove it.
                let (app, app_id) = (t.app.clone(), t.task.app_id.clone());
                self.remove_record(task_id, Some(&app), &app_id, changes);
            }
        }
    }

    /// Asks for the task's record to go, wherever it may be (whether or not
    /// this process wrote it); [`Writer::apply_changes`] deletes only ours.
    /// Where this process put or read it, at the revision it knows.
    fn remove_record(
        &mut self,
        task_id: &str,
        app: Option<&AppSpec>,
        app_id: &str,
        changes: &mut Vec<Change>,
    ) {
        let known = self.written.remove(task_id);
        let known_id = known.as_ref().map(|w| w.id(task_id));
        for id in record_keys(task_id, known_id.clone(), app, app_id) {
            match &known {
                Some(w) if Some(&id) == known_id.as_ref() => changes.push(w.delete(task_id)),
                _ => changes.push(Change::Delete(id)),
            }
        }
    }
}
