//! Command tasks through the real command runtime: launch, environment,
//! events, scale, kills (with and without scale), restart, delete, logs,
//! failures with backoff, and the queue when the node is full.

mod common;

use std::time::Duration;

use common::{pids_of_task, TestManager, DEADLINE};
use reqwest::Method;
use serde_json::{json, Value};

fn environ(pid: u32) -> Vec<(String, String)> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn ids(tasks: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_scale_kill_restart_delete() {
    let m = TestManager::start().await;
    let mut events = m.core.bus.observe();
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/dev/ingestor", "cmd": "echo started-$PORT0; exec sleep 1000", "cpus": 0.1, "mem": 16, "instances": 2,
                     "portDefinitions": [{"port": 0, "name": "api"}], "labels": {"team": "a"}}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let tasks = m.wait_running("/dev/ingestor", 2).await;
    m.wait_no_deployments().await;
    for t in &tasks {
        let id = t["id"].as_str().unwrap();
        assert!(
            id.starts_with("dev_ingestor.instance-") && id.ends_with("._app.1"),
            "{id}"
        );
        let pids = pids_of_task(id);
        assert!(!pids.is_empty(), "a process runs for {id}");
        let env = environ(pids[0]);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let port = t["ports"][0].as_u64().unwrap();
        assert!((31000..=32000).contains(&port));
        assert_eq!(get("PORT0"), Some(port.to_string()));
        assert_eq!(get("PORT_API"), Some(port.to_string()));
        assert_eq!(get("CONTAINER_NAME").as_deref(), Some(id));
        assert_eq!(get("MESOS_TASK_ID").as_deref(), Some(id));
        assert_eq!(get("MARATHON_APP_ID").as_deref(), Some("/dev/ingestor"));
        assert_eq!(get("SERVICE_NAME").as_deref(), Some("ingestor"));
        assert_eq!(get("SERVICE_GROUP").as_deref(), Some("dev"));
        assert_eq!(get("CONTAINER_HOST_ADDRESS").as_deref(), Some("127.0.0.1"));
        assert_eq!(get("ETCD_ENDPOINTS"), Some(m.etcd.endpoint()));
        assert_eq!(get("MARATHON_APP_LABEL_TEAM").as_deref(), Some("a"));
        // Persisted with its handle.
        let rec = m
            .etcd_get(&format!("/tasks/{id}"))
            .await
            .expect("task in etcd");
        assert_eq!(rec["state"], "TASK_RUNNING");
        // Logs through the API.
        let log = testkit::eventually_async("task log", DEADLINE, || async {
            let text = m
                .http
                .get(format!("{}/v2/tasks/{id}/logs?tail=5", m.base))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(&format!("started-{port}")).then_some(text)
        })
        .await;
        assert!(log.contains("started-"));
    }
    // Events: STAGING -> STARTING -> RUNNING, each followed by instance_changed_event.
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push(ev);
    }
    let first = tasks[0]["id"].as_str().unwrap();
    let states: Vec<&str> = seen
        .iter()
        .filter(|e| e["eventType"] == "status_update_event" && e["taskId"] == first)
        .map(|e| e["taskStatus"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        vec!["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"]
    );
    let types: Vec<&str> = seen
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    for t in [
        "group_change_success",
        "deployment_info",
        "api_post_event",
        "instance_changed_event",
        "deployment_step_success",
        "deployment_success",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }

    // Every view of a task carries the app's service ports (issue 12).
    let (_, all) = m.get("/v2/tasks?status=running").await;
    let sp = all["tasks"][0]["servicePorts"][0].as_u64().unwrap();
    assert!((10000..=20000).contains(&sp));
    let service_ports = json!([sp]);
    let (_, apps) = m.get("/v2/apps?embed=apps.tasks&embed=apps.counts").await;
    assert_eq!(apps["apps"][0]["tasksRunning"], 2);
    assert_eq!(apps["apps"][0]["portDefinitions"][0]["port"], sp);
    let (_, app_tasks) = m.get("/v2/apps/dev/ingestor/tasks").await;
    let (_, single) = m.get("/v2/apps/dev/ingestor?embed=app.tasks").await;
    for tasks in [
        &apps["apps"][0]["tasks"],
        &app_tasks["tasks"],
        &single["app"]["tasks"],
    ] {
        let tasks = tasks.as_array().expect("tasks");
        assert_eq!(tasks.len(), 2);
        for t in tasks {
            assert_eq!(t["servicePorts"], service_ports, "{t}");
        }
    }

    // Scale up then down (youngest first).
    let (s, _) = m
        .put("/v2/apps/dev/ingestor", &json!({"instances": 3}))
        .await;
    assert_eq!(s, 200);
    let three = m.wait_running("/dev/ingestor", 3).await;
    m.wait_no_deployments().await;
    let (s, _) = m
        .put("/v2/apps/dev/ingestor", &json!({"instances": 1}))
        .await;
    assert_eq!(s, 200);
    let one = m.wait_running("/dev/ingestor", 1).await;
    m.wait_no_deployments().await;
    let oldest = three
        .iter()
        .min_by_key(|t| t["stagedAt"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(
        one[0]["stagedAt"], oldest["stagedAt"],
        "youngest killed first"
    );
    for t in &three {
        let id = t["id"].as_str().unwrap();
        if id != one[0]["id"] {
            testkit::eventually_async("killed task has no process", DEADLINE, || async {
                pids_of_task(id).is_empty().then_some(())
            })
            .await;
        }
    }

    // Kill without scale: a replacement comes up.
    let victim = one[0]["id"].as_str().unwrap().to_string();
    let (s, body) = m
        .delete(&format!("/v2/apps/dev/ingestor/tasks/{victim}"))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["task"]["id"], victim);
    let replaced = testkit::eventually_async("replacement", DEADLINE, || async {
        let t = m.tasks_in("/dev/ingestor", "TASK_RUNNING").await;
        (t.len() == 1 && t[0]["id"] != victim.as_str()).then_some(t)
    })
    .await;
    assert!(pids_of_task(&victim).is_empty());

    // Kill with scale through POST /v2/tasks/delete, historic id format accepted.
    let (s, _) = m
        .put("/v2/apps/dev/ingestor", &json!({"instances": 2}))
        .await;
    assert_eq!(s, 200);
    let two = m.wait_running("/dev/ingestor", 2).await;
    m.wait_no_deployments().await;
    let target = two[0]["id"]
        .as_str()
        .unwrap()
        .trim_end_matches(".1")
        .to_string(); // `<..>._app` form
    let (s, body) = m
        .post("/v2/tasks/delete?scale=true", &json!({"ids": [target]}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body["deploymentId"].is_string());
    m.wait_running("/dev/ingestor", 1).await;
    m.wait_no_deployments().await;
    let (_, app) = m.get("/v2/apps/dev/ingestor").await;
    assert_eq!(app["app"]["instances"], 1);
    let (s, body) = m
        .post("/v2/tasks/delete", &json!({"ids": ["not a task id"]}))
        .await;
    assert_eq!(s, 400, "{body}");

    // Restart: new task ids.
    let before = ids(&m.wait_running("/dev/ingestor", 1).await);
    let (s, _) = m.post("/v2/apps/dev/ingestor/restart", &json!({})).await;
    assert_eq!(s, 200);
    testkit::eventually_async("restarted", DEADLINE, || async {
        let now = ids(&m.tasks_in("/dev/ingestor", "TASK_RUNNING").await);
        (now.len() == 1 && now != before).then_some(())
    })
    .await;
    m.wait_no_deployments().await;
    let _ = replaced;

    // Delete: every process goes, tasks leave etcd.
    let running = ids(&m.tasks_in("/dev/ingestor", "TASK_RUNNING").await);
    let (s, _) = m.delete("/v2/apps/dev/ingestor").await;
    assert_eq!(s, 200);
    m.wait_no_deployments().await;
    for id in &running {
        testkit::eventually_async("no process after delete", DEADLINE, || async {
            pids_of_task(id).is_empty().then_some(())
        })
        .await;
    }
    testkit::eventually_async("no tasks in etcd", DEADLINE, || async {
        m.etcd_keys("/tasks/").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_apps_conflict_unless_forced_and_deployments_cancel() {
    let m = TestManager::start().await;
    // A task that never becomes healthy keeps the deployment open.
    let (s, _) = m
        .post("/v2/apps", &json!({"id": "/slow", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 1,
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "false"}, "gracePeriodSeconds": 300, "intervalSeconds": 1}]}))
        .await;
    assert_eq!(s, 201);
    let (_, deps) = m.get("/v2/deployments").await;
    let dep = deps[0]["id"].as_str().unwrap().to_string();
    assert_eq!(deps[0]["affectedApps"], json!(["/slow"]));
    assert_eq!(
        deps[0]["steps"][0]["actions"][0]["action"],
        "StartApplication"
    );
    let (s, body) = m.put("/v2/apps/slow", &json!({"instances": 2})).await;
    assert_eq!(s, 409);
    assert_eq!(body["deployments"], json!([{"id": dep}]));
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("App is locked by one or more deployments."));
    let (s, body) = m
        .put("/v2/apps/slow?force=true", &json!({"instances": 2}))
        .await;
    assert_eq!(s, 200, "{body}");
    let new_dep = body["deploymentId"].as_str().unwrap().to_string();
    let (_, deps) = m.get("/v2/deployments").await;
    assert_eq!(deps.as_array().unwrap().len(), 1);
    assert_eq!(deps[0]["id"], new_dep);
    // Cancel with rollback: back to 1 instance.
    let (s, body) = m.delete(&format!("/v2/deployments/{new_dep}")).await;
    assert_eq!(s, 200, "{body}");
    let (_, app) = m.get("/v2/apps/slow").await;
    assert_eq!(app["app"]["instances"], 1);
    // Cancel with force: 202, no body, no deployment left.
    let (_, deps) = m.get("/v2/deployments").await;
    let rollback = deps[0]["id"].as_str().unwrap().to_string();
    let (s, body, _) = m
        .call(
            Method::DELETE,
            &format!("/v2/deployments/{rollback}?force=true"),
            None,
        )
        .await;
    assert_eq!((s, body), (202, Value::Null));
    let (_, deps) = m.get("/v2/deployments").await;
    assert_eq!(deps, json!([]));
    let (s, _) = m.delete("/v2/apps/slow").await;
    assert_eq!(s, 200);
}

/// Marathon completes a deployment step on the status update that reaches
/// the target: a task that reaches TASK_RUNNING and fails milliseconds later
/// still finishes its deployment. With an hour of backoff there is no second
/// launch, so the deployment finishes only if that first TASK_RUNNING counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_right_after_running_still_finishes_its_deployment() {
    let m = TestManager::start().await;
    let mut events = m.core.bus.observe();
    let (s, body) = m
        .post("/v2/apps", &json!({"id": "/brief", "cmd": "exit 3", "cpus": 0.1, "mem": 8, "backoffSeconds": 3600}))
        .await;
    assert_eq!(s, 201, "{body}");
    let mut states = Vec::new();
    while !states.contains(&"TASK_FAILED".to_string()) {
        let ev = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .unwrap_or_else(|_| panic!("/brief's task states so far: {states:?}"))
            .expect("no event missed");
        if ev["eventType"] == "status_update_event" && ev["appId"] == "/brief" {
            states.push(ev["taskStatus"].as_str().unwrap_or_default().to_string());
        }
    }
    let (_, app) = m.get("/v2/apps/brief").await;
    assert_eq!(
        states,
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FAILED"
        ],
        "{app}"
    );
    m.wait_no_deployments().await;
    let (_, app) = m.get("/v2/apps/brief").await;
    assert_eq!(app["app"]["lastTaskFailure"]["state"], "TASK_FAILED");
    assert_eq!(app["app"]["tasksRunning"], 0, "{app}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_tasks_back_off_and_full_node_queues() {
    let m = TestManager::start_with(|c| {
        c.node_cpus = Some(1.0);
    })
    .await;
    let (s, _) = m
        .post("/v2/apps", &json!({"id": "/crash", "cmd": "exit 3", "cpus": 0.1, "mem": 8, "backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 60}))
        .await;
    assert_eq!(s, 201);
    let failure = testkit::eventually_async("a failure recorded", DEADLINE, || async {
        let (_, app) = m.get("/v2/apps/crash").await;
        app["app"].get("lastTaskFailure").cloned()
    })
    .await;
    assert_eq!(failure["state"], "TASK_FAILED");
    assert!(
        failure["message"].as_str().unwrap().contains('3'),
        "{failure}"
    );
    let (_, q) = m.get("/v2/queue").await;
    let _ = q;
    let (s, _) = m.delete("/v2/queue/crash/delay").await;
    assert_eq!(s, 204);
    let (s, _) = m.delete("/v2/apps/crash").await;
    assert_eq!(s, 200);
    // Resetting the delay may have relaunched /crash just before the
    // delete: its task holds 0.1 cpu until its kill completes.
    testkit::eventually_async("/crash's tasks gone", DEADLINE, || async {
        let (_, tasks) = m.get("/v2/tasks").await;
        let tasks = tasks["tasks"].as_array()?;
        (!tasks.iter().any(|t| t["appId"] == "/crash")).then_some(())
    })
    .await;

    // 1 cpu: the third 0.4-cpu task does not fit and waits in the queue.
    let (s, _) = m
        .post(
            "/v2/apps",
            &json!({"id": "/big", "cmd": "exec sleep 1000", "cpus": 0.4, "mem": 8, "instances": 3}),
        )
        .await;
    assert_eq!(s, 201);
    m.wait_running("/big", 2).await;
    let q = testkit::eventually_async("queued", DEADLINE, || async {
        let (_, q) = m.get("/v2/queue").await;
        (q["queue"].as_array()?.len() == 1).then_some(q)
    })
    .await;
    assert_eq!(q["queue"][0]["count"], 1);
    assert_eq!(q["queue"][0]["app"]["id"], "/big");
    let (_, nodes) = m.get("/v2/nodes").await;
    assert_eq!(nodes["nodes"][0]["allocated"]["cpus"], 0.8);
    let (s, _) = m
        .put("/v2/apps/big?force=true", &json!({"instances": 2}))
        .await;
    assert_eq!(s, 200);
    testkit::eventually_async("queue drained", DEADLINE, || async {
        let (_, q) = m.get("/v2/queue").await;
        q["queue"].as_array()?.is_empty().then_some(())
    })
    .await;
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_scale_up_keeps_a_bounded_number_of_launches_in_flight() {
    use manager::reconcile::MAX_LAUNCHING;
    let m = TestManager::start().await;
    let mut events = m.core.bus.observe();
    let n = MAX_LAUNCHING + 150;
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/big", "cmd": "exec sleep 1000", "cpus": 0.001, "mem": 1,
                    "instances": n, "portDefinitions": []}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    // Staged and not yet running (or ended), from the status updates in
    // the order they were published: never above the bound.
    let (mut in_flight, mut most, mut running) = (0usize, 0usize, 0usize);
    let deadline = tokio::time::Instant::now() + DEADLINE * 4;
    while running < n {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{running} of {n} running"))
            .expect("no event missed");
        if ev["eventType"] != "status_update_event" || ev["appId"] != "/big" {
            continue;
        }
        match ev["taskStatus"].as_str().unwrap_or_default() {
            "TASK_STAGING" => in_flight += 1,
            "TASK_STARTING" => {}
            "TASK_RUNNING" => {
                in_flight -= 1;
                running += 1;
            }
            other => panic!("unexpected {other}: {ev}"),
        }
        most = most.max(in_flight);
    }
    assert!(
        most <= MAX_LAUNCHING,
        "{most} launches in flight at once (bound {MAX_LAUNCHING})"
    );
    assert_eq!(m.tasks_in("/big", "TASK_RUNNING").await.len(), n);
}
