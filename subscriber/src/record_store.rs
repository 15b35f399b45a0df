//! Where records live: the [`Store`] seam between the writer and etcd. The
//! etcd implementation goes through the `registry` crate (the only code that
//! knows key formats); [`MemStore`] backs unit tests of the writer.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

pub use registry::{Instance, InstanceName as RecordId, Port as PortRecord};

/// The identity of a record (its key), without re-validating names: records
/// are validated when built ([`crate::record::record_from_task`]) or read.
pub trait IdOf {
    fn of(r: &Instance) -> RecordId;
}

impl IdOf for RecordId {
    fn of(r: &Instance) -> RecordId {
        RecordId {
            service: r.service.clone(),
            group: r.group.clone(),
            container: r.container.clone(),
        }
    }
}

/// A record read from the registry with its etcd mod revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub record: Instance,
    pub revision: i64,
}

/// A record key in the registry with its etcd mod revision, its value not
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: RecordId,
    pub revision: i64,
}

/// Condition a write is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Unconditional (event writes: the writer is the only writer of its records).
    Any,
    /// The key must not exist.
    Absent,
    /// The key must still be at this mod revision.
    Revision(i64),
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built and consumed at once, never stored in bulk
pub enum Action {
    Put { record: Instance, expect: Expect },
    Delete { id: RecordId, expect: Expect },
}

impl Action {
    pub fn id(&self) -> RecordId {
        match self {
            Action::Put { record, .. } => RecordId::of(record),
            Action::Delete { id, .. } => id.clone(),
        }
    }
}

/// What an apply did: transactions whose compares failed were not applied
/// (someone else changed those keys; the next resync looks again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub puts: usize,
    pub deletes: usize,
    pub conflicts: usize,
    /// Per action, in their order.
    pub results: Vec<Done>,
}

/// What became of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Written or removed; a put's record is now at this mod revision.
    Applied(i64),
    /// Its condition did not hold: nothing changed.
    Conflict,
    /// A delete whose condition held with nothing to remove.
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// etcd could not be reached or refused the request: retry later.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
}

/// Record storage used by the writer. Clones share one backend (the writer
/// reads a resync's snapshot on a task of its own).
pub trait Store: Clone + Send + Sync + 'static {
    /// Every record under the prefix (all owners), with revisions.
    fn snapshot(&self) -> impl Future<Output = Result<Vec<Existing>, StoreError>> + Send;
    /// Every record key under the prefix (all owners) with its mod
    /// revision, values not read; keys that name no record are left out.
    fn keys(&self) -> impl Future<Output = Result<Vec<StoredKey>, StoreError>> + Send;
    /// The records at these keys (all owners), with revisions; keys with
    /// nothing valid at them are left out.
    fn read(
        &self,
        ids: &[RecordId],
    ) -> impl Future<Output = Result<Vec<Existing>, StoreError>> + Send;
    /// As [`Store::read`], for many keys at once (a resync's unknown keys):
    /// in as few round trips as the store can.
    fn read_many(
        &self,
        ids: &[RecordId],
    ) -> impl Future<Output = Result<Vec<Existing>, StoreError>> + Send {
        self.read(ids)
    }
    /// Applies actions in order, in transactions of at most 128 operations.
    fn apply(
        &self,
        actions: Vec<Action>,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
}

/// In-memory store for unit tests; `fail` makes every call fail.
#[derive(Clone, Default)]
pub struct MemStore {
    pub inner: Arc<Mutex<MemInner>>,
}

#[derive(Default)]
pub struct MemInner {
    pub records: BTreeMap<RecordId, Existing>,
    pub revision: i64,
    pub fail: bool,
    pub applies: usize,
    /// Served (once) by the next snapshot or key listing instead of the
    /// records: a read that happened earlier than the writes made since.
    pub frozen: Option<Vec<Existing>>,
    /// Values read by [`Store::snapshot`], [`Store::read`] and
    /// [`Store::read_many`] (a resync reads only the values it does not
    /// know).
    pub values_read: usize,
}

impl MemStore {
    pub fn set_fail(&self, fail: bool) {
        self.inner.lock().expect("lock").fail = fail;
    }

    pub fn containers(&self) -> Vec<String> {
        let g = self.inner.lock().expect("lock");
        let mut v: Vec<String> = g.records.keys().map(|k| k.container.clone()).collect();
        v.sort();
        v
    }

    pub fn get(&self, container: &str) -> Option<Instance> {
        let g = self.inner.lock().expect("lock");
        g.records
            .values()
            .find(|e| e.record.container == container)
            .map(|e| e.record.clone())
    }

    /// The next snapshot returns the records as they are now.
    pub fn freeze_next_snapshot(&self) {
        let mut g = self.inner.lock().expect("lock");
        g.frozen = Some(g.records.values().cloned().collect());
    }

    pub fn insert(&self, record: Instance) {
        let mut g = self.inner.lock().expect("lock");
        g.revision += 1;
        let revision = g.revision;
        g.records
            .insert(RecordId::of(&record), Existing { record, revision });
    }
}

impl Store for MemStore {
    async fn snapshot(&self) -> Result<Vec<Existing>, StoreError> {
        let mut g = self.inner.lock().expect("lock");
        if g.fail {
            return Err(StoreError::Unavailable("mem store failing".into()));
        }
        let read: Vec<Existing> = match g.frozen.take() {
            Some(frozen) => frozen,
            None => g.records.values().cloned().collect(),
        };
        g.values_read += read.len();
        Ok(read)
    }

    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut g = self.inner.lock().expect("lock");
        if g.fail {
            return Err(StoreError::Unavailable("mem store failing".into()));
        }
        let key = |e: &Existing| StoredKey {
            id: RecordId::of(&e.record),
            revision: e.revision,
        };
        if let Some(frozen) = g.frozen.take() {
            return Ok(frozen.iter().map(key).collect());
        }
        Ok(g.records.values().map(key).collect())
    }

    async fn read(&self, ids: &[RecordId]) -> Result<Vec<Existing>, StoreError> {
        let mut g = self.inner.lock().expect("lock");
        if g.fail {
            return Err(StoreError::Unavailable("mem store failing".into()));
        }
        let found: Vec<Existing> = ids
            .iter()
            .filter_map(|id| g.records.get(id).cloned())
            .collect();
        g.values_read += found.len();
        Ok(found)
    }

    async fn apply(&self, actions: Vec<Action>) -> Result<Applied, StoreError> {
        let mut g = self.inner.lock().expect("lock");
        if g.fail {
            return Err(StoreError::Unavailable("mem store failing".into()));
        }
        g.applies += 1;
        let mut out = Applied::default();
        // As in etcd: each action under its own condition, a chunk of them
        // at one revision.
        for chunk in actions.chunks(128) {
            g.revision += 1;
            let revision = g.revision;
            for a in chunk {
                let cur = g.records.get(&a.id()).map(|e| e.revision);
                let expect = match a {
                    Action::Put { expect, .. } | Action::Delete { expect, .. } => *expect,
                };
                let ok = match expect {
                    Expect::Any => true,
                    Expect::Absent => cur.is_none(),
                    Expect::Revision(r) => cur == Some(r),
                };
                if !ok {
                    out.conflicts += 1;
                    out.results.push(Done::Conflict);
                    continue;
                }
                match a {
                    Action::Put { record, .. } => {
                        out.puts += 1;
                        g.records.insert(
                            RecordId::of(record),
                            Existing {
                                record: record.clone(),
                                revision,
                            },
                        );
                        out.results.push(Done::Applied(revision));
                    }
                    Action::Delete { id, .. } => match g.records.remove(id) {
                        Some(_) => {
                            out.deletes += 1;
                            out.results.push(Done::Applied(revision));
                        }
                        None => out.results.push(Done::NotFound),
                    },
                }
            }
        }
        Ok(out)
    }
}

/// The real store: etcd through the `registry` crate.
#[derive(Clone, Debug)]
pub struct EtcdStore {
    pub registry: registry::Registry,
}

fn unavailable(e: registry::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Store for EtcdStore {
    async fn snapshot(&self) -> Result<Vec<Existing>, StoreError> {
        let snap = self.registry.list_all().await.map_err(unavailable)?;
        if !snap.invalid.is_empty() {
            tracing::warn!(
                count = snap.invalid.len(),
                "registry holds keys that are not valid records; left alone"
            );
        }
        Ok(existing(snap))
    }

    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let (_, keys) = self
            .registry
            .list_keys(&registry::Scope::All)
            .await
            .map_err(unavailable)?;
        let listed = keys.len();
        let keys: Vec<StoredKey> = keys
            .into_iter()
            .filter_map(|k| {
                Some(StoredKey {
                    id: k.name?,
                    revision: k.mod_revision,
                })
            })
            .collect();
        if keys.len() < listed {
            tracing::warn!(
                count = listed - keys.len(),
                "registry holds keys that are not valid records; left alone"
            );
        }
        Ok(keys)
    }

    async fn read_many(&self, ids: &[RecordId]) -> Result<Vec<Existing>, StoreError> {
        let snap = self.registry.get_many(ids).await.map_err(unavailable)?;
        Ok(existing(snap))
    }

    async fn read(&self, ids: &[RecordId]) -> Result<Vec<Existing>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let found: Vec<Option<Existing>> = futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                match self.registry.get(&id).await {
                    Ok(e) => Ok(e.map(|e| Existing {
                        record: e.instance,
                        revision: e.mod_revision,
                    })),
                    // Not a valid record (or name): not ours to delete; a
                    // resync leaves it alone as well.
                    Err(registry::Error::InvalidRecord { key, reason }) => {
                        tracing::warn!(%key, %reason, "registry key holds no valid record; left alone");
                        Ok(None)
                    }
                    Err(registry::Error::InvalidName { .. }) => Ok(None),
                    Err(e) => Err(unavailable(e)),
                }
            })
            .buffered(32)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn apply(&self, actions: Vec<Action>) -> Result<Applied, StoreError> {
        use registry::{Expect as E, Op, Outcome};
        let conv = |e: Expect| match e {
            Expect::Any => E::Any,
            Expect::Absent => E::Absent,
            Expect::Revision(r) => E::ModRevision(r),
        };
        let ops: Vec<Op> = actions
            .into_iter()
            .map(|a| match a {
                Action::Put { record, expect } => Op::Put {
                    instance: record,
                    expect: conv(expect),
                },
                Action::Delete { id, expect } => Op::Delete {
                    name: id,
                    expect: conv(expect),
                },
            })
            .collect();
        let is_put: Vec<bool> = ops.iter().map(|o| matches!(o, Op::Put { .. })).collect();
        let report = self.registry.apply(ops).await.map_err(unavailable)?;
        let mut out = Applied::default();
        for ((put, outcome), revision) in is_put.iter().zip(&report.outcomes).zip(&report.revisions)
        {
            out.results.push(match (put, outcome) {
                (true, Outcome::Applied) => {
                    out.puts += 1;
                    Done::Applied(*revision)
                }
                (false, Outcome::Applied) => {
                    out.deletes += 1;
                    Done::Applied(*revision)
                }
                (_, Outcome::CompareFailed) => {
                    out.conflicts += 1;
                    Done::Conflict
                }
                (_, Outcome::NotFound) => Done::NotFound,
            });
        }
        Ok(out)
    }
}

/// The records of a registry read, each with its revision.
fn existing(snap: registry::Snapshot) -> Vec<Existing> {
    snap.entries
        .into_iter()
        .map(|e| Existing {
            record: e.instance,
            revision: e.mod_revision,
        })
        .collect()
}
