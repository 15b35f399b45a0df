//! The manager's own state in etcd under the internal prefix (default
//! `/mdo/manager`): apps, their versions, tasks (with runtime handles) and
//! deployments, one JSON value per key. The keys are built by
//! [`registry::keys::manager`] (this file formats none) and the connection
//! is the registry's ([`registry::Registry`]: endpoints, user/password, TLS,
//! request timeouts, the raised reply size limit).
//!
//! Task records are written by one writer only (`task_writer.rs`), many
//! per transaction.
//!
//! Writes: an API change is ONE etcd transaction ([`Store::apply`]): all of
//! it is stored or none; a change with more operations than etcd accepts in
//! one transaction (`--max-txn-ops`, 128 by default) or more bytes than one
//! request (`--max-request-bytes`) is refused before anything is written
//! ([`StoreError::TooLarge`], a 422 at the API). Only writes that are safe
//! to repeat (task records, trimming old versions at start-up) may be split
//! into several transactions ([`Store::apply_chunked`]).
//!
//! Reads at start-up go in pages ([`Store::load`]), so any amount of state
//! loads; each app keeps at most `--max-versions` versions, the oldest
//! dropped in the same transaction as the new one ([`Store::versions_to_drop`]).

use std::collections::BTreeMap;

use marathon::{App, Timestamp};
use registry::{KvOp, ManagerKeys, Registry};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

#[derive(Clone)]
pub struct Store {
    registry: Registry,
    keys: ManagerKeys,
    max_versions: usize,
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
