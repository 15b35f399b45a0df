//! A document is applied as one multi-app `PUT /v2/apps`: the manager
//! accepts all of it (one deployment) or none of it (issue 14.4).

mod common;

use common::{
    app, app_ids, create_on_manager, running_task_ids, service, settled, Deployer, Manager,
};
use serde_json::{json, Value};

/// An app that holds host port `port` for good (`requirePorts`), created
/// directly on the manager, beside anything the deployer does.
async fn hold_port(marathon: &str, port: u16) {
    create_on_manager(
        marathon,
        &json!({"id": "/held", "cmd": "sleep 3600", "instances": 0, "requirePorts": true,
            "portDefinitions": [{"port": port, "name": "http", "protocol": "tcp"}]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_second_service_leaves_the_first_unapplied() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let port = testkit::free_port().unwrap();
    hold_port(&manager.url, port).await;

    // Valid for the deployer; the manager refuses `second` (its fixed host
    // port is reserved by /held).
    let doc = format!(
        "deploy:\n  first:\n    cmd: sleep 3600\n    labels: [t]\n  second:\n    cmd: sleep 3600\n    labels: [t]\n    ports-hard: {{http: {port}}}\n"
    );
    let (status, body) = deployer.deploy(&doc).await;
    assert_eq!(status, 422, "{body}\n{}", manager.log());
    let text = body.to_string();
    assert!(
        text.contains(&format!("host port {port} is already reserved")),
        "the manager's reason: {body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("refused") && message.contains("/t/second"),
        "{message}"
    );
    let detail = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d.to_string().contains("already reserved"))
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(detail["app_id"], "/t/second", "{body}");
    assert_eq!(detail["service"], "second", "{body}");
    assert_eq!(body["applied"], json!([]), "{body}");
    assert_eq!(
        app_ids(&manager.url).await,
        vec!["/held".to_string()],
        "neither service may be created"
    );

    // The CLI: exit 1, one line naming the app and the reason, nothing applied.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.yaml");
    std::fs::write(&file, &doc).unwrap();
    let url = manager.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::binary("deployer"))
            .arg("apply")
            .arg(&file)
            .env("MARATHON_URL", url)
            .env_remove("ETCD_ENDPOINTS")
            .env_remove("MARATHON_HOST")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/t/second") && stderr.contains(&format!("host port {port}")),
        "{stderr}"
    );
    assert_eq!(app_ids(&manager.url).await, vec!["/held".to_string()]);

    // The same with an update: the first service keeps its definition and tasks.
    let (status, body) = deployer
        .deploy("deploy:\n  first:\n    cmd: sleep 3600\n    labels: [t]\n    environment: {V: \"1\"}\n")
        .await;
    assert_eq!(status, 200, "{body}");
    let tasks = settled(&manager.url, "/t/first", 1).await;
    let before = app(&manager.url, "/t/first").await.unwrap();
    let (status, body) = deployer
        .deploy(&doc.replace(
            "labels: [t]\n  second",
            "labels: [t]\n    environment: {V: \"2\"}\n  second",
        ))
        .await;
    assert_eq!(status, 422, "{body}");
    let after = app(&manager.url, "/t/first").await.unwrap();
    assert_eq!(after["env"]["V"], "1", "{after}");
    assert_eq!(after["version"], before["version"]);
    assert_eq!(running_task_ids(&manager.url, "/t/first").await, tasks);
    assert_eq!(
        app_ids(&manager.url).await,
        vec!["/held".to_string(), "/t/first".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_scales_and_updates_of_a_document_are_one_deployment() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);

    let first = "deploy:\n  a:\n    cmd: sleep 3600\n  b:\n    cmd: sleep 3600\n    environment: {V: \"1\"}\n  old:\n    cmd: sleep 3600\n";
    let (status, report) = deployer.deploy(first).await;
    assert_eq!(status, 200, "{report}\n{}", manager.log());
    assert_eq!(report["complete"], true, "{report}");
    let id = service(&report, "a")["deployment_id"].clone();
    assert!(id.is_string(), "{report}");
    for s in ["a", "b", "old"] {
        assert_eq!(service(&report, s)["action"], "created", "{report}");
        assert_eq!(service(&report, s)["deployment_id"], id, "{report}");
        assert_eq!(service(&report, s)["outcome"], "finished", "{report}");
        assert_eq!(service(&report, s)["tasks_running"], 1, "{report}");
    }
    // One change on the manager: the three apps carry the same version.
    let versions: Vec<Value> = {
        let mut v = Vec::new();
        for id in ["/a", "/b", "/old"] {
            v.push(app(&manager.url, id).await.unwrap()["version"].clone());
        }
        v
    };
    assert!(versions.iter().all(|v| v == &versions[0]), "{versions:?}");

    let a_tasks = settled(&manager.url, "/a", 1).await;
    let b_tasks = settled(&manager.url, "/b", 1).await;

    // scale a, update b, create c, remove old: one deployment for the first three.
    let second = "deploy:\n  a:\n    cmd: sleep 3600\n    instances: 2\n  b:\n    cmd: sleep 3600\n    environment: {V: \"2\"}\n  c:\n    cmd: sleep 3600\nremove:\n  old: {}\n";
    let (status, report) = deployer.deploy(second).await;
    assert_eq!(status, 200, "{report}\n{}", manager.log());
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(service(&report, "a")["action"], "scaled", "{report}");
    assert_eq!(service(&report, "b")["action"], "updated", "{report}");
    assert_eq!(service(&report, "c")["action"], "created", "{report}");
    assert_eq!(service(&report, "old")["action"], "removed", "{report}");
    let id = service(&report, "a")["deployment_id"].clone();
    assert!(id.is_string(), "{report}");
    assert_eq!(service(&report, "b")["deployment_id"], id, "{report}");
    assert_eq!(service(&report, "c")["deployment_id"], id, "{report}");
    assert!(service(&report, "old")["deployment_id"].is_string());
    assert_ne!(service(&report, "old")["deployment_id"], id, "{report}");

    let a_now = settled(&manager.url, "/a", 2).await;
    assert!(
        a_now.contains(&a_tasks[0]),
        "a scale keeps the task: {a_tasks:?} -> {a_now:?}"
    );
    let b_now = settled(&manager.url, "/b", 1).await;
    assert_ne!(b_now, b_tasks, "an update replaces the task");
    assert_eq!(app(&manager.url, "/b").await.unwrap()["env"]["V"], "2");
    settled(&manager.url, "/c", 1).await;
    assert_eq!(app_ids(&manager.url).await, vec!["/a", "/b", "/c"]);
    let v: Vec<Value> = {
        let mut v = Vec::new();
        for id in ["/a", "/b", "/c"] {
            v.push(app(&manager.url, id).await.unwrap()["version"].clone());
        }
        v
    };
    assert!(v.iter().all(|x| x == &v[0]), "{v:?}");

    // Posting it again changes nothing and sends nothing.
    let (status, report) = deployer.deploy(second).await;
    assert_eq!(status, 200, "{report}");
    for s in ["a", "b", "c", "old"] {
        assert_eq!(service(&report, s)["action"], "unchanged", "{report}");
        assert!(service(&report, s)["deployment_id"].is_null(), "{report}");
    }
}
