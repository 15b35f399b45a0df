//! `--docker auto` when the engine did not answer at start: a Docker runtime
//! that connects on a later recovery attempt. Until then it runs nothing
//! (DOCKER apps wait in the queue) and its recovery fails, so the tasks of
//! the Docker runtime stay as they were (never LOST) and the core retries.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;

use super::{DockerConfig, DockerRuntime};
use crate::runtime::{
    EventSender, ExecCheck, KnownTask, LaunchSpec, NodeResources, Recovery, Runtime, RuntimeError,
    Started, Workload,
};

pub struct LateDocker {
    config: DockerConfig,
    events: EventSender,
    inner: OnceLock<DockerRuntime>,
    connecting: tokio::sync::Mutex<()>,
}

impl LateDocker {
    pub fn new(config: DockerConfig, events: EventSender) -> LateDocker {
        LateDocker {
            config,
            events,
            inner: OnceLock::new(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The connected runtime, once the engine answered.
    pub fn connected(&self) -> Option<&DockerRuntime> {
        self.inner.get()
    }

    fn ready(&self) -> Result<&DockerRuntime, RuntimeError> {
        self.inner.get().ok_or_else(|| {
            RuntimeError::Unavailable("the Docker engine has not answered yet".into())
        })
    }

    async fn connect(&self) -> Result<&DockerRuntime, RuntimeError> {
        let _one = self.connecting.lock().await;
        if let Some(d) = self.inner.get() {
            return Ok(d);
        }
        let d = DockerRuntime::new(self.config.clone(), self.events.clone()).await?;
        tracing::info!("the Docker engine answers now; the Docker runtime is on");
        Ok(self.inner.get_or_init(|| d))
    }
}

#[async_trait]
impl Runtime for LateDocker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn handles(&self, workload: &Workload) -> bool {
        self.inner.get().is_some_and(|d| d.handles(workload))
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<Started, RuntimeError> {
        self.ready()?.launch(spec).await
    }

    async fn kill(&self, task_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.ready()?.kill(task_id, grace).await
    }

    async fn recover(&self, known: &[KnownTask]) -> Result<Recovery, RuntimeError> {
        self.connect().await?.recover(known).await
    }

    async fn logs(&self, task_id: &str, tail: Option<usize>) -> Result<Vec<u8>, RuntimeError> {
        self.ready()?.logs(task_id, tail).await
    }

    async fn run_check(&self, check: &ExecCheck<'_>) -> Result<bool, RuntimeError> {
        self.ready()?.run_check(check).await
    }

    async fn node_resources(&self) -> Option<NodeResources> {
        self.inner.get()?.node_resources().await
    }

    async fn bridge_gateway(&self) -> Option<String> {
        self.inner.get()?.bridge_gateway().await
    }
}
