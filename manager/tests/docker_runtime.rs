//! The Docker runtime against the real engine, with locally built busybox
//! images. Under `CI=true` a missing engine fails these tests.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use manager::runtime::docker::{bridge_gateway, DockerConfig, DockerRuntime};
use manager::runtime::{
    DockerNetwork, DockerSpec, Exit, KnownTask, LaunchSpec, PortBinding, Runtime, RuntimeError,
    RuntimeEvent, VolumeMount, Workload,
};
use testkit::docker::{require_docker, ContainerGuard};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const WAIT: Duration = Duration::from_secs(60);

fn docker_spec(image: &str, guard: &ContainerGuard) -> DockerSpec {
    let (k, v) = guard.label();
    DockerSpec {
        image: image.to_string(),
        force_pull: false,
        privileged: false,
        cmd: None,
        args: vec![],
        parameters: vec![],
        network: DockerNetwork::Bridge,
        ports: vec![],
        volumes: vec![],
        labels: [(k, v)].into_iter().collect(),
    }
}

fn launch(task_id: &str, docker: DockerSpec) -> LaunchSpec {
    LaunchSpec {
        task_id: task_id.to_string(),
        app_id: "/test/app".to_string(),
        app_version: "2026-11-22T10:00:00.000Z".to_string(),
        env: BTreeMap::new(),
        cpus: 0.1,
        mem_mib: 64.0,
        kill_grace: Duration::from_secs(3),
        workload: Workload::Docker(docker),
    }
}

fn sh(cmd: &str) -> Option<String> {
    Some(cmd.to_string())
}

async fn runtime(guard: &ContainerGuard) -> (DockerRuntime, UnboundedReceiver<RuntimeEvent>) {
    let (tx, rx) = unbounded_channel();
    let rt = DockerRuntime::new(DockerConfig::new(guard.id()), tx)
        .await
        .expect("Docker runtime");
    (rt, rx)
}

/// The next `Exited` for `task_id` (other events are skipped).
async fn next_exit(rx: &mut UnboundedReceiver<RuntimeEvent>, task_id: &str) -> Exit {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no exit reported for {task_id} within {WAIT:?}"))
            .expect("event channel open");
        if let RuntimeEvent::Exited { task_id: t, exit } = event {
            if t == task_id {
                return exit;
            }
        }
    }
}

async fn next_health(rx: &mut UnboundedReceiver<RuntimeEvent>, task_id: &str) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no health reported for {task_id} within {WAIT:?}"))
            .expect("event channel open");
        if let RuntimeEvent::Health {
            task_id: t,
            healthy,
        } = event
        {
            if t == task_id {
                return healthy;
            }
        }
    }
}

fn docker_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn inspect(container: &str, format: &str) -> Option<String> {
    let (ok, out) = docker_cli(&["inspect", "--format", format, container]);
    ok.then_some(out)
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let resp = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

fn failed(exit: Exit) -> String {
    match exit {
        Exit::Failed { message } => message,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_container_answers_on_two_host_ports() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("bridge");
    let (rt, _rx) = runtime(&guard).await;
    let (p1, p2) = (testkit::free_port().unwrap(), testkit::free_port().unwrap());
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("httpd -p 8080 -h /www && exec httpd -f -p 8081 -h /www");
    d.ports = vec![
        PortBinding {
            host_port: Some(p1),
            container_port: 8080,
            protocol: "tcp".into(),
        },
        PortBinding {
            host_port: Some(p2),
            container_port: 8081,
            protocol: "tcp".into(),
        },
    ];
    let task = "test_bridge.instance-1._app.1";
    let started = rt.launch(&launch(task, d)).await.expect("launch");
    for port in [p1, p2] {
        let body = testkit::eventually_async("httpd answers on the host port", WAIT, || {
            http_get(port, "/index.html")
        })
        .await;
        assert_eq!(body.trim(), "mdo-test v1");
    }
    assert_eq!(started.ip_addresses.len(), 1, "{started:?}");
    let ip = &started.ip_addresses[0];
    assert_eq!(
        inspect(&started.handle, "{{.NetworkSettings.IPAddress}}").as_deref(),
        Some(ip.as_str())
    );
    let labels = inspect(&started.handle, "{{json .Config.Labels}}").unwrap();
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["mdo.task-id"], task);
    assert_eq!(labels["mdo.app-id"], "/test/app");
    assert_eq!(labels["mdo.manager"], guard.id());
    assert_eq!(labels["mdo.app-version"], "2026-11-22T10:00:00.000Z");
    assert_eq!(
        inspect(&started.handle, "{{.Name}}").as_deref(),
        Some("/mdo-test_bridge.instance-1._app.1")
    );
    assert_eq!(
        inspect(&started.handle, "{{.HostConfig.Memory}}").as_deref(),
        Some("67108864")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_container_serves_on_the_node() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("host");
    let (rt, _rx) = runtime(&guard).await;
    let port = testkit::free_port().unwrap();
    let mut d = docker_spec(image, &guard);
    d.network = DockerNetwork::Host;
    d.cmd = sh("exec httpd -f -p 127.0.0.1:$PORT0 -h /www");
    d.ports = vec![PortBinding {
        host_port: Some(port),
        container_port: 0,
        protocol: "tcp".into(),
    }];
    let mut spec = launch("test_host.instance-1._app.1", d);
    spec.env.insert("PORT0".into(), port.to_string());
    let started = rt.launch(&spec).await.expect("launch");
    assert!(started.ip_addresses.is_empty(), "{started:?}");
    let body = testkit::eventually_async("httpd answers on the node", WAIT, || {
        http_get(port, "/index.html")
    })
    .await;
    assert_eq!(body.trim(), "mdo-test v1");
    assert_eq!(
        inspect(&started.handle, "{{.HostConfig.NetworkMode}}").as_deref(),
        Some("host")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_seen_inside_and_logs_outlive_the_container() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("env");
    let (rt, mut rx) = runtime(&guard).await;
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("echo \"FOO is [$FOO]\"; echo \"TASK is [$MESOS_TASK_ID]\"");
    let task = "test_env.instance-1._app.1";
    let mut spec = launch(task, d);
    spec.env.insert("FOO".into(), "bar baz".into());
    spec.env.insert("MESOS_TASK_ID".into(), task.into());
    let started = rt.launch(&spec).await.expect("launch");
    assert_eq!(next_exit(&mut rx, task).await, Exit::Finished);
    let logs = String::from_utf8(rt.logs(task, None).await.unwrap()).unwrap();
    assert!(logs.contains("FOO is [bar baz]"), "{logs}");
    assert!(logs.contains(&format!("TASK is [{task}]")), "{logs}");
    let tail = String::from_utf8(rt.logs(task, Some(1)).await.unwrap()).unwrap();
    assert_eq!(tail.trim(), format!("TASK is [{task}]"));
    // An exited container is removed once reported.
    testkit::eventually_async("exited container removed", WAIT, || async {
        inspect(&started.handle, "{{.Id}}").is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_become_finished_or_failed() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("exit");
    let (rt, mut rx) = runtime(&guard).await;

    let mut d = docker_spec(image, &guard);
    d.cmd = sh("exit 3");
    rt.launch(&launch("test_exit.instance-1._app.1", d))
        .await
        .expect("launch");
    assert_eq!(
        failed(next_exit(&mut rx, "test_exit.instance-1._app.1").await),
        "exited with code 3"
    );

    // `args` replace the image's command.
    let mut d = docker_spec(image, &guard);
    d.args = vec!["sh".into(), "-c".into(), "exit 0".into()];
    rt.launch(&launch("test_exit.instance-2._app.1", d))
        .await
        .expect("launch");
    assert_eq!(
        next_exit(&mut rx, "test_exit.instance-2._app.1").await,
        Exit::Finished
    );

    // A command that does not exist fails at start: a launch error.
    let mut d = docker_spec(image, &guard);
    d.args = vec!["/no/such/binary".into()];
    match rt.launch(&launch("test_exit.instance-3._app.1", d)).await {
        Err(RuntimeError::Launch(msg)) => assert!(msg.contains("no such file"), "{msg}"),
        other => panic!("expected a launch error, got {other:?}"),
    }
    assert!(
        guard.containers().is_empty(),
        "failed launches leave no container behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_says_so() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("oom");
    let (rt, mut rx) = runtime(&guard).await;
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("tail /dev/zero");
    let mut spec = launch("test_oom.instance-1._app.1", d);
    spec.mem_mib = 16.0;
    rt.launch(&spec).await.expect("launch");
    let message = failed(next_exit(&mut rx, "test_oom.instance-1._app.1").await);
    assert!(message.starts_with("OOM killed"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_sends_sigterm_then_sigkill_and_removes() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("kill");
    let (rt, mut rx) = runtime(&guard).await;

    // Traps SIGTERM: stops cleanly within the grace period.
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done");
    let polite = "test_kill.instance-1._app.1";
    let started = rt.launch(&launch(polite, d)).await.expect("launch");
    testkit::eventually_async("trap installed", WAIT, || async {
        let logs = rt.logs(polite, None).await.ok()?;
        String::from_utf8_lossy(&logs)
            .contains("ready")
            .then_some(())
    })
    .await;
    rt.kill(polite, Duration::from_secs(30))
        .await
        .expect("kill");
    assert_eq!(next_exit(&mut rx, polite).await, Exit::Killed);
    let logs = String::from_utf8(rt.logs(polite, None).await.unwrap()).unwrap();
    assert!(logs.contains("got TERM"), "{logs}");
    assert!(
        inspect(&started.handle, "{{.Id}}").is_none(),
        "container removed after kill"
    );

    // Ignores SIGTERM: SIGKILL after the grace period, still reported as Killed.
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("trap '' TERM; echo ready; while true; do sleep 0.1; done");
    let stubborn = "test_kill.instance-2._app.1";
    let started = rt.launch(&launch(stubborn, d)).await.expect("launch");
    testkit::eventually_async("trap installed", WAIT, || async {
        let logs = rt.logs(stubborn, None).await.ok()?;
        String::from_utf8_lossy(&logs)
            .contains("ready")
            .then_some(())
    })
    .await;
    rt.kill(stubborn, Duration::from_secs(1))
        .await
        .expect("kill");
    assert_eq!(next_exit(&mut rx, stubborn).await, Exit::Killed);
    assert!(
        inspect(&started.handle, "{{.Id}}").is_none(),
        "container removed after kill"
    );
    // Exactly once: killing again is a no-op with no second report.
    rt.kill(stubborn, Duration::from_secs(1))
        .await
        .expect("second kill");
    assert!(rx.try_recv().is_err(), "no second exit report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_a_launch_error() {
    if !require_docker() {
        return;
    }
    let guard = ContainerGuard::new("missing");
    let (rt, _rx) = runtime(&guard).await;
    let d = docker_spec("mdo-test/does-not-exist:1", &guard);
    match rt
        .launch(&launch("test_missing.instance-1._app.1", d))
        .await
    {
        Err(RuntimeError::Launch(msg)) => {
            assert!(msg.contains("mdo-test/does-not-exist:1"), "{msg}");
            assert!(
                msg.contains("not present locally and cannot be pulled"),
                "{msg}"
            );
        }
        other => panic!("expected a launch error, got {other:?}"),
    }
    assert!(guard.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_is_refused_unless_allowed() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("priv");
    let (rt, _rx) = runtime(&guard).await;
    let mut d = docker_spec(image, &guard);
    d.privileged = true;
    d.cmd = sh("sleep 3600");
    match rt.launch(&launch("test_priv.instance-1._app.1", d)).await {
        Err(RuntimeError::Launch(msg)) => assert!(msg.contains("privileged"), "{msg}"),
        other => panic!("expected a launch error, got {other:?}"),
    }
    assert!(guard.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_volumes_apply_inside() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("params");
    let (rt, _rx) = runtime(&guard).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.txt"), "from the host\n").unwrap();
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("sleep 3600");
    d.volumes = vec![VolumeMount {
        host_path: dir.path().to_string_lossy().into_owned(),
        container_path: "/data".into(),
        read_only: true,
    }];
    d.parameters = [
        ("add-host", "db.internal:10.9.8.7"),
        ("hostname", "box"),
        ("user", "65534"),
        ("workdir", "/www"),
        ("env", "EXTRA=yes"),
        ("label", "team=core"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let task = "test_params.instance-1._app.1";
    let started = rt.launch(&launch(task, d)).await.expect("launch");
    let t = Duration::from_secs(10);
    for check in [
        "grep -q '10.9.8.7.*db.internal' /etc/hosts",
        "[ \"$(hostname)\" = box ]",
        "[ \"$(id -u)\" = 65534 ]",
        "[ \"$(pwd)\" = /www ]",
        "[ \"$EXTRA\" = yes ]",
        "grep -q 'from the host' /data/note.txt",
        "! touch /data/other",
    ] {
        assert!(
            rt.exec_check(task, check, t).await.unwrap(),
            "inside the container: {check}"
        );
    }
    assert_eq!(
        inspect(&started.handle, "{{index .Config.Labels \"team\"}}").as_deref(),
        Some("core")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_check_runs_in_the_container_with_a_timeout() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("exec");
    let (rt, _rx) = runtime(&guard).await;
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("touch /tmp/inside; sleep 3600");
    let task = "test_exec.instance-1._app.1";
    rt.launch(&launch(task, d)).await.expect("launch");
    let t = Duration::from_secs(10);
    testkit::eventually_async("file made inside", WAIT, || async {
        rt.exec_check(task, "test -f /tmp/inside", t)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    assert!(!rt.exec_check(task, "exit 1", t).await.unwrap());
    assert!(!rt
        .exec_check(task, "sleep 30", Duration::from_millis(300))
        .await
        .unwrap());
    assert!(matches!(
        rt.exec_check("nope", "true", t).await,
        Err(RuntimeError::UnknownTask(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_healthcheck_folds_into_health_events() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox_with_healthcheck();
    let guard = ContainerGuard::new("health");
    let (rt, mut rx) = runtime(&guard).await;
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("touch /tmp/healthy; sleep 3600");
    let task = "test_health.instance-1._app.1";
    let started = rt.launch(&launch(task, d)).await.expect("launch");
    assert!(next_health(&mut rx, task).await, "healthy first");

    // A new runtime adopting the container reports the verdict so far, then
    // follows changes.
    drop(rt);
    let (rt, mut rx) = runtime(&guard).await;
    let known = [KnownTask {
        task_id: task.into(),
        app_id: "/test/app".into(),
        handle: started.handle.clone(),
        workload_is_docker: true,
    }];
    assert_eq!(
        rt.recover(&known).await.unwrap().adopted,
        vec![task.to_string()]
    );
    assert!(
        next_health(&mut rx, task).await,
        "still healthy after adoption"
    );
    let (ok, _) = docker_cli(&["exec", &started.handle, "rm", "/tmp/healthy"]);
    assert!(ok);
    assert!(!next_health(&mut rx, task).await, "then unhealthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_adopts_reports_gone_and_removes_only_our_orphans() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("recover");
    let (test_label, test_value) = guard.label();
    let (rt1, _rx1) = runtime(&guard).await;

    // A: keeps running across the restart, exits with 7 when told to.
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("while [ ! -f /tmp/stop ]; do sleep 0.1; done; exit 7");
    let a = "test_recover.instance-a._app.1";
    let a_started = rt1.launch(&launch(a, d)).await.expect("launch A");
    // B: dies while the manager is down.
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("sleep 3600");
    let b = "test_recover.instance-b._app.1";
    let b_started = rt1.launch(&launch(b, d)).await.expect("launch B");
    let a_started_at = inspect(&a_started.handle, "{{.State.StartedAt}}").unwrap();
    drop(rt1);

    assert!(docker_cli(&["kill", &b_started.handle]).0);
    // An orphan: our labels, unknown to the state.
    let manager_label = format!("mdo.manager={}", guard.id());
    let test_label_arg = format!("{test_label}={test_value}");
    let (ok, orphan) = docker_cli(&[
        "run",
        "-d",
        "--label",
        &manager_label,
        "--label",
        "mdo.task-id=test_recover.instance-o._app.1",
        "--label",
        &test_label_arg,
        image,
        "sleep",
        "3600",
    ]);
    assert!(ok);
    // Started by hand: no manager label. Never touched.
    let (ok, stranger) = docker_cli(&[
        "run",
        "-d",
        "--label",
        &test_label_arg,
        image,
        "sleep",
        "3600",
    ]);
    assert!(ok);

    let (rt2, mut rx2) = runtime(&guard).await;
    let known = [
        KnownTask {
            task_id: a.into(),
            app_id: "/test/app".into(),
            handle: a_started.handle.clone(),
            workload_is_docker: true,
        },
        KnownTask {
            task_id: b.into(),
            app_id: "/test/app".into(),
            handle: b_started.handle.clone(),
            workload_is_docker: true,
        },
        KnownTask {
            task_id: "test_recover.instance-c._app.1".into(),
            app_id: "/test/app".into(),
            handle: "0123456789ab".into(),
            workload_is_docker: true,
        },
        KnownTask {
            task_id: "cmd-task".into(),
            app_id: "/test/cmd".into(),
            handle: "4242".into(),
            workload_is_docker: false,
        },
    ];
    let recovery = rt2.recover(&known).await.expect("recover");
    assert_eq!(recovery.adopted, vec![a.to_string()]);
    assert_eq!(recovery.gone.len(), 2, "{recovery:?}");
    assert_eq!(recovery.gone[0].0, b);
    assert_eq!(
        failed(recovery.gone[0].1.clone()),
        "killed by signal 9 (exit code 137)"
    );
    assert_eq!(recovery.gone[1].0, "test_recover.instance-c._app.1");
    assert!(matches!(recovery.gone[1].1, Exit::Lost { .. }));
    assert_eq!(
        recovery.orphans_removed,
        vec!["test_recover.instance-o._app.1".to_string()]
    );

    // A: same container, not restarted.
    assert_eq!(
        rt2.container_id(a).as_deref(),
        Some(a_started.handle.as_str())
    );
    assert_eq!(
        inspect(&a_started.handle, "{{.State.StartedAt}}").as_deref(),
        Some(a_started_at.as_str())
    );
    assert_eq!(
        inspect(&a_started.handle, "{{.RestartCount}}").as_deref(),
        Some("0")
    );
    // B's dead container and the orphan are gone; the stranger still runs.
    assert!(inspect(&b_started.handle, "{{.Id}}").is_none());
    assert!(inspect(&orphan, "{{.Id}}").is_none());
    assert_eq!(
        inspect(&stranger, "{{.State.Running}}").as_deref(),
        Some("true")
    );

    // The adopted container is watched again: its exit is reported.
    assert!(docker_cli(&["exec", &a_started.handle, "touch", "/tmp/stop"]).0);
    assert_eq!(failed(next_exit(&mut rx2, a).await), "exited with code 7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_resources_and_bridge_gateway_come_from_the_engine() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("node");
    let (rt, _rx) = runtime(&guard).await;
    let res = rt.node_resources().await.expect("docker info");
    let (_, ncpu) = docker_cli(&["info", "--format", "{{.NCPU}}"]);
    assert_eq!(res.cpus, ncpu.parse::<f64>().unwrap());
    let (_, mem) = docker_cli(&["info", "--format", "{{.MemTotal}}"]);
    assert_eq!(res.mem_mib, mem.parse::<f64>().unwrap() / (1024.0 * 1024.0));

    let gw = bridge_gateway().await.expect("bridge gateway");
    assert!(gw.parse::<std::net::Ipv4Addr>().is_ok(), "{gw}");
    assert_eq!(rt.bridge_gateway().await.as_deref(), Some(gw.as_str()));
    // It is the default route of a bridge container.
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("sleep 3600");
    let task = "test_node.instance-1._app.1";
    rt.launch(&launch(task, d)).await.expect("launch");
    let check = format!("ip route | grep -q 'default via {gw} '");
    assert!(
        rt.exec_check(task, &check, Duration::from_secs(10))
            .await
            .unwrap(),
        "{check}"
    );
}

/// Removes a Docker network on drop.
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_network_gives_the_container_an_address_on_it() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("usernet");
    let (rt, mut rx) = runtime(&guard).await;
    let (ok, _) = docker_cli(&["network", "create", guard.id()]);
    assert!(ok, "create a user network");
    let _net = NetworkGuard(guard.id().to_string());
    let subnet = inspect_network(guard.id(), "{{range .IPAM.Config}}{{.Subnet}}{{end}}");
    let prefix: String = subnet.split('.').take(2).collect::<Vec<_>>().join(".");

    let mut d = docker_spec(image, &guard);
    d.network = DockerNetwork::User(guard.id().to_string());
    d.cmd = sh("exec httpd -f -p 8080 -h /www");
    d.ports = vec![PortBinding {
        host_port: None,
        container_port: 8080,
        protocol: "tcp".into(),
    }];
    let server = "test_usernet.instance-1._app.1";
    let started = rt.launch(&launch(server, d)).await.expect("launch");
    assert_eq!(started.ip_addresses.len(), 1, "{started:?}");
    let ip = started.ip_addresses[0].clone();
    assert!(ip.starts_with(&format!("{prefix}.")), "{ip} in {subnet}");

    // A second container on the same network reaches the first by its IP.
    let mut d = docker_spec(image, &guard);
    d.network = DockerNetwork::User(guard.id().to_string());
    d.cmd = Some(format!(
        "until wget -q -O - http://{ip}:8080/index.html; do sleep 0.2; done"
    ));
    let client = "test_usernet.instance-2._app.1";
    rt.launch(&launch(client, d)).await.expect("launch");
    assert_eq!(next_exit(&mut rx, client).await, Exit::Finished);
    let logs = String::from_utf8(rt.logs(client, None).await.unwrap()).unwrap();
    assert!(logs.contains("mdo-test v1"), "{logs}");

    // A network that does not exist is a launch error.
    let mut d = docker_spec(image, &guard);
    d.network = DockerNetwork::User(format!("{}-absent", guard.id()));
    match rt
        .launch(&launch("test_usernet.instance-3._app.1", d))
        .await
    {
        Err(RuntimeError::Launch(msg)) => assert!(msg.contains("not found"), "{msg}"),
        other => panic!("expected a launch error, got {other:?}"),
    }
}

fn inspect_network(name: &str, format: &str) -> String {
    let (ok, out) = docker_cli(&["network", "inspect", "--format", format, name]);
    assert!(ok, "inspect network {name}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_ports_are_published_per_protocol() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("udp");
    let (rt, _rx) = runtime(&guard).await;
    let port = testkit::free_port().unwrap();
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("sleep 3600");
    d.ports = vec![PortBinding {
        host_port: Some(port),
        container_port: 5353,
        protocol: "udp,tcp".into(),
    }];
    let started = rt
        .launch(&launch("test_udp.instance-1._app.1", d))
        .await
        .expect("launch");
    let bindings = inspect(&started.handle, "{{json .HostConfig.PortBindings}}").unwrap();
    let bindings: serde_json::Value = serde_json::from_str(&bindings).unwrap();
    for key in ["5353/udp", "5353/tcp"] {
        assert_eq!(bindings[key][0]["HostPort"], port.to_string(), "{bindings}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_waits_the_drain_delay_before_stopping() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("drain");
    let (tx, mut rx) = unbounded_channel();
    let mut config = DockerConfig::new(guard.id());
    config.drain_delay = Duration::from_secs(5);
    let rt = DockerRuntime::new(config, tx)
        .await
        .expect("Docker runtime");
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("sleep 3600");
    let task = "test_drain.instance-1._app.1";
    let started = rt.launch(&launch(task, d)).await.expect("launch");

    let kill = rt.kill(task, Duration::from_secs(1));
    tokio::pin!(kill);
    // Poll the kill once: it is now draining; the container still serves.
    tokio::select! {
        biased;
        _ = &mut kill => panic!("kill finished before its drain delay"),
        _ = std::future::ready(()) => {}
    }
    assert_eq!(
        inspect(&started.handle, "{{.State.Running}}").as_deref(),
        Some("true")
    );
    assert!(rx.try_recv().is_err(), "nothing reported while draining");
    kill.await.expect("kill");
    assert_eq!(next_exit(&mut rx, task).await, Exit::Killed);
    assert!(inspect(&started.handle, "{{.Id}}").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_racing_a_kill_is_reported_exactly_once() {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new("race");
    let (rt, mut rx) = runtime(&guard).await;
    for i in 0..4 {
        let mut d = docker_spec(image, &guard);
        d.cmd = sh("exit 3");
        let task = format!("test_race.instance-{i}._app.1");
        rt.launch(&launch(&task, d)).await.expect("launch");
        rt.kill(&task, Duration::from_secs(1)).await.expect("kill");
        // kill returns once the end is reported and cleaned up: one report.
        let exit = next_exit(&mut rx, &task).await;
        assert!(
            exit == Exit::Killed
                || exit
                    == Exit::Failed {
                        message: "exited with code 3".into()
                    },
            "{exit:?}"
        );
        assert!(rx.try_recv().is_err(), "a second report for {task}");
    }
    assert!(guard.containers().is_empty(), "every container removed");
}
