//! "Several hosts" with the built-in manager (docs/multi-host.md): two
//! independent nodes, each its own manager binary (its own advertised
//! address and internal prefix) and its own subscriber (its own `--owner`,
//! SSE against its own manager), all writing one registry kept by a real
//! 3-member etcd cluster. guestutils, reading from any member, finds the
//! instances of both nodes, each with its node's host; a resync of one
//! subscriber never touches the other's records.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use guestutils::{AsyncGuestUtils, Environment};
use registry::{Instance, Registry, Settings};
use serde_json::{json, Value};
use testkit::manager::{kill_tasks_under, ManagerCmd, ManagerProcess};
use testkit::{ChildGuard, EtcdCluster};

const DEADLINE: Duration = Duration::from_secs(60);

/// One host: the manager binary and its subscriber, each with a log in the
/// node's temp dir. On drop both are killed, then every command task the
/// manager started (found by its data dir) is killed too.
struct Node {
    name: &'static str,
    address: &'static str,
    manager_url: String,
    subscriber_url: String,
    http: reqwest::Client,
    subscriber: ChildGuard,
    manager: ManagerProcess,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts the node's manager (advertising `address`, state under
    /// `/mdo/manager/<name>`) and its subscriber (`--owner <name>`), both
    /// talking to etcd through `etcd_endpoints`; returns once both are healthy.
    async fn start(name: &'static str, address: &'static str, etcd_endpoints: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mdo-{name}-"))
            .tempdir()
            .expect("tempdir");
        let subscriber_port = testkit::free_port().expect("port");
        let manager = ManagerCmd::new(testkit::manager::binary())
            .etcd(etcd_endpoints)
            .flag("--node-name", name)
            .args(["--internal-prefix", &format!("/mdo/manager/{name}")])
            .args(["--advertise-address", address, "--docker", "off"])
            .data_dir(dir.path().join("data"))
            .log_file(dir.path().join("manager.log"))
            .start();
        let mut node = Node {
            name,
            address,
            subscriber_url: format!("http://127.0.0.1:{subscriber_port}"),
            manager_url: manager.url().to_string(),
            http: reqwest::Client::new(),
            subscriber: ChildGuard(None),
            manager,
            dir,
        };

        let log = std::fs::File::create(node.dir.path().join("subscriber.log")).expect("log");
        let subscriber = Command::new(env!("CARGO_BIN_EXE_subscriber"))
            .args(["--listen", &format!("127.0.0.1:{subscriber_port}")])
            .args(["--marathon-url", &node.manager_url])
            .args(["--etcd-endpoints", etcd_endpoints])
            .args(["--owner", name, "--mode", "sse", "--resync-interval", "1h"])
            .env_remove("MDO_AUTH_TOKEN")
            .env_remove("MARATHON_TOKEN")
            .env("RUST_LOG", "subscriber=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn subscriber");
        node.subscriber = ChildGuard::new(subscriber);
        node.wait_ok(&format!("{}/health", node.subscriber_url), "subscriber")
            .await;
        node
    }

    fn logs(&self) -> String {
        ["manager.log", "subscriber.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {} {f}:\n{}",
                    self.name,
                    std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `url` until it answers 200; panics with the node's logs when a
    /// process exits or the deadline passes.
    async fn wait_ok(&mut self, url: &str, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(r) = self.http.get(url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            let exited = self.manager.exited().or_else(|| {
                let subscriber = self.subscriber.0.as_mut()?;
                subscriber.try_wait().ok().flatten()
            });
            if let Some(status) = exited {
                panic!(
                    "{} {what}: a process exited ({status})\n{}",
                    self.name,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} {what}: {url} not 200 within {DEADLINE:?}\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Running tasks of `/web` on this node's manager: (id, host, first port).
    async fn web_tasks(&self) -> Vec<(String, String, u64)> {
        let (_, body) = self
            .call(
                reqwest::Method::GET,
                format!("{}/v2/apps/web/tasks", self.manager_url),
                None,
            )
            .await;
        body["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .map(|t| {
                (
                    t["id"].as_str().expect("id").to_string(),
                    t["host"].as_str().expect("host").to_string(),
                    t["ports"][0].as_u64().expect("port"),
                )
            })
            .collect()
    }

    /// Deploys one instance of the command app `/web` (a named port `http`)
    /// and returns its running task.
    async fn deploy_web(&self) -> (String, String, u64) {
        let app = json!({"id": "/web", "cmd": "exec sleep 3600", "cpus": 0.01, "mem": 8,
                         "instances": 1, "portDefinitions": [{"port": 0, "name": "http"}]});
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                format!("{}/v2/apps", self.manager_url),
                Some(app),
            )
            .await;
        assert_eq!(status, 201, "{}: POST /v2/apps: {body}", self.name);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let tasks = self.web_tasks().await;
            if let [task] = tasks.as_slice() {
                return task.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: one running /web task expected, got {tasks:?}\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cleanup(&self) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                format!("{}/cleanup", self.subscriber_url),
                None,
            )
            .await;
        assert_eq!(status, 200, "{}: /cleanup: {body}", self.name);
        body
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.subscriber.kill();
        self.manager.kill();
        kill_tasks_under(&self.dir.path().join("data"));
    }
}

/// The `web` records, read through one etcd member.
async fn web_records(reg: &Registry) -> Vec<Instance> {
    match reg.list_service("web").await {
        Ok(s) => s.instances().cloned().collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_share_one_registry_on_a_three_member_etcd_cluster() {
    let etcd = EtcdCluster::start(3).expect("3-member etcd cluster");
    // Each node talks to a different member; member 3 is only read from.
    let a = Node::start("node-a", "127.0.0.2", &etcd.endpoint(0)).await;
    let b = Node::start("node-b", "127.0.0.3", &etcd.endpoint(1)).await;

    // The same app id on both managers: two independent single-node
    // schedulers, one service in the registry.
    let (id_a, host_a, port_a) = a.deploy_web().await;
    let (id_b, host_b, port_b) = b.deploy_web().await;
    assert_eq!((host_a.as_str(), host_b.as_str()), (a.address, b.address));
    assert_ne!(id_a, id_b);
    assert_eq!(
        a.web_tasks().await.len(),
        1,
        "node-a runs only its own task"
    );
    assert_eq!(
        b.web_tasks().await.len(),
        1,
        "node-b runs only its own task"
    );

    let want: BTreeSet<String> = [
        format!("{}:{port_a}", a.address),
        format!("{}:{port_b}", b.address),
    ]
    .into();
    for member in [0, 2] {
        let gu = AsyncGuestUtils::new(Environment::from_iter([(
            "ETCD_ENDPOINTS",
            etcd.endpoint(member),
        )]));
        let mut last = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(nodes) = gu.get_node_list("web", &["http"], 2, &[] as &[&str]).await {
                if nodes.iter().cloned().collect::<BTreeSet<_>>() == want {
                    break;
                }
                last = nodes;
            }
            assert!(
                Instant::now() < deadline,
                "guestutils through member {}: {last:?}, want {want:?}\n{}\n{}",
                member + 1,
                a.logs(),
                b.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Each record names its node, its host and its owner.
    let reg = Registry::connect(&Settings::new([etcd.endpoint(2)]))
        .await
        .expect("registry through member 3");
    let mut records = web_records(&reg).await;
    records.sort_by(|x, y| x.owner.cmp(&y.owner));
    let summary: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.container.as_str(),
                r.node.as_str(),
                r.host.as_str(),
                r.owner.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (id_a.as_str(), "node-a", "127.0.0.2", "node-a"),
            (id_b.as_str(), "node-b", "127.0.0.3", "node-b"),
        ]
    );

    // A resync of either subscriber keeps the other node's record: it only
    // compares its own manager's tasks with its own records.
    for node in [&a, &b] {
        let s = node.cleanup().await;
        assert_eq!(
            (
                s["added"].as_u64(),
                s["updated"].as_u64(),
                s["removed"].as_u64(),
                s["unchanged"].as_u64()
            ),
            (Some(0), Some(0), Some(0), Some(1)),
            "{}: {s}",
            node.name
        );
        let mut containers: Vec<String> = web_records(&reg)
            .await
            .into_iter()
            .map(|r| r.container)
            .collect();
        containers.sort();
        let mut both = vec![id_a.clone(), id_b.clone()];
        both.sort();
        assert_eq!(containers, both, "after {}'s /cleanup", node.name);
    }

    // Removing the app on node-a removes only node-a's record.
    let (status, body) = a
        .call(
            reqwest::Method::DELETE,
            format!("{}/v2/apps/web", a.manager_url),
            None,
        )
        .await;
    assert_eq!(status, 200, "DELETE /v2/apps/web on node-a: {body}");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left: Vec<String> = web_records(&reg)
            .await
            .into_iter()
            .map(|r| r.container)
            .collect();
        if left == [id_b.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after deleting /web on node-a: {left:?}\n{}",
            a.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.web_tasks().await.len(), 1, "node-b's task keeps running");
    let (status, body) = b
        .call(
            reqwest::Method::DELETE,
            format!("{}/v2/apps/web", b.manager_url),
            None,
        )
        .await;
    assert_eq!(status, 200, "DELETE /v2/apps/web on node-b: {body}");
}
