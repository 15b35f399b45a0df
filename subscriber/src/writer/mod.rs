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
//!   diff is applied with revision compares. The read lists the keys with
//!   their mod revisions only; a value is read when the key is not at the
//!   revision this process wrote or read it at (anyone else's write moves
//!   the revision), so a record changed behind the writer's back is always
//!   read and compared.
//!
//! Why an event's delete never depends on this process having written the
//! record, and never removes what it should not: the record is looked for
//! by its key (where this process wrote it, where the app's names put it,
//! where the app id puts it: [`crate::plan::record_keys`]), read, and
//! deleted only when it is ours and only at the revision read
//! ([`crate::plan::event_actions`]). Where this process put or read the
//! record itself it knows that revision and skips the read (one round
//! trip); if the key changed since, the compare fails and the delete is
//! done again the read way.
//!
//! etcd unavailable: the batch in hand is retried with backoff while events
//! wait in the bounded queue; when the queue overflows the newest events are
//! dropped, counted, and a full resync is scheduled.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::{kind, Metrics};
use crate::model::{AppSpec, TaskEvent, TaskInfo};
use crate::plan::{event_actions, Change, Summary};
use crate::record_store::{
    Action, Applied, Done, Existing, IdOf, RecordId, Store, StoreError, StoredKey,
};
use crate::source::AppSource;

mod events;
mod resync;
mod sink;
mod view;

pub use sink::{EpochClock, EventSink};
use view::{Tombstones, Written};

/// Events applied in one etcd transaction batch at most.
const BATCH: usize = 128;

pub enum Msg {
    Event(TaskEvent),
    /// A fetch that began at this epoch is under way: start listing the
    /// keys its resync will diff against, now, beside the fetch.
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
    /// Definitions being fetched ahead, since a task of that app version was
    /// staged ([`Writer::fetch_early`]), by (id, version).
    early: HashMap<(String, String), EarlyFetch>,
    /// Our records as last written / read, by container.
    written: HashMap<String, Written>,
    /// Containers touched by events since the fetch in flight began.
    touched: HashMap<String, u64>,
    tombstones: Tombstones,
    /// The snapshot being read for the resync whose fetch began at this epoch.
    prefetched: Option<(u64, Prefetched)>,
}

/// A definition fetched in the background.
type EarlyFetch = tokio::task::JoinHandle<Result<AppSpec, crate::source::SourceError>>;

/// A keys-only listing: the resync reads the values of the keys the
/// writer does not know at their revision ([`crate::plan::split_known`]).
type Prefetched = tokio::task::JoinHandle<Result<Vec<StoredKey>, StoreError>>;

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
            early: HashMap::new(),
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
                    let read = tokio::spawn(async move {
                        let t0 = std::time::Instant::now();
                        let read = store.keys().await;
                        tracing::debug!(
                            read_ms = t0.elapsed().as_millis() as u64,
                            "resync: registry keys listed"
                        );
                        read
                    });
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
                    self.fetch_early(&batch);
                    self.prefetch_apps(&batch).await;
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
        let mut backoff = daemon::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match self.apply_changes(changes).await {
                Ok(()) => return true,
                Err(e) => {
                    self.metrics.error(kind::ETCD);
                    let delay = backoff.next();
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "etcd write failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// Applies the changes that are still right ([`event_actions`]) in one
    /// round trip when every delete is at a revision this process knows
    /// ([`Change::DeleteAt`]: its own put or read); other deletes read what
    /// the registry holds at their keys first. A delete whose known revision
    /// no longer holds (the key was rewritten since) is done again the read
    /// way. A retry reads again, so a retried delete is checked against the
    /// registry as it is then.
    async fn apply_changes(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let (sent, applied) = self.read_and_apply(changes.to_vec()).await?;
        let mut again = Vec::new();
        for (sent, done) in sent.into_iter().zip(&applied.results) {
            match (sent, done) {
                (Sent::Put(id), Done::Applied(revision)) => {
                    if let Some(w) = self.written.get_mut(&id.container) {
                        if *w.service == id.service && *w.group == id.group {
                            w.revision = Some(*revision);
                        }
                    }
                }
                (Sent::DeleteAt(id), Done::Conflict) => again.push(Change::Delete(id)),
                _ => {}
            }
        }
        // A stale known revision is not a conflict: the read-first delete decides.
        self.count(Applied {
            conflicts: applied.conflicts.saturating_sub(again.len()),
            ..applied
        });
        if !again.is_empty() {
            let (_, applied) = self.read_and_apply(again).await?;
            self.count(applied);
        }
        Ok(())
    }

    /// Reads the keys of the deletes that need it, then applies.
    async fn read_and_apply(
        &self,
        changes: Vec<Change>,
    ) -> Result<(Vec<Sent>, Applied), StoreError> {
        let deletes: Vec<RecordId> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Delete(id) => Some(id.clone()),
                Change::Put(_) | Change::DeleteAt(..) => None,
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
        let at: HashSet<RecordId> = changes
            .iter()
            .filter_map(|c| match c {
                Change::DeleteAt(id, _) => Some(id.clone()),
                Change::Put(_) | Change::Delete(_) => None,
            })
            .collect();
        let plan = event_actions(changes, &stored, &self.cfg.owner);
        if plan.foreign > 0 {
            warn!(
                count = plan.foreign,
                "a dead task's key holds another owner's record: left alone"
            );
        }
        if plan.actions.is_empty() {
            return Ok((Vec::new(), Applied::default()));
        }
        let sent = plan
            .actions
            .iter()
            .map(|a| match a {
                Action::Put { record, .. } => Sent::Put(RecordId::of(record)),
                Action::Delete { id, .. } if at.contains(id) => Sent::DeleteAt(id.clone()),
                Action::Delete { .. } => Sent::Delete,
            })
            .collect();
        Ok((sent, self.store.apply(plan.actions).await?))
    }

    fn count(&self, applied: Applied) {
        self.metrics.records_written.inc_by(applied.puts as u64);
        self.metrics.records_removed.inc_by(applied.deletes as u64);
        for _ in 0..applied.conflicts {
            self.metrics.error(kind::CONFLICT);
        }
    }
}

/// What an applied action was, for reading its result.
enum Sent {
    Put(RecordId),
    /// At a revision this process knew.
    DeleteAt(RecordId),
    /// At the revision just read.
    Delete,
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
