//! Raw key/value access for state that is not instance records (the
//! manager's own state, [`crate::keys::manager`]): paged prefix reads, one
//! transaction with etcd's operation bound, idempotent bulk writes in
//! chunks, and create-once values. Every key must lie under the prefix the
//! [`Registry`] was connected with; keys are built by [`crate::keys`].

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

use crate::connection::Registry;
use crate::error::{Error, Result};

/// Keys per page of [`Registry::range_prefix`] unless told otherwise.
pub const DEFAULT_PAGE: usize = 500;

/// Bytes of keys and values per transaction of [`Registry::txn_chunked`]:
/// below etcd's default `--max-request-bytes` (1.5 MiB) with room for the
/// envelope.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Restarts of a paged read whose pinned revision was compacted meanwhile.
const COMPACTED_RETRIES: usize = 3;

/// One key and its value, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// One unconditional write of a raw transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete(String),
    /// Every key starting with this one.
    DeletePrefix(String),
}

impl KvOp {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> KvOp {
        KvOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// The key (or key prefix) this op writes.
    pub fn key(&self) -> &str {
        match self {
            KvOp::Put { key, .. } | KvOp::Delete(key) | KvOp::DeletePrefix(key) => key,
        }
    }

    /// Bytes this op adds to a request (key and value).
    pub fn size(&self) -> usize {
        match self {
            KvOp::Put { key, value } => key.len() + value.len(),
            KvOp::Delete(key) | KvOp::DeletePrefix(key) => key.len(),
        }
    }

    fn to_txn_op(&self) -> TxnOp {
        match self {
            KvOp::Put { key, value } => TxnOp::put(key.as_str(), value.clone(), None),
            KvOp::Delete(key) => TxnOp::delete(key.as_str(), None),
            KvOp::DeletePrefix(key) => {
                TxnOp::delete(key.as_str(), Some(DeleteOptions::new().with_prefix()))
            }
        }
    }
}

/// The end of the range of every key starting with `prefix` (etcd's rule:
/// the prefix with its last byte below 0xff incremented; empty = no end).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// etcd (or its gRPC layer) refused a request for its size.
fn is_request_too_large(e: &Error) -> bool {
    match e {
        Error::Etcd(inner) => match inner.as_ref() {
            etcd_client::Error::GRpcStatus(s) => {
                s.message().contains("request is too large")
                    || s.message().contains("received message larger than max")
            }
            _ => false,
        },
        _ => false,
    }
}

fn is_compacted(e: &Error) -> bool {
    match e {
        Error::Etcd(inner) => match inner.as_ref() {
            etcd_client::Error::GRpcStatus(s) => s.message().contains("compacted"),
            _ => false,
        },
        _ => false,
    }
}

impl Registry {
    /// Refuses keys outside this connection's prefix.
    fn check_key(&self, key: &str) -> Result<()> {
        let inside = key
            .strip_prefix(self.prefix())
            .is_some_and(|rest| rest.starts_with('/'));
        if inside {
            Ok(())
        } else {
            Err(Error::OutsidePrefix {
                key: key.to_string(),
                prefix: self.prefix().to_string(),
            })
        }
    }

    /// Every key starting with `key_prefix`, sorted by key, read in pages of
    /// `page` keys (each page continues after the last key of the previous
    /// one, all at the revision of the first page), so no reply grows with
    /// the amount of state. Returns the revision read and the keys.
    pub async fn range_prefix(
        &self,
        key_prefix: &str,
        page: usize,
    ) -> Result<(i64, Vec<KeyValue>)> {
        self.check_key(key_prefix)?;
        let mut attempt = 0;
        loop {
            match self.range_pages(key_prefix, page.max(1)).await {
                Err(e) if is_compacted(&e) && attempt < COMPACTED_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    async fn range_pages(&self, key_prefix: &str, page: usize) -> Result<(i64, Vec<KeyValue>)> {
        let end = prefix_range_end(key_prefix.as_bytes());
        let limit = i64::try_from(page).unwrap_or(i64::MAX);
        let mut from = key_prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_sort(SortTarget::Key, SortOrder::Ascend)
                .with_limit(limit)
                .with_revision(revision);
            let mut resp = self
                .call(|mut kv| {
                    let (k, o) = (from.clone(), options.clone());
                    async move { kv.get(k, Some(o)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last() else { break };
            from = last.key().to_vec();
            from.push(0);
            for kv in kvs {
                let mod_revision = kv.mod_revision();
                let (key, value) = kv.into_key_value();
                out.push(KeyValue {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    value,
                    mod_revision,
                });
            }
            if !more {
                break;
            }
        }
        Ok((revision, out))
    }

    /// How many keys start with `key_prefix` (a count-only read).
    pub async fn count_prefix(&self, key_prefix: &str) -> Result<i64> {
        self.check_key(key_prefix)?;
        Ok(self.count_only(key_prefix).await?.count())
    }

    /// A count-only read of the keys starting with `key_prefix`: no values,
    /// the count and the store revision.
    pub(crate) async fn count_only(&self, key_prefix: &str) -> Result<etcd_client::GetResponse> {
        self.call(|mut kv| {
            let k = key_prefix.to_string();
            async move {
                kv.get(k, Some(GetOptions::new().with_prefix().with_count_only()))
                    .await
            }
        })
        .await
    }

    /// One key, if present.
    pub async fn get_key(&self, key: &str) -> Result<Option<KeyValue>> {
        self.check_key(key)?;
        let mut resp = self
            .call(|mut kv| {
                let k = key.to_string();
                async move { kv.get(k, None).await }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next().map(|kv| {
            let mod_revision = kv.mod_revision();
            let (_, value) = kv.into_key_value();
            KeyValue {
                key: key.to_string(),
                value,
                mod_revision,
            }
        }))
    }

    /// The most operations one transaction may hold (etcd's `--max-txn-ops`).
    pub fn max_txn_ops(&self) -> usize {
        self.max_txn_ops_limit()
    }

    /// Applies `ops` as ONE transaction: all of them or none. More ops than
    /// [`Registry::max_txn_ops`] is [`Error::TooManyOps`], refused before
    /// anything is sent; a request etcd refuses for its size (its
    /// `--max-request-bytes`) is [`Error::RequestTooLarge`], nothing
    /// written. Returns the store revision after it. Nothing is sent for an
    /// empty list (revision 0).
    pub async fn txn(&self, ops: &[KvOp]) -> Result<i64> {
        let max = self.max_txn_ops();
        if ops.len() > max {
            return Err(Error::TooManyOps {
                ops: ops.len(),
                max,
            });
        }
        if ops.is_empty() {
            return Ok(0);
        }
        for op in ops {
            self.check_key(op.key())?;
        }
        let txn = Txn::new().and_then(ops.iter().map(KvOp::to_txn_op).collect::<Vec<_>>());
        let resp = self
            .call(|mut kv| {
                let t = txn.clone();
                async move { kv.txn(t).await }
            })
            .await
            .map_err(|e| {
                if is_request_too_large(&e) {
                    Error::RequestTooLarge {
                        bytes: ops.iter().map(KvOp::size).sum(),
                    }
                } else {
                    e
                }
            })?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Applies `ops` in order, in as many transactions of at most
    /// [`Registry::max_txn_ops`] operations and about [`CHUNK_BYTES`] as
    /// needed (one larger op goes alone). NOT atomic: use it only for
    /// writes that are safe to repeat (idempotent puts and deletes), where a
    /// failure part-way is repaired by doing it again. A failure is
    /// [`Error::Partial`] with how many ops were applied.
    pub async fn txn_chunked(&self, ops: &[KvOp]) -> Result<()> {
        for op in ops {
            self.check_key(op.key())?;
        }
        let max = self.max_txn_ops();
        let mut applied = 0;
        while applied < ops.len() {
            let mut end = applied;
            let mut bytes = 0;
            while end < ops.len()
                && end - applied < max
                && (end == applied || bytes + ops[end].size() <= CHUNK_BYTES)
            {
                bytes += ops[end].size();
                end += 1;
            }
            if let Err(e) = self.txn(&ops[applied..end]).await {
                return Err(Error::Partial {
                    applied,
                    total: ops.len(),
                    source: Box::new(e),
                });
            }
            applied = end;
        }
        Ok(())
    }

    /// Writes `value` at `key` unless the key exists; returns what is stored
    /// afterwards (`value`, or the earlier value when another writer won).
    pub async fn create_or_get(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.check_key(key)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .call(|mut kv| {
                let t = txn.clone();
                async move { kv.txn(t).await }
            })
            .await?;
        if resp.succeeded() {
            return Ok(value.to_vec());
        }
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                if let Some(kv) = g.kvs().first() {
                    return Ok(kv.value().to_vec());
                }
            }
        }
        // Deleted between the compare and the read: ours is as good as any.
        Ok(value.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"/a/", b"/a0"),
            (b"a", b"b"),
            (b"a\xff", b"b"),
            (b"\xff\xff", b"\0"),
            (b"", b"\0"),
        ];
        for (prefix, end) in cases {
            assert_eq!(prefix_range_end(prefix), end.to_vec(), "{prefix:?}");
        }
    }

    #[test]
    fn ops_name_their_key() {
        assert_eq!(KvOp::put("/p/a", b"x".to_vec()).key(), "/p/a");
        assert_eq!(KvOp::Delete("/p/b".into()).key(), "/p/b");
        assert_eq!(KvOp::DeletePrefix("/p/c/".into()).key(), "/p/c/");
    }
}
