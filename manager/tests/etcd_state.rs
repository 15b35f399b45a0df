//! The manager binary's state in etcd (issues 13, 14, 15): a long version
//! history still loads after kill -9 and is bounded by --max-versions; an
//! API change is one transaction (too large -> 422, nothing stored); the
//! manager works against etcd with user/password auth and with TLS client
//! certificates, and fails with one clear line without its password; task
//! states that could not be written while etcd was away reach etcd once it
//! is back (found by the fault suite, `bench/tests/faults.rs`); tasks that
//! end right after they run leave no record, and a launch pass's records
//! are written together (the one task writer).

mod common;

use std::path::{Path, PathBuf};

use common::{pids_of_task, TaskCleanup, DEADLINE};
use etcd_client::{Client, ConnectOptions, GetOptions};
use serde_json::{json, Value};
use testkit::manager::{ManagerCmd, ManagerProcess};
use testkit::{Etcd, EtcdTls};

const PREFIX: &str = "/mdo/manager/";

/// The manager binary (`--docker off`) with `args` (etcd flags included).
fn cmd(args: &[&str], data: &Path) -> ManagerCmd {
    ManagerCmd::new(env!("CARGO_BIN_EXE_manager"))
        .flag("--docker", "off")
        .args(args)
        .data_dir(data)
}

/// The manager binary with `args`, once it answers /ping; and its URL.
async fn start(args: &[&str], data: &Path) -> (ManagerProcess, String) {
    let m = cmd(args, data).env("RUST_LOG", "warn").start();
    let base = m.url().to_string();
    (m, base)
}

/// A real etcd, a data dir whose tasks are stopped at the end, and the
/// manager on them (fields drop in this order: the manager first, etcd last).
struct Stack {
    m: ManagerProcess,
    base: String,
    ep: String,
    data: PathBuf,
    _cleanup: TaskCleanup,
    _dir: tempfile::TempDir,
    etcd: Etcd,
}

async fn stack() -> Stack {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cleanup = TaskCleanup(data.clone());
    let ep = etcd.endpoint();
    let (m, base) = start(&["--etcd-endpoints", &ep], &data).await;
    Stack {
        m,
        base,
        ep,
        data,
        _cleanup: cleanup,
        _dir: dir,
        etcd,
    }
}

/// Runs the manager binary expecting it to exit: (exit code, stderr).
fn run_to_exit(args: &[&str], data: &Path) -> (Option<i32>, String) {
    cmd(args, data).env("RUST_LOG", "off").run_to_exit(DEADLINE)
}

async fn call(method: reqwest::Method, url: String, body: Option<&Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    call(reqwest::Method::GET, format!("{base}{path}"), None).await
}

/// Keys and their count under `prefix`, read the plain way (as root when
/// a user is given).
async fn etcd_count(endpoint: &str, prefix: &str, user: Option<(&str, &str)>) -> usize {
    let opts = user.map(|(u, p)| ConnectOptions::new().with_user(u, p));
    let mut c = Client::connect([endpoint], opts).await.expect("etcd");
    let resp = c
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count");
    resp.count() as usize
}

/// 6 variables of 10,000 bytes: a 60 KB `env`.
fn big_env() -> Value {
    let mut env = serde_json::Map::new();
    for i in 0..6 {
        env.insert(format!("BLOB_{i}"), Value::String("x".repeat(10_000)));
    }
    Value::Object(env)
}

/// Issue 14.1 as reported: one app with a 60 KB env, 90 label changes,
/// kill -9, restart. Today's manager keeps 91 versions (5.5 MB) and dies on
/// start-up reading them in one reply; now it keeps --max-versions (50 by
/// default), drops the oldest with each change, and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_history_of_a_big_app_survives_kill_9_and_is_bounded() {
    let Stack {
        m, base, ep, data, ..
    } = &mut stack().await;

    let app = json!({"id": "/big", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8,
                     "instances": 0, "env": big_env(), "labels": {"change": "0"}});
    let (s, v) = call(reqwest::Method::POST, format!("{base}/v2/apps"), Some(&app)).await;
    assert_eq!(s, 201, "{v}");
    for i in 1..=90 {
        let body = json!({"labels": {"change": i.to_string()}});
        let url = format!("{base}/v2/apps/big?force=true");
        let (s, v) = call(reqwest::Method::PATCH, url, Some(&body)).await;
        assert_eq!(s, 200, "change {i}: {v}");
    }

    m.kill(); // SIGKILL
    let (_m, base) = start(&["--etcd-endpoints", ep], data).await;
    let (s, v) = get(&base, "/v2/apps/big").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["app"]["labels"]["change"], "90");
    assert_eq!(v["app"]["env"]["BLOB_5"].as_str().unwrap().len(), 10_000);
    let (_, v) = get(&base, "/v2/apps/big/versions").await;
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 50, "{v}");
    // The newest are kept: the current version is one of them.
    let (_, app) = get(&base, "/v2/apps/big").await;
    assert!(versions.contains(&app["app"]["version"]), "{v}");
    assert_eq!(etcd_count(ep, "/mdo/manager/versions/big/", None).await, 50);

    // One more change: still 50, the oldest gone.
    let mut sorted: Vec<String> = versions
        .iter()
        .map(|x| x.as_str().unwrap().into())
        .collect();
    sorted.sort();
    let url = format!("{base}/v2/apps/big?force=true");
    let body = json!({"labels": {"change": "91"}});
    let (s, v) = call(reqwest::Method::PATCH, url, Some(&body)).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = get(&base, "/v2/apps/big/versions").await;
    let after = v["versions"].as_array().unwrap();
    assert_eq!(after.len(), 50, "{v}");
    assert!(!after.contains(&json!(sorted[0])), "{v}");
    assert!(after.contains(&json!(sorted[1])), "{v}");
    assert_eq!(etcd_count(ep, "/mdo/manager/versions/big/", None).await, 50);
}

/// A history written before the bound (120 versions of 60 KB, 7 MB, in
/// etcd) loads in pages and is cut to --max-versions, oldest first, in etcd
/// too; later changes keep it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_stored_history_loads_and_is_trimmed_to_max_versions() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());
    let ep = etcd.endpoint();
    let mut c = Client::connect([ep.as_str()], None).await.unwrap();
    let mut app = json!({"id": "/old", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8,
                         "instances": 0, "env": big_env()});
    let mut stamps = Vec::new();
    for i in 0..120 {
        let ts = format!("2026-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60);
        app["version"] = json!(ts);
        app["versionInfo"] = json!({"lastScalingAt": ts, "lastConfigChangeAt": ts});
        let bytes = serde_json::to_vec(&app).unwrap();
        c.put(
            format!("/mdo/manager/versions/old/{ts}"),
            bytes.clone(),
            None,
        )
        .await
        .unwrap();
        if i == 119 {
            c.put("/mdo/manager/apps/old", bytes, None).await.unwrap();
        }
        stamps.push(ts);
    }

    let args = ["--etcd-endpoints", ep.as_str(), "--max-versions", "20"];
    let (_m, base) = start(&args, &data).await;
    let (s, v) = get(&base, "/v2/apps/old").await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = get(&base, "/v2/apps/old/versions").await;
    let mut kept: Vec<String> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, stamps[100..].to_vec());
    assert_eq!(
        etcd_count(&ep, "/mdo/manager/versions/old/", None).await,
        20
    );

    let url = format!("{base}/v2/apps/old?force=true");
    let (s, v) = call(
        reqwest::Method::PATCH,
        url,
        Some(&json!({"labels": {"a": "b"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        etcd_count(&ep, "/mdo/manager/versions/old/", None).await,
        20
    );
    let (_, v) = get(&base, "/v2/apps/old/versions").await;
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 20);
    assert!(
        !versions.contains(&json!(stamps[100])),
        "oldest dropped: {v}"
    );
}

/// Issue 14.4: a PUT /v2/apps too large for one etcd transaction is refused
/// with 422 before anything is written; one that fits is stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_too_large_for_one_transaction_is_refused_whole() {
    let Stack { base, ep, .. } = &stack().await;
    let before = etcd_count(ep, PREFIX, None).await;

    // 70 new apps: 70 x (app + version) + the deployment = 141 operations.
    let apps = |n: usize, tag: &str| -> Value {
        Value::Array(
            (0..n)
                .map(|i| {
                    json!({"id": format!("/{tag}/a{i}"), "cmd": "exec sleep 1000",
                                "cpus": 0.01, "mem": 8, "instances": 0})
                })
                .collect(),
        )
    };
    let (s, v) = call(
        reqwest::Method::PUT,
        format!("{base}/v2/apps"),
        Some(&apps(70, "many")),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let text = v.to_string();
    assert!(text.contains("141") && text.contains("128"), "{v}");
    assert!(v["message"].is_string() && v["details"].is_array(), "{v}");
    assert_eq!(etcd_count(ep, PREFIX, None).await, before, "nothing stored");
    let (_, list) = get(base, "/v2/apps").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 0, "{list}");
    let (_, deployments) = get(base, "/v2/deployments").await;
    assert_eq!(deployments.as_array().unwrap().len(), 0, "{deployments}");

    // 40 apps (81 operations): stored, all of them, in one deployment.
    let (s, v) = call(
        reqwest::Method::PUT,
        format!("{base}/v2/apps"),
        Some(&apps(40, "some")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(etcd_count(ep, "/mdo/manager/apps/", None).await, 40);
    assert_eq!(etcd_count(ep, "/mdo/manager/versions/", None).await, 40);
    let (_, list) = get(base, "/v2/apps").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 40);
}

/// Issue 15.1: the manager on an etcd with authentication, as a user whose
/// role covers only its internal prefix; without the password it stops at
/// once with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_etcd_user_and_password_and_fails_clearly_without() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());
    let ep = etcd.endpoint();
    testkit::etcd::enable_auth(
        &ep,
        "rootpw",
        &testkit::etcd::LimitedUser {
            role: "mdo-manager",
            user: "manager",
            password: "mgr-s3cret",
            permission: "readwrite",
            prefix: PREFIX,
        },
    );
    let root = Some(("root", "rootpw"));

    // The password through its environment variable, as a service would.
    let mut m = cmd(&["--etcd-endpoints", &ep, "--etcd-user", "manager"], &data)
        .env("ETCD_PASSWORD", "mgr-s3cret")
        .env("RUST_LOG", "debug")
        .log_file(dir.path().join("manager.log"))
        .start();
    let base = m.url().to_string();
    let app =
        json!({"id": "/web", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 1});
    let (s, v) = call(reqwest::Method::POST, format!("{base}/v2/apps"), Some(&app)).await;
    assert_eq!(s, 201, "{v}");
    testkit::eventually_async("the task runs", DEADLINE, || async {
        let (_, v) = get(&base, "/v2/apps/web/tasks").await;
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        (tasks.len() == 1 && tasks[0]["state"] == "TASK_RUNNING").then_some(())
    })
    .await;
    let sub = format!("{base}/v2/eventSubscriptions?callbackUrl=http://127.0.0.1:9/cb");
    let (s, v) = call(reqwest::Method::POST, sub, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(etcd_count(&ep, "/mdo/manager/apps/web", root).await, 1);
    assert_eq!(etcd_count(&ep, "/mdo/manager/tasks/", root).await, 1);
    assert_eq!(
        etcd_count(&ep, "/mdo/manager/subscriptions/", root).await,
        1
    );
    assert_eq!(
        etcd_count(&ep, "/mdo/manager/meta/manager-id", root).await,
        1
    );
    // Nothing written outside the prefix it may use.
    assert_eq!(
        etcd_count(&ep, "/", root).await,
        etcd_count(&ep, PREFIX, root).await
    );
    m.kill();
    let logs = std::fs::read_to_string(dir.path().join("manager.log")).unwrap();
    assert!(!logs.is_empty());
    assert!(!logs.contains("mgr-s3cret"), "the password was logged");

    // Without the password: one line naming the cause, nothing served.
    let (code, stderr) = run_to_exit(&["--etcd-endpoints", &ep, "--etcd-user", "manager"], &data);
    assert_ne!(code, Some(0));
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "{stderr}");
    assert!(line.starts_with("manager: "), "{line}");
    assert!(line.contains("authentication failed"), "{line}");
    // Without any credentials: refused too, one line.
    let (code, stderr) = run_to_exit(&["--etcd-endpoints", &ep], &data);
    assert_ne!(code, Some(0));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // A password without a user is a usage error.
    let (code, stderr) = run_to_exit(&["--etcd-endpoints", &ep, "--etcd-password", "x"], &data);
    assert_eq!(code, Some(64), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Issue 15.1: the manager on an etcd that only speaks TLS and requires a
/// client certificate, given --etcd-ca/--etcd-cert/--etcd-key (the
/// endpoint without a scheme becomes https).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_etcd_tls_client_certificates() {
    let etcd = EtcdTls::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());
    let hostport = format!("127.0.0.1:{}", etcd.client_port());
    let (ca, cert, key) = (etcd.ca(), etcd.client_cert(), etcd.client_key());
    let tls_args = [
        "--etcd-endpoints",
        hostport.as_str(),
        "--etcd-ca",
        ca.to_str().unwrap(),
        "--etcd-cert",
        cert.to_str().unwrap(),
        "--etcd-key",
        key.to_str().unwrap(),
    ];
    let (mut m, base) = start(&tls_args, &data).await;
    let app =
        json!({"id": "/web", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 1});
    let (s, v) = call(reqwest::Method::POST, format!("{base}/v2/apps"), Some(&app)).await;
    assert_eq!(s, 201, "{v}");
    let task = testkit::eventually_async("the task runs", DEADLINE, || async {
        let (_, v) = get(&base, "/v2/apps/web/tasks").await;
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        (tasks.len() == 1 && tasks[0]["state"] == "TASK_RUNNING")
            .then(|| tasks[0]["id"].as_str().unwrap().to_string())
    })
    .await;
    let stored = etcd
        .etcdctl(&["get", "/mdo/manager/apps/web", "--print-value-only"])
        .unwrap();
    let stored: Value = serde_json::from_str(stored.trim()).unwrap();
    assert_eq!(stored["id"], "/web");
    let keys = etcd
        .etcdctl(&["get", "/mdo/manager/tasks/", "--prefix", "--keys-only"])
        .unwrap();
    assert!(keys.contains(&task), "{keys}");
    let (s, health) = get(&base, "/health").await;
    assert_eq!(s, 200, "{health}");

    // The state comes back over TLS after a kill -9.
    m.kill();
    let (_m, base) = start(&tls_args, &data).await;
    let (s, v) = get(&base, "/v2/apps/web").await;
    assert_eq!(s, 200, "{v}");

    // Without the client certificate etcd refuses the connection.
    let (code, stderr) = run_to_exit(
        &[
            "--etcd-endpoints",
            &hostport,
            "--etcd-ca",
            ca.to_str().unwrap(),
        ],
        &data,
    );
    assert_ne!(code, Some(0));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// The manager's task keys in etcd (`/mdo/manager/tasks/...`), sorted.
async fn task_keys(endpoint: &str) -> Vec<String> {
    let mut c = Client::connect([endpoint], None).await.expect("etcd");
    let keys = registry::ManagerKeys::new("/mdo/manager").unwrap();
    let resp = c
        .get(
            keys.tasks_prefix(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .expect("get");
    let mut out: Vec<String> = resp
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).to_string())
        .collect();
    out.sort();
    out
}

/// Ids of the app's running tasks.
async fn running_ids(base: &str, app: &str) -> Vec<String> {
    let (_, v) = get(base, &format!("/v2/apps{app}/tasks")).await;
    v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_states_written_while_etcd_was_away_reach_etcd_once_it_is_back() {
    let Stack { base, ep, etcd, .. } = &mut stack().await;
    let keys = registry::ManagerKeys::new("/mdo/manager").unwrap();

    let app = json!({"id": "/away", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8,
                     "instances": 1, "backoffSeconds": 0});
    let (s, v) = call(reqwest::Method::POST, format!("{base}/v2/apps"), Some(&app)).await;
    assert_eq!(s, 201, "{v}");
    let first = testkit::eventually_async("the task runs", DEADLINE, || async {
        running_ids(base, "/away").await.pop()
    })
    .await;
    assert_eq!(task_keys(ep).await, vec![keys.task(&first).unwrap()]);

    // etcd goes away; the task dies; the manager replaces it meanwhile (it
    // cannot write either change).
    etcd.stop();
    for pid in pids_of_task(&first) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let second = testkit::eventually_async("a replacement runs", DEADLINE, || async {
        running_ids(base, "/away")
            .await
            .into_iter()
            .find(|id| *id != first)
    })
    .await;

    // Back: etcd ends up with exactly the task that runs (the dead one's
    // key deleted, the replacement's written), with no other change.
    etcd.restart().unwrap();
    let want = vec![keys.task(&second).unwrap()];
    testkit::eventually_async("etcd holds the running task only", DEADLINE, || async {
        (task_keys(ep).await == want).then_some(())
    })
    .await;
}

/// A counter of the manager's `/metrics`, by its short name.
async fn counter(base: &str, name: &str) -> u64 {
    common::metric(base, name).await as u64
}

/// Task records go through one writer that writes each task's state of the
/// moment (`task_writer.rs`): tasks that fail right after they run (their
/// TASK_RUNNING write and their delete close together) leave no record
/// behind, and the 40 STAGING records of one launch pass share
/// transactions (the writer's counters: far fewer rounds than records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_tasks_that_end_at_once_are_deleted_and_a_pass_is_written_together() {
    let Stack { base, ep, .. } = &stack().await;
    let base = base.as_str();

    // Backoff of an hour: each of the 40 runs once and fails, none again.
    let app = json!({"id": "/flash", "cmd": "exit 3", "cpus": 0.01, "mem": 8,
                     "instances": 40, "backoffSeconds": 3600, "maxLaunchDelaySeconds": 3600});
    let (s, v) = call(reqwest::Method::POST, format!("{base}/v2/apps"), Some(&app)).await;
    assert_eq!(s, 201, "{v}");
    testkit::eventually_async("all 40 tasks ran and failed", DEADLINE, || async {
        (counter(base, "tasks_failed_total").await >= 40).then_some(())
    })
    .await;
    assert_eq!(counter(base, "tasks_launched_total").await, 40);
    testkit::eventually_async("etcd holds no record of them", DEADLINE, || async {
        task_keys(ep).await.is_empty().then_some(())
    })
    .await;

    // STAGING and the delete of each, RUNNING unless the end came first:
    // at least 80 records written; the 40 STAGING records of the one pass
    // in one round, every other record in a round at most.
    let writes = counter(base, "task_record_writes_total").await;
    let rounds = counter(base, "task_record_flushes_total").await;
    assert!(writes >= 80, "{writes} records written");
    assert!(
        rounds + 39 <= writes,
        "{rounds} write rounds for {writes} records"
    );
}
