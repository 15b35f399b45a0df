//! The one ordered writer: every change to etcd goes through here, events and
//! resyncs alike, in the order they were queued.
//!
//! Why a resync can never resurrect a dead task:
//! - the writer counts the events it processes (the epoch); a resync carries
//!   the epoch at which its Marathon fetch began, and every task touched by an
//!   event after that is left exactly as the event made it (`protect`);
//! - killed task ids are remembered for a while (tombstones) and never
//!   written again (only for final states: a task that is merely out of
//!   reach, TASK_UNREACHABLE / TASK_UNKNOWN / TASK_LOST, loses its record
//!   but comes back with its next TASK_RUNNING, see
//!   [`crate::model::status_effect`]);
//! - the etcd snapshot is read by the writer, after every event queued
//!   before the fetch began was applied (the driver queues a
//!   [`Msg::Prefetch`] once the fetch has begun, so the read overlaps the
//!   fetch; events applied while it runs are all protected, and for those
//!   containers the writer keeps its own view, not the snapshot's), and the
//!   diff is applied with revision compares.
//!
//! Why an event's delete never depends on this process having written the
//! record, and never removes what it should not: the record is looked for
//! by its key (where this process wrote it, where the app's names put it,
//! where the app id puts it: [`crate::plan::record_keys`]), read, and
//! deleted only when it is ours and only at the revision read
//! ([`crate::plan::event_actions`]).
//!
//! etcd unavailable: the batch in hand is retried with backoff while events
//! wait in the bounded queue; when the queue overflows the newest events are
//! dropped, counted, and a full resync is scheduled.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::{kind, Metrics};
use crate::model::{status_effect, task_matches, AppSpec, StatusEffect, TaskEvent, TaskInfo};
use crate::plan::{desired_records, event_actions, record_keys, resync_plan, Change, Summary};
use crate::record::{record_from_task, wanted};
use crate::source::{AppSource, SourceError};
use crate::store::{Action, Applied, Existing, IdOf, Instance, RecordId, Store, StoreError};

/// Events applied in one etcd transaction batch at most.
const BATCH: usize = 128;

pub enum Msg {
    Event(TaskEvent),
    /// A fetch that began at this epoch is under way: start reading the
    /// snapshot its resync will diff against, now, beside the fetch.
    Prefetch(u64),
    Resync(ResyncRequest),
}

/// A resync whose Marathon side was fetched; the writer takes the snapshot,
/// diffs and applies.
pub struct ResyncRequest {
    pub apps: Vec<(AppSpec, Vec<TaskInfo>)>,
    /// The writer epoch when the fetch began ([`EpochClock::begin_fetch`]).
    pub fetch_epoch: u64,
    pub dry_run: bool,
    pub reply: oneshot::Sender<Result<Summary, String>>,
}

/// Event counter shared by the writer and the resync driver.
#[derive(Default)]
pub struct EpochClock {
    inner: Mutex<(u64, Option<u64>)>,
}

impl EpochClock {
    /// Marks the start of a Marathon fetch; returns the epoch to send along.
    pub fn begin_fetch(&self) -> u64 {
        let mut g = self.inner.lock().expect("epoch lock");
        g.1 = Some(g.0);
        g.0
    }

    pub fn end_fetch(&self) {
        self.inner.lock().expect("epoch lock").1 = None;
    }

    /// One event processed: its epoch, and the floor of the fetch in flight.
    fn tick(&self) -> (u64, Option<u64>) {
        let mut g = self.inner.lock().expect("epoch lock");
        g.0 += 1;
        (g.0, g.1)
    }
}

/// Where producers (SSE reader, /callback) put events. Never blocks: on a
/// full queue the event is dropped, counted, and a resync is scheduled.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Msg>,
    overflow: Arc<AtomicBool>,
    resync: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    pub fn push(&self, ev: TaskEvent) {
        match self.tx.try_send(Msg::Event(ev)) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.events_dropped.inc();
                if !self.overflow.swap(true, Relaxed) {
                    self.metrics.queue_overflows.inc();
                    warn!("event queue full: dropping events, a full resync follows");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!("writer stopped; event ignored");
            }
        }
    }

    /// Asks the resync driver for a full resync soon.
    pub fn schedule_resync(&self) {
        self.resync.notify_one();
    }
}

/// Recently killed task ids, bounded in count and age.
struct Tombstones {
    order: VecDeque<(Instant, String)>,
    set: HashSet<String>,
    ttl: Duration,
    cap: usize,
}

impl Tombstones {
    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_string()) {
            self.order.push_back((Instant::now(), id.to_string()));
        }
        while self.order.len() > self.cap
            || self
                .order
                .front()
                .is_some_and(|(t, _)| t.elapsed() > self.ttl)
        {
            if let Some((_, id)) = self.order.pop_front() {
                self.set.remove(&id);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

/// One of our records as last written or read, compact: its key names and
/// its JSON (equal records serialise to equal bytes). One allocation for the
/// JSON instead of the twenty or so of an [`Instance`].
struct Written {
    service: Box<str>,
    group: Box<str>,
    json: Box<[u8]>,
}

impl Written {
    fn of(r: &Instance) -> Written {
        Written {
            service: r.service.as_str().into(),
            group: r.group.as_str().into(),
            json: r.to_json().into_boxed_slice(),
        }
    }

    fn id(&self, container: &str) -> RecordId {
        RecordId {
            service: self.service.to_string(),
            group: self.group.to_string(),
            container: container.to_string(),
        }
    }
}

struct Tracked {
    task: TaskInfo,
    app: Arc<AppSpec>,
}

pub struct WriterConfig {
    pub owner: String,
    pub require_healthy: bool,
    pub tombstone_ttl: Duration,
}

pub struct Writer<S, A> {
    store: S,
    source: Arc<A>,
    cfg: WriterConfig,
    metrics: Arc<Metrics>,
    rx: mpsc::Receiver<Msg>,
    clock: Arc<EpochClock>,
    overflow: Arc<AtomicBool>,
    resync: Arc<Notify>,
    /// Running tasks we know of (for health events and require-healthy).
    tasks: HashMap<String, Tracked>,
    /// App definitions by (id, version).
    apps: HashMap<(String, String), Arc<AppSpec>>,
    /// Our records as last written / read, by container.
    written: HashMap<String, Written>,
    /// Containers touched by events since the fetch in flight began.
    touched: HashMap<String, u64>,
    tombstones: Tombstones,
    /// The snapshot being read for the resync whose fetch began at this epoch.
    prefetched: Option<(u64, Prefetched)>,
}

type Prefetched = tokio::task::JoinHandle<Result<Vec<Existing>, StoreError>>;

/// Everything the resync driver and the producers need to talk to the writer.
pub struct Channels {
    pub tx: mpsc::Sender<Msg>,
    pub sink: EventSink,
    pub clock: Arc<EpochClock>,
    pub resync: Arc<Notify>,
}

impl<S: Store, A: AppSource> Writer<S, A> {
    pub fn new(
        store: S,
        source: Arc<A>,
        cfg: WriterConfig,
        metrics: Arc<Metrics>,
        capacity: usize,
    ) -> (Writer<S, A>, Channels) {
        let (tx, rx) = mpsc::channel(capacity);
        let clock = Arc::new(EpochClock::default());
        let overflow = Arc::new(AtomicBool::new(false));
        let resync = Arc::new(Notify::new());
        let sink = EventSink {
            tx: tx.clone(),
            overflow: overflow.clone(),
            resync: resync.clone(),
            metrics: metrics.clone(),
        };
        let tombstones = Tombstones {
            order: VecDeque::new(),
            set: HashSet::new(),
            ttl: cfg.tombstone_ttl,
            cap: 200_000,
        };
        let w = Writer {
            store,
            source,
            cfg,
            metrics,
            rx,
            clock: clock.clone(),
            overflow,
            resync: resync.clone(),
            tasks: HashMap::new(),
            apps: HashMap::new(),
            written: HashMap::new(),
            touched: HashMap::new(),
            tombstones,
            prefetched: None,
        };
        (
            w,
            Channels {
                tx,
                sink,
                clock,
                resync,
            },
        )
    }

    /// Runs until cancelled (or every sender is gone).
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut pending: Option<Msg> = None;
        loop {
            let first = match pending.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = self.rx.recv() => match m { Some(m) => m, None => return },
                    _ = cancel.cancelled() => return,
                },
            };
            match first {
                Msg::Resync(req) => self.resync(req, &cancel).await,
                Msg::Prefetch(fetch_epoch) => {
                    // Every earlier event's write is applied: read from here.
                    let store = self.store.clone();
                    let read = tokio::spawn(async move { store.snapshot().await });
                    if let Some((_, old)) = self.prefetched.replace((fetch_epoch, read)) {
                        old.abort();
                    }
                }
                Msg::Event(ev) => {
                    let mut batch = vec![ev];
                    while batch.len() < BATCH {
                        match self.rx.try_recv() {
                            Ok(Msg::Event(ev)) => batch.push(ev),
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.metrics
                        .queue_depth
                        .dec_by(i64::try_from(batch.len()).unwrap_or(i64::MAX));
                    let mut changes = Vec::new();
                    for ev in batch {
                        self.on_event(ev, &mut changes).await;
                    }
                    let changes = self.valid_only(coalesce(changes), Change::id);
                    if !changes.is_empty() && !self.apply_retrying(&changes, &cancel).await {
                        return;
                    }
                }
            }
            if self.overflow.swap(false, Relaxed) {
                info!("queue overflowed: scheduling a full resync");
                self.resync.notify_one();
            }
        }
    }

    fn touch(&mut self, container: &str) {
        let (epoch, floor) = self.clock.tick();
        match floor {
            None => {
                if !self.touched.is_empty() {
                    self.touched.clear();
                }
            }
            Some(f) => {
                self.touched.insert(container.to_string(), epoch);
                if self.touched.len() > 100_000 {
                    self.touched.retain(|_, e| *e > f);
                }
            }
        }
    }

    async fn app_for(&mut self, app_id: &str, version: Option<&str>) -> Option<Arc<AppSpec>> {
        if let Some(v) = version {
            if let Some(a) = self.apps.get(&(app_id.to_string(), v.to_string())) {
                return Some(a.clone());
            }
        }
        match self.source.app(app_id).await {
            Ok(spec) => {
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
                Some(spec)
            }
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
    async fn on_event(&mut self, ev: TaskEvent, changes: &mut Vec<Change>) {
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
                        changes.push(Change::Delete(old.id(task_id)));
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
    fn remove_record(
        &mut self,
        task_id: &str,
        app: Option<&AppSpec>,
        app_id: &str,
        changes: &mut Vec<Change>,
    ) {
        let known = self.written.remove(task_id).map(|w| w.id(task_id));
        for id in record_keys(task_id, known, app, app_id) {
            changes.push(Change::Delete(id));
        }
    }

    /// Drops (log + metric) every change or action whose key would be
    /// invalid, so one bad name can never fail a whole transaction batch:
    /// the registry validates every name of an apply before sending
    /// anything. Records are validated when built, so this only ever
    /// catches a bug.
    fn valid_only<T>(&self, mut items: Vec<T>, id_of: impl Fn(&T) -> RecordId) -> Vec<T> {
        items.retain(|a| {
            let id = id_of(a);
            match id.validate() {
                Ok(()) => true,
                Err(e) => {
                    self.metrics.error(kind::INVALID_NAME);
                    warn!(record = %id, error = %e, "write refused: invalid name");
                    false
                }
            }
        });
        items
    }

    /// Applies with backoff until etcd takes it; false when cancelled.
    async fn apply_retrying(&mut self, changes: &[Change], cancel: &CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.apply_changes(changes).await {
                Ok(()) => return true,
                Err(e) => {
                    self.metrics.error(kind::ETCD);
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "etcd write failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => return false,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Reads what the registry holds at the keys to delete, then applies
    /// the changes that are still right ([`event_actions`]). A retry reads
    /// again, so a retried delete is checked against the registry as it is
    /// then.
    async fn apply_changes(&self, changes: &[Change]) -> Result<(), StoreError> {
        let deletes: Vec<RecordId> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Delete(id) => Some(id.clone()),
                Change::Put(_) => None,
            })
            .collect();
        let stored: HashMap<RecordId, Existing> = if deletes.is_empty() {
            HashMap::new()
        } else {
            self.store
                .read(&deletes)
                .await?
                .into_iter()
                .map(|e| (RecordId::of(&e.record), e))
                .collect()
        };
        let plan = event_actions(changes.to_vec(), &stored, &self.cfg.owner);
        if plan.foreign > 0 {
            warn!(
                count = plan.foreign,
                "a dead task's key holds another owner's record: left alone"
            );
        }
        if !plan.actions.is_empty() {
            let applied = self.store.apply(plan.actions).await?;
            self.count(applied);
        }
        Ok(())
    }

    fn count(&self, applied: Applied) {
        self.metrics.records_written.inc_by(applied.puts as u64);
        self.metrics.records_removed.inc_by(applied.deletes as u64);
        for _ in 0..applied.conflicts {
            self.metrics.error(kind::CONFLICT);
        }
    }

    async fn resync(&mut self, req: ResyncRequest, cancel: &CancellationToken) {
        let started = Instant::now();
        let ResyncRequest {
            apps,
            fetch_epoch,
            dry_run,
            reply,
        } = req;
        let result = self.resync_inner(apps, fetch_epoch, dry_run, cancel).await;
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
    }

    async fn resync_inner(
        &mut self,
        apps: Vec<(AppSpec, Vec<TaskInfo>)>,
        fetch_epoch: u64,
        dry_run: bool,
        cancel: &CancellationToken,
    ) -> Result<Summary, String> {
        let t0 = Instant::now();
        let read = match self.prefetched.take() {
            Some((epoch, read)) if epoch == fetch_epoch => match read.await {
                Ok(r) => r,
                Err(e) => Err(StoreError::Unavailable(format!(
                    "snapshot read failed: {e}"
                ))),
            },
            other => {
                if let Some((_, read)) = other {
                    read.abort();
                }
                self.store.snapshot().await
            }
        };
        let snapshot = match read {
            Ok(s) => s,
            Err(e) => {
                self.metrics.error(kind::ETCD);
                return Err(e.to_string());
            }
        };
        let snapshot_ms = t0.elapsed().as_millis() as u64;
        let protect: HashSet<String> = self
            .touched
            .iter()
            .filter(|(_, e)| **e > fetch_epoch)
            .map(|(c, _)| c.clone())
            .collect();
        let tombstones = &self.tombstones;
        let (desired, errors) =
            desired_records(&apps, &self.cfg.owner, self.cfg.require_healthy, &|id| {
                tombstones.contains(id)
            });
        for e in &errors {
            self.metrics.error(kind::INVALID_NAME);
            warn!(error = %e, "resync: no record for this app's tasks (invalid name)");
        }
        let mut plan = resync_plan(&desired, &snapshot, &self.cfg.owner, &protect);
        drop(desired);
        plan.actions = self.valid_only(std::mem::take(&mut plan.actions), Action::id);
        if plan.foreign > 0 {
            warn!(
                count = plan.foreign,
                "resync: keys held by another owner left alone"
            );
        }
        if dry_run {
            return Ok(plan.summary);
        }
        // The in-memory view as it will be once the plan is applied (kept
        // only if it is): our records as read, with the plan's changes.
        let mut written: HashMap<String, Written> = HashMap::with_capacity(snapshot.len());
        for e in snapshot {
            if e.record.owner == self.cfg.owner {
                written.insert(e.record.container.clone(), Written::of(&e.record));
            }
        }
        for a in &plan.actions {
            match a {
                Action::Put { record, .. } => {
                    written.insert(record.container.clone(), Written::of(record));
                }
                Action::Delete { id, .. } => {
                    written.remove(&id.container);
                }
            }
        }
        let diff_ms = t0.elapsed().as_millis() as u64 - snapshot_ms;
        if !plan.actions.is_empty() {
            match self.store.apply(std::mem::take(&mut plan.actions)).await {
                Ok(applied) => self.count(applied),
                Err(e) => {
                    self.metrics.error(kind::ETCD);
                    return Err(e.to_string());
                }
            }
        }
        if cancel.is_cancelled() {
            return Err("shutting down".into());
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
        self.written = written;
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
        self.tasks = tasks;
        self.apps = cache;
        self.metrics
            .apps_cached
            .set(i64::try_from(self.apps.len()).unwrap_or(i64::MAX));
        debug!(
            snapshot_ms,
            diff_ms,
            total_ms = t0.elapsed().as_millis() as u64,
            "resync applied"
        );
        Ok(plan.summary)
    }
}

/// Keeps the last change per key, in the order of last occurrence (etcd
/// rejects a transaction naming one key twice).
fn coalesce(changes: Vec<Change>) -> Vec<Change> {
    if changes.len() < 2 {
        return changes;
    }
    let mut last: HashMap<RecordId, usize> = HashMap::new();
    for (i, a) in changes.iter().enumerate() {
        last.insert(a.id(), i);
    }
    changes
        .into_iter()
        .enumerate()
        .filter(|(i, a)| last.get(&a.id()) == Some(i))
        .map(|(_, a)| a)
        .collect()
}

#[cfg(test)]
mod tests;
