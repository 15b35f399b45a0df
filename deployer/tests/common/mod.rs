//! Test harness: a real etcd, the real manager binary, the deployer served
//! in-process on port 0.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use deployer::config::{ServeConfig, Settings};
use deployer::parse::Limits;
use deployer::translate::TranslateConfig;
use deployer::upstream::MarathonConfig;
use serde_json::Value;
use testkit::manager::{ManagerCmd, ManagerProcess};
use testkit::Etcd;
use tokio_util::sync::CancellationToken;

pub const MANAGER_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a workspace binary: the deployer's own from cargo, others built
/// by testkit (once per test process, so never stale).
pub fn binary(name: &str) -> PathBuf {
    if name == "deployer" {
        return PathBuf::from(env!("CARGO_BIN_EXE_deployer"));
    }
    testkit::workspace_binary(name)
}

/// A real manager on a free port with its own etcd and host-port range.
pub struct Manager {
    pub url: String,
    pub etcd: Etcd,
    process: ManagerProcess,
}

impl Manager {
    pub fn start() -> Manager {
        Manager::start_as(None)
    }

    /// With `id` as the manager's id (the `mdo.manager` label of its
    /// containers, so a `testkit::docker::ContainerGuard` removes them).
    pub fn start_as(id: Option<&str>) -> Manager {
        let etcd = Etcd::start().expect("etcd");
        if let Some(id) = id {
            let status = Command::new("etcdctl")
                .args([
                    "--endpoints",
                    &etcd.endpoint(),
                    "put",
                    "/mdo/manager/meta/manager-id",
                    id,
                ])
                .env("ETCDCTL_API", "3")
                .stdout(Stdio::null())
                .status()
                .expect("etcdctl");
            assert!(status.success());
        }
        let port = testkit::free_port().unwrap();
        // A host-port range of our own so parallel tests never collide.
        let base = 40000 + (port as u32 % 100) * 200;
        let process = ManagerCmd::new(binary("manager"))
            .port(port)
            .etcd(&etcd.endpoint())
            .flag("--port-range", format!("{base}-{}", base + 199))
            .without("--node-cpus")
            .without("--node-mem")
            .start();
        Manager {
            url: process.url().to_string(),
            etcd,
            process,
        }
    }

    pub fn log(&self) -> String {
        self.process.log_text()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.process.kill();
        testkit::manager::kill_tasks_under(self.process.data_dir());
    }
}

pub fn settings(marathon_url: &str) -> Settings {
    Settings {
        marathon: MarathonConfig {
            url: marathon_url.to_string(),
            token: None,
            timeout: Duration::from_secs(20),
        },
        translate: TranslateConfig {
            container_etcd_endpoints: "http://127.0.0.1:2379".into(),
        },
    }
}

/// The deployer's HTTP API, served in-process.
pub struct Deployer {
    pub url: String,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Deployer {
    pub fn start(marathon_url: &str) -> Deployer {
        Deployer::start_with(marathon_url, |_| {})
    }

    pub fn start_with(marathon_url: &str, tweak: impl FnOnce(&mut ServeConfig)) -> Deployer {
        let mut config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            auth_token: None,
            limits: Limits::default(),
            wait_timeout: MANAGER_TIMEOUT,
            settings: settings(marathon_url),
            registry: None,
            registry_view_url: None,
        };
        tweak(&mut config);
        let app = deployer::Application::build(config).expect("deployer binds");
        let url = format!("http://127.0.0.1:{}", app.port());
        let stop = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(stop.clone()));
        Deployer {
            url,
            stop,
            server: Some(server),
        }
    }

    /// POSTs a document; returns status and JSON body.
    pub async fn post(
        &self,
        path_and_query: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}{}", self.url, path_and_query))
            .body(body.into());
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let resp = req.send().await.expect("deployer answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn deploy(&self, yaml: &str) -> (u16, Value) {
        self.post("/deploy?wait=true", Some("application/yaml"), yaml)
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("{}{}", self.url, path))
            .await
            .expect("deployer answers");
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

impl Drop for Deployer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// An app as the manager returns it (None when absent).
pub async fn app(marathon: &str, id: &str) -> Option<Value> {
    let resp = reqwest::get(format!("{marathon}/v2/apps{id}?embed=app.tasks"))
        .await
        .unwrap();
    if resp.status().as_u16() == 404 {
        return None;
    }
    let v: Value = resp.json().await.unwrap();
    Some(v["app"].clone())
}

/// Sorted ids of the app's running tasks.
pub async fn running_task_ids(marathon: &str, id: &str) -> Vec<String> {
    let Some(app) = app(marathon, id).await else {
        return Vec::new();
    };
    let mut ids: Vec<String> = app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Waits until the app runs exactly `n` tasks and no deployment touches it; returns their ids.
pub async fn settled(marathon: &str, id: &str, n: usize) -> Vec<String> {
    testkit::eventually_async(
        &format!("{id} settles with {n} running tasks"),
        MANAGER_TIMEOUT,
        || async {
            let app = app(marathon, id).await?;
            let deploying = app["deployments"].as_array().is_some_and(|d| !d.is_empty());
            let ids = running_task_ids(marathon, id).await;
            (!deploying && ids.len() == n).then_some(ids)
        },
    )
    .await
}

/// Creates `app` directly on the manager (`POST /v2/apps`, beside anything
/// the deployer does); panics with the body unless it answers 201.
pub async fn create_on_manager(marathon: &str, app: &Value) {
    let resp = reqwest::Client::new()
        .post(format!("{marathon}/v2/apps"))
        .json(app)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "{}",
        resp.text().await.unwrap()
    );
}

/// The entry of service `name` in a deploy report's `services`.
pub fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {report}"))
        .iter()
        .find(|s| s["service"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

pub async fn app_ids(marathon: &str) -> Vec<String> {
    let v: Value = reqwest::get(format!("{marathon}/v2/apps"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

pub fn example(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
    )
    .unwrap()
}
