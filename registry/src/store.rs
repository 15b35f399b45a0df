//! [`Registry`]: typed reads, ordered writes with per-operation compares,
//! over `etcd-client`.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KvClient, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchClient,
};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::keys::{normalize_prefix, parse_instance_key, InstanceName, Scope};
use crate::record::Instance;
use crate::settings::Settings;

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Responses can be large (10,000 records is about 4 MB): lift tonic's
/// 4 MB default.
const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// A connected registry. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct Registry {
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    prefix: String,
    auth: Option<(String, String)>,
    request_timeout: Duration,
    max_txn_ops: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

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

fn is_unauthenticated(e: &Error) -> bool {
    match e {
        Error::Etcd(inner) => match inner.as_ref() {
            etcd_client::Error::GRpcStatus(s) => {
                // tonic's Code is not re-exported by etcd-client.
                format!("{:?}", s.code()) == "Unauthenticated"
                    || s.message().contains("invalid auth token")
            }
            _ => false,
        },
        _ => false,
    }
}

impl Registry {
    /// Connects (lazily for plain endpoints; with a user it authenticates
    /// at once, so wrong credentials fail here).
    pub async fn connect(settings: &Settings) -> Result<Registry> {
        let prefix = normalize_prefix(&settings.prefix)?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(settings.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some((user, password)) = &settings.auth {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &settings.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(Certificate::from_pem(read_file(ca)?));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                t = t.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
            }
            options = options.with_tls(t);
        }
        if settings.endpoints.is_empty() {
            return Err(Error::InvalidSettings("no etcd endpoint given".into()));
        }
        let timeout = settings.connect_timeout + settings.request_timeout;
        let client =
            tokio::time::timeout(timeout, Client::connect(&settings.endpoints, Some(options)))
                .await
                .map_err(|_| Error::Timeout(timeout))??;
        debug!(endpoints = ?settings.endpoints, prefix = %prefix, "registry connected");
        Ok(Registry {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            client,
            prefix,
            auth: settings.auth.clone(),
            request_timeout: settings.request_timeout,
            max_txn_ops: settings.max_txn_ops.clamp(1, 100_000),
        })
    }

    /// The normalised prefix records live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The raw client (tests, benchmarks, maintenance like compaction).
    /// Build keys with [`crate::keys`], never by hand.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn watch_client(&self) -> WatchClient {
        self.watch.clone()
    }

    /// Operations per transaction (clamped settings value).
    pub(crate) fn max_txn_ops_limit(&self) -> usize {
        self.max_txn_ops
    }

    /// Runs one unary request with the request timeout, re-authenticating
    /// once when the auth token expired.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(KvClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let first = self.timed(f(self.kv.clone())).await;
        match first {
            Err(e) if self.auth.is_some() && is_unauthenticated(&e) => {
                self.reauthenticate().await?;
                self.timed(f(self.kv.clone())).await
            }
            other => other,
        }
    }

    async fn timed<T>(
        &self,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Timeout(self.request_timeout)),
        }
    }

    /// Gets a fresh auth token (tokens expire when idle).
    pub(crate) async fn reauthenticate(&self) -> Result<()> {
        if let Some((user, password)) = &self.auth {
            warn!(user = %user, "etcd auth token rejected, authenticating again");
            let mut client = self.client.clone();
            self.timed(client.set_client_auth(user.clone(), password.clone()))
                .await?;
        }
        Ok(())
    }

    pub(crate) fn is_unauthenticated(&self, e: &Error) -> bool {
        self.auth.is_some() && is_unauthenticated(e)
    }

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
        let key_prefix = scope.key_prefix(&self.prefix)?;
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

    /// The store's current revision (a count-only read of `key_prefix`).
    pub(crate) async fn current_revision(&self, key_prefix: &str) -> Result<i64> {
        let resp = self
            .call(|mut kv| {
                let k = key_prefix.to_string();
                async move {
                    kv.get(k, Some(GetOptions::new().with_prefix().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Decodes one stored key/value into a record.
    pub(crate) fn decode(
        &self,
        key: &str,
        value: &[u8],
    ) -> std::result::Result<(InstanceName, Instance), (Option<InstanceName>, String)> {
        let Some(name) = parse_instance_key(&self.prefix, key) else {
            return Err((None, "not an instance key of the registry layout".into()));
        };
        match Instance::from_stored(key, &name, value) {
            Ok(i) => Ok((name, i)),
            Err(e) => Err((Some(name), e.to_string())),
        }
    }

    /// One record, if present and valid.
    pub async fn get(&self, name: &InstanceName) -> Result<Option<Entry>> {
        let key = name.key(&self.prefix)?;
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
                Op::Put { instance, .. } => instance.key(&self.prefix)?,
                Op::Delete { name, .. } => name.key(&self.prefix)?,
            };
            keyed.push(key);
        }
        let total = ops.len();
        let mut report = ApplyReport {
            outcomes: Vec::with_capacity(total),
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
                    self.max_txn_ops.saturating_sub(1).max(1)
                } else {
                    self.max_txn_ops
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
            }
            start = end;
        }
        Ok(report)
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        path: path.display().to_string(),
        source,
    })
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
