//! Deploying through the real manager (command tasks; Docker is not the point here).

mod common;

use common::{app, app_ids, example, service, settled, Deployer, Manager};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_deploys_and_posting_it_again_changes_nothing() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let doc = example("ingestor-cmd.yaml");

    let (status, report) = deployer.deploy(&doc).await;
    assert_eq!(status, 200, "{report}\n{}", manager.log());
    let s = service(&report, "ingestor");
    assert_eq!(s["action"], "created");
    assert_eq!(s["app_id"], "/dev/ingestor");
    assert_eq!(s["labels"], json!(["dev"]));
    assert_eq!(s["instances"], 4);
    assert!(s["deployment_id"].is_string(), "{report}");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(s["outcome"], "finished");
    assert_eq!(s["tasks_running"], 4);

    let first = settled(&manager.url, "/dev/ingestor", 4).await;
    let a = app(&manager.url, "/dev/ingestor").await.unwrap();
    assert_eq!(a["labels"]["SERVICE_NAME"], "ingestor");
    assert_eq!(a["labels"]["SERVICE_GROUP"], "dev");
    assert_eq!(a["labels"]["MDO_MANAGED_BY"], "deployer");
    assert_eq!(a["env"]["APP_NAME"], "Ingestor");
    assert_eq!(a["env"]["LABELS"], "dev");
    assert_eq!(a["env"]["ETCD_ENDPOINTS"], "http://127.0.0.1:2379");

    // Each instance really serves on its named port: fetch through /services.
    let (status, body) = deployer.get("/services").await;
    assert_eq!(status, 200);
    let view: Value = serde_json::from_str(&body).unwrap();
    let ingestor = &view["services"][0];
    assert_eq!(ingestor["service"], "ingestor");
    assert_eq!(ingestor["group"], "dev");
    assert_eq!(ingestor["running"], 4);
    let api = ingestor["endpoints"]["api"].as_array().unwrap();
    assert_eq!(api.len(), 4, "{view}");
    assert_eq!(ingestor["endpoints"]["ssh"].as_array().unwrap().len(), 4);
    let endpoint = api[0].as_str().unwrap().to_string();
    let port = endpoint.rsplit(':').next().unwrap().to_string();
    let served = testkit::eventually_async(
        "httpd answers on the api port",
        common::MANAGER_TIMEOUT,
        || {
            let port = port.clone();
            async move {
                // busybox httpd serves /tmp: any HTTP answer proves the port is the task's.
                let resp = reqwest::get(format!("http://127.0.0.1:{port}/"))
                    .await
                    .ok()?;
                Some(resp.status().as_u16())
            }
        },
    )
    .await;
    assert!(served >= 200, "{served}");
    let (status, page) = deployer.get("/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("/dev/ingestor") && page.contains(&endpoint),
        "{page}"
    );

    // Again: unchanged, no deployment, the same tasks.
    let (status, report) = deployer.deploy(&doc).await;
    assert_eq!(status, 200, "{report}");
    let s = service(&report, "ingestor");
    assert_eq!(s["action"], "unchanged", "{report}");
    assert!(s["deployment_id"].is_null());
    assert_eq!(settled(&manager.url, "/dev/ingestor", 4).await, first);
}

const TWO: &str = "deploy:\n  worker:\n    cmd: sleep 3600\n    labels: [batch]\n    environment: {V: \"1\"}\n    instances: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_instances_keep_the_old_tasks_and_add_new_ones() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let (status, report) = deployer.deploy(TWO).await;
    assert_eq!(status, 200, "{report}");
    let old = settled(&manager.url, "/batch/worker", 2).await;

    let (status, report) = deployer
        .deploy(&TWO.replace("instances: 2", "instances: 4"))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(service(&report, "worker")["action"], "scaled", "{report}");
    let now = settled(&manager.url, "/batch/worker", 4).await;
    for id in &old {
        assert!(
            now.contains(id),
            "old task {id} must survive a scale: {now:?}"
        );
    }

    // and back down: scaled, never an update
    let (_, report) = deployer
        .deploy(&TWO.replace("instances: 2", "instances: 1"))
        .await;
    assert_eq!(service(&report, "worker")["action"], "scaled", "{report}");
    settled(&manager.url, "/batch/worker", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_environment_rolls_to_all_new_tasks() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    deployer.deploy(TWO).await;
    let old = settled(&manager.url, "/batch/worker", 2).await;

    let (status, report) = deployer.deploy(&TWO.replace("V: \"1\"", "V: \"2\"")).await;
    assert_eq!(status, 200, "{report}");
    let s = service(&report, "worker");
    assert_eq!(s["action"], "updated", "{report}");
    assert_eq!(s["changes"], json!(["/env/V"]));
    assert_eq!(report["complete"], true, "{report}");
    let new = settled(&manager.url, "/batch/worker", 2).await;
    for id in &new {
        assert!(
            !old.contains(id),
            "task {id} should have been replaced: old {old:?} new {new:?}"
        );
    }
    assert_eq!(
        app(&manager.url, "/batch/worker").await.unwrap()["env"]["V"],
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_takes_the_group_away_and_leaves_other_groups() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let doc = "deploy:\n  api:\n    cmd: sleep 3600\n    labels: [dev]\n  api-prod:\n    cmd: sleep 3600\n    labels: [prod]\n";
    let (status, report) = deployer.deploy(doc).await;
    assert_eq!(status, 200, "{report}");
    settled(&manager.url, "/dev/api", 1).await;

    let (status, report) = deployer
        .deploy("remove:\n  api: {labels: [dev]}\n  never-deployed: {}\n")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(service(&report, "api")["action"], "removed");
    assert_eq!(service(&report, "never-deployed")["action"], "unchanged");
    testkit::eventually_async("/dev/api is gone", common::MANAGER_TIMEOUT, || async {
        app(&manager.url, "/dev/api").await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        app_ids(&manager.url).await,
        vec!["/prod/api-prod".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_label_groups_and_json_bodies() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let body = json!({"deploy": {"hello": {"cmd": "sleep 3600", "labels": ["ponies", "hello"], "instances": 2}}});
    let (status, report) = deployer
        .post(
            "/deploy?wait=true",
            Some("application/json"),
            body.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let s = service(&report, "hello");
    assert_eq!(s["app_id"], "/hello.ponies/hello");
    assert_eq!(s["group"], "hello.ponies");
    assert_eq!(s["labels"], json!(["hello", "ponies"]));
    settled(&manager.url, "/hello.ponies/hello", 2).await;
    let a = app(&manager.url, "/hello.ponies/hello").await.unwrap();
    assert_eq!(a["labels"]["SERVICE_LABELS"], "hello,ponies");
    assert_eq!(a["env"]["SERVICE_GROUP"], "hello.ponies");

    // JSON without a Content-Type is sniffed; reordered labels are the same group.
    let again = json!({"deploy": {"hello": {"cmd": "sleep 3600", "labels": ["hello", "ponies"], "instances": 2}}});
    let (status, report) = deployer.post("/deploy", None, again.to_string()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(service(&report, "hello")["action"], "unchanged", "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_host_is_unique_per_host_and_returns_to_the_same_host() {
    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let doc = "deploy:\n  db:\n    cmd: sleep 3600\n    custom_constraints: fixed-host\n    environment: {V: \"1\"}\n";
    let (status, report) = deployer.deploy(doc).await;
    assert_eq!(status, 200, "{report}\n{}", manager.log());
    let first = settled(&manager.url, "/db", 1).await;
    let a = app(&manager.url, "/db").await.unwrap();
    assert_eq!(a["constraints"], json!([["hostname", "UNIQUE"]]));
    assert_eq!(
        a["upgradeStrategy"]["minimumHealthCapacity"].as_f64(),
        Some(0.0)
    );

    let (status, report) = deployer.deploy(&doc.replace("V: \"1\"", "V: \"2\"")).await;
    assert_eq!(status, 200, "{report}\n{}", manager.log());
    assert_eq!(service(&report, "db")["action"], "updated");
    let second = settled(&manager.url, "/db", 1).await;
    assert_ne!(first, second);
    let a = app(&manager.url, "/db").await.unwrap();
    let host = a["tasks"][0]["host"].as_str().unwrap().to_string();
    let node = a["tasks"][0]["slaveId"].as_str().unwrap().to_string();
    let mut names = vec![regex::escape(&host), regex::escape(&node)];
    names.sort();
    names.dedup();
    assert_eq!(
        a["constraints"],
        json!([
            ["hostname", "UNIQUE"],
            ["hostname", "LIKE", names.join("|")]
        ])
    );
    assert_eq!(node, "node-1", "the replacement runs on the same node");

    // posting the same document again: the pin is not a change
    let (_, report) = deployer.deploy(&doc.replace("V: \"1\"", "V: \"2\"")).await;
    assert_eq!(service(&report, "db")["action"], "unchanged", "{report}");
}
