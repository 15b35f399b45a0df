//! The original Theseus example shape with a real Docker image: named ports,
//! environment, labels, instances; the published ports answer.

mod common;

use common::{app, settled, Deployer, Manager};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_service_runs_and_its_named_ports_answer() {
    if !testkit::docker::require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = testkit::docker::ContainerGuard::new("deployer");
    let manager = Manager::start_as(Some(guard.id()));
    let deployer = Deployer::start(&manager.url);
    let doc = format!(
        "deploy:\n  ingestor:\n    image: {image}\n    labels: [theseus]\n    ports: {{api: 8080}}\n    \
         environment: {{APP_NAME: Ingestor, HTTP_PORT: \"8080\"}}\n    instances: 2\n    cpus: 0.1\n    mem: 64\n"
    );
    let (status, report) = deployer.deploy(&doc).await;
    assert_eq!(status, 200, "{report}\n{}", manager.log());
    assert_eq!(report["services"][0]["action"], "created");
    settled(&manager.url, "/theseus/ingestor", 2).await;
    let a = app(&manager.url, "/theseus/ingestor").await.unwrap();
    assert_eq!(a["container"]["portMappings"][0]["name"], "api");
    assert_eq!(a["container"]["portMappings"][0]["containerPort"], 8080);

    let (_, body) = deployer.get("/services").await;
    let view: Value = serde_json::from_str(&body).unwrap();
    let endpoints: Vec<String> = view["services"][0]["endpoints"]["api"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(endpoints.len(), 2, "{view}");
    for ep in endpoints {
        let port = ep.rsplit(':').next().unwrap().to_string();
        let text =
            testkit::eventually_async(&format!("{ep} answers"), common::MANAGER_TIMEOUT, || {
                let port = port.clone();
                async move {
                    reqwest::get(format!("http://127.0.0.1:{port}/"))
                        .await
                        .ok()?
                        .text()
                        .await
                        .ok()
                }
            })
            .await;
        assert!(text.contains("mdo-test v1"), "{text}");
    }

    // posting it again: the manager's normalised Docker app is not a change
    let (status, report) = deployer.deploy(&doc).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["services"][0]["action"], "unchanged", "{report}");

    let (status, report) = deployer
        .deploy("remove:\n  ingestor: {labels: [theseus]}\n")
        .await;
    assert_eq!(status, 200, "{report}");
    testkit::eventually("the containers are gone", common::MANAGER_TIMEOUT, || {
        guard.containers().is_empty().then_some(())
    });
}
