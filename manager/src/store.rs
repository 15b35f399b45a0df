//! The manager's own state in etcd under the internal prefix (default
//! `/mdo/manager`): apps, their versions, tasks (with runtime handles) and
//! deployments, one JSON value per key. Keys use the app's safe id
//! (`/prod/web` -> `prod_web`, unambiguous since ids never hold `_`).

use etcd_client::{Client, DeleteOptions, GetOptions, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ids;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Boxed: etcd's error is large and every `Result` here carries it.
    #[error("etcd: {0}")]
    Etcd(Box<etcd_client::Error>),
    #[error("encoding {key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

impl From<etcd_client::Error> for StoreError {
    fn from(e: etcd_client::Error) -> Self {
        StoreError::Etcd(Box::new(e))
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

#[derive(Clone)]
pub struct Store {
    client: Client,
    prefix: String,
}

impl Store {
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Store> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(opts)).await?;
        Ok(Store {
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn app_key(&self, app_id: &str) -> String {
        format!("{}/apps/{}", self.prefix, ids::safe_id(app_id))
    }

    pub fn version_key(&self, app_id: &str, version: &str) -> String {
        format!(
            "{}/versions/{}/{}",
            self.prefix,
            ids::safe_id(app_id),
            version
        )
    }

    pub fn versions_prefix(&self, app_id: &str) -> String {
        format!("{}/versions/{}/", self.prefix, ids::safe_id(app_id))
    }

    pub fn task_key(&self, task_id: &str) -> String {
        format!("{}/tasks/{}", self.prefix, task_id)
    }

    pub fn deployment_key(&self, id: &str) -> String {
        format!("{}/deployments/{}", self.prefix, id)
    }

    /// Encodes a value for a `Put`.
    pub fn put<T: Serialize>(key: String, value: &T) -> Result<Write> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            key: key.clone(),
            source,
        })?;
        Ok(Write::Put(key, bytes))
    }

    /// Applies writes atomically (one transaction; etcd allows 128 ops).
    pub async fn apply(&self, writes: Vec<Write>) -> Result<()> {
        for chunk in writes.chunks(120) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|w| match w {
                    Write::Put(k, v) => TxnOp::put(k.as_str(), v.clone(), None),
                    Write::Delete(k) => TxnOp::delete(k.as_str(), None),
                    Write::DeletePrefix(k) => {
                        TxnOp::delete(k.as_str(), Some(DeleteOptions::new().with_prefix()))
                    }
                })
                .collect();
            self.client.clone().txn(Txn::new().and_then(ops)).await?;
        }
        Ok(())
    }

    /// Every value under `<prefix>/<kind>/`, decoded; undecodable values are
    /// logged and skipped.
    pub async fn load<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<(String, T)>> {
        let prefix = format!("{}/{}/", self.prefix, kind);
        let resp = self
            .client
            .clone()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).to_string();
            match serde_json::from_slice::<T>(kv.value()) {
                Ok(v) => out.push((key[prefix.len()..].to_string(), v)),
                Err(e) => tracing::warn!(%key, error = %e, "skipping undecodable state"),
            }
        }
        Ok(out)
    }
}
