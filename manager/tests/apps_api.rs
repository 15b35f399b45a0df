//! Apps CRUD, validation and error bodies, state in etcd.

mod common;

use common::TestManager;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_info_leader_and_unknown_routes() {
    let m = TestManager::start().await;
    let resp = m.http.get(format!("{}/ping", m.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "pong");
    let (s, info) = m.get("/v2/info").await;
    assert_eq!(s, 200);
    assert_eq!(info["name"], "marathon");
    assert!(
        info["marathon_config"].is_object()
            && info["zookeeper_config"].is_object()
            && info["http_config"].is_object()
    );
    let (s, leader) = m.get("/v2/leader").await;
    assert_eq!(s, 200);
    assert!(leader["leader"]
        .as_str()
        .unwrap()
        .ends_with(&m.base.rsplit(':').next().unwrap().to_string()));
    let (s, body) = m.get("/v2/nope").await;
    assert_eq!(
        (s, body),
        (404, json!({"message": "URI not found: /v2/nope"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_update_delete_with_versions_in_etcd() {
    let m = TestManager::start().await;
    let (s, body, headers) = m
        .call(Method::POST, "/v2/apps", Some(&json!({"id": "web", "cmd": "sleep 1000", "cpus": 0.01, "mem": 8, "instances": 0, "ports": [0]})))
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(headers["location"], "/web");
    let dep = headers["marathon-deployment-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(body["deployments"], json!([{"id": dep}]));
    assert_eq!(body["id"], "/web");
    assert!(
        body.get("ports").is_none(),
        "legacy field not emitted: {body}"
    );
    let sp = body["portDefinitions"][0]["port"].as_u64().unwrap();
    assert!(
        (10000..=20000).contains(&sp),
        "service port assigned: {body}"
    );
    assert_eq!(body["tasksRunning"], 0);
    assert!(body.get("tasks").is_none());

    // Stored in etcd with its version.
    let stored = m.etcd_get("/apps/web").await.expect("app in etcd");
    assert_eq!(stored["cmd"], "sleep 1000");
    assert_eq!(m.etcd_keys("/versions/web/").await.len(), 1);

    // Duplicate -> 409.
    let (s, body) = m.post("/v2/apps", &json!({"id": "/web", "cmd": "x"})).await;
    assert_eq!(
        (s, body),
        (
            409,
            json!({"message": "An app with id [/web] already exists."})
        )
    );

    m.wait_no_deployments().await;
    // Partial update keeps other fields; a config change is a new version.
    let (s, body) = m.put("/v2/apps/web", &json!({"cmd": "sleep 2000"})).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["deploymentId"].is_string() && body["version"].is_string());
    let (_, app) = m.get("/v2/apps/web").await;
    assert_eq!(app["app"]["cmd"], "sleep 2000");
    assert_eq!(app["app"]["mem"], 8.0);
    assert_eq!(
        app["app"]["portDefinitions"][0]["port"].as_u64().unwrap(),
        sp,
        "service port kept"
    );
    assert!(app["app"]["tasks"].is_array());
    let (_, versions) = m.get("/v2/apps/web/versions").await;
    let versions = versions["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    let oldest = versions[1].as_str().unwrap();
    let (s, old) = m.get(&format!("/v2/apps/web/versions/{oldest}")).await;
    assert_eq!(s, 200);
    assert_eq!(old["cmd"], "sleep 1000");

    // Rollback to the first version.
    m.wait_no_deployments().await;
    let (s, _) = m.put("/v2/apps/web", &json!({"version": oldest})).await;
    assert_eq!(s, 200);
    let (_, app) = m.get("/v2/apps/web").await;
    assert_eq!(app["app"]["cmd"], "sleep 1000");

    // PUT on an unknown id creates (201 + Location), PATCH does not.
    let (s, _, h) = m
        .call(
            Method::PUT,
            "/v2/apps/other",
            Some(&json!({"cmd": "sleep 1", "instances": 0})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(h["location"], "/other");
    let (s, body, _) = m
        .call(
            Method::PATCH,
            "/v2/apps/ghost",
            Some(&json!({"instances": 1})),
        )
        .await;
    assert_eq!(
        (s, body),
        (404, json!({"message": "App '/ghost' does not exist"}))
    );

    // Filters.
    let (_, list) = m.get("/v2/apps?id=oth&embed=apps.tasks").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 1);
    assert!(list["apps"][0]["tasks"].is_array());
    let (_, list) = m.get("/v2/apps?cmd=1000").await;
    assert_eq!(list["apps"][0]["id"], "/web");

    // Delete: gone from the API and etcd.
    m.wait_no_deployments().await;
    let (s, _) = m.delete("/v2/apps/web").await;
    assert_eq!(s, 200);
    let (s, _) = m.get("/v2/apps/web").await;
    assert_eq!(s, 404);
    assert!(m.etcd_get("/apps/web").await.is_none());
    assert!(m.etcd_keys("/versions/web/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_statuses_and_messages() {
    let m = TestManager::start_with(|c| c.max_body = 4096).await;
    let resp = m
        .http
        .post(format!("{}/v2/apps", m.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Invalid JSON");

    let cases = [
        (json!({"id": "/Bad_Id", "cmd": "x"}), "/id"),
        (json!({"id": "/x"}), "/"),
        (
            json!({"id": "/x", "cmd": "x", "constraints": [["hostname", "UNIQUE", "v"]]}),
            "/constraints(0)",
        ),
        (
            json!({"id": "/x", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 2}}),
            "/upgradeStrategy/minimumHealthCapacity",
        ),
        (
            json!({"id": "/x", "cmd": "x", "portDefinitions": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]}),
            "/portDefinitions",
        ),
    ];
    for (app, path) in cases {
        let (s, body) = m.post("/v2/apps", &app).await;
        assert_eq!(s, 422, "{app}: {body}");
        assert_eq!(body["message"], "Object is not valid");
        assert_eq!(body["details"][0]["path"], path, "{body}");
    }
    let (_, body) = m.post("/v2/apps", &json!({"id": "/x"})).await;
    assert_eq!(
        body["details"][0]["errors"][0],
        "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
    );
    let (_, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/x", "cmd": "x", "constraints": [["hostname", "UNIQUE", "v"]]}),
        )
        .await;
    assert_eq!(
        body["details"][0]["errors"][0],
        "UNIQUE does not accept a value"
    );

    // Wrong JSON type -> 400.
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/x", "cmd": "x", "instances": "many"}),
        )
        .await;
    assert_eq!(s, 400, "{body}");

    // Oversized -> 413 with a JSON body.
    let big = json!({"id": "/big", "cmd": "x".repeat(10_000)});
    let (s, body) = m.post("/v2/apps", &big).await;
    assert_eq!(s, 413);
    assert!(body["message"].is_string());

    // Nothing stored by any failed request.
    assert!(m.etcd_keys("/apps/").await.is_empty());
    let (_, list) = m.get("/v2/apps").await;
    assert_eq!(list["apps"], json!([]));

    let (s, body) = m.delete("/v2/deployments/nope").await;
    assert_eq!(
        (s, body),
        (
            404,
            json!({"message": "DeploymentPlan nope does not exist"})
        )
    );
    let (s, _) = m.delete("/v2/apps/nope").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_guards_everything_but_ping() {
    let m = TestManager::start_with(|c| c.auth_token = Some("s3cret".into())).await;
    let (s, body) = m.get("/v2/apps").await;
    assert_eq!(
        (s, body),
        (401, json!({"message": "Invalid username or password."}))
    );
    let resp = m
        .http
        .get(format!("{}/v2/apps", m.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        daemon::http::WWW_AUTHENTICATE
    );
    let (s, _) = m.get("/ping").await;
    assert_eq!(s, 200);
    let resp = m
        .http
        .get(format!("{}/v2/apps", m.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_replace_scale_only_versions_and_kill_all_with_scale() {
    let m = TestManager::start().await;
    let (s, _) = m.post("/v2/apps", &json!({"id": "/r", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 2, "labels": {"a": "b"}})).await;
    assert_eq!(s, 201);
    m.wait_running("/r", 2).await;
    m.wait_no_deployments().await;
    let (_, before) = m.get("/v2/apps/r").await;
    let cfg_before = before["app"]["versionInfo"]["lastConfigChangeAt"].clone();
    // Scale only: lastConfigChangeAt stays, lastScalingAt moves.
    let (s, _, _) = m
        .call(Method::PATCH, "/v2/apps/r", Some(&json!({"instances": 3})))
        .await;
    assert_eq!(s, 200);
    m.wait_running("/r", 3).await;
    m.wait_no_deployments().await;
    let (_, after) = m.get("/v2/apps/r").await;
    assert_eq!(
        after["app"]["versionInfo"]["lastConfigChangeAt"],
        cfg_before
    );
    assert_ne!(
        after["app"]["versionInfo"]["lastScalingAt"],
        before["app"]["versionInfo"]["lastScalingAt"]
    );
    // partialUpdate=false replaces the whole definition (labels gone, mem default).
    let (s, body) = m
        .put(
            "/v2/apps/r?partialUpdate=false",
            &json!({"cmd": "exec sleep 999", "cpus": 0.01, "mem": 8, "instances": 1}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, replaced) = m.get("/v2/apps/r").await;
    assert_eq!(replaced["app"]["labels"], json!({}));
    assert_eq!(replaced["app"]["instances"], 1);
    m.wait_running("/r", 1).await;
    m.wait_no_deployments().await;
    // Kill all tasks with scale: instances 0, no task left.
    let (s, body) = m.delete("/v2/apps/r/tasks?scale=true").await;
    assert_eq!(s, 200, "{body}");
    assert!(body["deploymentId"].is_string());
    testkit::eventually_async("no tasks", common::DEADLINE, || async {
        let (_, t) = m.get("/v2/apps/r/tasks").await;
        t["tasks"].as_array()?.is_empty().then_some(())
    })
    .await;
    let (_, app) = m.get("/v2/apps/r").await;
    assert_eq!(app["app"]["instances"], 0);
}

/// `container.docker.parameters`: unknown keys and bad values -> 422 listing
/// each one under `/container/docker/parameters`; `privileged` (flag or
/// parameter) -> 422 unless the manager allows it. Nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_parameters_and_privileged_validated() {
    let m = TestManager::start().await;
    let docker = |docker: serde_json::Value| {
        json!({"id": "/dock", "cpus": 0.01, "mem": 8, "instances": 0,
               "container": {"type": "DOCKER", "docker": docker}})
    };
    let bad = docker(json!({"image": "busybox", "parameters": [
        {"key": "no-such-flag", "value": "x"},
        {"key": "hostname", "value": "fine"},
        {"key": "ulimit", "value": "nofile"}
    ]}));
    let check_at = |prefix: &str, s: u16, body: &serde_json::Value, want: &[&str]| {
        assert_eq!(s, 422, "{body}");
        assert_eq!(body["message"], "Object is not valid");
        let details = body["details"].as_array().unwrap();
        assert_eq!(details.len(), want.len(), "one detail per problem: {body}");
        for (d, w) in details.iter().zip(want) {
            // The parameter's index is in the path when one parameter is
            // at fault (`parameters(0)`), not when the list is.
            let path = d["path"].as_str().unwrap();
            assert!(
                path.starts_with(&format!("{prefix}/container/docker/parameters")),
                "{body}"
            );
            let e = d["errors"][0].as_str().unwrap();
            assert!(e.contains(w), "{e} mentions {w}");
        }
    };
    let check = |s: u16, body: &serde_json::Value, want: &[&str]| check_at("", s, body, want);
    let (s, body) = m.post("/v2/apps", &bad).await;
    check(s, &body, &["'no-such-flag': unknown parameter", "'ulimit'"]);
    let (s, body) = m.put("/v2/apps/dock", &bad).await;
    check(s, &body, &["'no-such-flag'", "'ulimit'"]);
    let (s, body) = m.put("/v2/apps", &json!([bad])).await;
    check_at("/0", s, &body, &["'no-such-flag'", "'ulimit'"]);
    let priv_param =
        docker(json!({"image": "busybox", "parameters": [{"key": "privileged", "value": "true"}]}));
    let (s, body) = m.post("/v2/apps", &priv_param).await;
    check(s, &body, &["privileged containers are not allowed"]);
    let (s, body) = m
        .post(
            "/v2/apps",
            &docker(json!({"image": "busybox", "privileged": true})),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["details"][0]["path"], "/container/docker/privileged");
    assert!(m.etcd_keys("/apps/").await.is_empty(), "nothing stored");

    // A valid app, then an update with a bad parameter: the stored app is unchanged.
    let good = docker(
        json!({"image": "busybox", "parameters": [{"key": "add-host", "value": "a:10.0.0.1"}]}),
    );
    let (s, body) = m.post("/v2/apps", &good).await;
    assert_eq!(s, 201, "{body}");
    let before = m.etcd_get("/apps/dock").await.expect("stored");
    let (s, body) = m.put("/v2/apps/dock", &bad).await;
    check(s, &body, &["'no-such-flag'", "'ulimit'"]);
    let (s, body, _) = m
        .call(
            reqwest::Method::PATCH,
            "/v2/apps/dock",
            Some(&json!({"container": {"type": "DOCKER",
            "docker": {"image": "busybox", "parameters": [{"key": "bogus", "value": "1"}]}}})),
        )
        .await;
    check(s, &body, &["'bogus': unknown parameter"]);
    assert_eq!(m.etcd_get("/apps/dock").await, Some(before), "unchanged");
    assert_eq!(m.etcd_keys("/versions/dock/").await.len(), 1);
    let (_, app) = m.get("/v2/apps/dock").await;
    assert_eq!(
        app["app"]["container"]["docker"]["parameters"],
        json!([{"key": "add-host", "value": "a:10.0.0.1"}])
    );

    // --allow-privileged lets both forms through.
    let p = TestManager::start_with(|c| c.allow_host_access = true).await;
    let ok = docker(
        json!({"image": "busybox", "privileged": true, "parameters": [{"key": "privileged", "value": "true"}]}),
    );
    let (s, body) = p.post("/v2/apps", &ok).await;
    assert_eq!(s, 201, "{body}");
    assert!(p.etcd_get("/apps/dock").await.is_some());
}
