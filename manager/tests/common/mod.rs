//! Harness of the manager's integration tests: a real etcd per test, the
//! real manager (in-process on port 0, or the binary), HTTP helpers, and
//! process inspection through /proc.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use manager::config::Config;
use manager::core::Core;
use manager::Application;
use reqwest::Method;
use serde_json::Value;
use testkit::manager::{ManagerCmd, ManagerProcess};
use testkit::Etcd;
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// One API call: status, body (JSON, or the text as a JSON string, or
/// null when empty) and headers.
pub async fn request(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, value, headers)
}

/// A value of the manager's `/metrics` (JSON, Dropwizard-like), a gauge or
/// a counter, by its short name (`tasks_unresolved`, `loop_panics_total`).
pub async fn metric(base: &str, name: &str) -> f64 {
    let http = reqwest::Client::new();
    let (_, v, _) = request(&http, base, Method::GET, "/metrics", None).await;
    let key = format!("marathon.{}", name.replace('_', "."));
    v["gauges"][format!("{key}.gauge")]["value"]
        .as_f64()
        .or_else(|| v["counters"][format!("{key}.counter")]["count"].as_f64())
        .unwrap_or_else(|| panic!("metric {name} missing in {v}"))
}

/// `GET {base}/metrics/prometheus`, as text.
pub async fn prometheus(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics/prometheus"))
        .send()
        .await
        .expect("GET /metrics/prometheus")
        .text()
        .await
        .expect("prometheus text")
}

/// Waits until the manager at `base` lists no deployments.
pub async fn wait_no_deployments(http: &reqwest::Client, base: &str) {
    testkit::eventually_async("no deployments", DEADLINE, || async {
        let (_, v, _) = request(http, base, Method::GET, "/v2/deployments", None).await;
        v.as_array().is_some_and(Vec::is_empty).then_some(())
    })
    .await
}

/// A task's log followed (`GET /v2/tasks/{id}/logs?follow=true`): the bytes
/// as the manager sends them.
pub struct FollowedLog {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    /// Everything read so far.
    pub got: Vec<u8>,
}

impl FollowedLog {
    /// Opens the follow stream of `task_id` on the manager at `base`; it
    /// must answer 200.
    pub async fn open(http: &reqwest::Client, base: &str, task_id: &str) -> FollowedLog {
        let url = format!("{base}/v2/tasks/{task_id}/logs?follow=true");
        let resp = http.get(&url).send().await.expect("GET logs?follow=true");
        assert_eq!(resp.status(), 200, "GET {url}");
        FollowedLog {
            stream: Box::pin(resp.bytes_stream()),
            got: Vec::new(),
        }
    }

    /// Reads until what was read holds `want` (within [`DEADLINE`]; the
    /// stream must not end first).
    pub async fn read_until(&mut self, want: &[u8]) {
        use futures::StreamExt;
        let holds = |got: &[u8]| got.windows(want.len()).any(|w| w == want);
        tokio::time::timeout(DEADLINE, async {
            while !holds(&self.got) {
                match self.stream.next().await {
                    Some(Ok(chunk)) => self.got.extend_from_slice(&chunk),
                    other => panic!("log stream ended early: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("waiting for {:?}", String::from_utf8_lossy(want)));
    }

    /// Reads to the end of the stream (within [`DEADLINE`]); what came after
    /// what was already read.
    pub async fn rest(mut self) -> Vec<u8> {
        use futures::StreamExt;
        tokio::time::timeout(DEADLINE, async {
            let mut rest = Vec::new();
            while let Some(Ok(chunk)) = self.stream.next().await {
                rest.extend_from_slice(&chunk);
            }
            rest
        })
        .await
        .expect("the log stream ends")
    }
}

/// Keys under `prefix` in the etcd at `endpoint`.
pub async fn etcd_keys(endpoint: &str, prefix: &str) -> Vec<String> {
    let mut c = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("etcd");
    let resp = c
        .get(
            prefix,
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("get");
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).to_string())
        .collect()
}

pub struct TestManager {
    pub etcd: Etcd,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    pub core: Arc<Core>,
    stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    cleanup: StopOnDrop,
}

/// What dropping a [`TestManager`] does: stop the manager and kill its
/// tasks, unless [`TestManager::stop`] disarmed it (tasks keep running).
struct StopOnDrop {
    stop: CancellationToken,
    data_dir: PathBuf,
    armed: bool,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.armed {
            kill_tasks_under(&self.data_dir);
        }
    }
}

impl TestManager {
    pub async fn start() -> TestManager {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestManager {
        let etcd = Etcd::start().expect("etcd");
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_on(etcd, dir, tweak).await
    }

    pub async fn start_on(
        etcd: Etcd,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> TestManager {
        let mut cfg = Config::for_tests(&etcd.endpoint(), dir.path().join("data"));
        cfg.node_cpus = Some(8.0);
        cfg.node_mem = Some(8192.0);
        tweak(&mut cfg);
        let app = Application::build(cfg).await.expect("manager builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let core = app.core();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(stop.clone()));
        let cleanup = StopOnDrop {
            stop: stop.clone(),
            data_dir: dir.path().join("data"),
            armed: true,
        };
        TestManager {
            etcd,
            dir,
            base,
            http: reqwest::Client::new(),
            core,
            stop,
            handle: Some(handle),
            cleanup,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the manager (tasks keep running, as after a SIGTERM).
    pub async fn stop(mut self) -> (Etcd, tempfile::TempDir) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        self.cleanup.armed = false;
        (self.etcd, self.dir)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        request(&self.http, &self.base, method, path, body).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.call(Method::GET, path, None).await;
        (s, v)
    }

    /// `GET /metrics/prometheus`, as text.
    pub async fn prometheus(&self) -> String {
        prometheus(&self.http, &self.base).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, v, _) = self.call(Method::POST, path, Some(body)).await;
        (s, v)
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, v, _) = self.call(Method::PUT, path, Some(body)).await;
        (s, v)
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.call(Method::DELETE, path, None).await;
        (s, v)
    }

    /// Tasks of an app in a state.
    pub async fn tasks_in(&self, app: &str, state: &str) -> Vec<Value> {
        let (_, v) = self.get(&format!("/v2/apps{app}/tasks")).await;
        v["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["state"] == state)
            .collect()
    }

    pub async fn wait_running(&self, app: &str, n: usize) -> Vec<Value> {
        testkit::eventually_async(&format!("{n} running tasks of {app}"), DEADLINE, || async {
            let tasks = self.tasks_in(app, "TASK_RUNNING").await;
            let (_, all) = self.get(&format!("/v2/apps{app}/tasks")).await;
            (tasks.len() == n && all["tasks"].as_array().map_or(0, Vec::len) == n).then_some(tasks)
        })
        .await
    }

    pub async fn wait_no_deployments(&self) {
        wait_no_deployments(&self.http, &self.base).await
    }

    /// Follows the log of `task_id` (see [`FollowedLog`]).
    pub async fn follow_log(&self, task_id: &str) -> FollowedLog {
        FollowedLog::open(&self.http, &self.base, task_id).await
    }

    /// Raw etcd value under the internal prefix.
    pub async fn etcd_get(&self, key: &str) -> Option<Value> {
        let mut c = etcd_client::Client::connect([self.etcd.endpoint()], None)
            .await
            .ok()?;
        let resp = c.get(format!("/mdo/manager{key}"), None).await.ok()?;
        resp.kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok())
    }

    pub async fn etcd_keys(&self, prefix: &str) -> Vec<String> {
        etcd_keys(&self.etcd.endpoint(), &format!("/mdo/manager{prefix}")).await
    }
}

/// Processes whose environment holds `CONTAINER_NAME=<task_id>`.
pub fn pids_of_task(task_id: &str) -> Vec<u32> {
    let needle = format!("CONTAINER_NAME={task_id}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) && !is_zombie(pid) {
            out.push(pid);
        }
    }
    out
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[allow(unused_imports)]
pub use testkit::manager::{kill_tasks_under, TaskCleanup};

/// One Docker test against the manager *binary*: a real etcd, a data dir, and
/// a [`testkit::docker::ContainerGuard`] whose id is also the manager's
/// identity (seeded in etcd before the first start), so every container the
/// manager creates is removed when the test ends, pass or fail.
///
/// Declare it before any [`BinManager`] of the test: locals drop in reverse
/// order, so the manager is killed before its containers are removed.
pub struct DockerEnv {
    pub guard: testkit::docker::ContainerGuard,
    pub etcd: Etcd,
    pub dir: tempfile::TempDir,
}

impl DockerEnv {
    pub async fn new(prefix: &str) -> DockerEnv {
        let guard = testkit::docker::ContainerGuard::new(prefix);
        let etcd = Etcd::start().expect("etcd");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .expect("etcd client");
        c.put("/mdo/manager/meta/manager-id", guard.id(), None)
            .await
            .expect("seed the manager id");
        DockerEnv { guard, etcd, dir }
    }

    /// The manager's identity (`mdo.manager` label of its containers).
    pub fn manager_id(&self) -> &str {
        self.guard.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the manager binary with Docker on (see [`BinManager::start`])
    /// and waits for `/ping`.
    pub async fn start_manager(&self, extra: &[&str]) -> BinManager {
        let mut args = vec!["--docker", "on"];
        args.extend_from_slice(extra);
        BinManager::start(&self.etcd, &self.data_dir(), &args, &[]).await
    }
}

/// The manager binary under test (SIGKILLed on drop).
pub struct BinManager {
    pub process: ManagerProcess,
    pub base: String,
    pub http: reqwest::Client,
}

impl BinManager {
    /// The manager binary against `etcd` with `data_dir` (node `node-1`,
    /// 8 CPUs, 8 GiB, drain delay 0, `RUST_LOG=warn`): add flags, then
    /// [`BinManager::from_cmd`].
    pub fn cmd(etcd: &Etcd, data_dir: &Path) -> ManagerCmd {
        ManagerCmd::new(env!("CARGO_BIN_EXE_manager"))
            .etcd(&etcd.endpoint())
            .data_dir(data_dir)
            .env("RUST_LOG", "warn")
    }

    /// Starts `cmd` and waits for `/ping`.
    pub fn from_cmd(cmd: ManagerCmd) -> BinManager {
        let process = cmd.start();
        BinManager {
            base: process.url().to_string(),
            process,
            http: reqwest::Client::new(),
        }
    }

    /// Starts the manager binary (see [`BinManager::cmd`]) plus `extra` with
    /// the extra environment `env`, and waits for `/ping`.
    pub async fn start(
        etcd: &Etcd,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> BinManager {
        Self::from_cmd(Self::cmd(etcd, data_dir).args(extra).envs(env))
    }

    /// The port the manager listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, value, _) = request(&self.http, &self.base, method, path, body).await;
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// `GET /metrics/prometheus`, as text.
    pub async fn prometheus(&self) -> String {
        prometheus(&self.http, &self.base).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// All tasks of an app (any state).
    pub async fn tasks(&self, app: &str) -> Vec<Value> {
        let (_, v) = self.get(&format!("/v2/apps{app}/tasks")).await;
        v["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the app has exactly `n` tasks, all TASK_RUNNING and (when
    /// `healthy`) passing every health check; returns them sorted by id.
    pub async fn wait_running(&self, app: &str, n: usize, healthy: bool) -> Vec<Value> {
        testkit::eventually_async(&format!("{n} running tasks of {app}"), DEADLINE, || async {
            let mut tasks = self.tasks(app).await;
            let ok = tasks.len() == n
                && tasks
                    .iter()
                    .all(|t| t["state"] == "TASK_RUNNING" && (!healthy || is_healthy(t)));
            tasks.sort_by_key(|t| t["id"].as_str().unwrap_or_default().to_string());
            ok.then_some(tasks)
        })
        .await
    }

    pub async fn wait_no_deployments(&self) {
        wait_no_deployments(&self.http, &self.base).await
    }

    /// Follows the log of `task_id` (see [`FollowedLog`]).
    pub async fn follow_log(&self, task_id: &str) -> FollowedLog {
        FollowedLog::open(&self.http, &self.base, task_id).await
    }

    /// Subscribes to `/v2/events` (query string `query`, e.g.
    /// `event_type=status_update_event`); returns once the stream is attached.
    pub async fn events(&self, query: &str) -> SseLog {
        SseLog::attach(&self.http, &format!("{}/v2/events?{query}", self.base)).await
    }
}

/// Running, with at least one health result and every result alive.
pub fn is_healthy(task: &Value) -> bool {
    task["state"] == "TASK_RUNNING"
        && task["healthCheckResults"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|h| h["alive"] == true))
}

/// The events of an SSE subscription, collected in the background.
pub struct SseLog {
    seen: Arc<std::sync::Mutex<Vec<Value>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl SseLog {
    pub async fn attach(http: &reqwest::Client, url: &str) -> SseLog {
        use futures::StreamExt;
        let resp = http
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("event stream");
        assert_eq!(resp.status(), 200, "GET {url}");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reader = tokio::spawn(async move {
            let mut stream = resp.bytes_stream();
            let mut pending = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    let line = line.trim_end_matches(['\r', '\n']);
                    if let Some(data) = line.strip_prefix("data:") {
                        if let Ok(v) = serde_json::from_str::<Value>(data.trim_start()) {
                            sink.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                        }
                    }
                }
            }
        });
        SseLog { seen, reader }
    }

    /// Every event received so far, in order.
    pub fn all(&self) -> Vec<Value> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `pick` finds what it wants in the events so far.
    pub async fn wait_for<T>(&self, what: &str, pick: impl Fn(&[Value]) -> Option<T>) -> T {
        testkit::eventually_async(what, DEADLINE, || async { pick(&self.all()) }).await
    }
}

impl Drop for SseLog {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// `docker` CLI: (success, trimmed stdout).
pub fn docker_cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Full ids of the containers (any state) carrying `label` (`key=value`).
pub fn containers_labelled(label: &str) -> Vec<String> {
    let (_, out) = docker_cli(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={label}"),
    ]);
    let mut ids: Vec<String> = out.lines().map(str::to_string).collect();
    ids.sort();
    ids
}
