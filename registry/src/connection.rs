//! [`Registry`]: the connection to etcd (endpoints, TLS, user/password,
//! request timeouts), with re-authentication when a token expired. What it
//! reads and writes is in `instances` (typed instance records) and `kv`
//! (raw values of the manager's state).

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, KvClient, TlsOptions, WatchClient,
};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::keys::normalize_prefix;
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
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        path: path.display().to_string(),
        source,
    })
}
