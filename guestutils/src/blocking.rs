//! The blocking API: the async one driven by a small runtime of its own.

use std::time::Duration;

use registry::Registry;

use crate::asynch::AsyncGuestUtils;
use crate::env::Environment;
use crate::error::{Error, Result};

/// Blocking twin of [`AsyncGuestUtils`]. Do not call it from inside an
/// async runtime (use [`AsyncGuestUtils`] there).
#[derive(Debug)]
pub struct GuestUtils {
    inner: AsyncGuestUtils,
    runtime: tokio::runtime::Runtime,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
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

    /// The async API this wraps.
    pub fn as_async(&self) -> &AsyncGuestUtils {
        &self.inner
    }

    /// The connection (made on first use).
    pub fn registry(&self) -> Result<Registry> {
        self.runtime.block_on(self.inner.registry()).cloned()
    }

    pub fn get_environment_name(&self) -> Result<String> {
        self.inner.get_environment_name()
    }

    pub fn get_service_name(&self) -> Result<String> {
        self.inner.get_service_name()
    }

    pub fn get_container_name(&self) -> Result<String> {
        self.inner.get_container_name()
    }

    pub fn get_container_host_address(&self) -> Result<String> {
        self.inner.get_container_host_address()
    }

    pub fn get_container_internal_address(&self) -> Result<String> {
        self.runtime
            .block_on(self.inner.get_container_internal_address())
    }

    pub fn get_port(&self, name: &str, default: Option<u16>) -> Result<u16> {
        self.runtime.block_on(self.inner.get_port(name, default))
    }

    pub fn get_node_list<P: AsRef<str>, L: AsRef<str>>(
        &self,
        service: &str,
        ports: &[P],
        minimum: usize,
        labels: &[L],
    ) -> Result<Vec<String>> {
        self.runtime
            .block_on(self.inner.get_node_list(service, ports, minimum, labels))
    }

    pub fn get_specific_host(&self, service: &str, container: &str) -> Result<String> {
        self.runtime
            .block_on(self.inner.get_specific_host(service, container))
    }

    pub fn get_specific_port(
        &self,
        service: &str,
        container: &str,
        port: &str,
        default: Option<u16>,
    ) -> Result<u16> {
        self.runtime.block_on(
            self.inner
                .get_specific_port(service, container, port, default),
        )
    }

    pub fn get_specific_exposed_port(
        &self,
        service: &str,
        container: &str,
        port: &str,
        default: Option<u16>,
    ) -> Result<u16> {
        self.runtime.block_on(
            self.inner
                .get_specific_exposed_port(service, container, port, default),
        )
    }

    pub fn wait_for_nodes(
        &self,
        service: &str,
        minimum: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        self.runtime
            .block_on(self.inner.wait_for_nodes(service, minimum, timeout))
    }

    pub fn wait_for_node_list<P: AsRef<str>, L: AsRef<str>>(
        &self,
        service: &str,
        ports: &[P],
        minimum: usize,
        labels: &[L],
        timeout: Duration,
    ) -> Result<Vec<String>> {
        self.runtime.block_on(
            self.inner
                .wait_for_node_list(service, ports, minimum, labels, timeout),
        )
    }
}
