#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use registry::{Instance, Registry, Settings};
use testkit::marathon_stub::{bridge_app, Stub};
use testkit::{ChildGuard, Etcd};

/// The real subscriber binary, on a free port.
pub struct Sub {
    pub child: ChildGuard,
    pub port: u16,
    pub url: String,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
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
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("subscriber.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--marathon-url")
        .arg(marathon_url)
        .arg("--etcd-endpoints")
        .arg(etcd.endpoint())
        .args(extra)
        .env_remove("MDO_AUTH_TOKEN")
        .env_remove("MARATHON_TOKEN")
        .env("RUST_LOG", "subscriber=debug,info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("spawn subscriber");
    let sub = Sub {
        child: ChildGuard::new(child),
        port,
        url: format!("http://127.0.0.1:{port}"),
        log,
        _dir: dir,
    };
    sub
}

impl Sub {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until /health answers 200 (stream connected and synced).
    pub async fn wait_healthy(&mut self) {
        let url = format!("{}/health", self.url);
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.child().try_wait() {
                panic!("subscriber exited: {status}\n{}", self.log_text());
            }
            if std::time::Instant::now() > deadline {
                panic!("subscriber never became healthy:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

    pub fn sigterm(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    pub fn kill9(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, then its exit status (within 20 s).
    pub fn sigterm_and_exit(&mut self) -> std::process::ExitStatus {
        self.sigterm();
        testkit::eventually(
            "subscriber exits on SIGTERM",
            Duration::from_secs(20),
            || self.child.child().try_wait().ok().flatten(),
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
