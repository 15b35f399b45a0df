//! A resync in the writer: the keys and their revisions (listed beside the
//! Marathon fetch, values not read), the values of the keys the writer
//! does not know at their revision (its own writes and reads it knows),
//! the pure diff, the apply, the answer, and then the in-memory view
//! rebuilt from what Marathon and etcd hold now, keeping what events touched
//! since the fetch began. The answer does not wait for the rebuild (nothing
//! in it depends on the view; the next queued message does wait for it),
//! and the replaced view is freed on a blocking thread, off the writer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{ResyncRequest, Tracked, Writer, Written};
use crate::metrics::kind;
use crate::model::{AppSpec, TaskInfo};
use crate::plan::{desired_apps, resync_plan_stored, split_known, Stored, Summary, Wanted};
use crate::record_store::{Action, Done, Existing, RecordId, Store, StoreError};
use crate::source::AppSource;

/// A resync reads every record in one range read instead of the values it
/// does not know when more than this many are unknown (the first resync,
/// other owners' records): the values it reads by key go 128 to a
/// transaction, one round trip each.
const FULL_READ_ABOVE: usize = 512;

impl<S: Store, A: AppSource> Writer<S, A> {
    pub(super) async fn resync(&mut self, req: ResyncRequest, cancel: &CancellationToken) {
        let started = Instant::now();
        let ResyncRequest {
            apps,
            fetch_epoch,
            dry_run,
            reply,
        } = req;
        let (result, view) = match self.resync_inner(apps, fetch_epoch, dry_run, cancel).await {
            Ok((summary, view)) => (Ok(summary), view),
            Err(e) => (Err(e), None),
        };
        match &result {
            Ok(s) if !dry_run => {
                self.metrics.resync_done(started.elapsed());
                self.metrics.resync_added.inc_by(s.added as u64);
                self.metrics.resync_updated.inc_by(s.updated as u64);
                self.metrics.resync_removed.inc_by(s.removed as u64);
                if s.added + s.updated + s.removed > 0 {
                    info!(
                        added = s.added,
                        updated = s.updated,
                        removed = s.removed,
                        unchanged = s.unchanged,
                        took_ms = started.elapsed().as_millis() as u64,
                        "resync repaired the registry"
                    );
                } else {
                    debug!(unchanged = s.unchanged, "resync: registry already right");
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics.resync_failures.inc();
                warn!(error = %e, "resync failed");
            }
        }
        let _ = reply.send(result);
        if let Some(view) = view {
            let t0 = Instant::now();
            self.rebuild_view(view);
            debug!(
                view_ms = t0.elapsed().as_millis() as u64,
                "resync: in-memory view rebuilt"
            );
        }
    }

    async fn resync_inner(
        &mut self,
        apps: Vec<(AppSpec, Vec<TaskInfo>)>,
        fetch_epoch: u64,
        dry_run: bool,
        cancel: &CancellationToken,
    ) -> Result<(Summary, Option<View>), String> {
        let t0 = Instant::now();
        let listed = match self.prefetched.take() {
            Some((epoch, read)) if epoch == fetch_epoch => match read.await {
                Ok(r) => r,
                Err(e) => Err(StoreError::Unavailable(format!("key listing failed: {e}"))),
            },
            other => {
                if let Some((_, read)) = other {
                    read.abort();
                }
                self.store.keys().await
            }
        };
        let keys = match listed {
            Ok(k) => k,
            Err(e) => {
                self.metrics.error(kind::ETCD);
                return Err(e.to_string());
            }
        };
        let protect: HashSet<String> = self
            .touched
            .iter()
            .filter(|(_, e)| **e > fetch_epoch)
            .map(|(c, _)| c.clone())
            .collect();
        // Values are read only for keys the writer does not hold at their
        // revision; when there are many (the first resync), one range read
        // of everything instead.
        let written = &self.written;
        let mut split = split_known(
            &keys,
            |c| {
                let w = written.get(c)?;
                Some((&*w.service, &*w.group, w.revision?))
            },
            &protect,
        );
        let read = if split.read.is_empty() {
            Ok(Vec::new())
        } else if split.read.len() > FULL_READ_ABOVE {
            split.known.clear();
            self.store.snapshot().await
        } else {
            let ids: Vec<RecordId> = split.read.iter().map(|i| keys[*i].id.clone()).collect();
            self.store.read_many(&ids).await
        };
        let fetched = match read {
            Ok(s) => s,
            Err(e) => {
                self.metrics.error(kind::ETCD);
                return Err(e.to_string());
            }
        };
        let snapshot_ms = t0.elapsed().as_millis() as u64;
        let tombstones = &self.tombstones;
        let (desired, errors) = desired_apps(&apps, self.cfg.require_healthy, &|id| {
            tombstones.contains(id)
        });
        for e in &errors {
            self.metrics.error(kind::INVALID_NAME);
            warn!(error = %e, "resync: no record for this app's tasks (invalid name)");
        }
        // Each task is compared with its stored record as it is: a record
        // is built only for those to write.
        let wanted: Vec<Wanted> = desired
            .iter()
            .flat_map(|a| a.wanted(&self.cfg.owner))
            .collect();
        let actual: Vec<Stored> = split
            .known
            .iter()
            .filter_map(|i| {
                let k = &keys[*i];
                let w = self.written.get(&k.id.container)?;
                Some(Stored::Known {
                    service: &w.service,
                    group: &w.group,
                    container: &k.id.container,
                    json: &w.json,
                    revision: k.revision,
                })
            })
            .chain(fetched.iter().map(Stored::Read))
            .collect();
        let mut plan = resync_plan_stored(&wanted, &actual, &self.cfg.owner, &protect);
        drop(actual);
        drop(wanted);
        drop(desired);
        plan.actions = self.valid_only(std::mem::take(&mut plan.actions), Action::id);
        if plan.foreign > 0 {
            warn!(
                count = plan.foreign,
                "resync: keys held by another owner left alone"
            );
        }
        if dry_run {
            discard((apps, keys, fetched));
            return Ok((plan.summary, None));
        }
        // What the plan's changes make of the in-memory view (kept only if
        // they are applied).
        let mut changed: Vec<(String, Option<Written>)> = plan
            .actions
            .iter()
            .map(|a| match a {
                Action::Put { record, .. } => (record.container.clone(), Some(Written::of(record))),
                Action::Delete { id, .. } => (id.container.clone(), None),
            })
            .collect();
        let diff_ms = t0.elapsed().as_millis() as u64 - snapshot_ms;
        if !plan.actions.is_empty() {
            match self.store.apply(std::mem::take(&mut plan.actions)).await {
                Ok(applied) => {
                    // A put applied is at a known revision: the next resync
                    // need not read it.
                    for ((_, w), done) in changed.iter_mut().zip(&applied.results) {
                        if let (Some(w), Done::Applied(revision)) = (w, done) {
                            w.revision = Some(*revision);
                        }
                    }
                    self.count(applied)
                }
                Err(e) => {
                    self.metrics.error(kind::ETCD);
                    return Err(e.to_string());
                }
            }
        }
        if cancel.is_cancelled() {
            return Err("shutting down".into());
        }
        debug!(
            snapshot_ms,
            diff_ms,
            keys = keys.len(),
            known = split.known.len(),
            values_read = fetched.len(),
            total_ms = t0.elapsed().as_millis() as u64,
            "resync applied"
        );
        let known = split
            .known
            .iter()
            .map(|i| keys[*i].id.container.clone())
            .collect();
        discard(keys);
        let view = View {
            apps,
            fetched,
            known,
            changed,
            protect,
        };
        Ok((plan.summary, Some(view)))
    }

    /// The in-memory view after an applied resync: our records as read
    /// with the plan's changes, the running tasks and app definitions as
    /// Marathon has them, and what events touched since the fetch kept as
    /// the events left it.
    fn rebuild_view(&mut self, view: View) {
        let View {
            apps,
            fetched,
            known,
            changed,
            protect,
        } = view;
        // The in-memory view: our records as known or read, with the plan's
        // changes. A record still at the revision this process last wrote
        // or read it at holds the same value: its entry is reused, not
        // serialised again.
        let mut written: HashMap<String, Written> =
            HashMap::with_capacity(known.len() + fetched.len());
        for c in known {
            if let Some(w) = self.written.remove(&c) {
                written.insert(c, w);
            }
        }
        for e in &fetched {
            if e.record.owner != self.cfg.owner {
                continue;
            }
            let kept = match protect.contains(&e.record.container) {
                // Protected: the writer's own entry is kept below.
                true => None,
                false => self
                    .written
                    .remove(&e.record.container)
                    .filter(|w| w.revision == Some(e.revision)),
            };
            let w = kept.unwrap_or_else(|| Written::read(&e.record, e.revision));
            written.insert(e.record.container.clone(), w);
        }
        for (container, w) in changed {
            match w {
                Some(w) => written.insert(container, w),
                None => written.remove(&container),
            };
        }
        // Protected containers were left alone by the plan, and the snapshot
        // may predate their latest write: keep the writer's own view of them.
        for id in &protect {
            match self.written.remove(id) {
                Some(w) => {
                    written.insert(id.clone(), w);
                }
                None => {
                    written.remove(id);
                }
            }
        }
        let old_written = std::mem::replace(&mut self.written, written);
        let mut tasks: HashMap<String, Tracked> = HashMap::with_capacity(self.tasks.len());
        // The app-definition cache is rebuilt from what Marathon has now (by
        // app version and by the versions its tasks carry), so definitions
        // of deleted apps and old versions do not pile up.
        let mut cache: HashMap<(String, String), Arc<AppSpec>> = HashMap::with_capacity(apps.len());
        for (app, app_tasks) in apps {
            let app = Arc::new(app);
            let mut versions: HashSet<&str> = HashSet::new();
            for t in &app_tasks {
                if let Some(v) = t.app_version.as_deref() {
                    if v != app.version && versions.insert(v) {
                        cache.insert((app.id.clone(), v.to_string()), app.clone());
                    }
                }
            }
            cache.insert((app.id.clone(), app.version.clone()), app.clone());
            for t in app_tasks {
                if t.state == "TASK_RUNNING" && !self.tombstones.contains(&t.id) {
                    tasks.insert(
                        t.id.clone(),
                        Tracked {
                            task: t,
                            app: app.clone(),
                        },
                    );
                }
            }
        }
        for id in &protect {
            match self.tasks.remove(id) {
                Some(t) => {
                    if let Some(v) = t.task.app_version.as_deref() {
                        cache
                            .entry((t.app.id.clone(), v.to_string()))
                            .or_insert_with(|| t.app.clone());
                    }
                    tasks.insert(id.clone(), t);
                }
                None => {
                    tasks.remove(id);
                }
            }
        }
        let old_tasks = std::mem::replace(&mut self.tasks, tasks);
        let old_apps = std::mem::replace(&mut self.apps, cache);
        self.metrics
            .apps_cached
            .set(i64::try_from(self.apps.len()).unwrap_or(i64::MAX));
        discard((fetched, old_written, old_tasks, old_apps));
    }
}

/// What [`Writer::rebuild_view`] needs from an applied resync.
struct View {
    apps: Vec<(AppSpec, Vec<TaskInfo>)>,
    /// Records whose values were read.
    fetched: Vec<Existing>,
    /// Containers whose records the writer knew at their revision.
    known: Vec<String>,
    /// The plan's changes: a record written (its view) or removed (`None`).
    changed: Vec<(String, Option<Written>)>,
    protect: HashSet<String>,
}

/// Frees a resync's large structures (tens of thousands of small
/// allocations) on a blocking thread, so the writer goes on at once.
fn discard<T: Send + 'static>(garbage: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(move || drop(garbage));
        }
        Err(_) => drop(garbage),
    }
}
