//! Faults around recovery and kills, against real etcd, the manager binary,
//! real command tasks and real Docker behind a socket proxy
//! ([`testkit::docker_proxy::DockerProxy`]) that stalls, refuses or delays:
//!
//! - the Docker engine refusing at manager start: tasks kept (not LOST,
//!   records kept), adopted once the engine answers;
//! - the container listing stalling: same;
//! - one corrupt command-task file: only that task skipped (kept), the others
//!   adopted; adopted too once the file is readable again;
//! - a kill during a slow container create: nothing left running once the
//!   create returns;
//! - kill -9 of the manager right after a kill request: the next manager
//!   kills the task.
//!
//! Each test prints its measured times (`measured:` lines, `--nocapture`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    containers_labelled, docker_cli, pids_of_task, BinManager, DockerEnv, TaskCleanup, DEADLINE,
};
use serde_json::{json, Value};
use testkit::docker::require_docker;
use testkit::docker_proxy::{DockerProxy, Mode};
use testkit::Etcd;

/// Longer than [`DEADLINE`]: a stalled listing takes its 10 s timeout, and
/// retries back off.
const SLOW: Duration = Duration::from_secs(60);

/// Starts the manager binary (node `node-1`, 8 CPUs, 8 GiB) with the Docker
/// flags `docker` and `--drain-delay <drain_delay>`, logging to `log` at
/// info level (appended, across restarts), and waits for `/ping`.
fn start(etcd: &Etcd, data: &Path, docker: &[&str], drain_delay: &str, log: &Path) -> BinManager {
    BinManager::from_cmd(
        BinManager::cmd(etcd, data)
            .flag("--drain-delay", drain_delay)
            .args(docker)
            .env("RUST_LOG", "info")
            .env_remove("DOCKER_HOST")
            .log_file(log),
    )
}

/// A Docker test: its [`DockerEnv`], a proxy in front of the engine, and
/// the manager's `--docker` mode through that proxy.
struct Proxied {
    env: DockerEnv,
    proxy: DockerProxy,
    docker: &'static str,
    log: PathBuf,
}

impl Proxied {
    async fn new(prefix: &str, docker: &'static str) -> Proxied {
        let env = DockerEnv::new(prefix).await;
        let log = env.dir.path().join("manager.log");
        Proxied {
            env,
            proxy: DockerProxy::start().expect("docker proxy"),
            docker,
            log,
        }
    }

    fn start(&self) -> BinManager {
        let host = self.proxy.host();
        let docker = ["--docker", self.docker, "--docker-socket", &host];
        start(
            &self.env.etcd,
            &self.env.data_dir(),
            &docker,
            "0",
            &self.log,
        )
    }

    /// `mdo.manager=<id>`: the label of this manager's containers.
    fn label(&self) -> String {
        format!("mdo.manager={}", self.env.manager_id())
    }

    /// A manager runs one container task of `app`, then is killed -9: the
    /// task's id and the container left running.
    async fn one_task_then_kill_9(&self, app: &str) -> (Vec<String>, Vec<String>) {
        let mut m = self.start();
        let (s, v) = m
            .call(reqwest::Method::POST, "/v2/apps", Some(&docker_app(app)))
            .await;
        assert_eq!(s, 201, "{v}");
        let before = m.running_ids(app, 1, DEADLINE).await;
        let containers = running_containers(&self.label());
        assert_eq!(containers.len(), 1, "{containers:?}");
        m.process.kill();
        (before, containers)
    }
}

/// A command-task test: a real etcd and a data dir whose tasks are killed
/// when the test ends, pass or fail.
struct Local {
    _cleanup: TaskCleanup,
    etcd: Etcd,
    data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Local {
    fn new() -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        Local {
            _cleanup: TaskCleanup(data.clone()),
            etcd: Etcd::start().expect("etcd"),
            log: dir.path().join("manager.log"),
            data,
            _dir: dir,
        }
    }

    fn start(&self, drain_delay: &str) -> BinManager {
        start(
            &self.etcd,
            &self.data,
            &["--docker", "off"],
            drain_delay,
            &self.log,
        )
    }
}

/// Creates `/<name>` with `n` sleeping command tasks; returns their ids
/// once they run.
async fn sleepers(m: &BinManager, name: &str, n: usize) -> Vec<String> {
    let app = json!({"id": format!("/{name}"), "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": n});
    let (s, v) = m.call(reqwest::Method::POST, "/v2/apps", Some(&app)).await;
    assert_eq!(s, 201, "{v}");
    m.running_ids(&format!("/{name}"), n, DEADLINE).await
}

impl BinManager {
    /// `DELETE path`, which must answer 200.
    async fn delete_ok(&self, path: &str) {
        let (s, v) = self.delete(path).await;
        assert_eq!(s, 200, "DELETE {path}: {v}");
    }

    /// Ids of the app's tasks in `state`, sorted.
    async fn ids_in(&self, app: &str, state: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks(app)
            .await
            .iter()
            .filter(|t| t["state"] == state)
            .map(|t| t["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Waits until the app has exactly `n` tasks, all running: their ids.
    async fn running_ids(&self, app: &str, n: usize, within: Duration) -> Vec<String> {
        testkit::eventually_async(&format!("{n} running tasks of {app}"), within, || async {
            let all = self.tasks(app).await.len();
            let ids = self.ids_in(app, "TASK_RUNNING").await;
            (ids.len() == n && all == n).then_some(ids)
        })
        .await
    }

    /// A value of `/metrics` (`gauge` or `counter`), by its short name.
    async fn metric(&self, name: &str) -> f64 {
        common::metric(&self.base, name).await
    }

    async fn wait_metric(&self, name: &str, what: impl Fn(f64) -> bool, within: Duration) -> f64 {
        testkit::eventually_async(&format!("metric {name}"), within, || async {
            let v = self.metric(name).await;
            what(v).then_some(v)
        })
        .await
    }
}

async fn etcd_task_keys(etcd: &Etcd) -> Vec<String> {
    common::etcd_keys(&etcd.endpoint(), "/mdo/manager/tasks/").await
}

async fn etcd_task(etcd: &Etcd, id: &str) -> Option<Value> {
    let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("etcd");
    let resp = c
        .get(
            "/mdo/manager/tasks/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get");
    resp.kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(kv.value()).ok())
        .find(|v| v["id"] == id)
}

fn docker_app(id: &str) -> Value {
    json!({
        "id": id, "cpus": 0.01, "mem": 16, "instances": 1,
        "cmd": "exec sleep 1000",
        "container": {"type": "DOCKER", "docker": {"image": testkit::images::busybox()}},
        "networks": [{"mode": "host"}],
        "taskKillGracePeriodSeconds": 1
    })
}

fn running_containers(label: &str) -> Vec<String> {
    let (_, out) = docker_cli(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={label}"),
    ]);
    out.lines().map(str::to_string).collect()
}

/// The Docker engine refuses every connection when the manager starts
/// (`--docker auto`): the running container's task is kept (TASK_RUNNING,
/// its etcd record kept, counted unresolved), and adopted (same task, same
/// container, no second one) once the engine answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_refusing_at_start_keeps_tasks_and_adopts_them_later() {
    if !require_docker() {
        return;
    }
    let p = Proxied::new("refuse", "auto").await;
    let (before, containers) = p.one_task_then_kill_9("/refuse").await;
    p.proxy.set_mode(Mode::Refuse);
    let m = p.start();
    // Two recovery attempts failed, and the task is still there as it was.
    m.wait_metric("recovery_failures_total", |v| v >= 2.0, SLOW)
        .await;
    assert_eq!(m.ids_in("/refuse", "TASK_RUNNING").await, before);
    assert_eq!(m.tasks("/refuse").await.len(), 1, "no replacement, no LOST");
    assert_eq!(m.metric("tasks_unresolved").await, 1.0);
    assert!(
        etcd_task(&p.env.etcd, &before[0]).await.is_some(),
        "the task's record is kept"
    );
    assert_eq!(
        running_containers(&p.label()),
        containers,
        "the container runs on"
    );

    let let_through = Instant::now();
    p.proxy.set_mode(Mode::Pass);
    m.wait_metric("tasks_unresolved", |v| v == 0.0, SLOW).await;
    println!(
        "measured: engine answering again -> task adopted: {} ms",
        let_through.elapsed().as_millis()
    );
    assert_eq!(m.running_ids("/refuse", 1, DEADLINE).await, before);
    assert_eq!(
        running_containers(&p.label()),
        containers,
        "same container, no second"
    );
    // Docker works for new work too.
    let (s, v) = m
        .call(
            reqwest::Method::PUT,
            "/v2/apps/refuse",
            Some(&json!({"instances": 2})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    m.running_ids("/refuse", 2, DEADLINE).await;
}

/// The container listing stalls when the manager starts (`--docker on`):
/// recovery times out, the task is kept, and it is adopted once the listing
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_listing_stall_keeps_tasks_and_adopts_them_later() {
    if !require_docker() {
        return;
    }
    let p = Proxied::new("stall", "on").await;
    let (before, containers) = p.one_task_then_kill_9("/stall").await;
    p.proxy.hold("GET", "/containers/json");
    let started = Instant::now();
    let m = p.start();
    m.wait_metric("recovery_failures_total", |v| v >= 1.0, SLOW)
        .await;
    assert_eq!(m.ids_in("/stall", "TASK_RUNNING").await, before);
    assert_eq!(m.tasks("/stall").await.len(), 1, "no replacement, no LOST");
    assert!(etcd_task(&p.env.etcd, &before[0]).await.is_some());
    let let_through = Instant::now();
    p.proxy.clear_rules();
    m.wait_metric("tasks_unresolved", |v| v == 0.0, SLOW).await;
    println!(
        "measured: listing answering again -> task adopted: {} ms; manager start -> adopted: {} ms",
        let_through.elapsed().as_millis(),
        started.elapsed().as_millis()
    );
    assert_eq!(m.running_ids("/stall", 1, DEADLINE).await, before);
    assert_eq!(running_containers(&p.label()), containers);
}

/// One command task's spec file is corrupt after a kill -9: only that task
/// is skipped (kept as it was, its process untouched), the others are
/// adopted; once the file is readable again it is adopted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_corrupt_task_file_skips_only_that_task() {
    let local = Local::new();
    let mut m = local.start("0");
    let before = sleepers(&m, "three", 3).await;
    let pids: Vec<Vec<u32>> = before.iter().map(|id| pids_of_task(id)).collect();
    assert!(pids.iter().all(|p| p.len() == 1), "{pids:?}");

    m.process.kill();
    let broken = &before[1];
    let spec = local.data.join("tasks").join(broken).join("task.json");
    let original = std::fs::read(&spec).expect("task.json of the task");
    std::fs::write(&spec, b"{ not json").expect("corrupt task.json");

    let m = local.start("0");
    m.wait_metric("recovery_skipped_total", |v| v >= 1.0, DEADLINE)
        .await;
    assert_eq!(
        m.ids_in("/three", "TASK_RUNNING").await,
        before,
        "all three kept: two adopted, the unreadable one as it was"
    );
    assert_eq!(m.tasks("/three").await.len(), 3, "no replacement");
    assert_eq!(m.metric("tasks_unresolved").await, 1.0);
    assert_eq!(etcd_task_keys(&local.etcd).await.len(), 3, "records kept");
    let now: Vec<Vec<u32>> = before.iter().map(|id| pids_of_task(id)).collect();
    assert_eq!(now, pids, "same processes, none killed");

    // Readable again: adopted by a background retry.
    std::fs::write(&spec, original).expect("restore task.json");
    let fixed = Instant::now();
    m.wait_metric("tasks_unresolved", |v| v == 0.0, SLOW).await;
    println!(
        "measured: file readable again -> task adopted: {} ms",
        fixed.elapsed().as_millis()
    );
    // Adopted means managed: a kill stops it.
    m.delete_ok(&format!("/v2/apps/three/tasks/{broken}?scale=true"))
        .await;
    testkit::eventually("the adopted task's process stops", DEADLINE, || {
        pids_of_task(broken).is_empty().then_some(())
    });
}

/// A kill while the container is being created (the proxy delays the create
/// by 4 s): once the create returns, the launch stops and removes the
/// container; nothing of the task is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_slow_create_leaves_no_container() {
    if !require_docker() {
        return;
    }
    let p = Proxied::new("slowcreate", "on").await;
    let proxy = &p.proxy;
    let m = p.start();
    testkit::images::busybox();
    proxy.delay("POST", "/containers/create", Duration::from_secs(4));
    let mut app = docker_app("/slow");
    app["taskKillGracePeriodSeconds"] = json!(2);
    let (s, v) = m.call(reqwest::Method::POST, "/v2/apps", Some(&app)).await;
    assert_eq!(s, 201, "{v}");
    testkit::eventually("the create request reaches the proxy", DEADLINE, || {
        (proxy.seen("POST", "/containers/create") >= 1).then_some(())
    });
    let task = m.tasks("/slow").await;
    assert_eq!(task.len(), 1, "{task:?}");
    let task = task[0]["id"].as_str().expect("task id").to_string();
    assert_eq!(
        proxy.forwarded("POST", "/containers/create"),
        0,
        "still delayed"
    );
    m.delete_ok(&format!("/v2/apps/slow/tasks/{task}?scale=true&force=true"))
        .await;
    testkit::eventually("the create is forwarded", DEADLINE, || {
        (proxy.forwarded("POST", "/containers/create") >= 1).then_some(())
    });
    // The container exists once the create returned (the kill's grace of
    // 2 s keeps it there a while), then it is stopped and removed.
    let label = format!("mdo.task-id={task}");
    testkit::eventually("the delayed create returns", DEADLINE, || {
        (!containers_labelled(&label).is_empty()).then_some(())
    });
    let created = Instant::now();
    testkit::eventually("no container of the killed task", DEADLINE, || {
        containers_labelled(&label).is_empty().then_some(())
    });
    println!(
        "measured: create returned -> container removed: {} ms (kill grace 2 s)",
        created.elapsed().as_millis()
    );
    testkit::eventually_async("the task is gone", DEADLINE, || async {
        m.tasks("/slow").await.is_empty().then_some(())
    })
    .await;
    // And it stays so: nothing is started later for it.
    assert!(containers_labelled(&p.label()).is_empty());
}

/// kill -9 of the manager right after a kill request was answered (the
/// drain delay holds the actual stop back): TASK_KILLING is in etcd, and the
/// next manager kills the task (and replaces it: the app still wants one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_a_kill_request_the_next_manager_kills() {
    let local = Local::new();
    let mut m = local.start("3");
    let before = sleepers(&m, "one", 1).await;
    let victim = before[0].clone();
    let (s, v) = m
        .call(
            reqwest::Method::DELETE,
            &format!("/v2/apps/one/tasks/{victim}"),
            None,
        )
        .await;
    m.process.kill();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        pids_of_task(&victim).len(),
        1,
        "the drain delay held the stop back: the task still runs"
    );
    let record = etcd_task(&local.etcd, &victim).await.expect("record kept");
    assert_eq!(record["state"], "TASK_KILLING", "{record}");

    let m = local.start("3");
    let restarted = Instant::now();
    testkit::eventually("the next manager kills the task", DEADLINE, || {
        pids_of_task(&victim).is_empty().then_some(())
    });
    println!(
        "measured: restart -> killed task stopped: {} ms (drain delay 3 s)",
        restarted.elapsed().as_millis()
    );
    let now = m.running_ids("/one", 1, DEADLINE).await;
    assert_ne!(now, before, "replaced by a new task");
}
