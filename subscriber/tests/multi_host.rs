//! "Several hosts" with the built-in manager (docs/multi-host.md): two
//! independent nodes, each its own manager binary (its own advertised
//! address and internal prefix) and its own subscriber (its own `--owner`,
//! SSE against its own manager), all writing one registry kept by a real
//! 3-member etcd cluster. guestutils, reading from any member, finds the
//! instances of both nodes, each with its node's host; a resync of one
//! subscriber never touches the other's records.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use guestutils::{AsyncGuestUtils, Environment};
use registry::{Instance, Registry, Settings};
use serde_json::{json, Value};
use support::{counts, running_tasks};
use testkit::manager::{kill_tasks_under, ManagerCmd, ManagerProcess};
use testkit::subscriber::{SubscriberCmd, SubscriberProcess};
use testkit::EtcdCluster;

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
    subscriber: SubscriberProcess,
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
        let manager = ManagerCmd::new(testkit::manager::binary())
            .etcd(etcd_endpoints)
            .flag("--node-name", name)
            .args(["--internal-prefix", &format!("/mdo/manager/{name}")])
            .args(["--advertise-address", address, "--docker", "off"])
            .data_dir(dir.path().join("data"))
            .log_file(dir.path().join("manager.log"))
            .start();
        let subscriber = SubscriberCmd::new(
            env!("CARGO_BIN_EXE_subscriber"),
            manager.url(),
            etcd_endpoints,
        )
        .args(["--owner", name, "--mode", "sse", "--resync-interval", "1h"])
        .log_file(dir.path().join("subscriber.log"))
        .spawn()
        .expect("spawn subscriber");
        let mut node = Node {
            name,
            address,
            subscriber_url: subscriber.url().to_string(),
            manager_url: manager.url().to_string(),
            http: reqwest::Client::new(),
            subscriber,
            manager,
            dir,
        };
        node.wait_healthy().await;
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

    /// Waits until the subscriber answers `/health`; panics with the node's
    /// logs when the manager or the subscriber exits or the deadline passes.
    async fn wait_healthy(&mut self) {
        let waited = self.subscriber.wait_answering("/health", DEADLINE).await;
        let manager = self.manager.exited();
        if let Err(e) = waited {
            panic!(
                "{}: {e}\nmanager exited: {manager:?}\n{}",
                self.name,
                self.logs()
            );
        }
        if let Some(status) = manager {
            panic!(
                "{}: the manager exited ({status})\n{}",
                self.name,
                self.logs()
            );
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
        running_tasks(&body)
            .into_iter()
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
        assert_eq!(counts(&s), [0, 0, 0, 1], "{}: {s}", node.name);
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
