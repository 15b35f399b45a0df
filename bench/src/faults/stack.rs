//! The whole stack for fault injection: a 3-member etcd cluster, a socket
//! proxy in front of the Docker engine, the manager binary (command tasks and
//! Docker through the proxy) and the subscriber binary, each killable and
//! restartable on the same ports and data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use testkit::docker::ContainerGuard;
use testkit::docker_proxy::DockerProxy;
use testkit::manager::{ManagerCmd, ManagerProcess};
use testkit::subscriber::{SubscriberCmd, SubscriberProcess};
use testkit::EtcdCluster;

use crate::setup::ManagerApi;

/// How the subscriber receives the manager's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `--mode sse`: reads `/v2/events` (the default).
    Sse,
    /// `--mode callback`: the manager POSTs events to the subscriber's
    /// `/callback`, as Marathon 1.x does (the suite posts events of its own
    /// there too, e.g. TASK_UNREACHABLE).
    Callback,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Folder holding the `manager`, `mdo-task-shim` and `subscriber` binaries.
    pub bin_dir: PathBuf,
    pub delivery: Delivery,
    /// The subscriber's `--resync-interval`.
    pub resync_interval: String,
    /// `RUST_LOG` of both binaries (their logs go to files in the stack's folder).
    pub log_level: String,
}

/// How long a binary may take to answer after it was started.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The running stack; every process, command task and container it started
/// is gone once it is dropped.
pub struct Stack {
    pub etcd: EtcdCluster,
    pub proxy: DockerProxy,
    pub http: reqwest::Client,
    opts: StackOptions,
    guard: ContainerGuard,
    dir: tempfile::TempDir,
    manager: Option<ManagerProcess>,
    manager_port: u16,
    subscriber: Option<SubscriberProcess>,
    subscriber_port: u16,
}

impl Stack {
    /// Starts etcd (3 members), the Docker proxy (passing), the manager and
    /// the subscriber, and waits until both answer.
    pub async fn start(opts: StackOptions) -> Result<Stack> {
        for bin in [
            "manager",
            "subscriber",
            manager::runtime::command::SHIM_BINARY,
        ] {
            let path = opts.bin_dir.join(bin);
            if !path.is_file() {
                bail!(
                    "{} is missing: build it first (`cargo build -p manager -p subscriber`)",
                    path.display()
                );
            }
        }
        let etcd = EtcdCluster::start(3).context("etcd cluster")?;
        let proxy = DockerProxy::start().context("docker proxy")?;
        let guard = ContainerGuard::new("faults");
        let dir = tempfile::Builder::new().prefix("mdo-faults-").tempdir()?;
        let mut stack = Stack {
            etcd,
            proxy,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            opts,
            guard,
            dir,
            manager: None,
            manager_port: testkit::free_port()?,
            subscriber: None,
            subscriber_port: testkit::free_port()?,
        };
        // The manager's identity = the guard's id, so the guard removes every
        // container the manager creates (label `mdo.manager=<id>`).
        let keys = registry::ManagerKeys::new("/mdo/manager")?;
        let reg = stack.registry().await?;
        reg.client()
            .put(keys.manager_id(), stack.guard.id(), None)
            .await
            .context("seeding the manager id")?;
        stack.start_manager().await?;
        stack.start_subscriber().await?;
        Ok(stack)
    }

    /// The manager's id (`mdo.manager` label of its containers).
    pub fn manager_id(&self) -> &str {
        self.guard.id()
    }

    /// The manager's `--data-dir` (command tasks live in `tasks/` there).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn manager_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.manager_port)
    }

    pub fn subscriber_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.subscriber_port)
    }

    pub fn delivery(&self) -> Delivery {
        self.opts.delivery
    }

    /// A registry client on every member (records under `/services`).
    pub async fn registry(&self) -> Result<registry::Registry> {
        let settings = registry::Settings::new(self.etcd.endpoints());
        Ok(registry::Registry::connect(&settings).await?)
    }

    /// Readers of the records and of the manager's state, one per member.
    pub async fn readers(&self) -> Result<super::check::EtcdReaders> {
        let mut readers = super::check::EtcdReaders {
            records: Vec::new(),
            state: Vec::new(),
        };
        for endpoint in self.etcd.endpoints() {
            let records = registry::Settings::new([endpoint.clone()]);
            let state = registry::Settings::new([endpoint]).with_prefix("/mdo/manager")?;
            readers
                .records
                .push(registry::Registry::connect(&records).await?);
            readers
                .state
                .push(registry::Registry::connect(&state).await?);
        }
        Ok(readers)
    }

    /// Copies the manager's and the subscriber's logs into `dir`.
    pub fn copy_logs(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        for name in ["manager.log", "subscriber.log"] {
            std::fs::copy(self.dir.path().join(name), dir.join(name))?;
        }
        Ok(())
    }

    /// The last `lines` lines of the manager's and the subscriber's logs.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["manager.log", "subscriber.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str(&format!("--- {name} (last {lines} lines)\n"));
            for l in &all[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Starts the manager (`--docker auto` through the proxy) on its port and
    /// data dir and waits for `/ping`.
    pub async fn start_manager(&mut self) -> Result<()> {
        self.kill_manager();
        let process = ManagerCmd::new(self.opts.bin_dir.join("manager"))
            .port(self.manager_port)
            .etcd(&self.etcd.endpoints().join(","))
            .without("--drain-delay")
            .flag("--docker", "auto")
            .flag("--docker-socket", self.proxy.host())
            .data_dir(self.data_dir())
            .log_file(self.dir.path().join("manager.log"))
            .env("RUST_LOG", &self.opts.log_level)
            .env_remove("DOCKER_HOST")
            .spawn()
            .context("starting the manager")?;
        let manager = self.manager.insert(process);
        let ready = manager.wait_answering("/ping", START_DEADLINE).await;
        self.started(ready)
    }

    /// kill -9 of the manager (its tasks keep running).
    pub fn kill_manager(&mut self) {
        if let Some(mut m) = self.manager.take() {
            m.kill();
        }
    }

    /// Starts the subscriber on its port and waits for `/health`.
    pub async fn start_subscriber(&mut self) -> Result<()> {
        self.kill_subscriber();
        let mut args = vec![
            "--resync-interval".to_string(),
            self.opts.resync_interval.clone(),
        ];
        if self.opts.delivery == Delivery::Callback {
            args.extend(["--mode", "callback", "--callback-url"].map(String::from));
            args.push(format!("{}/callback", self.subscriber_url()));
        }
        let endpoints = self.etcd.endpoints().join(",");
        let process = SubscriberCmd::new(
            self.opts.bin_dir.join("subscriber"),
            &self.manager_url(),
            &endpoints,
        )
        .port(self.subscriber_port)
        .args(args)
        .env("RUST_LOG", &self.opts.log_level)
        .log_file(self.dir.path().join("subscriber.log"))
        .spawn()
        .context("starting the subscriber")?;
        let subscriber = self.subscriber.insert(process);
        let ready = subscriber.wait_answering("/health", START_DEADLINE).await;
        self.started(ready)
    }

    /// kill -9 of the subscriber.
    pub fn kill_subscriber(&mut self) {
        if let Some(mut s) = self.subscriber.take() {
            s.kill();
        }
    }

    /// A start's outcome; a failure carries the tails of both logs.
    fn started(&self, ready: Result<(), String>) -> Result<()> {
        ready.map_err(|e| {
            let first = e.lines().next().unwrap_or_default();
            anyhow::anyhow!("{first}\n{}", self.log_tails(40))
        })
    }

    /// Posts one Marathon event to the subscriber's `/callback`, as a real
    /// Marathon delivers it (callback delivery only).
    pub async fn post_event(&self, event: &Value) -> Result<u16> {
        let r = self
            .http
            .post(format!("{}/callback", self.subscriber_url()))
            .json(event)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }
}

impl ManagerApi for Stack {
    fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn manager_base(&self) -> String {
        self.manager_url()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_subscriber();
        self.kill_manager();
        kill_task_sessions(&self.data_dir());
        // The guard removes the containers; etcd and the proxy stop on drop.
    }
}

/// SIGKILLs every command task started under `data_dir` (their shims left
/// the manager's session, so they outlive it by design).
fn kill_task_sessions(data_dir: &Path) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    for task in manager::runtime::command::live_tasks(data_dir) {
        let _ = killpg(Pid::from_raw(task.pid), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(task.pid), Signal::SIGKILL);
    }
}
