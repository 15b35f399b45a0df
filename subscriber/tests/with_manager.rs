//! The real subscriber against the real manager binary (command tasks) and
//! a real etcd.

mod support;

use std::time::Duration;

use registry::{Port, Registry};
use serde_json::{json, Value};
use support::*;
use testkit::manager::{ManagerCmd, ManagerProcess};
use testkit::Etcd;

/// The manager binary (`--docker off`); its command tasks are killed with it.
struct Manager {
    process: ManagerProcess,
    url: String,
    http: reqwest::Client,
}

impl Manager {
    async fn start(etcd: &Etcd) -> Manager {
        let process = ManagerCmd::new(testkit::manager::binary())
            .etcd(&etcd.endpoint())
            .flag("--docker", "off")
            .without("--drain-delay")
            .without("--node-name")
            .start();
        Manager {
            url: process.url().to_string(),
            process,
            http: reqwest::Client::new(),
        }
    }

    fn log_text(&self) -> String {
        self.process.log_text()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("manager request");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Ids and host ports of the running tasks of an app.
    async fn running(&self, app: &str) -> Vec<(String, Vec<u64>)> {
        let (_, body) = self
            .call(reqwest::Method::GET, &format!("/v2/apps{app}/tasks"), None)
            .await;
        let mut v: Vec<(String, Vec<u64>)> = running_tasks(&body)
            .into_iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_string(),
                    t["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_u64().unwrap())
                        .collect(),
                )
            })
            .collect();
        v.sort();
        v
    }

    async fn wait_running(&self, app: &str, n: usize) -> Vec<(String, Vec<u64>)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.running(app).await;
            if r.len() == n {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{app}: {n} running tasks expected, got {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The callback URLs the manager delivers events to.
    async fn callback_urls(&self) -> Value {
        let (_, subs) = self
            .call(reqwest::Method::GET, "/v2/eventSubscriptions", None)
            .await;
        subs["callbackUrls"].clone()
    }

    /// SIGTERM to the callback-mode subscriber `sub`: it exits 0, and the
    /// manager no longer lists its callback URL.
    async fn sigterm_unsubscribes(&self, sub: &mut Sub) {
        let status = sub.sigterm_and_exit();
        assert!(status.success(), "{status}\n{}", sub.log_text());
        assert_eq!(
            self.callback_urls().await,
            json!([]),
            "unsubscribed on SIGTERM"
        );
    }

    async fn scale(&self, app: &str, n: u32) {
        let (s, b) = self
            .call(
                reqwest::Method::PUT,
                &format!("/v2/apps{app}?force=true"),
                Some(json!({"instances": n})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.process.kill();
        testkit::manager::kill_tasks_under(self.process.data_dir());
    }
}

fn command_app(id: &str, instances: u32) -> Value {
    json!({"id": id, "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": instances,
           "portDefinitions": [{"port": 0, "name": "api"}, {"port": 0}]})
}

impl Manager {
    /// Creates the command app `id` with `n` tasks and waits until they
    /// run and the registry holds exactly them; returns them.
    async fn create(
        &self,
        reg: &Registry,
        id: &str,
        n: u32,
        what: &str,
    ) -> Vec<(String, Vec<u64>)> {
        let (s, b) = self
            .call(reqwest::Method::POST, "/v2/apps", Some(command_app(id, n)))
            .await;
        assert_eq!(s, 201, "{b}");
        let running = self.wait_running(id, n as usize).await;
        converged(self, reg, id, what).await;
        running
    }
}

/// Waits until the registry holds exactly the manager's running tasks of `app`.
async fn converged(m: &Manager, reg: &Registry, app: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let want: Vec<String> = m.running(app).await.into_iter().map(|(id, _)| id).collect();
        let have = containers(reg).await;
        if have == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: registry {have:?} != manager {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_tasks_become_records_and_scale_down_removes_them() {
    let etcd = Etcd::start().unwrap();
    let m = Manager::start(&etcd).await;
    let (sub, reg) = healthy_subscriber(&m.url, &etcd, &[]).await;

    let tasks = m.create(&reg, "/dev/ingestor", 3, "three records").await;
    let recs = records(&reg).await;
    for (id, ports) in &tasks {
        let r = recs.iter().find(|r| &r.container == id).expect("record");
        assert_eq!((r.service.as_str(), r.group.as_str()), ("ingestor", "dev"));
        assert_eq!(r.app_id, "/dev/ingestor");
        assert_eq!(r.ports["api"], Port::tcp(ports[0] as u16, ports[0] as u16));
        assert_eq!(
            r.ports["port1"],
            Port::tcp(ports[1] as u16, ports[1] as u16)
        );
        assert_eq!(r.state, "TASK_RUNNING");
    }

    m.scale("/dev/ingestor", 1).await;
    m.wait_running("/dev/ingestor", 1).await;
    converged(&m, &reg, "/dev/ingestor", "scale down removed records").await;

    // A killed task's record goes; its replacement gets one.
    let (victim, _) = m.running("/dev/ingestor").await.remove(0);
    let (s, b) = m
        .call(
            reqwest::Method::DELETE,
            &format!("/v2/apps/dev/ingestor/tasks/{victim}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    testkit::eventually_async(
        "victim's record removed",
        Duration::from_secs(30),
        || async { (!containers(&reg).await.contains(&victim)).then_some(()) },
    )
    .await;
    converged(&m, &reg, "/dev/ingestor", "replacement registered").await;

    // Nothing to repair afterwards.
    let s = sub.cleanup(false).await;
    assert_eq!(
        (
            s["added"].as_u64(),
            s["updated"].as_u64(),
            s["removed"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_kill_9_of_the_subscriber_during_churn_then_restart_converges() {
    let etcd = Etcd::start().unwrap();
    let m = Manager::start(&etcd).await;
    let port = testkit::free_port().unwrap();
    let (mut sub, reg) = healthy_on(port, &m.url, &etcd, &[]).await;
    m.create(&reg, "/web", 4, "four records").await;

    m.scale("/web", 1).await;
    sub.kill9();
    m.wait_running("/web", 1).await;
    m.scale("/web", 3).await;
    m.wait_running("/web", 3).await;
    let mut sub = spawn_on(port, &m.url, &etcd, &[]);
    sub.wait_healthy().await;
    converged(&m, &reg, "/web", "converged after restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_callback_mode_end_to_end_and_unsubscribe_on_sigterm() {
    let etcd = Etcd::start().unwrap();
    let m = Manager::start(&etcd).await;
    let (mut sub, callback) = callback_subscriber(&m.url, &etcd, &[]).await;
    assert_eq!(m.callback_urls().await, json!([callback]));
    let reg = registry(&etcd).await;

    m.create(&reg, "/cb/web", 2, "records through callbacks")
        .await;
    m.scale("/cb/web", 1).await;
    m.wait_running("/cb/web", 1).await;
    converged(&m, &reg, "/cb/web", "scale down through callbacks").await;

    m.sigterm_unsubscribes(&mut sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_callback_mode_with_a_token_delivers_and_refuses_forged_events() {
    const TOKEN: &str = "cb-T0ken-s3cret";
    let etcd = Etcd::start().unwrap();
    let m = Manager::start(&etcd).await;
    let (mut sub, callback) = callback_subscriber(
        &m.url,
        &etcd,
        &[
            "--auth-token",
            TOKEN,
            // Records only from events: no periodic resync to mend them.
            "--resync-interval",
            "1h",
        ],
    )
    .await;
    assert_eq!(
        m.callback_urls().await,
        json!([format!("{callback}?token={TOKEN}")])
    );
    let reg = registry(&etcd).await;

    // The manager's deliveries carry the token: records follow the tasks.
    let running = m
        .create(&reg, "/cbt/web", 2, "records through token callbacks")
        .await;

    // A forged TASK_KILLED without the token: 401, nothing changes.
    let victim = &running[0].0;
    let forged = json!({"eventType": "status_update_event", "taskStatus": "TASK_KILLED",
        "appId": "/cbt/web", "taskId": victim, "slaveId": "node-1", "host": "127.0.0.1",
        "ports": running[0].1, "version": "2024-01-01T00:00:00.000Z",
        "timestamp": "2030-01-01T00:00:00.000Z"});
    let r = reqwest::Client::new()
        .post(&callback)
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Later real events are handled in order after it: still both records.
    m.scale("/cbt/web", 3).await;
    m.wait_running("/cbt/web", 3).await;
    converged(&m, &reg, "/cbt/web", "scale up through token callbacks").await;
    assert!(containers(&reg).await.contains(victim));

    for (who, log) in [("subscriber", sub.log_text()), ("manager", m.log_text())] {
        assert!(!log.contains(TOKEN), "{who} logged the token:\n{log}");
    }
    m.sigterm_unsubscribes(&mut sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_cleanup_repairs_hand_edits_and_keeps_other_owners() {
    let etcd = Etcd::start().unwrap();
    let m = Manager::start(&etcd).await;
    let mut sub = spawn_subscriber(
        &m.url,
        &etcd,
        &["--resync-interval", "1h", "--owner", "east"],
    );
    sub.wait_healthy().await;
    let reg = registry(&etcd).await;
    m.create(&reg, "/dev/api", 2, "two records").await;

    let mut recs = records(&reg).await;
    let gone = recs.remove(0);
    reg.delete(&gone.name().unwrap()).await.unwrap();
    let mut invented = recs[0].clone();
    invented.container = "dev_api.instance-invented._app.1".into();
    reg.put(&invented).await.unwrap();
    let mut foreign = recs[0].clone();
    foreign.container = "dev_api.instance-west._app.1".into();
    foreign.owner = "west".into();
    reg.put(&foreign).await.unwrap();

    let s = sub.cleanup(false).await;
    assert_eq!(counts(&s), [1, 0, 1, 1], "{s}");
    let mut want: Vec<String> = m
        .running("/dev/api")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    want.push(foreign.container.clone());
    want.sort();
    assert_eq!(
        containers(&reg).await,
        want,
        "repaired; the other owner's record stays"
    );
}
