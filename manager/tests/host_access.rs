//! Issue 15.5: host access is behind --allow-host-access. Every case is
//! refused with 422 and its JSON path (nothing stored) without the opt-in,
//! and accepted with it; a definition planted in etcd is validated again at
//! start-up and not run. Real etcd, the real manager.

mod common;

use common::TestManager;
use serde_json::{json, Value};

fn docker_app(docker: Value, volumes: Value) -> Value {
    json!({"id": "/host", "cpus": 0.1, "mem": 16, "instances": 0,
        "container": {"type": "DOCKER", "docker": docker, "volumes": volumes}})
}

fn param(key: &str, value: &str) -> Value {
    docker_app(
        json!({"image": "busybox", "parameters": [{"key": key, "value": value}]}),
        json!([]),
    )
}

fn host_path(path: &str) -> Value {
    docker_app(
        json!({"image": "busybox"}),
        json!([{"containerPath": "/mnt", "hostPath": path, "mode": "RO"}]),
    )
}

/// (body, JSON path of the refusal)
fn cases(data_dir: &str) -> Vec<(Value, &'static str)> {
    let mut out = vec![
        (
            docker_app(json!({"image": "busybox", "privileged": true}), json!([])),
            "/container/docker/privileged",
        ),
        (
            param("privileged", "true"),
            "/container/docker/parameters(0)",
        ),
        (
            param("cap-add", "SYS_ADMIN"),
            "/container/docker/parameters(0)",
        ),
        (
            param("device", "/dev/fuse"),
            "/container/docker/parameters(0)",
        ),
        (
            param("security-opt", "seccomp=unconfined"),
            "/container/docker/parameters(0)",
        ),
        (param("pid", "host"), "/container/docker/parameters(0)"),
        (
            param("ipc", "container:other"),
            "/container/docker/parameters(0)",
        ),
        (param("uts", "host"), "/container/docker/parameters(0)"),
        (param("userns", "host"), "/container/docker/parameters(0)"),
        (param("network", "host"), "/container/docker/parameters(0)"),
        (
            param("volumes-from", "other"),
            "/container/docker/parameters(0)",
        ),
        (
            param("volume", "/etc/../etc:/host-etc:ro"),
            "/container/docker/parameters(0)",
        ),
    ];
    for path in [
        "/",
        "//",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/etc",
        "/etc/",
        "/etc/../etc",
        "//etc//ssl",
        "/proc",
        "/sys/fs",
        "/dev",
        "/boot",
        "/root/.ssh",
        "/var",
        "/var/lib/etcd-test",
    ] {
        out.push((host_path(path), "/container/volumes(0)/hostPath"));
    }
    let under_data = Box::leak(format!("{data_dir}/tasks").into_boxed_str());
    out.push((host_path(under_data), "/container/volumes(0)/hostPath"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_access_refused_without_the_opt_in_and_accepted_with_it() {
    let protect = |c: &mut manager::config::Config| {
        c.protected_host_paths = vec!["/var/lib/etcd-test".into()];
    };
    let m = TestManager::start_with(protect).await;
    let data_dir = m.data_dir().canonicalize().unwrap();
    for (body, path) in cases(&data_dir.display().to_string()) {
        let (s, resp) = m.post("/v2/apps", &body).await;
        assert_eq!(s, 422, "{body}: {resp}");
        let details = resp["details"].as_array().cloned().unwrap_or_default();
        let hit = details.iter().find(|d| d["path"] == path);
        let hit = hit.unwrap_or_else(|| panic!("{body}: no {path} in {resp}"));
        assert!(
            hit["errors"][0]
                .as_str()
                .unwrap_or("")
                .contains("--allow-host-access"),
            "{resp}"
        );
        // A PUT (create or replace) is refused the same way.
        let (s, _) = m.put("/v2/apps/host", &body).await;
        assert_eq!(s, 422, "{body}");
    }
    assert!(m.etcd_keys("/apps/").await.is_empty(), "nothing stored");
    // What does not reach into the host is fine.
    for (i, mut body) in [
        host_path("/srv/data"),
        param("cap-drop", "ALL"),
        param("security-opt", "no-new-privileges"),
        param("ipc", "private"),
    ]
    .into_iter()
    .enumerate()
    {
        body["id"] = json!(format!("/fine-{i}"));
        let (s, resp) = m.post("/v2/apps", &body).await;
        assert_eq!(s, 201, "{body}: {resp}");
    }

    let allowed = TestManager::start_with(|c| {
        protect(c);
        c.allow_host_access = true;
    })
    .await;
    let data_dir = allowed.data_dir().canonicalize().unwrap();
    for (body, _) in cases(&data_dir.display().to_string()) {
        let (s, resp) = allowed.put("/v2/apps/host?force=true", &body).await;
        assert!(s == 200 || s == 201, "{body}: {s} {resp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_planted_in_etcd_is_not_run() {
    let m = TestManager::start().await;
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/ok", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    m.wait_running("/ok", 1).await;
    let stored = m.etcd_get("/apps/ok").await.expect("stored");
    let (etcd, dir) = m.stop().await;

    // Straight into etcd: a command app that would run at once, with the
    // Docker socket as a volume.
    let mut planted = stored.clone();
    planted["id"] = json!("/planted");
    planted["container"] = json!({"type": "MESOS", "volumes": [
        {"containerPath": "/s", "hostPath": "/var/run/docker.sock", "mode": "RW"}]});
    let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    c.put("/mdo/manager/apps/planted", planted.to_string(), None)
        .await
        .unwrap();

    let m = TestManager::start_on(etcd, dir, |_| {}).await;
    m.wait_running("/ok", 1).await;
    let (s, _) = m.get("/v2/apps/planted").await;
    assert_eq!(s, 404, "the planted app is not loaded");
    let (_, tasks) = m.get("/v2/tasks").await;
    let planted_tasks: Vec<&Value> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["appId"] == "/planted")
        .collect();
    assert!(planted_tasks.is_empty(), "{tasks}");
    let text = m.prometheus().await;
    let line = text
        .lines()
        .find(|l| l.contains("apps_refused_at_start") && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.trim_end().ends_with(" 1"), "{line}");
    // Kept in etcd for the operator to fix.
    assert!(m.etcd_get("/apps/planted").await.is_some());
}

/// With the opt-in, an accepted host-path volume really reaches the
/// container (real engine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_opt_in_a_protected_host_path_is_mounted() {
    if !testkit::docker::require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let m = TestManager::start_with(|c| {
        c.docker = manager::config::DockerMode::On;
        c.allow_host_access = true;
    })
    .await;
    let (s, body) = m
        .post(
            "/v2/apps",
            &json!({"id": "/hostetc", "cpus": 0.05, "mem": 32, "instances": 1,
                "cmd": "test -e /host-etc/passwd && exec sleep 1000",
                "container": {"type": "DOCKER", "docker": {"image": image},
                    "volumes": [{"containerPath": "/host-etc", "hostPath": "/etc", "mode": "RO"}]}}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let tasks = m.wait_running("/hostetc", 1).await;
    let id = tasks[0]["id"].as_str().unwrap().to_string();
    let (ok, out) =
        common::docker_cli(&["ps", "-q", "--filter", &format!("label=mdo.task-id={id}")]);
    assert!(ok, "{out}");
    let container = out.trim().to_string();
    assert!(!container.is_empty(), "no container for {id}");
    let (ok, binds) =
        common::docker_cli(&["inspect", "-f", "{{json .HostConfig.Binds}}", &container]);
    assert!(ok && binds.contains("/etc:/host-etc:ro"), "{binds}");
    m.wait_no_deployments().await;
    let (s, _) = m.delete("/v2/apps/hostetc").await;
    assert_eq!(s, 200);
    testkit::eventually_async("container removed", common::DEADLINE, || async {
        let (_, out) =
            common::docker_cli(&["ps", "-aq", "--filter", &format!("label=mdo.task-id={id}")]);
        out.trim().is_empty().then_some(())
    })
    .await;
}
