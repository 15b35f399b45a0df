//! The blocking API: the async one driven by a small runtime of its own.

use std::future::Future;
use std::ops::Deref;

use crate::asynch::AsyncGuestUtils;
use crate::env::Environment;
use crate::error::{Error, Result};

/// [`AsyncGuestUtils`] for blocking code: the same lookups (through
/// `Deref`), with a small runtime of its own to run the etcd ones on
/// ([`block_on`](Self::block_on)). The environment-only lookups need no
/// runtime. Do not use it from inside an async runtime (use
/// [`AsyncGuestUtils`] there).
///
/// ```no_run
/// let g = guestutils::GuestUtils::from_process_env()?;
/// let service = g.get_service_name()?;
/// let peers = g.block_on(g.get_node_list(&service, &["api"], 1, &[] as &[&str]))?;
/// # Ok::<_, guestutils::Error>(())
/// ```
#[derive(Debug)]
pub struct GuestUtils {
    inner: AsyncGuestUtils,
    runtime: tokio::runtime::Runtime,
}

/// The small runtime blocking callers drive lookups on (one worker thread):
/// the [`GuestUtils`] one, and the Python bindings' one.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("guestutils")
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

impl GuestUtils {
    /// Lookups for a task with this environment.
    pub fn new(env: Environment) -> Result<GuestUtils> {
        Ok(GuestUtils {
            inner: AsyncGuestUtils::new(env),
            runtime: runtime()?,
        })
    }

    /// Lookups for this process (reads the environment once, now).
    pub fn from_process_env() -> Result<GuestUtils> {
        GuestUtils::new(Environment::from_process_env())
    }

    /// Runs one of the async lookups to completion:
    /// `g.block_on(g.get_port("api", None))`.
    pub fn block_on<F: Future>(&self, lookup: F) -> F::Output {
        self.runtime.block_on(lookup)
    }
}

impl Deref for GuestUtils {
    type Target = AsyncGuestUtils;

    fn deref(&self) -> &AsyncGuestUtils {
        &self.inner
    }
}
