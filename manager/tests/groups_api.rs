//! Group writes against a real etcd: `POST /v2/groups` creates a group's
//! apps (nested groups, relative ids) as one deployment, `PUT` replaces or
//! scales them, `DELETE` removes them; a group with one bad app applies
//! none, and every refusal says where.

mod common;

use std::collections::BTreeMap;

use common::TestManager;
use reqwest::Method;
use serde_json::{json, Value};

fn app(id: &str, instances: u32) -> Value {
    json!({"id": id, "cmd": "sleep 1000", "instances": instances, "cpus": 0.01, "mem": 16})
}

/// App id -> (instances, version).
async fn apps(m: &TestManager) -> BTreeMap<String, (u64, String)> {
    let (_, v) = m.get("/v2/apps").await;
    v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                (
                    a["instances"].as_u64().unwrap(),
                    a["version"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn ids(apps: &BTreeMap<String, (u64, String)>) -> Vec<&str> {
    apps.keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_created_changed_scaled_and_removed_as_one_deployment_each() {
    let m = TestManager::start().await;

    // Create: nested groups, relative and absolute ids, one deployment.
    let (s, body, h) = m
        .call(
            Method::POST,
            "/v2/groups",
            Some(&json!({
                "id": "shop",
                "apps": [app("web", 1)],
                "groups": [{"id": "db", "apps": [app("/shop/db/pg", 0)]}]
            })),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(h["location"].to_str().unwrap(), "/v2/groups/shop");
    let deployment = body["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(h["marathon-deployment-id"].to_str().unwrap(), deployment);
    let created = apps(&m).await;
    assert_eq!(ids(&created), ["/shop/db/pg", "/shop/web"]);
    m.wait_running("/shop/web", 1).await;
    m.wait_no_deployments().await;
    let (s, group) = m.get("/v2/groups/shop").await;
    assert_eq!(s, 200, "{group}");
    assert_eq!(group["apps"][0]["id"], "/shop/web");
    assert_eq!(group["groups"][0]["id"], "/shop/db");

    // Create again: 409, nothing changes.
    let (s, body) = m
        .post(
            "/v2/groups",
            &json!({"id": "/shop", "apps": [app("other", 0)]}),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("already created"));
    assert_eq!(apps(&m).await, created);

    // One bad app in a new group: 422 with its path, none of it applied.
    let (s, body) = m
        .post(
            "/v2/groups",
            &json!({"id": "/lab", "apps": [app("ok", 0)],
                    "groups": [{"id": "x", "apps": [{"id": "bad", "cmd": "true", "cpus": -1}]}]}),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        body["details"][0]["path"], "/groups(0)/apps(0)/cpus",
        "{body}"
    );
    assert_eq!(apps(&m).await, created);

    // Change: web scaled to 2, cache added, db/pg (not listed) removed.
    let (s, body) = m
        .put(
            "/v2/groups/shop",
            &json!({"id": "/shop", "apps": [app("web", 2), app("cache", 0)]}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let changed = apps(&m).await;
    assert_eq!(ids(&changed), ["/shop/cache", "/shop/web"]);
    assert_eq!(changed["/shop/web"].0, 2);
    m.wait_running("/shop/web", 2).await;
    m.wait_no_deployments().await;

    // Scale the whole group: every app's instances times 1.5, rounded up.
    let (s, body) = m.put("/v2/groups/shop", &json!({"scaleBy": 1.5})).await;
    assert_eq!(s, 200, "{body}");
    let scaled = apps(&m).await;
    assert_eq!(scaled["/shop/web"].0, 3);
    assert_eq!(scaled["/shop/cache"].0, 0);
    m.wait_running("/shop/web", 3).await;
    m.wait_no_deployments().await;

    // Refusals change nothing.
    for (path, body, status, says) in [
        (
            "/v2/groups",
            json!({"apps": [app("a", 0)]}),
            422,
            "root group",
        ),
        (
            "/v2/groups/shop",
            json!({"id": "/elsewhere"}),
            422,
            "not the group of the path",
        ),
        (
            "/v2/groups/shop",
            json!({"apps": [app("/other/a", 0)]}),
            422,
            "not below the group",
        ),
        (
            "/v2/groups/shop",
            json!({"pods": [{"id": "p"}]}),
            422,
            "pods are not supported",
        ),
        (
            "/v2/groups/shop",
            json!({"scaleBy": "two"}),
            422,
            "must be a number",
        ),
        (
            "/v2/groups/nothing",
            json!({"scaleBy": 2}),
            404,
            "does not exist",
        ),
    ] {
        let (s, answer) = m.put(path, &body).await;
        assert_eq!(s, status, "{path} {body}: {answer}");
        assert!(answer.to_string().contains(says), "{path} {body}: {answer}");
    }
    assert_eq!(apps(&m).await, scaled);

    // Remove: every app below the group goes, its tasks are stopped.
    let (s, body) = m.delete("/v2/groups/shop").await;
    assert_eq!(s, 200, "{body}");
    assert!(body["deploymentId"].is_string(), "{body}");
    assert!(apps(&m).await.is_empty());
    m.wait_no_deployments().await;
    testkit::eventually_async("the group's tasks stopped", common::DEADLINE, || async {
        let (_, t) = m.get("/v2/tasks").await;
        t["tasks"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
    let (s, body) = m.delete("/v2/groups/shop").await;
    assert_eq!(s, 404, "{body}");
    common::kill_tasks_under(&m.data_dir());
}
