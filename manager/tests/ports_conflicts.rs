//! Fixed host ports on this single node (`requirePorts`, Docker `hostPort`):
//! a definition whose fixed port is already held by another app (its
//! definition or a live task), or that wants more than one instance with a
//! fixed port, is refused with 422 and nothing is stored or started.

mod common;

use common::{TestManager, DEADLINE};
use serde_json::{json, Value};

fn fixed(id: &str, port: u16) -> Value {
    json!({"id": id, "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8,
        "requirePorts": true, "portDefinitions": [{"port": port}]})
}

fn invalid(path: &str, error: String) -> Value {
    json!({"message": "Object is not valid", "details": [{"path": path, "errors": [error]}]})
}

/// The app is neither in the API, nor in etcd, nor queued, nor running.
async fn assert_absent(m: &TestManager, id: &str) {
    let (s, _) = m.get(&format!("/v2/apps{id}")).await;
    assert_eq!(s, 404, "{id} not served");
    assert!(
        m.etcd_get(&format!("/apps{id}")).await.is_none(),
        "{id} not in etcd"
    );
    assert!(m.etcd_keys(&format!("/versions{id}/")).await.is_empty());
    let (_, q) = m.get("/v2/queue").await;
    assert!(
        !q["queue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["app"]["id"] == id),
        "{id} not queued: {q}"
    );
    let (_, tasks) = m.get("/v2/tasks").await;
    assert!(
        !tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["appId"] == id),
        "{id} has no task: {tasks}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_fixed_ports_are_rejected_and_nothing_is_stored() {
    let m = TestManager::start().await;
    let base = testkit::free_port().unwrap();
    let (s, body) = m.post("/v2/apps", &fixed("/fixed", base)).await;
    assert_eq!(s, 201, "{body}");
    let t = m.wait_running("/fixed", 1).await;
    assert_eq!(t[0]["ports"], json!([base]));
    m.wait_no_deployments().await;

    // POST /v2/apps: held by /fixed's definition.
    let taken = format!("host port {base} is already reserved on this node by app '/fixed'");
    let (s, body) = m.post("/v2/apps", &fixed("/fixed2", base)).await;
    assert_eq!(
        (s, body),
        (422, invalid("/portDefinitions(0)/port", taken.clone()))
    );
    // PUT /v2/apps/{id} creating the app.
    let (s, body) = m.put("/v2/apps/fixed2", &fixed("/fixed2", base)).await;
    assert_eq!(
        (s, body),
        (422, invalid("/portDefinitions(0)/port", taken.clone()))
    );
    // A Docker bridge mapping with the same fixed host port.
    let bridge = json!({"id": "/bridge", "cpus": 0.01, "mem": 8,
        "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "docker": {"image": "mdo-test/none"},
            "portMappings": [{"containerPort": 80, "hostPort": base}]}});
    let (s, body) = m.post("/v2/apps", &bridge).await;
    assert_eq!(
        (s, body),
        (
            422,
            invalid("/container/portMappings(0)/hostPort", taken.clone())
        )
    );
    // PUT /v2/apps (several apps, one deployment): the whole batch is refused.
    let other = testkit::free_port().unwrap();
    let (s, body) = m
        .put(
            "/v2/apps",
            &json!([fixed("/b1", other), fixed("/b2", base)]),
        )
        .await;
    assert_eq!(
        (s, body),
        (422, invalid("/1/portDefinitions(0)/port", taken))
    );
    // Two items of one batch wanting the same port.
    let (s, body) = m
        .put(
            "/v2/apps",
            &json!([fixed("/b1", other), fixed("/b2", other)]),
        )
        .await;
    let clash = format!("host port {other} is already reserved on this node by app '/b1'");
    assert_eq!(
        (s, body),
        (422, invalid("/1/portDefinitions(0)/port", clash))
    );

    for id in ["/fixed2", "/bridge", "/b1", "/b2"] {
        assert_absent(&m, id).await;
    }
    // Only /fixed's own creation deployment ever existed; it is done.
    let (_, deps) = m.get("/v2/deployments").await;
    assert_eq!(deps, json!([]));
    assert_eq!(m.etcd_keys("/apps/").await.len(), 1);

    // Once /fixed is gone, the port is free for another app.
    let (s, _) = m.delete("/v2/apps/fixed").await;
    assert_eq!(s, 200);
    testkit::eventually_async("/fixed's task gone", DEADLINE, || async {
        let (_, tasks) = m.get("/v2/tasks").await;
        tasks["tasks"].as_array()?.is_empty().then_some(())
    })
    .await;
    let (s, body) = m.post("/v2/apps", &fixed("/fixed2", base)).await;
    assert_eq!(s, 201, "{body}");
    let t = m.wait_running("/fixed2", 1).await;
    assert_eq!(t[0]["ports"], json!([base]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_held_by_another_apps_task_is_rejected() {
    let m = TestManager::start().await;
    let (s, body) = m
        .post("/v2/apps", &json!({"id": "/dyn", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "portDefinitions": [{"port": 0}]}))
        .await;
    assert_eq!(s, 201, "{body}");
    let t = m.wait_running("/dyn", 1).await;
    let port = u16::try_from(t[0]["ports"][0].as_u64().unwrap()).unwrap();
    let task_id = t[0]["id"].as_str().unwrap().to_string();
    let (s, body) = m.post("/v2/apps", &fixed("/grab", port)).await;
    assert_eq!(
        (s, body),
        (
            422,
            invalid(
                "/portDefinitions(0)/port",
                format!("host port {port} is already reserved on this node by task '{task_id}' of app '/dyn'")
            )
        )
    );
    assert_absent(&m, "/grab").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_one_instance_with_a_fixed_port_is_refused() {
    let m = TestManager::start().await;
    let port = testkit::free_port().unwrap();
    let too_many = |n: u64| {
        invalid(
            "/instances",
            format!("got {n}, but an app with fixed host ports ({port}) can run at most 1 instance on this single-node manager"),
        )
    };
    let mut two = fixed("/single", port);
    two["instances"] = json!(2);
    let (s, body) = m.post("/v2/apps", &two).await;
    assert_eq!((s, body), (422, too_many(2)));
    assert_absent(&m, "/single").await;

    let (s, body) = m.post("/v2/apps", &fixed("/single", port)).await;
    assert_eq!(s, 201, "{body}");
    m.wait_running("/single", 1).await;
    m.wait_no_deployments().await;
    let stored = m.etcd_get("/apps/single").await.unwrap();
    let versions = m.etcd_keys("/versions/single/").await;

    // Scaling beyond one instance: 422, no change anywhere.
    let (s, body) = m.put("/v2/apps/single", &json!({"instances": 3})).await;
    assert_eq!((s, body), (422, too_many(3)));
    let (s, body, _) = m
        .call(
            reqwest::Method::PATCH,
            "/v2/apps/single",
            Some(&json!({"instances": 2})),
        )
        .await;
    assert_eq!((s, body), (422, too_many(2)));
    assert_eq!(m.etcd_get("/apps/single").await.unwrap(), stored);
    assert_eq!(m.etcd_keys("/versions/single/").await, versions);
    let (_, deps) = m.get("/v2/deployments").await;
    assert_eq!(deps, json!([]));
    let (_, app) = m.get("/v2/apps/single").await;
    assert_eq!(app["app"]["instances"], 1);
    assert_eq!(m.wait_running("/single", 1).await.len(), 1);

    // A config change that keeps its own port does not conflict with itself
    // (on one node the old task must go first: minimumHealthCapacity 0).
    let (s, body) = m
        .put(
            "/v2/apps/single",
            &json!({"cmd": "exec sleep 1001", "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, app) = m.get("/v2/apps/single").await;
    let version = app["app"]["version"].clone();
    let t = testkit::eventually_async("the new version running on its port", DEADLINE, || async {
        let t = m.tasks_in("/single", "TASK_RUNNING").await;
        let (_, all) = m.get("/v2/apps/single/tasks").await;
        (t.len() == 1 && all["tasks"].as_array()?.len() == 1 && t[0]["version"] == version)
            .then_some(t)
    })
    .await;
    assert_eq!(t[0]["ports"], json!([port]));
}
