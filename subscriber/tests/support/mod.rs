#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use registry::{Instance, Registry, Settings};
use testkit::marathon_stub::{bridge_app, Stub};
use testkit::subscriber::{SubscriberCmd, SubscriberProcess};
use testkit::Etcd;

/// The real subscriber binary (testkit's [`SubscriberProcess`]: its log,
/// exit status and signals), and its URL.
pub struct Sub {
    pub process: SubscriberProcess,
    pub url: String,
}

pub fn spawn_subscriber(marathon_url: &str, etcd: &Etcd, extra: &[&str]) -> Sub {
    spawn_on(
        testkit::free_port().expect("port"),
        marathon_url,
        etcd,
        extra,
    )
}

pub fn spawn_on(port: u16, marathon_url: &str, etcd: &Etcd, extra: &[&str]) -> Sub {
    let process = SubscriberCmd::new(
        env!("CARGO_BIN_EXE_subscriber"),
        marathon_url,
        &etcd.endpoint(),
    )
    .port(port)
    .args(extra)
    .spawn()
    .expect("spawn subscriber");
    Sub {
        url: process.url().to_string(),
        process,
    }
}

impl Sub {
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Waits until /health answers 200 (stream connected and synced).
    pub async fn wait_healthy(&mut self) {
        self.process.wait_healthy().await;
    }

    pub async fn cleanup(&self, dry_run: bool) -> serde_json::Value {
        let url = format!("{}/cleanup?dry_run={dry_run}", self.url);
        let r = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .expect("cleanup");
        assert_eq!(r.status(), 200, "cleanup status");
        r.json().await.expect("cleanup json")
    }

    pub fn kill9(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then its exit status (within 20 s).
    pub fn sigterm_and_exit(&mut self) -> std::process::ExitStatus {
        self.process.sigterm();
        testkit::eventually(
            "subscriber exits on SIGTERM",
            Duration::from_secs(20),
            || self.process.exited(),
        )
    }

    /// `GET /metrics` (no token), as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

/// A real etcd and the Marathon stub with the bridge app `/dev/web` (port
/// `api` 5000).
pub async fn web_stub() -> (Etcd, Arc<Stub>) {
    let etcd = Etcd::start().expect("etcd");
    let stub = Stub::start().await;
    stub.add_app(bridge_app("/dev/web", &[("api", 5000)]));
    (etcd, stub)
}

/// [`web_stub`] with one task of `/dev/web` per host port of `ports`, then
/// the subscriber without periodic resync (`--resync-interval 1h`), once
/// its start-up resync has written a record for each task: etcd and the
/// stub (keep both: they stop when dropped), the subscriber, a registry
/// client and the tasks' ids in the order of `ports`.
pub async fn registered_web_tasks<const N: usize>(
    ports: [u32; N],
) -> (Etcd, Arc<Stub>, Sub, Registry, [String; N]) {
    let (etcd, stub) = web_stub().await;
    let tasks = ports.map(|p| stub.start_task("/dev/web", &[p]));
    let (sub, reg) = healthy_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]).await;
    let all = tasks.to_vec();
    wait_containers(&reg, all, "the start-up resync wrote every task").await;
    (etcd, stub, sub, reg, tasks)
}

/// [`spawn_subscriber`], once healthy, and a registry client.
pub async fn healthy_subscriber(
    marathon_url: &str,
    etcd: &Etcd,
    extra: &[&str],
) -> (Sub, Registry) {
    let mut sub = spawn_subscriber(marathon_url, etcd, extra);
    sub.wait_healthy().await;
    (sub, registry(etcd).await)
}

/// [`spawn_on`], once healthy, and a registry client.
pub async fn healthy_on(
    port: u16,
    marathon_url: &str,
    etcd: &Etcd,
    extra: &[&str],
) -> (Sub, Registry) {
    let mut sub = spawn_on(port, marathon_url, etcd, extra);
    sub.wait_healthy().await;
    (sub, registry(etcd).await)
}

/// The subscriber in callback mode (`--callback-url` on its own port, plus
/// `extra`), once healthy; and its callback URL.
pub async fn callback_subscriber(marathon_url: &str, etcd: &Etcd, extra: &[&str]) -> (Sub, String) {
    let port = testkit::free_port().expect("port");
    let callback = format!("http://127.0.0.1:{port}/callback");
    let mut args = vec!["--mode", "callback", "--callback-url", &callback];
    args.extend_from_slice(extra);
    let mut sub = spawn_on(port, marathon_url, etcd, &args);
    sub.wait_healthy().await;
    (sub, callback)
}

/// The running tasks of a `/v2/apps/<id>/tasks` answer.
pub fn running_tasks(body: &serde_json::Value) -> Vec<&serde_json::Value> {
    body["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .collect()
}

/// A `/cleanup` summary's counts: added, updated, removed, unchanged.
pub fn counts(summary: &serde_json::Value) -> [u64; 4] {
    ["added", "updated", "removed", "unchanged"].map(|k| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {k:?} in {summary}"))
    })
}

pub async fn registry(etcd: &Etcd) -> Registry {
    Registry::connect(&Settings::new([etcd.endpoint()]))
        .await
        .expect("registry")
}

pub async fn records(reg: &Registry) -> Vec<Instance> {
    match reg.list_all().await {
        Ok(s) => s.entries.into_iter().map(|e| e.instance).collect(),
        Err(_) => Vec::new(),
    }
}

pub async fn containers(reg: &Registry) -> Vec<String> {
    let mut v: Vec<String> = records(reg)
        .await
        .into_iter()
        .map(|r| r.container)
        .collect();
    v.sort();
    v
}

/// Polls until the registry holds exactly `want` containers (sorted).
pub async fn wait_containers(reg: &Registry, mut want: Vec<String>, what: &str) {
    want.sort();
    testkit::eventually_async(what, Duration::from_secs(30), || {
        let want = want.clone();
        async move { (containers(reg).await == want).then_some(()) }
    })
    .await;
}
