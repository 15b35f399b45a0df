//! The runtime boundary: how a task's process or container is started,
//! stopped, observed and recovered after a manager restart.
//!
//! The scheduler and deployments (the manager core) decide *what* runs; a
//! [`Runtime`] makes it so. Two implementations sit behind this trait: the
//! command runtime (`cmd`/`args` apps as local process groups) and the Docker
//! runtime (`container.type == DOCKER`, through bollard). The core picks one
//! per task with [`Runtime::handles`].
//!
//! Contract:
//! - The core allocates host ports and builds the full task environment; the
//!   runtime applies them as given (it never invents ports or variables).
//! - `launch` returns once the task runs (the core then announces
//!   TASK_RUNNING) or with an error (the core announces TASK_FAILED with the
//!   error's message).
//! - Every exit that `kill` did not cause is reported once on the
//!   [`RuntimeEvent`] channel given to the runtime at construction. Kills are
//!   reported too (as [`Exit::Killed`]), so the core has one source of truth.
//! - `Started::handle` is opaque to the core; it is persisted with the task
//!   and handed back in [`KnownTask`] on recovery.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub mod command;
pub mod docker;
mod procfs;

/// Everything a runtime needs to start one task.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub task_id: String,
    pub app_id: String,
    pub app_version: String,
    /// The complete task environment (Marathon's variables + mdo's).
    pub env: BTreeMap<String, String>,
    pub cpus: f64,
    pub mem_mib: f64,
    /// SIGTERM -> SIGKILL delay (`taskKillGracePeriodSeconds`, default 3 s).
    pub kill_grace: Duration,
    pub workload: Workload,
}

/// The workload of an app.
pub fn workload(app: &marathon::App, alloc: &crate::ports::Allocation) -> Workload {
    match app.docker_image() {
        Some(image) => {
            let docker = app.container.as_ref().and_then(|c| c.docker.as_ref());
            let network = match app.networks.first().map(|n| n.mode) {
                Some(marathon::NetworkMode::ContainerBridge) => DockerNetwork::Bridge,
                Some(marathon::NetworkMode::Container) => {
                    DockerNetwork::User(app.networks[0].name.clone().unwrap_or_default())
                }
                _ => DockerNetwork::Host,
            };
            Workload::Docker(DockerSpec {
                image: image.to_string(),
                force_pull: docker.is_some_and(|d| d.force_pull_image),
                privileged: docker.is_some_and(|d| d.privileged),
                cmd: app.cmd.clone(),
                args: app.args.clone(),
                parameters: docker
                    .map(|d| {
                        d.parameters
                            .iter()
                            .map(|p| (p.key.clone(), p.value.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                network,
                ports: alloc
                    .bindings
                    .iter()
                    .map(|(h, c, p)| PortBinding {
                        host_port: *h,
                        container_port: *c,
                        protocol: p.clone(),
                    })
                    .collect(),
                volumes: app
                    .container
                    .iter()
                    .flat_map(|c| c.volumes.iter())
                    .filter_map(|v| {
                        Some(VolumeMount {
                            host_path: v.host_path.clone()?,
                            container_path: v.container_path.clone(),
                            read_only: v.mode.as_deref() == Some("RO"),
                        })
                    })
                    .collect(),
                labels: BTreeMap::new(),
            })
        }
        None => Workload::Command {
            cmd: app.cmd.clone(),
            args: app.args.clone(),
        },
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// `cmd` runs through `sh -c`; `args` run directly (argv[0] = args[0]).
    Command {
        cmd: Option<String>,
        args: Vec<String>,
    },
    Docker(DockerSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DockerSpec {
    pub image: String,
    pub force_pull: bool,
    pub privileged: bool,
    /// Marathon semantics: `cmd` -> `sh -c cmd`; `args` -> container command;
    /// neither -> the image's default.
    pub cmd: Option<String>,
    pub args: Vec<String>,
    /// `docker.parameters` (already validated by the core).
    pub parameters: Vec<(String, String)>,
    pub network: DockerNetwork,
    pub ports: Vec<PortBinding>,
    pub volumes: Vec<VolumeMount>,
    /// Extra container labels (the runtime adds its own `mdo.*` labels).
    pub labels: BTreeMap<String, String>,
}

impl DockerSpec {
    /// `image` with its own command on Docker's default bridge: not pulled
    /// when present, unprivileged, nothing published, mounted, passed or
    /// labelled. The rest of a spec is set from here.
    pub fn bridged(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            force_pull: false,
            privileged: false,
            cmd: None,
            args: vec![],
            parameters: vec![],
            network: DockerNetwork::Bridge,
            ports: vec![],
            volumes: vec![],
            labels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerNetwork {
    Host,
    Bridge,
    /// A user-defined Docker network, by name.
    User(String),
}

/// One port of a task: host side allocated by the core (None = not published,
/// e.g. `container` networking without a host port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// "tcp", "udp" or "udp,tcp".
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

/// What `launch` returns once the task runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Started {
    /// Opaque to the core; persisted and returned in [`KnownTask`].
    pub handle: String,
    /// Container IPs in bridge/user networking; empty for host/command tasks
    /// (the core then reports the node's address).
    pub ip_addresses: Vec<String>,
}

/// A task the persisted state believes is running, handed to `recover`.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownTask {
    pub task_id: String,
    pub app_id: String,
    pub handle: String,
    pub workload_is_docker: bool,
}

/// What `recover` found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recovery {
    /// Known tasks still running: adopted as they are (same ids, no restart).
    pub adopted: Vec<String>,
    /// Known tasks that died or vanished while the manager was down.
    pub gone: Vec<(String, Exit)>,
    /// Ours (by label / marker) but unknown to the state: stopped and removed.
    pub orphans_removed: Vec<String>,
    /// Known tasks this runtime cannot judge now (e.g. an unreadable task
    /// file), with why: neither adopted nor gone; the core keeps them as they
    /// were and asks again later.
    pub skipped: Vec<(String, String)>,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0 on its own.
    Finished,
    /// Non-zero exit, signal, OOM kill, failed start...: the message says which.
    Failed { message: String },
    /// Stopped by `kill`.
    Killed,
    /// Vanished without a known status (e.g. while the manager was down).
    Lost { message: String },
}

/// Events a runtime reports asynchronously.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    Exited {
        task_id: String,
        exit: Exit,
    },
    /// The image's own health (Docker HEALTHCHECK) changed.
    Health {
        task_id: String,
        healthy: bool,
    },
}

/// Node resources as the runtime sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResources {
    pub cpus: f64,
    pub mem_mib: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The task cannot be started (bad image, missing binary...): TASK_FAILED.
    #[error("{0}")]
    Launch(String),
    #[error("task {0} is not known to this runtime")]
    UnknownTask(String),
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A COMMAND health check to run in a task's context ([`Runtime::exec_check`]).
#[derive(Debug, Clone, Copy)]
pub struct ExecCheck<'a> {
    pub task_id: &'a str,
    pub command: &'a str,
    /// Longest the check may run; past it the check fails.
    pub timeout: Duration,
}

/// Sender half handed to runtimes at construction.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<RuntimeEvent>;

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// "command" or "docker" (logs, metrics).
    fn name(&self) -> &'static str;
    /// Whether this runtime runs this workload.
    fn handles(&self, workload: &Workload) -> bool;
    /// Starts the task; returns when it runs or failed to start.
    async fn launch(&self, spec: &LaunchSpec) -> Result<Started, RuntimeError>;
    /// SIGTERM, wait `grace`, SIGKILL, clean up; returns when the task is gone.
    async fn kill(&self, task_id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// After a manager restart: adopt what still runs, report what is gone,
    /// stop and remove what is ours but unknown. Never touches anything not
    /// started by this manager.
    async fn recover(&self, known: &[KnownTask]) -> Result<Recovery, RuntimeError>;
    /// The task's output (stdout+stderr interleaved), bounded; `tail` = last N lines.
    async fn logs(&self, task_id: &str, tail: Option<usize>) -> Result<Vec<u8>, RuntimeError>;
    /// Runs a COMMAND health check in the task's context (inside the container
    /// for Docker; with the task's env for commands). Ok(true) = exit 0.
    async fn exec_check(
        &self,
        task_id: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<bool, RuntimeError> {
        self.run_check(&ExecCheck {
            task_id,
            command,
            timeout,
        })
        .await
    }
    /// What runtimes implement for [`Runtime::exec_check`]: the check as one value.
    async fn run_check(&self, check: &ExecCheck<'_>) -> Result<bool, RuntimeError>;
    /// What this runtime's node offers (Docker: `docker info`; commands: the host).
    async fn node_resources(&self) -> Option<NodeResources>;
    /// The address containers with their own network reach the node at
    /// (Docker's bridge gateway); None for runtimes without one.
    async fn bridge_gateway(&self) -> Option<String> {
        None
    }
}
