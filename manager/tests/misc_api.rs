//! Groups, nodes, metrics, multi-app PUT, label filters, legacy Docker
//! input normalised, constraints and fixed ports on the single node, and
//! task events on `/v2/events` with Marathon's framing.

mod common;

use common::{TestManager, DEADLINE};
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_nodes_metrics_and_multi_app_put() {
    let m = TestManager::start().await;
    let (s, body, h) = m
        .call(
            Method::PUT,
            "/v2/apps",
            Some(&json!([
                {"id": "/dev/a", "cmd": "sleep 1", "instances": 0, "labels": {"env": "dev", "tier": "web"}},
                {"id": "/dev/b", "cmd": "sleep 1", "instances": 0, "labels": {"env": "prod"}},
                {"id": "/top", "cmd": "sleep 1", "instances": 0}
            ])),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        h["marathon-deployment-id"].to_str().unwrap(),
        body["deploymentId"].as_str().unwrap()
    );
    let (_, apps) = m.get("/v2/apps").await;
    assert_eq!(apps["apps"].as_array().unwrap().len(), 3);
    let (_, sel) = m.get("/v2/apps?label=env==dev,tier").await;
    assert_eq!(
        sel["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!("/dev/a")]
    );
    let (_, sel) = m.get("/v2/apps?label=env%20in%20(dev,prod)").await;
    assert_eq!(sel["apps"].as_array().unwrap().len(), 2);

    let (s, root) = m.get("/v2/groups").await;
    assert_eq!(s, 200);
    assert_eq!(root["id"], "/");
    assert_eq!(root["apps"][0]["id"], "/top");
    assert_eq!(root["groups"][0]["id"], "/dev");
    assert_eq!(root["groups"][0]["apps"].as_array().unwrap().len(), 2);
    let (s, _) = m.get("/v2/groups/nope").await;
    assert_eq!(s, 404);
    let (s, star) = m.get("/v2/apps/dev/*").await;
    assert_eq!(s, 200);
    assert_eq!(star["*"].as_array().unwrap().len(), 2);

    let (_, nodes) = m.get("/v2/nodes").await;
    assert_eq!(nodes["nodes"][0]["name"], "node-1");
    assert_eq!(nodes["nodes"][0]["resources"]["cpus"], 8.0);

    let (_, metrics) = m.get("/metrics").await;
    assert_eq!(
        metrics["gauges"]["marathon.apps.active.gauge"]["value"],
        3.0
    );
    assert!(metrics["counters"].is_object() && metrics["timers"].is_object());
    let text = m.prometheus().await;
    assert!(text.contains("mdo_manager_apps_active 3"), "{text}");
    assert!(text.contains("mdo_events_published_total"), "{text}");

    // PATCH /v2/apps with an unknown id -> 404, nothing changed.
    let (s, _, _) = m
        .call(
            Method::PATCH,
            "/v2/apps",
            Some(&json!([{"id": "/ghost", "instances": 2}])),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_docker_input_is_normalised_and_waits_without_docker() {
    let m = TestManager::start().await;
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/legacy", "cpus": 0.1, "mem": 16, "uris": ["http://x/y.tgz"],
                "container": {"type": "DOCKER", "docker": {"image": "busybox", "network": "BRIDGE",
                    "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp", "name": "http"}]}}}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["networks"], json!([{"mode": "container/bridge"}]));
    let pm = &body["container"]["portMappings"][0];
    assert_eq!(pm["containerPort"], 80);
    assert!(pm["servicePort"].as_u64().unwrap() >= 10000);
    assert!(body["container"]["docker"].get("network").is_none());
    assert!(body["container"]["docker"].get("portMappings").is_none());
    assert!(body.get("portDefinitions").is_none() && body.get("uris").is_none());
    assert_eq!(body["fetch"][0]["uri"], "http://x/y.tgz");
    // Docker is off here: the task waits in the queue.
    let q = testkit::eventually_async("queued", DEADLINE, || async {
        let (_, q) = m.get("/v2/queue").await;
        (q["queue"].as_array()?.len() == 1).then_some(q)
    })
    .await;
    assert_eq!(q["queue"][0]["app"]["id"], "/legacy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_and_fixed_ports_on_one_node() {
    let base = testkit::free_port().unwrap();
    let m = TestManager::start_with(|c| {
        c.node_attributes.insert("rack".into(), "r1".into());
    })
    .await;
    let (s, _) = m
        .post("/v2/apps", &json!({"id": "/uniq", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 2, "constraints": [["hostname", "UNIQUE"]]}))
        .await;
    assert_eq!(s, 201);
    m.wait_running("/uniq", 1).await;
    let q = testkit::eventually_async("second instance queued", DEADLINE, || async {
        let (_, q) = m.get("/v2/queue").await;
        (q["queue"].as_array()?.len() == 1).then_some(q)
    })
    .await;
    assert_eq!(q["queue"][0]["count"], 1);
    let (s, _) = m.post("/v2/apps", &json!({"id": "/nowhere", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "constraints": [["rack", "LIKE", "r[2-9]"]]})).await;
    assert_eq!(s, 201);
    let (s, _) = m.post("/v2/apps", &json!({"id": "/rack", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "constraints": [["rack", "IS", "r1"]]})).await;
    assert_eq!(s, 201);
    m.wait_running("/rack", 1).await;
    assert!(m.tasks_in("/nowhere", "TASK_RUNNING").await.is_empty());

    // requirePorts: the host port is the declared port; a second app wanting
    // it is refused (more in ports_conflicts.rs).
    let (s, _) = m
        .post("/v2/apps", &json!({"id": "/fixed", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "requirePorts": true, "portDefinitions": [{"port": base}]}))
        .await;
    assert_eq!(s, 201);
    let t = m.wait_running("/fixed", 1).await;
    assert_eq!(t[0]["ports"], json!([base]));
    let (s, body) = m
        .post("/v2/apps", &json!({"id": "/fixed2", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "requirePorts": true, "portDefinitions": [{"port": base}]}))
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["details"][0]["path"], "/portDefinitions(0)/port");
    assert!(m.etcd_get("/apps/fixed2").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_on_the_sse_stream_with_marathon_framing() {
    let m = TestManager::start().await;
    let resp = m
        .http
        .get(format!(
            "{}/v2/events?event_type=status_update_event",
            m.base
        ))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let (s, _) = m
        .post(
            "/v2/apps",
            &json!({"id": "/sse", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8}),
        )
        .await;
    assert_eq!(s, 201);
    let mut buf = Vec::new();
    let text = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.unwrap());
            let text = String::from_utf8_lossy(&buf).to_string();
            if text.contains("TASK_RUNNING") && text.ends_with("\r\n\r\n") {
                return text;
            }
        }
        panic!("stream ended");
    })
    .await
    .expect("TASK_RUNNING on the stream");
    let frames: Vec<&str> = text
        .split("\r\n\r\n")
        .filter(|f| !f.trim().is_empty())
        .collect();
    assert_eq!(frames.len(), 3, "{text:?}");
    for (frame, state) in frames
        .iter()
        .zip(["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"])
    {
        let (event, data) = frame.split_once("\r\n").unwrap();
        assert_eq!(event, "event: status_update_event");
        let json: serde_json::Value =
            serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(json["taskStatus"], state);
        assert_eq!(json["appId"], "/sse");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_logs_tail_and_follow() {
    let m = TestManager::start().await;
    let (s, _) = m
        .post("/v2/apps", &json!({"id": "/talk", "cmd": "for i in $(seq 1 40); do echo line-$i; sleep 0.05; done; exec sleep 1000", "cpus": 0.01, "mem": 8}))
        .await;
    assert_eq!(s, 201);
    let id = m.wait_running("/talk", 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut log = m.follow_log(&id).await;
    log.read_until(b"line-40\n").await;
    let text = String::from_utf8_lossy(&log.got).to_string();
    assert_eq!(
        text.matches("line-7\n").count(),
        1,
        "no duplicated output: {text}"
    );
    let tail =
        testkit::http::text(m.http.get(format!("{}/v2/tasks/{id}/logs?tail=2", m.base))).await;
    assert_eq!(tail, "line-39\nline-40\n");
    let (s, _) = m.get("/v2/tasks/nope.instance-x._app.1/logs").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_announces_killing_then_drains_before_stopping() {
    let m = TestManager::start_with(|c| c.drain_delay = std::time::Duration::from_secs(2)).await;
    let (s, _) = m
        .post(
            "/v2/apps",
            &json!({"id": "/drain", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8}),
        )
        .await;
    assert_eq!(s, 201);
    let id = m.wait_running("/drain", 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.wait_no_deployments().await;
    let (s, body) = m.delete(&format!("/v2/apps/drain/tasks/{id}")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["task"]["state"], "TASK_KILLING");
    // While KILLING (draining), the process still runs.
    let (_, tasks) = m.get("/v2/apps/drain/tasks").await;
    let killing = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str() && t["state"] == "TASK_KILLING");
    assert!(killing, "{tasks}");
    assert_eq!(
        common::pids_of_task(&id).len(),
        1,
        "still running while draining"
    );
    testkit::eventually_async("stopped after the drain", DEADLINE, || async {
        common::pids_of_task(&id).is_empty().then_some(())
    })
    .await;
}
