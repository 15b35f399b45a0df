//! The manager's own state in etcd under the internal prefix (default
//! `/mdo/manager`): apps, their versions, tasks (with runtime handles) and
//! deployments, one JSON value per key. The keys are built by
//! [`registry::keys::manager`] (this file formats none) and the connection
//! is the registry's ([`registry::Registry`]: endpoints, user/password, TLS,
//! request timeouts, the raised reply size limit).
//!
//! Writes: an API change is ONE etcd transaction ([`Store::apply`]): all of
//! it is stored or none; a change with more operations than etcd accepts in
//! one transaction (`--max-txn-ops`, 128 by default) or more bytes than one
//! request (`--max-request-bytes`) is refused before anything is written
//! ([`StoreError::TooLarge`], a 422 at the API). Only writes that are safe
//! to repeat (task records, trimming old versions at start-up) may be split
//! into several transactions ([`Store::apply_chunked`]).
//!
//! Task records written one at a time ([`Store::put_task`],
//! [`Store::delete_task`]: a task started, is being killed, ended) go
//! through one queue and one writer, which applies whatever is queued when
//! it is free in one transaction (a group commit: no waiting for company,
//! so a lone write goes at once), in the order they were queued; a key is
//! never twice in one transaction. A failed transaction fails each write in
//! it, and their callers mark the tasks for the catch-up writes
//! (`unsaved`), which write each task's current state.
//!
//! Reads at start-up go in pages ([`Store::load`]), so any amount of state
//! loads; each app keeps at most `--max-versions` versions, the oldest
//! dropped in the same transaction as the new one ([`Store::versions_to_drop`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use marathon::{App, Timestamp};
use registry::{KvOp, ManagerKeys, Registry};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Keys per page of the start-up reads.
pub const LOAD_PAGE: usize = registry::DEFAULT_PAGE;

/// Default `--max-versions` (Marathon's `max_versions`).
pub const DEFAULT_MAX_VERSIONS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// etcd could not be reached or refused the request (boxed: the error
    /// is large and every `Result` here carries it).
    #[error("etcd: {}", describe(.0))]
    Etcd(Box<registry::Error>),
    /// The change cannot be one transaction: nothing was written.
    #[error("{0}")]
    TooLarge(Box<registry::Error>),
    /// An id that cannot be part of a key (a bug upstream: ids are
    /// validated at the API).
    #[error("{0}")]
    Key(Box<registry::Error>),
    /// A grouped task write failed with the transaction it was part of
    /// (the cause, once per write).
    #[error("etcd: {0}")]
    Grouped(String),
    #[error("encoding {key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// etcd's own message for a refused request (not the gRPC envelope), with
/// a hint where the fix is a flag.
fn describe(e: &registry::Error) -> String {
    if let registry::Error::Etcd(inner) = e {
        if let registry::etcd_client::Error::GRpcStatus(s) = inner.as_ref() {
            let hint = if s.message().contains("user name is empty") {
                "; etcd has authentication on: give --etcd-user and --etcd-password"
            } else {
                ""
            };
            return format!("{} ({:?}){hint}", s.message(), s.code());
        }
    }
    e.to_string()
}

impl StoreError {
    /// What went wrong, in one line, without the `etcd:` label.
    pub fn cause(&self) -> String {
        match self {
            StoreError::Etcd(e) => describe(e),
            other => other.to_string(),
        }
    }
}

impl From<registry::Error> for StoreError {
    fn from(e: registry::Error) -> Self {
        match e {
            registry::Error::TooManyOps { .. } | registry::Error::RequestTooLarge { .. } => {
                StoreError::TooLarge(Box::new(e))
            }
            registry::Error::InvalidName { .. }
            | registry::Error::InvalidPrefix(_)
            | registry::Error::OutsidePrefix { .. } => StoreError::Key(Box::new(e)),
            other => StoreError::Etcd(Box::new(other)),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One write of a transaction.
#[derive(Debug, Clone)]
pub enum Write {
    Put(String, Vec<u8>),
    Delete(String),
    DeletePrefix(String),
}

impl Write {
    fn into_op(self) -> KvOp {
        match self {
            Write::Put(key, value) => KvOp::Put { key, value },
            Write::Delete(key) => KvOp::Delete(key),
            Write::DeletePrefix(key) => KvOp::DeletePrefix(key),
        }
    }
}

impl Write {
    /// The key the write is about.
    fn key(&self) -> &str {
        match self {
            Write::Put(key, _) | Write::Delete(key) | Write::DeletePrefix(key) => key,
        }
    }

    fn size(&self) -> usize {
        match self {
            Write::Put(key, value) => key.len() + value.len(),
            Write::Delete(key) | Write::DeletePrefix(key) => key.len(),
        }
    }
}

/// One queued task write and where its outcome goes.
struct Queued {
    write: Write,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

/// Bytes of task records one grouped transaction carries at most (well
/// below etcd's default request limit of 1.5 MiB).
const GROUP_BYTES: usize = 512 * 1024;

#[derive(Clone)]
pub struct Store {
    registry: Registry,
    keys: ManagerKeys,
    max_versions: usize,
    /// The task writes' queue, its writer started by the first write.
    task_writes: Arc<OnceLock<mpsc::UnboundedSender<Queued>>>,
}

impl Store {
    /// Connects with `settings` (its prefix is the internal prefix). With a
    /// user, wrong credentials fail here.
    pub async fn connect(settings: &registry::Settings, max_versions: usize) -> Result<Store> {
        let keys = ManagerKeys::new(&settings.prefix)?;
        let registry = Registry::connect(settings).await?;
        Ok(Store {
            registry,
            keys,
            max_versions: max_versions.max(1),
            task_writes: Arc::default(),
        })
    }

    /// The raw client (health probe, event subscriptions); it carries the
    /// connection's credentials and TLS.
    pub fn client(&self) -> registry::etcd_client::Client {
        self.registry.client()
    }

    pub fn keys(&self) -> &ManagerKeys {
        &self.keys
    }

    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Versions kept per app.
    pub fn max_versions(&self) -> usize {
        self.max_versions
    }

    /// Operations one transaction may hold.
    pub fn max_txn_ops(&self) -> usize {
        self.registry.max_txn_ops()
    }

    pub fn app_key(&self, app_id: &str) -> Result<String> {
        Ok(self.keys.app(app_id)?)
    }

    pub fn version_key(&self, app_id: &str, version: &Timestamp) -> Result<String> {
        Ok(self.keys.version(app_id, &version.to_string())?)
    }

    pub fn versions_prefix(&self, app_id: &str) -> Result<String> {
        Ok(self.keys.app_versions_prefix(app_id)?)
    }

    pub fn task_key(&self, task_id: &str) -> Result<String> {
        Ok(self.keys.task(task_id)?)
    }

    pub fn deployment_key(&self, id: &str) -> Result<String> {
        Ok(self.keys.deployment(id)?)
    }

    /// Encodes a value for a `Put`.
    pub fn put<T: Serialize>(key: String, value: &T) -> Result<Write> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            key: key.clone(),
            source,
        })?;
        Ok(Write::Put(key, bytes))
    }

    /// Applies writes atomically: ONE transaction, all or nothing. More
    /// writes than one transaction may hold, or more bytes than one etcd
    /// request, is [`StoreError::TooLarge`] and nothing is written.
    pub async fn apply(&self, writes: Vec<Write>) -> Result<()> {
        let ops: Vec<KvOp> = writes.into_iter().map(Write::into_op).collect();
        self.registry.txn(&ops).await?;
        Ok(())
    }

    /// Applies writes in as many transactions as needed: NOT atomic. Only
    /// for bulk writes that are safe to repeat and are not an API change
    /// (task records of a launch pass, trimming versions at start-up): a
    /// failure part-way leaves some applied, and the next write of the same
    /// records repairs it.
    pub async fn apply_chunked(&self, writes: Vec<Write>) -> Result<()> {
        let ops: Vec<KvOp> = writes.into_iter().map(Write::into_op).collect();
        self.registry.txn_chunked(&ops).await?;
        Ok(())
    }

    /// Writes one task record (grouped with the task writes queued beside
    /// it; see the module's doc).
    pub async fn put_task<T: Serialize>(&self, task_id: &str, record: &T) -> Result<()> {
        let w = Self::put(self.task_key(task_id)?, record)?;
        self.write_task(w).await
    }

    /// Removes one task record (grouped like [`Store::put_task`]).
    pub async fn delete_task(&self, task_id: &str) -> Result<()> {
        self.write_task(Write::Delete(self.task_key(task_id)?))
            .await
    }

    /// Queues one task write for the group writer and waits for its
    /// transaction. Outside a runtime that can run the writer (or once it
    /// is gone), the write is its own transaction.
    async fn write_task(&self, write: Write) -> Result<()> {
        let queue = self.task_writes.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(group_commit(self.registry.clone(), rx));
            tx
        });
        let (done, outcome) = oneshot::channel();
        let write = match queue.send(Queued { write, done }) {
            Ok(()) => match outcome.await {
                Ok(result) => return result.map_err(StoreError::Grouped),
                // The writer ended with the write in hand (its runtime
                // is shutting down): the outcome is unknown, so an error,
                // and the caller marks the task for the catch-up writes.
                Err(_) => None,
            },
            Err(mpsc::error::SendError(queued)) => Some(queued.write),
        };
        match write {
            Some(w) => self.apply(vec![w]).await,
            None => Err(StoreError::Grouped(
                "the task writer stopped before the write was confirmed".into(),
            )),
        }
    }

    /// Removes one deployment record.
    pub async fn delete_deployment(&self, id: &str) -> Result<()> {
        self.apply(vec![Write::Delete(self.deployment_key(id)?)])
            .await
    }

    /// The versions to delete when `adding` joins `kept` (an app's stored
    /// versions): the oldest ones beyond `--max-versions`, never `adding`.
    pub fn versions_to_drop(
        &self,
        kept: Option<&BTreeMap<Timestamp, App>>,
        adding: Timestamp,
    ) -> Vec<Timestamp> {
        versions_to_drop(kept, adding, self.max_versions)
    }

    /// Every value under one state folder (`apps`, `versions`, `tasks`,
    /// `deployments`), read in pages, decoded, with its key; undecodable
    /// values are logged and skipped.
    pub async fn load<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<(String, T)>> {
        let prefix = self.keys.state_prefix(kind)?;
        let (_, kvs) = self.registry.range_prefix(&prefix, LOAD_PAGE).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            match serde_json::from_slice::<T>(&kv.value) {
                Ok(v) => out.push((kv.key, v)),
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping undecodable state"),
            }
        }
        Ok(out)
    }

    /// The version (timestamp) a key of the `versions` folder names.
    pub fn version_of_key(&self, key: &str) -> Option<Timestamp> {
        let (_, version) = self.keys.parse_version(key)?;
        version.parse().ok()
    }

    /// This manager's stable id, created once.
    pub async fn manager_id(&self) -> Result<String> {
        let key = self.keys.manager_id();
        if let Some(kv) = self.registry.get_key(&key).await? {
            return Ok(String::from_utf8_lossy(&kv.value).into_owned());
        }
        let id = uuid::Uuid::new_v4().to_string();
        let stored = self.registry.create_or_get(&key, id.as_bytes()).await?;
        Ok(String::from_utf8_lossy(&stored).into_owned())
    }
}

/// The task writer: takes the first queued write, adds what else is queued
/// (up to the transaction's op and byte limits, never a key twice), applies
/// them as one transaction and tells each caller. Ends with its queue.
async fn group_commit(registry: Registry, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let max_ops = registry.max_txn_ops().max(1);
    let mut held: Option<Queued> = None;
    loop {
        let first = match held.take() {
            Some(q) => q,
            None => match queue.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let batch = take_group(first, &mut queue, &mut held, max_ops, GROUP_BYTES);
        let ops: Vec<KvOp> = batch.iter().map(|q| q.write.clone().into_op()).collect();
        let result = registry.txn(&ops).await.map(|_| ()).map_err(|e| {
            let e = StoreError::from(e);
            tracing::debug!(writes = ops.len(), error = %e, "a grouped write of task records failed");
            e.cause()
        });
        for q in batch {
            let _ = q.done.send(result.clone());
        }
    }
}

/// `first` and the writes queued after it that fit in one transaction with
/// it: at most `max_ops`, about `max_bytes`, each key once. The first write
/// that does not fit is `held` for the next group (queue order is kept).
fn take_group(
    first: Queued,
    queue: &mut mpsc::UnboundedReceiver<Queued>,
    held: &mut Option<Queued>,
    max_ops: usize,
    max_bytes: usize,
) -> Vec<Queued> {
    let mut bytes = first.write.size();
    let mut keys: HashSet<String> = HashSet::from([first.write.key().to_string()]);
    let mut batch = vec![first];
    while batch.len() < max_ops {
        let Ok(next) = queue.try_recv() else { break };
        let size = next.write.size();
        if bytes + size > max_bytes || keys.contains(next.write.key()) {
            *held = Some(next);
            break;
        }
        bytes += size;
        keys.insert(next.write.key().to_string());
        batch.push(next);
    }
    batch
}

/// The oldest of `kept` beyond `max` once `adding` joins them (`adding`
/// itself is never dropped).
pub fn versions_to_drop(
    kept: Option<&BTreeMap<Timestamp, App>>,
    adding: Timestamp,
    max: usize,
) -> Vec<Timestamp> {
    let Some(kept) = kept else {
        return Vec::new();
    };
    let total = kept.len() + usize::from(!kept.contains_key(&adding));
    let excess = total.saturating_sub(max.max(1));
    kept.keys()
        .copied()
        .filter(|ts| *ts != adding)
        .take(excess)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn queued(w: Write) -> Queued {
        Queued {
            write: w,
            done: oneshot::channel().0,
        }
    }

    fn put(key: &str, bytes: usize) -> Write {
        Write::Put(key.into(), vec![b'x'; bytes])
    }

    fn keys_of(group: &[Queued]) -> Vec<String> {
        group.iter().map(|q| q.write.key().to_string()).collect()
    }

    #[test]
    fn a_group_takes_what_is_queued_up_to_a_repeated_key_or_a_limit() {
        // (queued after `a`, max ops, max bytes) -> (the group, the write held)
        let d = |k: &str| Write::Delete(k.into());
        type Case<'a> = (Vec<Write>, usize, usize, Vec<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (vec![], 128, 1000, vec!["a"], None),
            (
                vec![put("b", 9), d("c")],
                128,
                1000,
                vec!["a", "b", "c"],
                None,
            ),
            // Never a key twice in one transaction: the second `a` waits.
            (
                vec![put("b", 9), d("a"), put("c", 9)],
                128,
                1000,
                vec!["a", "b"],
                Some("a"),
            ),
            (
                vec![put("b", 9), put("c", 9)],
                2,
                1000,
                vec!["a", "b"],
                None,
            ),
            // The bytes: `a` is 10, `b` 11 (key + value).
            (
                vec![put("b", 10), put("c", 1)],
                128,
                20,
                vec!["a"],
                Some("b"),
            ),
            (
                vec![put("b", 10), put("c", 1)],
                128,
                21,
                vec!["a", "b"],
                Some("c"),
            ),
        ];
        for (rest, max_ops, max_bytes, want, want_held) in cases {
            let (tx, mut rx) = mpsc::unbounded_channel();
            for w in rest.clone() {
                tx.send(queued(w)).unwrap();
            }
            let mut held = None;
            let group = take_group(queued(put("a", 9)), &mut rx, &mut held, max_ops, max_bytes);
            assert_eq!(
                keys_of(&group),
                want,
                "{rest:?} ops {max_ops} bytes {max_bytes}"
            );
            assert_eq!(
                held.as_ref().map(|q| q.write.key()),
                want_held,
                "{rest:?} ops {max_ops} bytes {max_bytes}"
            );
        }
    }

    /// Many task writes at once, puts and deletes of the same keys among
    /// them, against a real etcd: each caller's writes land in the order it
    /// made them, so etcd ends with each task's last write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_task_writes_land_in_each_callers_order() {
        let etcd = testkit::Etcd::start().unwrap();
        let mut settings = registry::Settings::new([etcd.endpoint()]);
        settings.prefix = "/mdo/manager".into();
        let store = Store::connect(&settings, 5).await.unwrap();
        let revision = || async {
            let mut client = store.client();
            let r = client.get("/none", None).await.unwrap();
            r.header().unwrap().revision()
        };
        let before = revision().await;
        let mut callers = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            callers.push(tokio::spawn(async move {
                let id = format!("app.task-{i}");
                for step in 0..3 {
                    store.put_task(&id, &json!({"step": step})).await.unwrap();
                }
                if i % 2 == 0 {
                    store.delete_task(&id).await.unwrap();
                }
            }));
        }
        for c in callers {
            c.await.unwrap();
        }
        let tasks: Vec<(String, serde_json::Value)> = store.load("tasks").await.unwrap();
        let mut ids: Vec<usize> = tasks
            .iter()
            .map(|(key, value)| {
                assert_eq!(value, &json!({"step": 2}), "{key}: the last write");
                key.rsplit("task-").next().unwrap().parse().unwrap()
            })
            .collect();
        ids.sort();
        let odd: Vec<usize> = (0..200).filter(|i| i % 2 == 1).collect();
        assert_eq!(ids, odd, "the deleted ones are gone, the others kept");
        // Each transaction is one revision: fewer than the 700 writes.
        let transactions = revision().await - before;
        println!("700 task writes in {transactions} transactions");
        assert!(transactions < 700, "{transactions} transactions");
    }

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    fn versions(list: &[i64]) -> BTreeMap<Timestamp, App> {
        list.iter()
            .map(|ms| {
                let app: App = serde_json::from_value(serde_json::json!({"id": "/web"})).unwrap();
                (ts(*ms), app)
            })
            .collect()
    }

    #[test]
    fn oldest_versions_beyond_the_limit_are_dropped() {
        let cases: Vec<(usize, Vec<i64>, i64, Vec<i64>)> = vec![
            (3, vec![], 10, vec![]),
            (3, vec![1, 2], 10, vec![]),
            (3, vec![1, 2, 3], 10, vec![1]),
            (3, vec![1, 2, 3, 4, 5], 10, vec![1, 2, 3]),
            (1, vec![1], 10, vec![1]),
            (1, vec![10], 10, vec![]),
            (2, vec![1, 2, 10], 10, vec![1]),
        ];
        for (max, kept, adding, want) in cases {
            let kept = versions(&kept);
            let got = versions_to_drop(Some(&kept), ts(adding), max);
            let want: Vec<Timestamp> = want.into_iter().map(ts).collect();
            assert_eq!(got, want, "max {max}, adding {adding}");
        }
        assert!(versions_to_drop(None, ts(1), 1).is_empty());
    }

    #[test]
    fn too_large_changes_are_their_own_error() {
        let e: StoreError = registry::Error::TooManyOps { ops: 200, max: 128 }.into();
        assert!(matches!(e, StoreError::TooLarge(_)));
        assert!(e.to_string().contains("128"), "{e}");
        let e: StoreError = registry::Error::RequestTooLarge { bytes: 9 }.into();
        assert!(matches!(e, StoreError::TooLarge(_)));
        let e: StoreError = registry::Error::Timeout(std::time::Duration::from_secs(1)).into();
        assert!(matches!(e, StoreError::Etcd(_)));
    }
}
