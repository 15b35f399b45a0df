//! Typed reads and ordered writes of instance records on a [`Registry`]:
//! snapshots with each record's `mod_revision`, and writes with a compare
//! per operation.

use std::collections::HashSet;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse};

use crate::connection::Registry;
use tracing::warn;

use crate::error::{Error, Result};
use crate::keys::{parse_instance_key, InstanceName, Scope};
use crate::record::Instance;

/// One valid record as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub name: InstanceName,
    /// Use it in [`Expect::ModRevision`] to write only if nobody changed it.
    pub mod_revision: i64,
    pub instance: Instance,
}

/// A key under the prefix that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    pub key: String,
    /// Set when the key itself is a valid instance key (the value is bad).
    pub name: Option<InstanceName>,
    pub mod_revision: i64,
    pub reason: String,
}

/// The result of one read: every record in scope at `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store revision the read saw (watch from `revision + 1`).
    pub revision: i64,
    /// Valid records, sorted by key.
    pub entries: Vec<Entry>,
    /// Keys that failed to parse (reported, never fatal).
    pub invalid: Vec<InvalidEntry>,
}

impl Snapshot {
    /// Just the instances.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.entries.iter().map(|e| &e.instance)
    }

    /// Records written by `owner` (a resync only ever touches its own).
    pub fn owned_by<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.instance.owner == owner)
    }

    /// The record of one container, if present.
    pub fn find_container(&self, container: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name.container == container)
    }
}

/// A key in scope with its mod revision, its value not read
/// ([`Registry::list_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRevision {
    pub key: String,
    /// The record's names, when the key is a valid instance key.
    pub name: Option<InstanceName>,
    pub mod_revision: i64,
}

/// The condition one write depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Unconditional.
    Any,
    /// The key must not exist (create only).
    Absent,
    /// The key must exist (update or delete only).
    Present,
    /// The key's `mod_revision` must equal this one (from a [`Snapshot`]):
    /// nobody changed it since it was read. `0` means "absent".
    ModRevision(i64),
}

/// One write.
#[allow(clippy::large_enum_variant)] // built once per write, never stored in bulk
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { instance: Instance, expect: Expect },
    Delete { name: InstanceName, expect: Expect },
}

impl Op {
    pub fn put(instance: Instance) -> Op {
        Op::Put {
            instance,
            expect: Expect::Any,
        }
    }

    pub fn delete(name: InstanceName) -> Op {
        Op::Delete {
            name,
            expect: Expect::Any,
        }
    }

    fn expect(&self) -> Expect {
        match self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } => *expect,
        }
    }
}

/// What happened to one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written (put) or removed (delete).
    Applied,
    /// The delete's condition held but there was nothing to remove.
    NotFound,
    /// The condition did not hold: nothing was changed for this operation.
    CompareFailed,
}

/// Per-operation outcomes of [`Registry::apply`], in the order of the ops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub outcomes: Vec<Outcome>,
    /// Per operation, the store revision of the transaction it was sent in:
    /// an applied put's record is at this mod revision.
    pub revisions: Vec<i64>,
    /// Store revision after the last transaction (0 when nothing was sent).
    pub revision: i64,
    /// How many transactions were sent.
    pub transactions: usize,
}

impl ApplyReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.iter().filter(|o| **o == outcome).count()
    }
}

fn compare(key: &str, expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent | Expect::ModRevision(0) => Some(Compare::version(key, CompareOp::Equal, 0)),
        Expect::Present => Some(Compare::version(key, CompareOp::Greater, 0)),
        Expect::ModRevision(r) => Some(Compare::mod_revision(key, CompareOp::Equal, r)),
    }
}

impl Registry {
    /// Every record under the prefix.
    pub async fn list_all(&self) -> Result<Snapshot> {
        self.list(&Scope::All).await
    }

    /// Every record of one service (all groups).
    pub async fn list_service(&self, service: &str) -> Result<Snapshot> {
        self.list(&Scope::service(service)).await
    }

    /// Every record of one group of a service.
    pub async fn list_group(&self, service: &str, group: &str) -> Result<Snapshot> {
        self.list(&Scope::group(service, group)).await
    }

    /// Every record in `scope`, with the read's revision.
    pub async fn list(&self, scope: &Scope) -> Result<Snapshot> {
        let key_prefix = scope.key_prefix(self.prefix())?;
        let mut resp = self
            .call(|mut kv| {
                let k = key_prefix.clone();
                async move { kv.get(k, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut snapshot = Snapshot {
            revision,
            ..Snapshot::default()
        };
        for kv in resp.take_kvs() {
            let mod_revision = kv.mod_revision();
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match self.decode(&key, kv.value()) {
                Ok((name, instance)) => snapshot.entries.push(Entry {
                    key,
                    name,
                    mod_revision,
                    instance,
                }),
                Err((name, reason)) => {
                    warn!(key = %key, reason = %reason, "invalid registry record");
                    snapshot.invalid.push(InvalidEntry {
                        key,
                        name,
                        mod_revision,
                        reason,
                    })
                }
            }
        }
        Ok(snapshot)
    }

    /// Every key in `scope` with its mod revision, without the values (a
    /// keys-only read: etcd sends no values, nothing is parsed), and the
    /// read's revision. A caller holding the values of some keys at their
    /// revisions reads only the others ([`Registry::get_many`]).
    pub async fn list_keys(&self, scope: &Scope) -> Result<(i64, Vec<KeyRevision>)> {
        let key_prefix = scope.key_prefix(self.prefix())?;
        let mut resp = self
            .call(|mut kv| {
                let k = key_prefix.clone();
                async move {
                    kv.get(k, Some(GetOptions::new().with_prefix().with_keys_only()))
                        .await
                }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let keys = resp
            .take_kvs()
            .into_iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                KeyRevision {
                    name: parse_instance_key(self.prefix(), &key),
                    key,
                    mod_revision: kv.mod_revision(),
                }
            })
            .collect();
        Ok((revision, keys))
    }

    /// The records at these names, read in transactions of gets (one round
    /// trip per [`Registry::max_txn_ops`] names): valid records in
    /// `entries` (in the order of `names`), keys holding no valid record in
    /// `invalid`, absent keys left out. `revision` is the last
    /// transaction's.
    pub async fn get_many(&self, names: &[InstanceName]) -> Result<Snapshot> {
        let keys = names
            .iter()
            .map(|n| n.key(self.prefix()))
            .collect::<Result<Vec<String>>>()?;
        let mut snapshot = Snapshot::default();
        for (names, keys) in names
            .chunks(self.max_txn_ops_limit().max(1))
            .zip(keys.chunks(self.max_txn_ops_limit().max(1)))
        {
            let txn = Txn::new().and_then(
                keys.iter()
                    .map(|k| TxnOp::get(k.as_str(), None))
                    .collect::<Vec<_>>(),
            );
            let resp = self
                .call(|mut kv| {
                    let t = txn.clone();
                    async move { kv.txn(t).await }
                })
                .await?;
            snapshot.revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            for ((name, key), r) in names.iter().zip(keys).zip(resp.op_responses()) {
                let TxnOpResponse::Get(got) = r else {
                    continue;
                };
                let Some(kv) = got.kvs().first() else {
                    continue;
                };
                let mod_revision = kv.mod_revision();
                match Instance::from_stored(key, name, kv.value()) {
                    Ok(instance) => snapshot.entries.push(Entry {
                        key: key.clone(),
                        name: name.clone(),
                        mod_revision,
                        instance,
                    }),
                    Err(e) => {
                        warn!(key = %key, reason = %e, "invalid registry record");
                        snapshot.invalid.push(InvalidEntry {
                            key: key.clone(),
                            name: Some(name.clone()),
                            mod_revision,
                            reason: e.to_string(),
                        })
                    }
                }
            }
        }
        Ok(snapshot)
    }

    /// The store's current revision (a count-only read of `key_prefix`).
    pub(crate) async fn current_revision(&self, key_prefix: &str) -> Result<i64> {
        let resp = self.count_only(key_prefix).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Decodes one stored key/value into a record.
    pub(crate) fn decode(
        &self,
        key: &str,
        value: &[u8],
    ) -> std::result::Result<(InstanceName, Instance), (Option<InstanceName>, String)> {
        let Some(name) = parse_instance_key(self.prefix(), key) else {
            return Err((None, "not an instance key of the registry layout".into()));
        };
        match Instance::from_stored(key, &name, value) {
            Ok(i) => Ok((name, i)),
            Err(e) => Err((Some(name), e.to_string())),
        }
    }

    /// One record, if present and valid.
    pub async fn get(&self, name: &InstanceName) -> Result<Option<Entry>> {
        let key = name.key(self.prefix())?;
        let mut resp = self
            .call(|mut kv| {
                let k = key.clone();
                async move { kv.get(k, None).await }
            })
            .await?;
        let Some(kv) = resp.take_kvs().into_iter().next() else {
            return Ok(None);
        };
        let instance = Instance::from_stored(&key, name, kv.value())?;
        Ok(Some(Entry {
            key,
            name: name.clone(),
            mod_revision: kv.mod_revision(),
            instance,
        }))
    }

    /// Unconditional put of one record; returns the new revision.
    pub async fn put(&self, instance: &Instance) -> Result<i64> {
        let report = self.apply(vec![Op::put(instance.clone())]).await?;
        Ok(report.revision)
    }

    /// Unconditional delete of one record; true when something was removed.
    pub async fn delete(&self, name: &InstanceName) -> Result<bool> {
        let report = self.apply(vec![Op::delete(name.clone())]).await?;
        Ok(report.outcomes.first() == Some(&Outcome::Applied))
    }

    /// Applies writes in order, in transactions of at most `max_txn_ops`
    /// operations (127 when conditional ops are in it: each is a nested
    /// transaction, and etcd counts the nesting against the limit; a new transaction also starts when a key repeats, as etcd
    /// forbids one key twice in a transaction). Each operation carries its
    /// own condition and gets its own [`Outcome`]: a failed compare leaves
    /// that record unchanged and does not stop the others.
    ///
    /// Every name is validated before anything is sent: one bad name fails
    /// the whole call and nothing is written.
    pub async fn apply(&self, ops: Vec<Op>) -> Result<ApplyReport> {
        let mut keyed = Vec::with_capacity(ops.len());
        for op in &ops {
            let key = match op {
                Op::Put { instance, .. } => instance.key(self.prefix())?,
                Op::Delete { name, .. } => name.key(self.prefix())?,
            };
            keyed.push(key);
        }
        let total = ops.len();
        let mut report = ApplyReport {
            outcomes: Vec::with_capacity(total),
            revisions: Vec::with_capacity(total),
            ..ApplyReport::default()
        };
        let mut start = 0;
        while start < total {
            let mut end = start;
            let mut seen = HashSet::new();
            let mut nested = false;
            while end < total && seen.insert(&keyed[end]) {
                // etcd counts a nested transaction's op against the outer
                // limit: with any conditional op, one slot less.
                let with_next = nested || ops[end].expect() != Expect::Any;
                let limit = if with_next {
                    self.max_txn_ops_limit().saturating_sub(1).max(1)
                } else {
                    self.max_txn_ops_limit()
                };
                if end - start >= limit {
                    break;
                }
                nested = with_next;
                end += 1;
            }
            let chunk = &ops[start..end];
            let txn = build_txn(chunk, &keyed[start..end]);
            let resp = match self
                .call(|mut kv| {
                    let t = txn.clone();
                    async move { kv.txn(t).await }
                })
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    return Err(Error::Partial {
                        applied: start,
                        total,
                        source: Box::new(e),
                    })
                }
            };
            report.revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            report.transactions += 1;
            for (op, r) in chunk.iter().zip(resp.op_responses()) {
                report.outcomes.push(outcome_of(op, &r));
                report.revisions.push(report.revision);
            }
            start = end;
        }
        Ok(report)
    }
}

fn plain_op(op: &Op, key: &str) -> TxnOp {
    match op {
        Op::Put { instance, .. } => TxnOp::put(key, instance.to_json(), None),
        Op::Delete { .. } => TxnOp::delete(key, None::<DeleteOptions>),
    }
}

fn build_txn(chunk: &[Op], keys: &[String]) -> Txn {
    let ops: Vec<TxnOp> = chunk
        .iter()
        .zip(keys)
        .map(|(op, key)| match compare(key, op.expect()) {
            None => plain_op(op, key),
            // A nested transaction per conditional op: its compare decides
            // for that op alone, the outer transaction always succeeds.
            Some(cmp) => TxnOp::txn(Txn::new().when([cmp]).and_then([plain_op(op, key)])),
        })
        .collect();
    Txn::new().and_then(ops)
}

fn outcome_of(op: &Op, resp: &TxnOpResponse) -> Outcome {
    let inner = match resp {
        TxnOpResponse::Txn(t) if !t.succeeded() => return Outcome::CompareFailed,
        TxnOpResponse::Txn(t) => t.op_responses().into_iter().next(),
        other => Some(other.clone()),
    };
    match (op, inner) {
        (Op::Delete { .. }, Some(TxnOpResponse::Delete(d))) if d.deleted() == 0 => {
            Outcome::NotFound
        }
        _ => Outcome::Applied,
    }
}
