//! Unbounded numbers never crash a loop: the API refuses durations, counts
//! and lengths beyond their bounds (422 with the JSON path, nothing stored),
//! and a definition planted in etcd with huge values (as an older manager
//! may have stored it) stops neither the health checks of other apps, nor
//! the processing of task exits, nor kills.

mod common;

use common::{pids_of_task, BinManager, TaskCleanup, TestManager, DEADLINE};
use reqwest::Method;
use serde_json::{json, Value};

const MAX: u64 = u64::MAX;

fn app(id: &str, extra: Value) -> Value {
    let mut a = json!({"id": id, "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 0});
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

fn check(field: &str, value: u64) -> Value {
    json!({"healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}, field: value}]})
}

fn paths(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|x| x["path"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_bound_values_get_422_with_their_path_and_nothing_is_stored() {
    let m = TestManager::start().await;
    let long_id = format!("/{}", "a".repeat(299));
    let many_env: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("V{i}"), json!("x"))).collect();
    let cases = [
        (
            app("/x", check("intervalSeconds", MAX)),
            "/healthChecks(0)/intervalSeconds",
        ),
        (
            app("/x", check("timeoutSeconds", MAX)),
            "/healthChecks(0)/timeoutSeconds",
        ),
        (
            app("/x", check("gracePeriodSeconds", MAX)),
            "/healthChecks(0)/gracePeriodSeconds",
        ),
        (
            app(
                "/x",
                json!({"backoffSeconds": 10_000_000_000_000_000_000u64}),
            ),
            "/backoffSeconds",
        ),
        (
            app(
                "/x",
                json!({"maxLaunchDelaySeconds": 10_000_000_000_000_000_000u64}),
            ),
            "/maxLaunchDelaySeconds",
        ),
        (app("/x", json!({"backoffFactor": 1e300})), "/backoffFactor"),
        (
            app("/x", json!({"taskKillGracePeriodSeconds": MAX})),
            "/taskKillGracePeriodSeconds",
        ),
        (app("/x", json!({"instances": u32::MAX})), "/instances"),
        (app("/x", json!({"env": many_env})), "/env"),
        (
            app("/x", json!({"labels": {"k": "v".repeat(70_000)}})),
            "/labels/k",
        ),
        (app(&long_id, json!({})), "/id"),
    ];
    for (body, path) in &cases {
        let (s, answer) = m.post("/v2/apps", body).await;
        assert_eq!(s, 422, "POST {path}: {answer}");
        assert_eq!(answer["message"], "Object is not valid");
        assert_eq!(paths(&answer), vec![path.to_string()], "{answer}");
        // The same through PUT /v2/apps/{id} (which may create).
        let id = body["id"].as_str().unwrap();
        let (s, answer) = m.put(&format!("/v2/apps{id}"), body).await;
        assert_eq!(s, 422, "PUT {path}: {answer}");
        assert_eq!(paths(&answer), vec![path.to_string()], "{answer}");
    }
    let (_, answer) = m.post("/v2/apps", &cases[10].0).await;
    let message = answer["details"][0]["errors"][0].as_str().unwrap();
    assert!(
        message.starts_with("must be at most 148 characters long, got 300"),
        "{message}"
    );

    // PUT /v2/apps (a list): the item's index leads the path.
    let list = json!([
        app("/ok", json!({})),
        app("/y", check("intervalSeconds", MAX))
    ]);
    let (s, answer, _) = m.call(Method::PUT, "/v2/apps", Some(&list)).await;
    assert_eq!(s, 422, "{answer}");
    assert_eq!(paths(&answer), vec!["/1/healthChecks(0)/intervalSeconds"]);
    let list = json!([app(&long_id, json!({}))]);
    let (s, answer, _) = m.call(Method::PUT, "/v2/apps", Some(&list)).await;
    assert_eq!(s, 422, "{answer}");
    assert_eq!(paths(&answer), vec!["/0/id"]);

    // Nothing stored by any of them.
    assert!(m.etcd_keys("/apps/").await.is_empty());
    assert!(m.etcd_keys("/versions/").await.is_empty());
    let (_, all) = m.get("/v2/apps").await;
    assert_eq!(all["apps"], json!([]));

    // An existing app: a bad update is refused, the stored definition stays.
    let (s, _) = m.post("/v2/apps", &app("/kept", json!({}))).await;
    assert_eq!(s, 201);
    m.wait_no_deployments().await;
    let (s, answer) = m
        .put("/v2/apps/kept", &json!({"backoffSeconds": MAX}))
        .await;
    assert_eq!(s, 422, "{answer}");
    assert_eq!(paths(&answer), vec!["/backoffSeconds"]);
    let (s, answer, _) = m
        .call(
            Method::PATCH,
            "/v2/apps",
            Some(&json!([{"id": "/kept", "taskKillGracePeriodSeconds": MAX}])),
        )
        .await;
    assert_eq!(s, 422, "{answer}");
    assert_eq!(paths(&answer), vec!["/0/taskKillGracePeriodSeconds"]);
    let stored = m.etcd_get("/apps/kept").await.unwrap();
    assert_eq!(stored["backoffSeconds"], 1);
    assert!(stored.get("taskKillGracePeriodSeconds").is_none());

    // The longest accepted id still makes valid task ids: its task runs.
    let longest = format!("/{}/{}", "a".repeat(40), "b".repeat(148 - 42));
    assert_eq!(longest.len(), 148);
    let (s, answer) = m
        .post("/v2/apps", &app(&longest, json!({"instances": 1})))
        .await;
    assert_eq!(s, 201, "{answer}");
    let tasks = m.wait_running(&longest, 1).await;
    assert_eq!(tasks[0]["id"].as_str().unwrap().len(), 200);
}

/// Edits a stored value under the manager's internal prefix.
async fn plant(etcd: &testkit::Etcd, key: &str, edit: impl FnOnce(&mut Value)) {
    let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let key = format!("/mdo/manager{key}");
    let resp = c.get(key.as_str(), None).await.unwrap();
    let mut value: Value = serde_json::from_slice(resp.kvs()[0].value()).unwrap();
    edit(&mut value);
    c.put(key.as_str(), serde_json::to_vec(&value).unwrap(), None)
        .await
        .unwrap();
}

async fn app_json(m: &BinManager, id: &str) -> Value {
    let (s, v) = m.get(&format!("/v2/apps{id}")).await;
    assert_eq!(s, 200, "{v}");
    v["app"].clone()
}

fn last_success(app: &Value) -> Option<String> {
    app["tasks"][0]["healthCheckResults"][0]["lastSuccess"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_huge_definition_stops_no_loop() {
    let etcd = testkit::Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());

    let mut m1 = BinManager::start(&etcd, &data, &[], &[]).await;
    let good = json!({"id": "/good", "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
        "cpus": 0.01, "mem": 16, "instances": 1,
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30,
            "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}]});
    let bad = app(
        "/bad",
        json!({"instances": 1, "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
            "intervalSeconds": 1, "gracePeriodSeconds": 30}]}),
    );
    let crash = json!({"id": "/crash", "cmd": "exit 1", "cpus": 0.01, "mem": 8, "instances": 0});
    for a in [&good, &bad, &crash] {
        let (s, body) = m1.post("/v2/apps", a).await;
        assert_eq!(s, 201, "{body}");
    }
    m1.wait_running("/good", 1, true).await;
    let bad_task = m1.wait_running("/bad", 1, true).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m1.wait_no_deployments().await;
    m1.process.kill();

    // What an older manager may have stored: values far beyond the bounds.
    plant(&etcd, "/apps/bad", |a| {
        for field in ["intervalSeconds", "timeoutSeconds", "gracePeriodSeconds"] {
            a["healthChecks"][0][field] = json!(MAX);
        }
        a["taskKillGracePeriodSeconds"] = json!(MAX);
        a["backoffSeconds"] = json!(MAX);
        a["maxLaunchDelaySeconds"] = json!(MAX);
        a["backoffFactor"] = json!(1e300);
        a["upgradeStrategy"] =
            json!({"minimumHealthCapacity": 1e300, "maximumOverCapacity": 1e300});
    })
    .await;
    plant(&etcd, &format!("/tasks/{bad_task}"), |t| {
        t["killGrace"] = json!(MAX)
    })
    .await;
    plant(&etcd, "/apps/crash", |a| {
        a["instances"] = json!(1);
        a["backoffSeconds"] = json!(MAX);
        a["maxLaunchDelaySeconds"] = json!(MAX);
    })
    .await;

    let m = BinManager::start(&etcd, &data, &[], &[]).await;
    // Start-up validates what it loads as the API would (issue 15.5): the
    // planted definitions are refused, neither loaded nor run.
    for id in ["/bad", "/crash"] {
        let (s, body) = m.get(&format!("/v2/apps{id}")).await;
        assert_eq!(s, 404, "{id} was loaded: {body}");
    }

    // Health checks of the other app go on: results appear and keep updating.
    let first = testkit::eventually_async("/good checked after the restart", DEADLINE, || async {
        last_success(&app_json(&m, "/good").await)
    })
    .await;
    testkit::eventually_async("/good checked again", DEADLINE, || async {
        last_success(&app_json(&m, "/good").await).filter(|s| *s != first)
    })
    .await;

    // The refused app's task, with its planted kill grace, is an orphan: it
    // is stopped, the grace notwithstanding.
    testkit::eventually_async("the planted-grace task is stopped", DEADLINE, || async {
        pids_of_task(&bad_task).is_empty().then_some(())
    })
    .await;

    // Later exits of other apps are still processed.
    let (s, _) = m
        .post(
            "/v2/apps",
            &json!({"id": "/exits", "cmd": "exit 3", "cpus": 0.01, "mem": 8}),
        )
        .await;
    assert_eq!(s, 201);
    let failure = testkit::eventually_async("/exits failure recorded", DEADLINE, || async {
        let a = app_json(&m, "/exits").await;
        a["lastTaskFailure"].is_object().then_some(a)
    })
    .await;
    assert_eq!(
        failure["lastTaskFailure"]["state"], "TASK_FAILED",
        "{failure}"
    );

    // Still checking /good, and nothing had to be caught.
    let now = last_success(&app_json(&m, "/good").await).unwrap();
    testkit::eventually_async("/good still checked", DEADLINE, || async {
        last_success(&app_json(&m, "/good").await).filter(|s| *s != now)
    })
    .await;
    let metrics = m.prometheus().await;
    assert!(
        metrics.contains("mdo_manager_loop_panics_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mdo_manager_apps_refused_at_start 2\n"),
        "{metrics}"
    );
}
