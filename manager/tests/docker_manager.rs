//! Docker apps through the manager *binary*, its Marathon REST API and the
//! real Docker engine: a failing health check replaces the container; a
//! rolling update to a new image tag keeps `minimumHealthCapacity`; kill -9
//! and restart adopts the same containers; a missing image fails with a
//! message and backs off; TASK_KILLING comes before TASK_KILLED; logs (and
//! `follow`) through the tasks' logs endpoint.
//!
//! Every test seeds the manager's identity with its `ContainerGuard` id, so
//! all containers the manager creates are removed when the test ends. Under
//! `CI=true` a missing engine fails these tests.

mod common;

use std::collections::BTreeSet;

use common::{containers_labelled, docker_cli, is_healthy, BinManager, DockerEnv, DEADLINE};
use serde_json::{json, Value};
use testkit::docker::require_docker;

/// A bridge app serving the image's `/www` on container port 8080, with an
/// HTTP health check on `/index.html`.
fn web_app(id: &str, image: &str, instances: u32) -> Value {
    json!({
        "id": id, "cpus": 0.05, "mem": 32, "instances": instances,
        "container": {"type": "DOCKER", "docker": {"image": image},
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "name": "http"}]},
        "networks": [{"mode": "container/bridge"}],
        "taskKillGracePeriodSeconds": 1,
        "healthChecks": [{"protocol": "HTTP", "path": "/index.html", "portIndex": 0,
            "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 2,
            "maxConsecutiveFailures": 2}]
    })
}

fn task_id(t: &Value) -> String {
    t["id"].as_str().expect("task id").to_string()
}

fn ids(tasks: &[Value]) -> Vec<String> {
    tasks.iter().map(task_id).collect()
}

/// The one container (any state) of a task, by its `mdo.task-id` label.
fn container_of(task: &str) -> Option<String> {
    let found = containers_labelled(&format!("mdo.task-id={task}"));
    assert!(
        found.len() <= 1,
        "duplicate containers for {task}: {found:?}"
    );
    found.into_iter().next()
}

fn inspect(container: &str, format: &str) -> String {
    let (ok, out) = docker_cli(&["inspect", "--format", format, container]);
    assert!(ok, "docker inspect {container}");
    out
}

async fn page(port: u64) -> Option<String> {
    reqwest::get(format!("http://127.0.0.1:{port}/index.html"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// Status updates of one task, in the order announced.
fn states_of(events: &[Value], task: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["eventType"] == "status_update_event" && e["taskId"] == task)
        .map(|e| e["taskStatus"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn millis(ts: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts.as_str().expect("timestamp"))
        .expect("RFC 3339 timestamp")
        .timestamp_millis()
}

async fn delete_app_and_wait_gone(m: &BinManager, app: &str) {
    let (s, body) = m.delete(&format!("/v2/apps{app}")).await;
    assert_eq!(s, 200, "{body}");
    testkit::eventually("the app's containers removed", DEADLINE, || {
        containers_labelled(&format!("mdo.app-id={app}"))
            .is_empty()
            .then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_kills_and_replaces_the_container() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let env = DockerEnv::new("dm-health").await;
    let m = env.start_manager(&[]).await;
    let events = m.events("").await;
    let (s, body) = m.post("/v2/apps", &web_app("/dm/hc", image, 1)).await;
    assert_eq!(s, 201, "{body}");
    let first = m.wait_running("/dm/hc", 1, true).await;
    let old = task_id(&first[0]);
    let old_container = container_of(&old).expect("container of the first task");

    // The check starts failing: /index.html answers 404 from now on.
    let (ok, _) = docker_cli(&["exec", &old_container, "rm", "/www/index.html"]);
    assert!(ok, "rm inside the container");

    let replaced = testkit::eventually_async("a new healthy task", DEADLINE, || async {
        let tasks = m.tasks("/dm/hc").await;
        (tasks.len() == 1 && task_id(&tasks[0]) != old && is_healthy(&tasks[0])).then_some(tasks)
    })
    .await;
    let new = task_id(&replaced[0]);
    assert_eq!(replaced[0]["state"], "TASK_RUNNING");
    testkit::eventually("the unhealthy container removed", DEADLINE, || {
        (!docker_cli(&["inspect", &old_container]).0).then_some(())
    });
    assert!(container_of(&old).is_none());
    let new_container = container_of(&new).expect("container of the replacement");
    assert_ne!(new_container, old_container);
    let port = replaced[0]["ports"][0].as_u64().expect("host port");
    assert!(page(port).await.unwrap_or_default().contains("mdo-test v1"));

    // Announced as a health kill: the kill event, then KILLING and KILLED.
    let all = events
        .wait_for("TASK_KILLED of the unhealthy task", |ev| {
            states_of(ev, &old)
                .contains(&"TASK_KILLED".to_string())
                .then(|| ev.to_vec())
        })
        .await;
    assert!(
        all.iter()
            .any(|e| e["eventType"] == "unhealthy_instance_kill_event" && e["taskId"] == old),
        "unhealthy_instance_kill_event for {old}"
    );
    let states = states_of(&all, &old);
    let killing = states.iter().position(|s| s == "TASK_KILLING");
    let killed = states.iter().position(|s| s == "TASK_KILLED");
    assert!(killing.is_some() && killing < killed, "{states:?}");
    assert_eq!(
        containers_labelled(&format!("mdo.manager={}", env.manager_id())).len(),
        1,
        "exactly one container left"
    );
    delete_app_and_wait_gone(&m, "/dm/hc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_to_a_new_tag_keeps_minimum_health_capacity() {
    if !require_docker() {
        return;
    }
    let v1 = testkit::images::busybox();
    let v2 = testkit::images::busybox_v2();
    let env = DockerEnv::new("dm-roll").await;
    let m = env.start_manager(&[]).await;
    let instances = 4u32;
    let mhc = 0.5;
    let min_healthy = (f64::from(instances) * mhc).ceil() as usize;
    let mut app = web_app("/dm/roll", v1, instances);
    app["upgradeStrategy"] = json!({"minimumHealthCapacity": mhc, "maximumOverCapacity": 0.25});
    let (s, body) = m.post("/v2/apps", &app).await;
    assert_eq!(s, 201, "{body}");
    let before = m.wait_running("/dm/roll", instances as usize, true).await;
    m.wait_no_deployments().await;
    let old_ids: BTreeSet<String> = ids(&before).into_iter().collect();

    let mut update = app.clone();
    update["container"]["docker"]["image"] = json!(v2);
    let (s, body) = m.put("/v2/apps/dm/roll", &update).await;
    assert!(s == 200 || s == 201, "{s} {body}");
    assert!(body["deploymentId"].is_string(), "{body}");

    // Sample continuously until the deployment is done and every task is new.
    let mut samples = 0usize;
    let mut lowest = usize::MAX;
    let mut lowest_reported = u64::MAX;
    let mut saw_mixed = false;
    let deadline = std::time::Instant::now() + 2 * DEADLINE;
    // A sampling rate, not a synchronisation: keeps the loop from hogging a core.
    let mut sampling = tokio::time::interval(std::time::Duration::from_millis(10));
    let final_tasks = loop {
        sampling.tick().await;
        assert!(
            std::time::Instant::now() < deadline,
            "rolling update did not finish"
        );
        let (_, a) = m.get("/v2/apps/dm/roll?embed=app.tasks").await;
        let tasks = a["app"]["tasks"].as_array().cloned().unwrap_or_default();
        let healthy = tasks.iter().filter(|t| is_healthy(t)).count();
        let reported = a["app"]["tasksHealthy"].as_u64().unwrap_or(0);
        samples += 1;
        lowest = lowest.min(healthy);
        lowest_reported = lowest_reported.min(reported);
        let new_count = tasks
            .iter()
            .filter(|t| !old_ids.contains(&task_id(t)))
            .count();
        saw_mixed |= new_count > 0 && new_count < tasks.len();
        let (_, deployments) = m.get("/v2/deployments").await;
        let done = deployments.as_array().is_some_and(Vec::is_empty);
        if done
            && tasks.len() == instances as usize
            && new_count == tasks.len()
            && healthy == tasks.len()
        {
            break tasks;
        }
    };
    eprintln!(
        "rolling update: {samples} samples, lowest healthy {lowest} (tasksHealthy {lowest_reported}), bound {min_healthy}"
    );
    assert!(samples > 10, "sampled the deployment only {samples} times");
    assert!(saw_mixed, "old and new tasks were seen side by side");
    assert!(
        lowest >= min_healthy,
        "healthy tasks dropped to {lowest} (< {min_healthy}) during the update"
    );
    assert!(
        lowest_reported >= min_healthy as u64,
        "tasksHealthy dropped to {lowest_reported} (< {min_healthy})"
    );

    // Every task runs the new image; the old containers are gone.
    // (A killed task's container is removed right after TASK_KILLED.)
    let containers = testkit::eventually("the old containers removed", DEADLINE, || {
        let c = containers_labelled("mdo.app-id=/dm/roll");
        (c.len() == instances as usize).then_some(c)
    });
    for c in &containers {
        assert_eq!(inspect(c, "{{.Config.Image}}"), v2, "container {c}");
    }
    for t in &final_tasks {
        let port = t["ports"][0].as_u64().expect("host port");
        let body = page(port).await.unwrap_or_default();
        assert!(body.contains("mdo-test v2"), "task {}: {body}", task_id(t));
    }
    for old in &old_ids {
        assert!(container_of(old).is_none(), "old container of {old} left");
    }
    delete_app_and_wait_gone(&m, "/dm/roll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_adopts_the_same_containers() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let env = DockerEnv::new("dm-adopt").await;
    let mut m = env.start_manager(&[]).await;
    let (s, body) = m.post("/v2/apps", &web_app("/dm/keep", image, 2)).await;
    assert_eq!(s, 201, "{body}");
    let before = m.wait_running("/dm/keep", 2, true).await;
    m.wait_no_deployments().await;
    let label = format!("mdo.manager={}", env.manager_id());
    let containers = containers_labelled(&label);
    assert_eq!(containers.len(), 2, "{containers:?}");
    let seen = |tasks: &[Value]| -> Vec<(String, String, String)> {
        tasks
            .iter()
            .map(|t| {
                let id = task_id(t);
                let c = container_of(&id).expect("container");
                let started = inspect(&c, "{{.State.StartedAt}}");
                (id, c, started)
            })
            .collect()
    };
    let before_seen = seen(&before);

    // kill -9: the containers keep running without their manager.
    m.process.kill();
    for (_, c, _) in &before_seen {
        assert_eq!(inspect(c, "{{.State.Running}}"), "true");
    }
    let m = env.start_manager(&[]).await;
    let after = m.wait_running("/dm/keep", 2, true).await;
    assert_eq!(ids(&after), ids(&before), "same task ids");
    let (_, all) = m.get("/v2/tasks").await;
    let served: BTreeSet<String> = all["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(task_id)
        .collect();
    let expected: BTreeSet<String> = ids(&before).into_iter().collect();
    assert_eq!(served, expected, "/v2/tasks serves the adopted tasks");
    m.wait_no_deployments().await;
    assert_eq!(seen(&after), before_seen, "same containers, not restarted");
    assert_eq!(containers_labelled(&label), containers, "no duplicates");
    for (_, c, _) in &before_seen {
        assert_eq!(inspect(c, "{{.RestartCount}}"), "0");
    }
    for t in &after {
        let port = t["ports"][0].as_u64().expect("host port");
        assert!(page(port).await.unwrap_or_default().contains("mdo-test v1"));
    }
    delete_app_and_wait_gone(&m, "/dm/keep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_fails_with_a_message_and_backs_off() {
    if !require_docker() {
        return;
    }
    let missing = "mdo-test/does-not-exist:404";
    assert!(!testkit::images::image_exists(missing));
    let env = DockerEnv::new("dm-missing").await;
    let m = env.start_manager(&[]).await;
    let events = m.events("").await;
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/dm/missing", "cpus": 0.05, "mem": 16, "instances": 1,
                "cmd": "exec sleep 100000",
                "backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 300,
                "container": {"type": "DOCKER", "docker": {"image": missing}},
                "networks": [{"mode": "container/bridge"}]}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let updates = |ev: &[Value]| -> Vec<Value> {
        ev.iter()
            .filter(|e| e["eventType"] == "status_update_event" && e["appId"] == "/dm/missing")
            .cloned()
            .collect()
    };
    let all = events
        .wait_for("three failed launches", |ev| {
            let failed = updates(ev)
                .iter()
                .filter(|e| e["taskStatus"] == "TASK_FAILED")
                .count();
            (failed >= 3).then(|| updates(ev))
        })
        .await;
    let failed: Vec<&Value> = all
        .iter()
        .filter(|e| e["taskStatus"] == "TASK_FAILED")
        .collect();
    for f in &failed {
        let msg = f["message"].as_str().unwrap_or_default();
        assert!(msg.contains(missing), "{msg}");
        assert!(msg.contains("cannot be pulled"), "{msg}");
    }
    let distinct: BTreeSet<&str> = failed.iter().filter_map(|f| f["taskId"].as_str()).collect();
    assert_eq!(distinct.len(), failed.len(), "one task per attempt");

    // Each attempt is staged after the previous one failed, later each time:
    // backoffSeconds * backoffFactor^(n-1) = 1 s, then 2 s (manager's clock).
    let staged: Vec<i64> = all
        .iter()
        .filter(|e| e["taskStatus"] == "TASK_STAGING")
        .map(|e| millis(&e["timestamp"]))
        .collect();
    let failed_at: Vec<i64> = failed.iter().map(|e| millis(&e["timestamp"])).collect();
    assert!(staged.len() >= 3, "{all:?}");
    let waits: Vec<i64> = (0..2).map(|i| staged[i + 1] - failed_at[i]).collect();
    assert!(waits[0] >= 900, "first backoff {waits:?} ms");
    assert!(waits[1] > waits[0], "backoff grows: {waits:?} ms");
    let gaps: Vec<i64> = (0..2).map(|i| failed_at[i + 1] - failed_at[i]).collect();
    assert!(
        gaps[1] > gaps[0],
        "attempts spaced increasingly: {gaps:?} ms"
    );

    let (_, a) = m.get("/v2/apps/dm/missing?embed=app.lastTaskFailure").await;
    let last = &a["app"]["lastTaskFailure"];
    assert_eq!(last["state"], "TASK_FAILED", "{a}");
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains(missing),
        "{last}"
    );
    testkit::eventually_async("backing off in the queue", DEADLINE, || async {
        let (_, q) = m.get("/v2/queue").await;
        q.to_string().contains("/dm/missing").then_some(())
    })
    .await;
    assert!(
        env.guard.containers().is_empty(),
        "no container is created for a missing image"
    );
    let (s, _) = m.delete("/v2/apps/dm/missing").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_killing_is_announced_before_task_killed() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let env = DockerEnv::new("dm-killing").await;
    let m = env.start_manager(&[]).await;
    let events = m.events("").await;
    let (s, body) = m.post("/v2/apps", &web_app("/dm/kill", image, 1)).await;
    assert_eq!(s, 201, "{body}");
    let tasks = m.wait_running("/dm/kill", 1, true).await;
    m.wait_no_deployments().await;
    let id = task_id(&tasks[0]);
    let container = container_of(&id).expect("container");

    let (s, body) = m
        .delete(&format!("/v2/apps/dm/kill/tasks/{id}?scale=true"))
        .await;
    assert_eq!(s, 200, "{body}");
    let all = events
        .wait_for("TASK_KILLED", |ev| {
            states_of(ev, &id)
                .contains(&"TASK_KILLED".to_string())
                .then(|| ev.to_vec())
        })
        .await;
    let updates: Vec<&Value> = all
        .iter()
        .filter(|e| e["eventType"] == "status_update_event" && e["taskId"] == id.as_str())
        .collect();
    let states: Vec<&str> = updates
        .iter()
        .filter_map(|e| e["taskStatus"].as_str())
        .collect();
    let killing = states.iter().position(|s| *s == "TASK_KILLING");
    let killed = states.iter().position(|s| *s == "TASK_KILLED");
    assert!(
        killing.is_some() && killing < killed,
        "KILLING before KILLED: {states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "TASK_KILLED").count(),
        1,
        "{states:?}"
    );
    let (k, d) = (killing.unwrap(), killed.unwrap());
    assert!(millis(&updates[k]["timestamp"]) <= millis(&updates[d]["timestamp"]));
    assert_eq!(updates[d]["message"], "Task killed");
    testkit::eventually("container removed", DEADLINE, || {
        (!docker_cli(&["inspect", &container]).0).then_some(())
    });
    // scale=true: nothing replaces it.
    m.wait_no_deployments().await;
    assert!(m.tasks("/dm/kill").await.is_empty());
    assert!(env.guard.containers().is_empty());
    let (s, _) = m.delete("/v2/apps/dm/kill").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_task_logs_through_the_tasks_endpoint_with_follow() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let env = DockerEnv::new("dm-logs").await;
    let m = env.start_manager(&[]).await;
    let cmd = "echo first; echo second; exec sleep 100000";
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/dm/logs", "cpus": 0.05, "mem": 16, "instances": 1, "cmd": cmd,
                "taskKillGracePeriodSeconds": 1,
                "container": {"type": "DOCKER", "docker": {"image": image}},
                "networks": [{"mode": "container/bridge"}]}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    // The same app as a command task: the endpoint answers the same bytes.
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/dm/logs-cmd", "cpus": 0.01, "mem": 8, "instances": 1, "cmd": cmd}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let id = task_id(&m.wait_running("/dm/logs", 1, false).await[0]);
    let cmd_id = task_id(&m.wait_running("/dm/logs-cmd", 1, false).await[0]);
    let text = |path: String| {
        let http = m.http.clone();
        let base = m.base.clone();
        async move {
            let r = http.get(format!("{base}{path}")).send().await.ok()?;
            (r.status() == 200).then_some(())?;
            r.text().await.ok()
        }
    };
    for task in [&id, &cmd_id] {
        testkit::eventually_async("both lines in the logs", DEADLINE, || {
            let f = text(format!("/v2/tasks/{task}/logs"));
            async move { (f.await? == "first\nsecond\n").then_some(()) }
        })
        .await;
        let tail = text(format!("/v2/tasks/{task}/logs?tail=1")).await;
        assert_eq!(tail.as_deref(), Some("second\n"), "tail=1 of {task}");
    }

    // follow: the tail first, then what the container writes later, until
    // the task ends.
    let mut log = m.follow_log(&id).await;
    log.read_until(b"first\nsecond\n").await;
    let container = container_of(&id).expect("container");
    // Written to the container's own stderr (PID 1's), as the task would.
    let (ok, _) = docker_cli(&["exec", &container, "sh", "-c", "echo third > /proc/1/fd/2"]);
    assert!(ok, "docker exec");
    log.read_until(b"third\n").await;
    assert_eq!(log.got, b"first\nsecond\nthird\n");

    // The task ends: the follow stream ends too, with nothing more.
    let (s, _) = m.delete("/v2/apps/dm/logs").await;
    assert_eq!(s, 200);
    let rest = log.rest().await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    testkit::eventually("container removed", DEADLINE, || {
        env.guard.containers().is_empty().then_some(())
    });
    let (s, _) = m.delete("/v2/apps/dm/logs-cmd").await;
    assert_eq!(s, 200);
}
