//! A Docker app through the manager and the real engine: bridge networking
//! with a published port, Marathon-level HTTP health check, container
//! removed on delete; the image's own HEALTHCHECK as task health.

mod common;

use common::{TestManager, DEADLINE};
use manager::config::DockerMode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_app_serves_on_its_host_port_and_is_removed() {
    if !testkit::docker::require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let m = TestManager::start_with(|c| c.docker = DockerMode::On).await;
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/dock/web", "cpus": 0.05, "mem": 32, "instances": 1,
                "container": {"type": "DOCKER", "docker": {"image": image}, "portMappings": [{"containerPort": 8080, "hostPort": 0, "name": "http"}]},
                "networks": [{"mode": "container/bridge"}],
                "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 2}]}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let app = testkit::eventually_async("docker task healthy", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/dock/web").await;
        (a["app"]["tasksHealthy"] == 1).then_some(a)
    })
    .await;
    let task = &app["app"]["tasks"][0];
    let port = task["ports"][0].as_u64().unwrap();
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("mdo-test v1"), "{page}");
    let id = task["id"].as_str().unwrap().to_string();
    let containers = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=mdo.task-id={id}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(containers(), 1);
    m.wait_no_deployments().await;
    let (s, _) = m.delete("/v2/apps/dock/web").await;
    assert_eq!(s, 200);
    testkit::eventually_async("container removed", DEADLINE, || async {
        (containers() == 0).then_some(())
    })
    .await;
}

/// The image's own Docker HEALTHCHECK folds into the task's health:
/// `healthCheckResults`, `tasksHealthy`/`tasksUnhealthy` and health events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_healthcheck_folds_into_task_health() {
    if !testkit::docker::require_docker() {
        return;
    }
    use futures::StreamExt;
    let image = testkit::images::busybox_with_healthcheck();
    let m = TestManager::start_with(|c| c.docker = DockerMode::On).await;
    let events = m
        .http
        .get(format!(
            "{}/v2/events?event_type=health_status_changed_event",
            m.base
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/dock/hc", "cpus": 0.05, "mem": 32, "instances": 1,
                "cmd": "touch /tmp/healthy; exec sleep 100000",
                "container": {"type": "DOCKER", "docker": {"image": image}},
                "networks": [{"mode": "container/bridge"}]}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let app = testkit::eventually_async("HEALTHCHECK healthy", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/dock/hc?embed=app.tasks").await;
        (a["app"]["tasksHealthy"] == 1).then_some(a)
    })
    .await;
    let task = &app["app"]["tasks"][0];
    assert_eq!(task["healthCheckResults"][0]["alive"], true, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=mdo.task-id={id}")])
        .output()
        .unwrap();
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!container.is_empty(), "container of {id}");
    let rm = std::process::Command::new("docker")
        .args(["exec", &container, "rm", "/tmp/healthy"])
        .status()
        .unwrap();
    assert!(rm.success());
    let app = testkit::eventually_async("HEALTHCHECK unhealthy", DEADLINE, || async {
        let (_, a) = m.get("/v2/apps/dock/hc?embed=app.tasks").await;
        (a["app"]["tasksUnhealthy"] == 1).then_some(a)
    })
    .await;
    let result = &app["app"]["tasks"][0]["healthCheckResults"][0];
    assert_eq!(result["alive"], false, "{result}");
    assert!(
        result["lastFailureCause"]
            .as_str()
            .unwrap()
            .contains("HEALTHCHECK"),
        "{result}"
    );
    assert_eq!(
        app["app"]["tasks"][0]["id"],
        id.as_str(),
        "not killed: Docker health only reports"
    );

    // Both transitions were announced, for this task, in order.
    let mut seen = String::new();
    let alive: Vec<bool> = tokio::time::timeout(DEADLINE, async {
        loop {
            let chunk = stream.next().await.expect("stream open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
            let alive: Vec<bool> = seen
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .filter(|v| v["taskId"] == id.as_str())
                .filter_map(|v| v["alive"].as_bool())
                .collect();
            if alive.len() >= 2 {
                return alive;
            }
        }
    })
    .await
    .expect("two health_status_changed_event");
    assert_eq!(alive, vec![true, false]);
    let (s, _) = m.delete("/v2/apps/dock/hc").await;
    assert_eq!(s, 200);
    testkit::eventually("container removed", DEADLINE, || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=mdo.task-id={id}")])
            .output()
            .unwrap();
        out.stdout.trim_ascii().is_empty().then_some(())
    });
}
