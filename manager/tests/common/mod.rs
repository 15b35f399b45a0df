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
use testkit::Etcd;
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct TestManager {
    pub etcd: Etcd,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    pub core: Arc<Core>,
    stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
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
        TestManager {
            etcd,
            dir,
            base,
            http: reqwest::Client::new(),
            core,
            stop,
            handle: Some(handle),
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
        let etcd = std::mem::replace(&mut self.etcd, Etcd::start().expect("etcd"));
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        std::mem::forget(self);
        (etcd, dir)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
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

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.call(Method::GET, path, None).await;
        (s, v)
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
        testkit::eventually_async("no deployments", DEADLINE, || async {
            let (_, v) = self.get("/v2/deployments").await;
            v.as_array().is_some_and(Vec::is_empty).then_some(())
        })
        .await
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
        let mut c = etcd_client::Client::connect([self.etcd.endpoint()], None)
            .await
            .expect("etcd");
        let resp = c
            .get(
                format!("/mdo/manager{prefix}"),
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
}

impl Drop for TestManager {
    fn drop(&mut self) {
        self.stop.cancel();
        kill_tasks_under(&self.data_dir());
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

/// SIGKILLs every session started by a shim of this data dir.
pub fn kill_tasks_under(data_dir: &Path) {
    let needle = data_dir.to_string_lossy().to_string();
    let mut sessions = Vec::new();
    let procs: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let after = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .collect::<Vec<_>>();
            let sid: i32 = after.get(3)?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                sessions.push(pid);
            }
            Some((pid, sid))
        })
        .collect();
    for (pid, sid) in procs {
        if sessions.contains(&sid) || sessions.contains(&pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
