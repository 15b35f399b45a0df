//! The subscriber binary in tests, the twin of [`crate::manager`]: one way
//! to start it on a port against a Marathon API and etcd, wait until it
//! answers `/health`, read its log, and kill it on drop. The caller names
//! the binary (the subscriber's own tests pass
//! `env!("CARGO_BIN_EXE_subscriber")`, any other crate [`binary`]).
//!
//! ```ignore
//! let mut s = SubscriberCmd::new(testkit::subscriber::binary(), m.url(), &etcd.endpoint())
//!     .args(["--resync-interval", "1h"])
//!     .spawn()?;
//! s.wait_healthy().await;
//! ```

use std::ffi::OsString;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{EnvChanges, ServedProcess};

/// How long [`SubscriberProcess::wait_healthy`] waits for `/health` (it
/// returns as soon as the subscriber answers; the bound only ends a
/// hopeless wait).
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// The subscriber binary of this workspace, built by cargo once per test
/// process (so never stale).
pub fn binary() -> PathBuf {
    crate::workspace_binary("subscriber")
}

/// How to run the subscriber: its Marathon API, its etcd, more flags, the
/// environment and the log. Starts with `RUST_LOG=subscriber=debug,info` and
/// without `MDO_AUTH_TOKEN` and `MARATHON_TOKEN` from the test's
/// environment.
#[derive(Clone, Debug)]
pub struct SubscriberCmd {
    bin: PathBuf,
    marathon_url: String,
    etcd_endpoints: String,
    args: Vec<OsString>,
    env: EnvChanges,
    log: Option<PathBuf>,
    port: Option<u16>,
}

impl SubscriberCmd {
    /// `--marathon-url marathon_url --etcd-endpoints etcd_endpoints`.
    pub fn new(bin: impl Into<PathBuf>, marathon_url: &str, etcd_endpoints: &str) -> SubscriberCmd {
        let mut env = EnvChanges::default();
        env.set("RUST_LOG", "subscriber=debug,info");
        env.remove("MDO_AUTH_TOKEN");
        env.remove("MARATHON_TOKEN");
        SubscriberCmd {
            bin: bin.into(),
            marathon_url: marathon_url.to_string(),
            etcd_endpoints: etcd_endpoints.to_string(),
            args: Vec::new(),
            env,
            log: None,
            port: None,
        }
    }

    /// More arguments, after `--listen`, `--marathon-url` and `--etcd-endpoints`.
    pub fn args<I, S>(mut self, args: I) -> SubscriberCmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> SubscriberCmd {
        self.env.set(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> SubscriberCmd {
        self.env.remove(key);
        self
    }

    /// Appends stdout and stderr to `path` (default: `subscriber.log` in a
    /// temp dir the process owns).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> SubscriberCmd {
        self.log = Some(path.into());
        self
    }

    /// Listens on `port` (default: a free one).
    pub fn port(mut self, port: u16) -> SubscriberCmd {
        self.port = Some(port);
        self
    }

    /// Starts the subscriber without waiting for it.
    pub fn spawn(self) -> std::io::Result<SubscriberProcess> {
        let port = match self.port {
            Some(p) => p,
            None => crate::free_port().map_err(std::io::Error::other)?,
        };
        let temp = match &self.log {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix("mdo-subscriber-")
                    .tempdir()?,
            ),
        };
        let log = match (&self.log, &temp) {
            (Some(log), _) => log.clone(),
            (None, Some(t)) => t.path().join("subscriber.log"),
            (None, None) => unreachable!("a temp dir when no log is given"),
        };
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--marathon-url", &self.marathon_url])
            .args(["--etcd-endpoints", &self.etcd_endpoints])
            .args(&self.args);
        self.env.apply(&mut cmd);
        let served = ServedProcess::spawn("subscriber", cmd, port, log)?;
        Ok(SubscriberProcess {
            served,
            _temp: temp,
        })
    }

    /// Starts the subscriber and waits until it answers `/health`; panics
    /// with its log when it exits first or does not answer within
    /// [`START_DEADLINE`].
    pub async fn start(self) -> SubscriberProcess {
        let bin = self.bin.clone();
        let mut s = self
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        s.wait_healthy().await;
        s
    }
}

/// A running subscriber binary, SIGKILLed (and reaped) on drop. Its URL,
/// log, exit status and signals are those of the [`ServedProcess`] it
/// derefs to.
pub struct SubscriberProcess {
    served: ServedProcess,
    _temp: Option<tempfile::TempDir>,
}

impl Deref for SubscriberProcess {
    type Target = ServedProcess;

    fn deref(&self) -> &ServedProcess {
        &self.served
    }
}

impl DerefMut for SubscriberProcess {
    fn deref_mut(&mut self) -> &mut ServedProcess {
        &mut self.served
    }
}

impl SubscriberProcess {
    /// Waits until `/health` answers 200 (events connected, first resync
    /// done); panics with the log when the subscriber exits first or
    /// [`START_DEADLINE`] passes.
    pub async fn wait_healthy(&mut self) {
        if let Err(e) = self.wait_answering("/health", START_DEADLINE).await {
            panic!("{e}");
        }
    }
}
