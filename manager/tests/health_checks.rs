//! Marathon-level health checks on real command tasks: HTTP results and
//! counts, COMMAND checks, kill + replace after too many failures, and a
//! rolling restart that keeps enough healthy tasks.

mod common;

use common::{TestManager, DEADLINE};
use serde_json::json;

fn http_app(id: &str, instances: u32) -> serde_json::Value {
    json!({"id": id, "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1", "cpus": 0.01, "mem": 16, "instances": instances,
           "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_command_checks_report_healthy() {
    let m = TestManager::start().await;
    let (s, _) = m.post("/v2/apps", &http_app("/web", 1)).await;
    assert_eq!(s, 201);
    let app = testkit::eventually_async("healthy", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/web").await;
        (a["app"]["tasksHealthy"] == 1).then_some(a)
    })
    .await;
    let r = &app["app"]["tasks"][0]["healthCheckResults"][0];
    assert_eq!(r["alive"], true);
    assert_eq!(r["consecutiveFailures"], 0);
    assert!(r["instanceId"]
        .as_str()
        .unwrap()
        .starts_with("web.instance-"));
    assert!(r["lastSuccess"].is_string());
    m.wait_no_deployments().await;

    let (s, _) = m
        .post("/v2/apps", &json!({"id": "/cmdcheck", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8,
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -n \"$MESOS_TASK_ID\""}, "intervalSeconds": 1, "gracePeriodSeconds": 30}]}))
        .await;
    assert_eq!(s, 201);
    testkit::eventually_async("command check healthy", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/cmdcheck").await;
        (a["app"]["tasksHealthy"] == 1).then_some(())
    })
    .await;
    m.wait_no_deployments().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_check_kills_and_replaces() {
    let m = TestManager::start().await;
    let mut events = m.core.bus.observe();
    let (s, _) = m
        .post("/v2/apps", &json!({"id": "/sick", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8,
            "healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 0, "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2}]}))
        .await;
    assert_eq!(s, 201);
    let first = m.wait_running("/sick", 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unhealthy = testkit::eventually_async("reported unhealthy", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/sick").await;
        (a["app"]["tasksUnhealthy"] == 1).then_some(a)
    })
    .await;
    assert_eq!(
        unhealthy["app"]["tasks"][0]["healthCheckResults"][0]["alive"],
        false
    );
    testkit::eventually_async("replaced", DEADLINE, || async {
        let t = m.tasks_in("/sick", "TASK_RUNNING").await;
        (t.len() == 1 && t[0]["id"] != first.as_str()).then_some(())
    })
    .await;
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e["eventType"].as_str().unwrap().to_string());
    }
    for k in [
        "failed_health_check_event",
        "health_status_changed_event",
        "instance_health_changed_event",
        "unhealthy_instance_kill_event",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_waits_for_health() {
    let m = TestManager::start().await;
    let (s, _) = m.post("/v2/apps", &http_app("/roll", 2)).await;
    assert_eq!(s, 201);
    testkit::eventually_async("2 healthy", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/roll").await;
        (a["app"]["tasksHealthy"] == 2).then_some(())
    })
    .await;
    m.wait_no_deployments().await;
    let (_, before) = m.get("/v2/apps/roll").await;
    let old: Vec<String> = before["app"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let (s, _) = m.put("/v2/apps/roll", &json!({"env": {"V": "2"}})).await;
    assert_eq!(s, 200);
    // Until the deployment ends, at least 2 healthy tasks are always up
    // (minimumHealthCapacity 1).
    testkit::eventually_async("restart done", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/roll").await;
        let healthy = a["app"]["tasksHealthy"].as_u64().unwrap();
        assert!(healthy >= 2, "healthy capacity kept: {a}");
        let (_, d) = m.get("/v2/deployments").await;
        let ids: Vec<String> = a["app"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        (d.as_array().unwrap().is_empty() && ids.len() == 2 && ids.iter().all(|i| !old.contains(i)))
            .then_some(())
    })
    .await;
}
