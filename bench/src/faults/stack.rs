//! The whole stack for fault injection: a 3-member etcd cluster, a socket
//! proxy in front of the Docker engine, the manager binary (command tasks and
//! Docker through the proxy) and the subscriber binary, each killable and
//! restartable on the same ports and data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use testkit::docker::ContainerGuard;
use testkit::docker_proxy::DockerProxy;
use testkit::{ChildGuard, EtcdCluster};

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
    manager: Option<ChildGuard>,
    manager_port: u16,
    subscriber: Option<ChildGuard>,
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

    fn log(&self, name: &str) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))?)
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
        self.spawn_manager()?;
        self.wait_ok(&format!("{}/ping", self.manager_url()), "manager")
            .await
    }

    /// Starts the manager without waiting for it.
    pub fn spawn_manager(&mut self) -> Result<()> {
        self.kill_manager();
        let log = self.log("manager.log")?;
        let child = Command::new(self.opts.bin_dir.join("manager"))
            .args(["--listen", &format!("127.0.0.1:{}", self.manager_port)])
            .args(["--etcd-endpoints", &self.etcd.endpoints().join(",")])
            .args([
                "--node-name",
                "node-1",
                "--node-cpus",
                "8",
                "--node-mem",
                "8192",
            ])
            .args(["--docker", "auto", "--docker-socket", &self.proxy.host()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .env("RUST_LOG", &self.opts.log_level)
            .env_remove("DOCKER_HOST")
            .env_remove("MDO_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the manager")?;
        self.manager = Some(ChildGuard::new(child));
        Ok(())
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
        let log = self.log("subscriber.log")?;
        let mut cmd = Command::new(self.opts.bin_dir.join("subscriber"));
        cmd.args(["--listen", &format!("127.0.0.1:{}", self.subscriber_port)])
            .args(["--marathon-url", &self.manager_url()])
            .args(["--etcd-endpoints", &self.etcd.endpoints().join(",")])
            .args(["--resync-interval", &self.opts.resync_interval]);
        if self.opts.delivery == Delivery::Callback {
            cmd.args(["--mode", "callback", "--callback-url"])
                .arg(format!("{}/callback", self.subscriber_url()));
        }
        let child = cmd
            .env("RUST_LOG", &self.opts.log_level)
            .env_remove("MDO_AUTH_TOKEN")
            .env_remove("MARATHON_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the subscriber")?;
        self.subscriber = Some(ChildGuard::new(child));
        self.wait_ok(&format!("{}/health", self.subscriber_url()), "subscriber")
            .await
    }

    /// kill -9 of the subscriber.
    pub fn kill_subscriber(&mut self) {
        if let Some(mut s) = self.subscriber.take() {
            s.kill();
        }
    }

    async fn wait_ok(&mut self, url: &str, what: &str) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(r) = self.http.get(url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            let child = match what {
                "manager" => self.manager.as_mut(),
                _ => self.subscriber.as_mut(),
            };
            if let Some(status) = child.and_then(|c| c.child().try_wait().ok().flatten()) {
                bail!("{what} exited ({status}):\n{}", self.log_tails(40));
            }
            if Instant::now() > deadline {
                bail!(
                    "{what} did not answer {url} within {START_DEADLINE:?}:\n{}",
                    self.log_tails(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One call to the manager's API: status and JSON body (`Null` when the
    /// body is not JSON).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        crate::setup::api_call(&self.http, &self.manager_url(), method, path, body).await
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
