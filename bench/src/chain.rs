//! The whole chain for issue 16's end-to-end benchmarks (`propagation`,
//! `scale`): one etcd, the manager binary (command tasks, and Docker when
//! asked), the subscriber binary following the manager's `/v2/events`, and
//! watcher binaries in exec mode. Release binaries are expected beside the
//! benchmark (`target/release`); everything started is gone once the chain
//! is dropped, command tasks and containers included.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{EventType, WatchOptions};
use futures::StreamExt;
use serde_json::{json, Value};
use testkit::docker::ContainerGuard;
use testkit::ChildGuard;

use crate::setup::ManagerApi;
use crate::sibling_binary;

/// Longest wait for a binary to answer after it was started.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// One watcher process: the services it watches (`--watch`) and its `--exec` command.
#[derive(Debug, Clone)]
pub struct WatcherSpec {
    pub watch: String,
    pub exec: String,
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct ChainOptions {
    /// `--docker auto` for the manager (else command tasks only).
    pub docker: bool,
    pub watchers: Vec<WatcherSpec>,
    /// `RUST_LOG` of every binary (default `warn`).
    pub log_level: Option<String>,
}

/// The running chain.
pub struct Chain {
    pub etcd: testkit::Etcd,
    pub http: reqwest::Client,
    pub manager_url: String,
    pub subscriber_url: String,
    opts: ChainOptions,
    dir: tempfile::TempDir,
    guard: ContainerGuard,
    manager_bin: PathBuf,
    manager_port: u16,
    manager: Option<ChildGuard>,
    subscriber: ChildGuard,
    watchers: Vec<ChildGuard>,
}

impl Chain {
    /// Starts etcd, the manager, the subscriber and the watchers, and waits
    /// until the manager and the subscriber answer.
    pub async fn start(opts: ChainOptions) -> Result<Chain> {
        let manager_bin = sibling_binary("manager")?;
        let subscriber = sibling_binary("subscriber")?;
        sibling_binary(manager::runtime::command::SHIM_BINARY)?;
        let watcher = if opts.watchers.is_empty() {
            None
        } else {
            Some(sibling_binary("watcher")?)
        };
        let etcd = testkit::Etcd::start()?;
        let dir = tempfile::Builder::new().prefix("mdo-chain-").tempdir()?;
        let guard = ContainerGuard::new("chain");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        // The manager's identity = the guard's id, so the guard removes every
        // container the manager creates.
        let keys = registry::ManagerKeys::new("/mdo/manager")?;
        let mut kv = etcd_client::Client::connect([etcd.endpoint()], None).await?;
        kv.put(keys.manager_id(), guard.id(), None).await?;
        let level = opts.log_level.clone().unwrap_or_else(|| "warn".into());

        let sub_port = testkit::free_port()?;
        let manager_port = testkit::free_port()?;
        let manager_url = format!("http://127.0.0.1:{manager_port}");
        let subscriber_url = format!("http://127.0.0.1:{sub_port}");
        let slog = log_file(dir.path(), "subscriber.log")?;
        let subscriber = Command::new(&subscriber)
            .args(["--listen", &format!("127.0.0.1:{sub_port}")])
            .args(["--marathon-url", &manager_url])
            .args(["--etcd-endpoints", &etcd.endpoint()])
            .env("RUST_LOG", &level)
            .env_remove("MDO_AUTH_TOKEN")
            .env_remove("MARATHON_TOKEN")
            .stdin(Stdio::null())
            .stdout(slog.try_clone()?)
            .stderr(slog)
            .spawn()
            .context("starting the subscriber")?;
        let mut watchers = Vec::new();
        for (i, w) in opts.watchers.iter().enumerate() {
            let wlog = log_file(dir.path(), &format!("watcher-{i}.log"))?;
            let child = Command::new(watcher.as_ref().expect("watcher binary"))
                .args(["--watch", &w.watch])
                .args(["--exec", &w.exec])
                .args(["--etcd-endpoints", &etcd.endpoint()])
                .env("RUST_LOG", &level)
                .stdin(Stdio::null())
                .stdout(wlog.try_clone()?)
                .stderr(wlog)
                .spawn()
                .context("starting a watcher")?;
            watchers.push(ChildGuard::new(child));
        }
        let mut chain = Chain {
            etcd,
            http,
            manager_url,
            subscriber_url,
            opts,
            dir,
            guard,
            manager_bin,
            manager_port,
            manager: None,
            subscriber: ChildGuard::new(subscriber),
            watchers,
        };
        chain.start_manager().await?;
        chain
            .wait_ok(&format!("{}/health", chain.subscriber_url))
            .await?;
        Ok(chain)
    }

    /// The manager's id: the `mdo.manager` label of its containers.
    pub fn manager_id(&self) -> &str {
        self.guard.id()
    }

    /// The folder the manager keeps its command tasks in.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the manager (again, on the same port and data) and waits for `/ping`.
    pub async fn start_manager(&mut self) -> Result<()> {
        self.kill_manager();
        let mut cmd = crate::manager_command_on(
            &self.manager_bin,
            &self.etcd.endpoint(),
            &self.data_dir(),
            self.manager_port,
        );
        if self.opts.docker {
            cmd.args(["--docker", "auto"]);
        }
        let mlog = log_file(self.dir.path(), "manager.log")?;
        cmd.args(["--node-name", "node-1"])
            .env("RUST_LOG", self.opts.log_level.as_deref().unwrap_or("warn"))
            .env_remove("MDO_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(mlog.try_clone()?)
            .stderr(mlog);
        self.manager = Some(ChildGuard::new(
            cmd.spawn().context("starting the manager")?,
        ));
        self.wait_ok(&format!("{}/ping", self.manager_url)).await
    }

    /// kill -9 of the manager (its tasks keep running).
    pub fn kill_manager(&mut self) {
        if let Some(mut m) = self.manager.take() {
            m.kill();
        }
    }

    pub fn manager_pid(&self) -> Option<u32> {
        self.manager.as_ref().map(ChildGuard::id)
    }

    pub fn subscriber_pid(&self) -> u32 {
        self.subscriber.id()
    }

    async fn wait_ok(&self, url: &str) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(r) = self.http.get(url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{url} did not answer within {START_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `PUT /v2/apps<app>?force=true` with `instances`.
    pub async fn scale(&self, app: &str, n: u64) -> Result<()> {
        let (s, v) = self
            .api(
                reqwest::Method::PUT,
                &format!("/v2/apps{app}?force=true"),
                Some(&json!({"instances": n})),
            )
            .await?;
        if s != 200 {
            bail!("PUT /v2/apps{app} instances={n}: {s} {v}");
        }
        Ok(())
    }

    /// Ids of an app's running tasks.
    pub async fn running(&self, app: &str) -> Result<Vec<String>> {
        let (s, v) = self
            .api(reqwest::Method::GET, &format!("/v2/apps{app}/tasks"), None)
            .await?;
        if s != 200 {
            bail!("GET /v2/apps{app}/tasks: {s} {v}");
        }
        Ok(v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect())
    }

    /// Copies every log of the chain into `to`.
    pub fn copy_logs(&self, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                std::fs::copy(&path, to.join(path.file_name().expect("a file name")))?;
            }
        }
        Ok(())
    }

    /// A file in the chain's own temporary folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl ManagerApi for Chain {
    fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn manager_base(&self) -> String {
        self.manager_url.clone()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        for w in self.watchers.iter_mut() {
            w.kill();
        }
        self.subscriber.kill();
        self.kill_manager();
        for task in manager::runtime::command::live_tasks(&self.data_dir()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(task.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The guard removes the containers; etcd stops on drop.
        let _ = &self.guard;
    }
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))?)
}

/// Resident set size of a process in MiB (0 when it is gone).
pub fn rss(pid: Option<u32>) -> f64 {
    pid.and_then(crate::rss_mib).unwrap_or(0.0)
}

/// A timestamped observation on a link of the chain: `(when, task id, what)`
/// (a manager task state, or `put` / `delete` of its record).
pub type Seen = Arc<Mutex<Vec<(Instant, String, String)>>>;

/// Follows the manager's `/v2/events` and notes every task state with the
/// moment it arrived.
pub async fn follow_events(manager_url: &str, seen: Seen) -> Result<StreamEnded> {
    let client = reqwest::Client::builder().build()?;
    // Only status updates: the follower reads the least it needs, so it is
    // not the slow client the manager cuts off.
    let r = client
        .get(format!(
            "{manager_url}/v2/events?event_type=status_update_event"
        ))
        .header("Accept", "text/event-stream")
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("GET /v2/events: {}", r.status());
    }
    let ended = StreamEnded::default();
    let mark = ended.clone();
    let mut body = r.bytes_stream();
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            buf.extend_from_slice(&chunk);
            let mut batch = Vec::new();
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let Ok(v) = serde_json::from_slice::<Value>(data) else {
                    continue;
                };
                if v["eventType"] == "status_update_event" {
                    if let (Some(id), Some(state)) =
                        (v["taskId"].as_str(), v["taskStatus"].as_str())
                    {
                        batch.push((at, id.to_string(), state.to_string()));
                    }
                }
            }
            if !batch.is_empty() {
                seen.lock().unwrap().extend(batch);
            }
        }
        mark.0.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    Ok(ended)
}

/// Set when a followed event stream ended (the manager went away or cut the
/// follower off): what the follower saw from then on is incomplete.
#[derive(Debug, Clone, Default)]
pub struct StreamEnded(Arc<std::sync::atomic::AtomicBool>);

impl StreamEnded {
    pub fn ended(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Watches the registry and notes every put and delete of a record (by the
/// task id its key ends with) with the moment it arrived.
pub async fn follow_records(endpoint: &str, seen: Seen) -> Result<()> {
    let mut client = etcd_client::Client::connect([endpoint], None).await?;
    let (_w, mut stream) = client
        .watch(
            registry::DEFAULT_PREFIX,
            Some(WatchOptions::new().with_prefix()),
        )
        .await?;
    tokio::spawn(async move {
        let _keep = _w;
        while let Ok(Some(resp)) = stream.message().await {
            let at = Instant::now();
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).to_string();
                let id = key.rsplit('/').next().unwrap_or_default().to_string();
                let what = match e.event_type() {
                    EventType::Put => "put",
                    EventType::Delete => "delete",
                };
                seen.lock().unwrap().push((at, id, what.to_string()));
            }
        }
    });
    Ok(())
}

/// The first observation of `id` after `from` that `what` accepts.
pub fn first(seen: &Seen, from: Instant, id: &str, what: impl Fn(&str) -> bool) -> Option<Instant> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(at, i, w)| *at >= from && i == id && what(w))
        .map(|(at, _, _)| *at)
        .min()
}
