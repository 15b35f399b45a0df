//! The manager binary restarted (SIGTERM, then kill -9): apps, versions and
//! tasks come back, running task processes are adopted (same ids, same
//! pids, no duplicates), tasks that died meanwhile are replaced.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{pids_of_task, TaskCleanup, DEADLINE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use testkit::manager::{ManagerCmd, ManagerProcess};
use testkit::Etcd;

/// The manager binary (`--docker off`) against `etcd` with `data`, once it
/// answers /ping.
fn start(etcd: &Etcd, data: &std::path::Path) -> ManagerProcess {
    ManagerCmd::new(env!("CARGO_BIN_EXE_manager"))
        .etcd(&etcd.endpoint())
        .data_dir(data)
        .flag("--docker", "off")
        .env("RUST_LOG", "warn")
        .start()
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `MANAGER_LOG_FORMAT`, the name of earlier releases, still selects the
/// format when `LOG_FORMAT` is unset: the manager writes JSON lines.
#[test]
fn manager_log_format_alias_writes_json_lines() {
    let etcd = Etcd::start().unwrap();
    let m = ManagerCmd::new(env!("CARGO_BIN_EXE_manager"))
        .etcd(&etcd.endpoint())
        .flag("--docker", "off")
        .env_remove("LOG_FORMAT")
        .env("MANAGER_LOG_FORMAT", "json")
        .start();
    let text = testkit::eventually("the manager logs that it listens", DEADLINE, || {
        Some(m.log_text()).filter(|t| t.contains("manager listening"))
    });
    // Complete lines only: the manager may be writing the next one.
    let complete = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    for line in complete.map(str::trim).filter(|l| !l.is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string(), "a level in {line}");
    }
}

async fn running(base: &str, app: &str) -> Vec<String> {
    let v = get(base, &format!("/v2/apps{app}/tasks")).await;
    let mut ids: Vec<String> = v["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn wait_running(base: &str, app: &str, n: usize) -> Vec<String> {
    testkit::eventually_async(&format!("{n} running tasks"), DEADLINE, || async {
        let ids = running(base, app).await;
        let all = get(base, &format!("/v2/apps{app}/tasks")).await["tasks"]
            .as_array()
            .map_or(0, Vec::len);
        (ids.len() == n && all == n).then_some(ids)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_and_kill_9_adopts_and_replaces() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());

    let mut m = start(&etcd, &data);
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v2/apps", m.url()))
        .json(&json!({"id": "/keep", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let before = wait_running(m.url(), "/keep", 2).await;
    let pids: Vec<Vec<u32>> = before.iter().map(|id| pids_of_task(id)).collect();
    assert!(pids.iter().all(|p| p.len() == 1), "{pids:?}");

    // SIGTERM: the manager exits, tasks keep running.
    m.sigterm();
    let status = m.child().wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    for id in &before {
        assert_eq!(pids_of_task(id).len(), 1, "task {id} survives the manager");
    }
    let m2 = start(&etcd, &data);
    let after = wait_running(m2.url(), "/keep", 2).await;
    assert_eq!(after, before, "same task ids adopted");
    let pids_after: Vec<Vec<u32>> = after.iter().map(|id| pids_of_task(id)).collect();
    assert_eq!(pids_after, pids, "same processes, none duplicated");
    let versions = get(m2.url(), "/v2/apps/keep/versions").await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);

    // kill -9, and one task dies while the manager is down.
    let mut m2 = m2;
    m2.kill();
    let dead = &before[0];
    for pid in pids_of_task(dead) {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    }
    testkit::eventually("task process gone", DEADLINE, || {
        pids_of_task(dead).is_empty().then_some(())
    });
    let m3 = start(&etcd, &data);
    let now = testkit::eventually_async("dead task replaced", DEADLINE, || async {
        let ids = running(m3.url(), "/keep").await;
        (ids.len() == 2 && !ids.contains(dead)).then_some(ids)
    })
    .await;
    assert!(now.contains(&before[1]), "the live task was adopted");
    for id in &now {
        assert_eq!(pids_of_task(id).len(), 1, "exactly one process for {id}");
    }
    // Delete: no orphan.
    let r = client
        .delete(format!("{}/v2/apps/keep", m3.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for id in &now {
        testkit::eventually("no process after delete", DEADLINE, || {
            pids_of_task(id).is_empty().then_some(())
        });
    }
    let _ = Duration::ZERO;
    drop(m);
}

#[test]
fn bad_config_exits_64_with_one_line() {
    for args in [
        vec!["--listen", "nonsense"],
        vec!["--port-range", "9-1"],
        vec!["--no-such-flag"],
        vec!["--docker", "maybe"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_manager"))
            .args(&args)
            .env_remove("ETCD_ENDPOINTS")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("manager: "), "{err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_manager"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--etcd-endpoints",
        "--internal-prefix",
        "--node-name",
        "--advertise-address",
        "--container-etcd-endpoints",
        "--port-range",
        "--data-dir",
        "--docker",
        "--allow-privileged",
        "--drain-delay",
        "--node-attribute",
        "--auth-token",
        "--log-format",
        "MANAGER_LISTEN",
        "ETCD_ENDPOINTS",
        "MDO_AUTH_TOKEN",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
}

/// `--data-dir` relative to the manager's working directory: command tasks
/// still start (the manager resolves the path once, at config time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_data_dir_runs_command_tasks() {
    let etcd = Etcd::start().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let abs = cwd.path().canonicalize().unwrap().join("rel/data");
    let _cleanup = TaskCleanup(abs.clone());
    let m = ManagerCmd::new(env!("CARGO_BIN_EXE_manager"))
        .current_dir(cwd.path())
        .etcd(&etcd.endpoint())
        .flag("--docker", "off")
        .data_dir("rel/data")
        .env("RUST_LOG", "warn")
        .start();
    assert!(abs.is_dir(), "data dir created at start");
    let r = reqwest::Client::new()
        .post(format!("{}/v2/apps", m.url()))
        .json(&json!({"id": "/rel", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ids = wait_running(m.url(), "/rel", 1).await;
    assert_eq!(pids_of_task(&ids[0]).len(), 1, "one task process");
    assert!(
        abs.join("tasks").join(&ids[0]).is_dir(),
        "task dir under the resolved data dir"
    );
}
