//! Docker runtime: `container.type == DOCKER` apps as containers on this
//! machine's Docker engine, through bollard.
//!
//! What it owns: image presence/pulls, the create-container request (labels
//! `mdo.task-id`, `mdo.app-id`, `mdo.manager`, `mdo.app-version` on every
//! container), start/stop/remove, exit watching (the engine's `die` events,
//! with one `wait` per container as the fallback; reported exactly once),
//! Docker HEALTHCHECK status (the same events stream), and restart safety ([`Runtime::recover`]). What it does not: ports and the task
//! environment (given by the core), Marathon health checks (the core; this
//! runtime only runs COMMAND checks inside the container).
//!
//! Containers reach the node (and etcd) through the bridge gateway
//! ([`bridge_gateway`]): services they must reach have to listen there or on
//! 0.0.0.0, not only on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::{CreateContainerOptions, ListContainersOptions, StartContainerOptions};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::HealthStatusEnum;
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    DockerNetwork, DockerSpec, EventSender, ExecCheck, Exit, KnownTask, LaunchSpec, NodeResources,
    Recovery, Runtime, RuntimeError, RuntimeEvent, Started, Workload,
};

pub mod containerd;
mod late;
mod params;
mod process_exit;
mod recover;
mod shared;
mod spec;
mod watch_tasks;

pub use late::LateDocker;
pub use params::{
    host_access_problems, protected_host_path, supported_parameters, validate_parameters,
    HOST_ACCESS_HINT, PROTECTED_HOST_PATHS,
};
use recover::{classify_exit, plan_recovery, Observed, RecoveryAction};
use shared::{bound_tail, message_of, status_of, Phase, Shared, Table, Tracked};
use spec::{container_plan, PlanOptions};
/// The labels on the manager's containers (observers outside the manager,
/// e.g. the fault suite in `bench`, find containers by them).
pub use spec::{LABEL_APP_ID, LABEL_APP_VERSION, LABEL_MANAGER, LABEL_TASK_ID};

/// How the Docker runtime behaves; build with [`DockerConfig::new`] and
/// override fields.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// This manager's identity: the `mdo.manager` label on its containers.
    /// Recovery only ever touches containers carrying it.
    pub manager_id: String,
    /// Whether `privileged` containers (flag or parameter) may run.
    pub allow_privileged: bool,
    /// Waited before SIGTERM on kill, so registries drop the instance first.
    pub drain_delay: Duration,
    /// Cap CPU time at `cpus` (NanoCpus) on top of the CpuShares weight.
    pub cpu_hard_limit: bool,
    /// Longest a pull may take before the launch fails.
    pub pull_timeout: Duration,
    /// SIGTERM -> SIGKILL delay when stopping orphans.
    pub orphan_grace: Duration,
    /// Bound on log lines returned (and kept after a container is removed).
    pub log_max_lines: usize,
    /// Bound on log bytes returned (the newest bytes are kept).
    pub log_max_bytes: usize,
    /// Finished tasks whose logs stay readable after their container is removed.
    pub finished_retained: usize,
    /// The engine's socket (`/path`, `unix:///path` or `tcp://host:port`);
    /// None: bollard's defaults (DOCKER_HOST, else /var/run/docker.sock).
    pub socket: Option<String>,
    /// Longest wait for the engine's first answer (version negotiation).
    pub connect_timeout: Duration,
    /// Longest a container listing may take during recovery before the
    /// recovery fails (and is retried).
    pub list_timeout: Duration,
    /// Where exits are learnt from: [`ExitSources::All`] unless a test
    /// proves one path alone.
    pub exit_sources: ExitSources,
    /// The engine's containerd socket, followed for exits as they happen
    /// (see [`containerd`]); None: Docker's events and `wait` only.
    pub containerd_socket: Option<std::path::PathBuf>,
    /// Watch each container's process for its end (see `process_exit`):
    /// for an engine on this machine (where its pids are this machine's).
    pub watch_processes: bool,
}

/// Where the runtime learns that a container stopped on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitSources {
    /// The container's process ending (a pidfd, when `watch_processes`),
    /// containerd's `/tasks/exit` event (when a containerd socket is set),
    /// the engine's `die` event (its exit code, after an `oom` event when
    /// out of memory) and `wait` + `inspect`, which also covers exits
    /// while the event streams reconnect. The first to claim the exit
    /// reports it.
    All,
    /// Only containerd's exits (tests of that path).
    ContainerdOnly,
    /// Only the container's process (a pidfd, its status while unreaped,
    /// else `inspect`; tests of that path).
    ProcessOnly,
    /// Only the `die` events (tests of the event path).
    EventsOnly,
    /// Only `wait` + `inspect` (tests of the fallback).
    WaitOnly,
}

impl ExitSources {
    fn events(self) -> bool {
        matches!(self, ExitSources::All | ExitSources::EventsOnly)
    }

    fn wait(self) -> bool {
        matches!(self, ExitSources::All | ExitSources::WaitOnly)
    }

    fn containerd(self) -> bool {
        matches!(self, ExitSources::All | ExitSources::ContainerdOnly)
    }

    fn process(self) -> bool {
        matches!(self, ExitSources::All | ExitSources::ProcessOnly)
    }
}

impl DockerConfig {
    pub fn new(manager_id: impl Into<String>) -> Self {
        DockerConfig {
            manager_id: manager_id.into(),
            allow_privileged: false,
            drain_delay: Duration::ZERO,
            cpu_hard_limit: false,
            pull_timeout: Duration::from_secs(600),
            orphan_grace: Duration::from_secs(3),
            log_max_lines: 10_000,
            log_max_bytes: 1 << 20,
            finished_retained: 256,
            socket: None,
            connect_timeout: Duration::from_secs(10),
            list_timeout: Duration::from_secs(10),
            exit_sources: ExitSources::All,
            containerd_socket: None,
            watch_processes: true,
        }
    }
}

/// The Docker runtime. Dropping it stops its watchers (never the containers:
/// a new runtime adopts them through `recover`).
pub struct DockerRuntime {
    shared: Arc<Shared>,
    watchers: Mutex<JoinSet<()>>,
    cancel: CancellationToken,
    /// Set by the first successful [`Runtime::recover`]: launches wait for
    /// it, so a container is never created before recovery decided which
    /// containers are ours and known.
    recovered: std::sync::atomic::AtomicBool,
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A client for `socket` (see [`DockerConfig::socket`]); no I/O yet.
fn client(socket: Option<&str>) -> Result<Docker, bollard::errors::Error> {
    const REQUEST_TIMEOUT_SECS: u64 = 120;
    let version = bollard::API_DEFAULT_VERSION;
    match socket {
        None => Docker::connect_with_local_defaults(),
        Some(s) if s.starts_with("tcp://") || s.starts_with("http://") => {
            Docker::connect_with_http(s, REQUEST_TIMEOUT_SECS, version)
        }
        Some(s) => Docker::connect_with_unix(
            s.strip_prefix("unix://").unwrap_or(s),
            REQUEST_TIMEOUT_SECS,
            version,
        ),
    }
}

/// Connects to the engine (`socket`, else bollard's local defaults) and
/// agrees on an API version within `timeout`.
async fn connect(socket: Option<&str>, timeout: Duration) -> Result<Docker, RuntimeError> {
    let docker = client(socket)
        .map_err(|e| RuntimeError::Unavailable(format!("cannot reach the Docker engine: {e}")))?;
    match tokio::time::timeout(timeout, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(RuntimeError::Unavailable(format!(
            "the Docker engine does not answer: {e}"
        ))),
        Err(_) => Err(RuntimeError::Unavailable(format!(
            "the Docker engine did not answer within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

/// The default bridge's gateway (e.g. `172.17.0.1`): the node's address as
/// bridge-networked containers reach it. Use it for `ETCD_ENDPOINTS` and
/// `CONTAINER_HOST_ADDRESS` inside containers; the services behind it must
/// listen on it (or on 0.0.0.0). `None` when Docker or the bridge is absent.
pub async fn bridge_gateway() -> Option<String> {
    let docker = connect(None, Duration::from_secs(10)).await.ok()?;
    gateway_of(&docker).await
}

async fn gateway_of(docker: &Docker) -> Option<String> {
    let net = docker
        .inspect_network::<String>("bridge", None)
        .await
        .ok()?;
    let configs = net.ipam.and_then(|i| i.config).unwrap_or_default();
    if let Some(gw) = configs
        .iter()
        .find_map(|c| c.gateway.clone().filter(|g| !g.is_empty()))
    {
        return Some(gw);
    }
    // Docker gives the bridge the subnet's first address when IPAM does not say.
    configs
        .iter()
        .find_map(|c| first_host(c.subnet.as_deref()?))
}

fn first_host(subnet: &str) -> Option<String> {
    let (addr, len) = subnet.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(std::net::Ipv4Addr::from((u32::from(addr) & mask) + 1).to_string())
}

fn docker_spec(spec: &LaunchSpec) -> Result<&DockerSpec, RuntimeError> {
    match &spec.workload {
        Workload::Docker(d) => Ok(d),
        Workload::Command { .. } => Err(RuntimeError::Launch("not a Docker workload".into())),
    }
}

impl DockerRuntime {
    /// Connects to the local engine (Unavailable when it does not answer) and
    /// starts following the engine's events of this manager's containers.
    pub async fn new(config: DockerConfig, events: EventSender) -> Result<Self, RuntimeError> {
        let docker = connect(config.socket.as_deref(), config.connect_timeout).await?;
        let shared = Arc::new(Shared {
            docker,
            config,
            events,
            table: Mutex::new(Table::default()),
        });
        let cancel = CancellationToken::new();
        let mut watchers = JoinSet::new();
        watchers.spawn(watch_tasks::engine_events(shared.clone(), cancel.clone()));
        if let (true, Some(socket)) = (
            shared.config.exit_sources.containerd(),
            shared.config.containerd_socket.clone(),
        ) {
            watchers.spawn(containerd::containerd_exits(
                shared.clone(),
                socket,
                cancel.clone(),
            ));
        }
        Ok(DockerRuntime {
            shared,
            watchers: Mutex::new(watchers),
            cancel,
            recovered: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The default bridge's gateway as this engine reports it (see [`bridge_gateway`]).
    pub async fn bridge_gateway(&self) -> Option<String> {
        gateway_of(&self.shared.docker).await
    }

    /// The container id of a task this runtime tracks.
    pub fn container_id(&self, task_id: &str) -> Option<String> {
        self.shared
            .table()
            .tasks
            .get(task_id)
            .map(|t| t.container_id.clone())
    }

    fn watch_exit(&self, task_id: String, container_id: String) {
        let sources = self.shared.config.exit_sources;
        let process = sources.process() && self.shared.config.watch_processes;
        if !sources.wait() && !process {
            return;
        }
        let mut set = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        while set.try_join_next().is_some() {}
        if process {
            set.spawn(process_exit::process_exit(
                self.shared.clone(),
                task_id.clone(),
                container_id.clone(),
                self.cancel.clone(),
                // `wait` asks the engine anyway.
                !sources.wait(),
            ));
        }
        if !sources.wait() {
            return;
        }
        set.spawn(watch_tasks::wait_exit(
            self.shared.clone(),
            task_id,
            container_id,
            self.cancel.clone(),
        ));
    }

    fn track(&self, task_id: &str, container_id: &str) -> bool {
        let mut table = self.shared.table();
        if table
            .tasks
            .get(task_id)
            .is_some_and(|t| t.phase != Phase::Done)
        {
            return false;
        }
        table.finished.retain(|t| t != task_id);
        table.tasks.insert(
            task_id.to_string(),
            Tracked {
                container_id: container_id.to_string(),
                phase: Phase::Running,
                done: watch::channel(false).0,
                logs: None,
            },
        );
        true
    }

    async fn create(&self, plan: spec::ContainerPlan) -> Result<String, RuntimeError> {
        let opts = CreateContainerOptions {
            name: plan.name.clone(),
            platform: None,
        };
        match self
            .shared
            .docker
            .create_container(Some(opts.clone()), plan.config.clone())
            .await
        {
            Ok(r) => Ok(r.id),
            Err(e) if status_of(&e) == Some(409) && self.remove_stale(&plan.name).await => self
                .shared
                .docker
                .create_container(Some(opts), plan.config)
                .await
                .map(|r| r.id)
                .map_err(|e| {
                    RuntimeError::Launch(format!("cannot create the container: {}", message_of(&e)))
                }),
            Err(e) => Err(RuntimeError::Launch(format!(
                "cannot create the container: {}",
                message_of(&e)
            ))),
        }
    }

    /// A leftover container under our name that is ours and not running
    /// (e.g. a launch interrupted by a crash): removed. Anything else stays.
    async fn remove_stale(&self, name: &str) -> bool {
        let Ok(info) = self.shared.inspect(name).await else {
            return false;
        };
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        let ours = labels.get(LABEL_MANAGER) == Some(&self.shared.config.manager_id);
        let running = info.state.and_then(|s| s.running).unwrap_or(false);
        if !ours || running {
            return false;
        }
        info!(name, "removing a stale container of ours before relaunch");
        self.shared.remove(name).await;
        true
    }

    async fn ip_addresses(&self, container_id: &str) -> Vec<String> {
        let Ok(info) = self.shared.inspect(container_id).await else {
            return Vec::new();
        };
        let mut ips: Vec<String> = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_values()
            .filter_map(|e| e.ip_address.filter(|ip| !ip.is_empty()))
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Containers labelled with this manager's id (any state).
    async fn list_ours(&self, extra_label: Option<String>) -> Result<Vec<Observed>, RuntimeError> {
        let mut labels = vec![format!("{LABEL_MANAGER}={}", self.shared.config.manager_id)];
        labels.extend(extra_label);
        let filters: HashMap<String, Vec<String>> =
            [("label".to_string(), labels)].into_iter().collect();
        let listing = self
            .shared
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }));
        let timeout = self.shared.config.list_timeout;
        let list = tokio::time::timeout(timeout, listing)
            .await
            .map_err(|_| {
                RuntimeError::Unavailable(format!(
                    "the Docker engine did not list containers within {} s",
                    timeout.as_secs_f64()
                ))
            })?
            .map_err(|e| {
                RuntimeError::Unavailable(format!("cannot list containers: {}", message_of(&e)))
            })?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                // Belt and braces: never act on a container without our label.
                if labels.get(LABEL_MANAGER) != Some(&self.shared.config.manager_id) {
                    return None;
                }
                Some(Observed {
                    container_id: c.id?,
                    task_id: labels.get(LABEL_TASK_ID).cloned().unwrap_or_default(),
                    // Paused is alive: adopt it as it is.
                    running: matches!(c.state.as_deref(), Some("running" | "paused")),
                })
            })
            .collect())
    }

    /// After adoption: the image's HEALTHCHECK verdict so far, if any (the
    /// events that carried it may predate this runtime).
    async fn report_current_health(&self, task_id: &str, container_id: &str) {
        let Ok(info) = self.shared.inspect(container_id).await else {
            return;
        };
        let status = info.state.and_then(|s| s.health).and_then(|h| h.status);
        let healthy = match status {
            Some(HealthStatusEnum::HEALTHY) => true,
            Some(HealthStatusEnum::UNHEALTHY) => false,
            _ => return,
        };
        let _ = self.shared.events.send(RuntimeEvent::Health {
            task_id: task_id.to_string(),
            healthy,
        });
    }

    async fn final_exit(&self, container_id: &str) -> Exit {
        match self.shared.inspect(container_id).await {
            Ok(info) => info
                .state
                .as_ref()
                .map(classify_exit)
                .unwrap_or(Exit::Lost {
                    message: "container state unknown".into(),
                }),
            Err(e) => Exit::Lost {
                message: format!("container vanished: {}", message_of(&e)),
            },
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn handles(&self, workload: &Workload) -> bool {
        matches!(workload, Workload::Docker(_))
            && self.recovered.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tracing::instrument(skip_all, err, fields(task_id = %spec.task_id))]
    async fn launch(&self, spec: &LaunchSpec) -> Result<Started, RuntimeError> {
        let docker = docker_spec(spec)?;
        let opts = PlanOptions {
            allow_privileged: self.shared.config.allow_privileged,
            cpu_hard_limit: self.shared.config.cpu_hard_limit,
        };
        let plan = container_plan(spec, docker, &self.shared.config.manager_id, opts)
            .map_err(RuntimeError::Launch)?;
        if self
            .shared
            .table()
            .tasks
            .get(&spec.task_id)
            .is_some_and(|t| t.phase != Phase::Done)
        {
            return Err(RuntimeError::Launch(format!(
                "task {} is already running",
                spec.task_id
            )));
        }
        self.shared
            .ensure_image(&docker.image, docker.force_pull)
            .await?;
        let container_id = self.create(plan).await?;
        if !self.track(&spec.task_id, &container_id) {
            self.shared.remove(&container_id).await;
            return Err(RuntimeError::Launch(format!(
                "task {} is already running",
                spec.task_id
            )));
        }
        if let Err(e) = self
            .shared
            .docker
            .start_container(&container_id, None::<StartContainerOptions<String>>)
            .await
        {
            self.shared.remove(&container_id).await;
            self.shared.table().tasks.remove(&spec.task_id);
            return Err(RuntimeError::Launch(format!(
                "cannot start the container: {}",
                message_of(&e)
            )));
        }
        self.watch_exit(spec.task_id.clone(), container_id.clone());
        let ip_addresses = if docker.network == DockerNetwork::Host {
            Vec::new()
        } else {
            self.ip_addresses(&container_id).await
        };
        info!(task_id = %spec.task_id, container_id, image = %docker.image, "container running");
        Ok(Started {
            handle: container_id,
            ip_addresses,
        })
    }

    #[tracing::instrument(skip_all, err, fields(task_id))]
    async fn kill(&self, task_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        enum Next {
            Stop(String),
            Wait(watch::Receiver<bool>),
        }
        let next = {
            let mut table = self.shared.table();
            match table.tasks.get_mut(task_id) {
                Some(t) if t.phase == Phase::Running => {
                    t.phase = Phase::Killing;
                    Next::Stop(t.container_id.clone())
                }
                Some(t) => Next::Wait(t.done.subscribe()),
                None => Next::Wait(watch::channel(true).1),
            }
        };
        let container_id = match next {
            Next::Wait(mut rx) => {
                let known = self.shared.table().tasks.contains_key(task_id);
                if !known {
                    // Not tracked (e.g. kill before recover): still stop a
                    // container of ours carrying this task id, if any.
                    let found = self
                        .list_ours(Some(format!("{LABEL_TASK_ID}={task_id}")))
                        .await?;
                    if found.is_empty() {
                        return Err(RuntimeError::UnknownTask(task_id.to_string()));
                    }
                    for o in found {
                        self.shared.stop(&o.container_id, grace).await;
                        self.shared.remove(&o.container_id).await;
                    }
                    let _ = self.shared.events.send(RuntimeEvent::Exited {
                        task_id: task_id.to_string(),
                        exit: Exit::Killed,
                    });
                    return Ok(());
                }
                let _ = rx.wait_for(|done| *done).await;
                return Ok(());
            }
            Next::Stop(id) => id,
        };
        if !self.shared.config.drain_delay.is_zero() {
            tokio::time::sleep(self.shared.config.drain_delay).await;
        }
        self.shared.stop(&container_id, grace).await;
        info!(task_id, container_id, "container killed");
        self.shared
            .finish(task_id, &container_id, Some(Exit::Killed))
            .await;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn recover(&self, known: &[KnownTask]) -> Result<Recovery, RuntimeError> {
        let observed = self.list_ours(None).await?;
        let mut recovery = Recovery::default();
        for action in plan_recovery(known, &observed) {
            match action {
                RecoveryAction::Adopt {
                    task_id,
                    container_id,
                } => {
                    let already =
                        self.shared.table().tasks.get(&task_id).is_some_and(|t| {
                            t.phase != Phase::Done && t.container_id == container_id
                        });
                    if !already && self.track(&task_id, &container_id) {
                        self.watch_exit(task_id.clone(), container_id.clone());
                        self.report_current_health(&task_id, &container_id).await;
                    }
                    info!(task_id, container_id, "adopted running container");
                    recovery.adopted.push(task_id);
                }
                RecoveryAction::Gone {
                    task_id,
                    container_id: Some(container_id),
                } => {
                    let exit = self.final_exit(&container_id).await;
                    info!(task_id, container_id, exit = ?exit, "container ended while the manager was down");
                    if self.track(&task_id, &container_id) {
                        if let Some(t) = self.shared.table().tasks.get_mut(&task_id) {
                            t.phase = Phase::Done;
                        }
                        self.shared.finish(&task_id, &container_id, None).await;
                    }
                    recovery.gone.push((task_id, exit));
                }
                RecoveryAction::Gone {
                    task_id,
                    container_id: None,
                } => {
                    info!(task_id, "container vanished while the manager was down");
                    let message = "container vanished while the manager was down".to_string();
                    recovery.gone.push((task_id, Exit::Lost { message }));
                }
                RecoveryAction::RemoveOrphan {
                    task_id,
                    container_id,
                } => {
                    info!(
                        task_id,
                        container_id, "removing orphan container (ours, unknown to the state)"
                    );
                    self.shared
                        .stop(&container_id, self.shared.config.orphan_grace)
                        .await;
                    self.shared.remove(&container_id).await;
                    recovery.orphans_removed.push(if task_id.is_empty() {
                        container_id
                    } else {
                        task_id
                    });
                }
            }
        }
        self.recovered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(recovery)
    }

    async fn logs(&self, task_id: &str, tail: Option<usize>) -> Result<Vec<u8>, RuntimeError> {
        let (container_id, cached) = {
            let table = self.shared.table();
            let t = table
                .tasks
                .get(task_id)
                .ok_or_else(|| RuntimeError::UnknownTask(task_id.to_string()))?;
            (t.container_id.clone(), t.logs.clone())
        };
        let max_lines = tail
            .unwrap_or(self.shared.config.log_max_lines)
            .min(self.shared.config.log_max_lines);
        if let Some(bytes) = cached {
            return Ok(bound_tail(
                bytes,
                max_lines,
                self.shared.config.log_max_bytes,
            ));
        }
        match self.shared.docker_logs(&container_id, tail).await {
            Ok(bytes) => Ok(bytes),
            Err(e) => {
                // Removed in between: the kept tail is there now.
                let cached = self
                    .shared
                    .table()
                    .tasks
                    .get(task_id)
                    .and_then(|t| t.logs.clone());
                cached
                    .map(|b| bound_tail(b, max_lines, self.shared.config.log_max_bytes))
                    .ok_or_else(|| {
                        RuntimeError::Unavailable(format!("cannot read logs: {}", message_of(&e)))
                    })
            }
        }
    }

    async fn run_check(&self, check: &ExecCheck<'_>) -> Result<bool, RuntimeError> {
        let (task_id, command, timeout) = (check.task_id, check.command, check.timeout);
        let container_id = {
            let table = self.shared.table();
            let t = table
                .tasks
                .get(task_id)
                .ok_or_else(|| RuntimeError::UnknownTask(task_id.to_string()))?;
            if t.phase != Phase::Running {
                return Ok(false);
            }
            t.container_id.clone()
        };
        let docker = &self.shared.docker;
        let run = async {
            let exec = docker
                .create_exec(
                    &container_id,
                    CreateExecOptions {
                        cmd: Some(vec![
                            "/bin/sh".to_string(),
                            "-c".to_string(),
                            command.to_string(),
                        ]),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await?;
            if let StartExecResults::Attached { mut output, .. } =
                docker.start_exec(&exec.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    chunk?;
                }
            }
            Ok::<_, bollard::errors::Error>(docker.inspect_exec(&exec.id).await?.exit_code)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(code)) => Ok(code == Some(0)),
            Ok(Err(e)) => {
                warn!(task_id, error = %message_of(&e), "command check could not run");
                Ok(false)
            }
            Err(_) => Ok(false),
        }
    }

    async fn bridge_gateway(&self) -> Option<String> {
        gateway_of(&self.shared.docker).await
    }

    async fn node_resources(&self) -> Option<NodeResources> {
        let info = self.shared.docker.info().await.ok()?;
        Some(NodeResources {
            cpus: info.ncpu? as f64,
            mem_mib: info.mem_total? as f64 / (1024.0 * 1024.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::shared::split_reference;
    use super::*;

    #[test]
    fn references() {
        let table = [
            ("busybox", ("busybox", "latest")),
            ("mdo-test/busybox:1", ("mdo-test/busybox", "1")),
            ("localhost:5000/app", ("localhost:5000/app", "latest")),
            ("localhost:5000/app:2", ("localhost:5000/app", "2")),
            ("app@sha256:abc", ("app", "sha256:abc")),
        ];
        for (input, (name, tag)) in table {
            assert_eq!(
                split_reference(input),
                (name.to_string(), tag.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn tails_are_bounded() {
        let text = b"a\nb\nc\nd\n".to_vec();
        assert_eq!(bound_tail(text.clone(), 2, 100), b"c\nd\n");
        assert_eq!(bound_tail(text.clone(), 10, 100), text);
        assert_eq!(bound_tail(text.clone(), 10, 3), b"\nd\n");
        assert_eq!(bound_tail(b"x\ny".to_vec(), 1, 100), b"y");
    }

    #[test]
    fn gateway_from_subnet() {
        assert_eq!(first_host("172.17.0.0/16").as_deref(), Some("172.17.0.1"));
        assert_eq!(first_host("10.1.2.0/24").as_deref(), Some("10.1.2.1"));
        assert_eq!(first_host("bad"), None);
    }
}
