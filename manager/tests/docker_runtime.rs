//! The Docker runtime against the real engine, with locally built busybox
//! images: launches, ports, environment, logs, exits, kills, health. Under
//! `CI=true` a missing engine fails these tests. Adoption, engine resources
//! and networks are in `docker_runtime_engine.rs`.

mod docker_harness;

use std::time::Duration;

use manager::runtime::docker::{DockerConfig, DockerRuntime, ExitSources};
use manager::runtime::{
    DockerNetwork, Exit, KnownTask, PortBinding, Runtime, RuntimeError, VolumeMount,
};
use testkit::docker::{require_docker, ContainerGuard};
use tokio::sync::mpsc::unbounded_channel;

use docker_harness::*;

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

/// A container killed from outside (`docker kill`), seen by one exit path
/// alone: reported once, with the signal, and the container removed.
async fn killed_from_outside(exits: ExitSources, name: &str) {
    if !require_docker() {
        return;
    }
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new(name);
    let (rt, mut rx) = runtime_with(&guard, exits).await;
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("sleep 300");
    let task = format!("test_{name}.instance-1._app.1");
    let started = rt.launch(&launch(&task, d)).await.expect("launch");
    let (killed, _) = docker_cli(&["kill", &started.handle]);
    assert!(killed, "docker kill");
    let exit = next_exit(&mut rx, &task).await;
    assert_eq!(failed(exit), "killed by signal 9 (exit code 137)");
    testkit::eventually_async("container removed", WAIT, || async {
        inspect(&started.handle, "{{.Id}}").is_none().then_some(())
    })
    .await;
    assert!(rx.try_recv().is_err(), "a second report for {task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_from_outside_is_reported_by_the_die_event() {
    killed_from_outside(ExitSources::EventsOnly, "dieevent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_events_the_wait_reports_the_same_exit() {
    killed_from_outside(ExitSources::WaitOnly, "waitonly").await;
}

/// This engine's containerd socket; None (the test skips) only outside CI.
fn require_containerd() -> Option<std::path::PathBuf> {
    if !require_docker() {
        return None;
    }
    let socket = manager::runtime::docker::containerd::detect_socket(None);
    if socket.is_none() {
        assert!(
            !testkit::in_ci(),
            "CI=true but no containerd socket at {:?}: the containerd exit path must be tested",
            manager::runtime::docker::containerd::DEFAULT_SOCKETS
        );
        eprintln!("note: no containerd socket; skipping the containerd exit-path test");
    }
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_from_outside_is_reported_by_containerds_exit_event() {
    if require_containerd().is_some() {
        killed_from_outside(ExitSources::ContainerdOnly, "ctrdexit").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_exits_carry_exit_codes_and_oom() {
    if require_containerd().is_some() {
        exit_codes_and_oom(ExitSources::ContainerdOnly, "ctrdcode").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_from_outside_is_reported_by_the_containers_process() {
    if require_docker() {
        killed_from_outside(ExitSources::ProcessOnly, "procexit").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_containers_process_carries_exit_codes_and_oom() {
    if require_docker() {
        exit_codes_and_oom(ExitSources::ProcessOnly, "proccode").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn die_events_carry_exit_codes_and_oom() {
    if require_docker() {
        exit_codes_and_oom(ExitSources::EventsOnly, "diecode").await;
    }
}

/// Exit 3 and an OOM kill, seen by one exit path alone.
async fn exit_codes_and_oom(exits: ExitSources, name: &str) {
    let image = testkit::images::busybox();
    let guard = ContainerGuard::new(name);
    let (rt, mut rx) = runtime_with(&guard, exits).await;
    let mut d = docker_spec(image, &guard);
    d.cmd = sh("exit 3");
    let task = format!("test_{name}.instance-1._app.1");
    rt.launch(&launch(&task, d)).await.expect("launch");
    assert_eq!(
        failed(next_exit(&mut rx, &task).await),
        "exited with code 3"
    );

    let mut d = docker_spec(image, &guard);
    d.cmd = sh("tail /dev/zero");
    let task = format!("test_{name}.instance-2._app.1");
    let mut spec = launch(&task, d);
    spec.mem_mib = 16.0;
    rt.launch(&spec).await.expect("launch");
    let message = failed(next_exit(&mut rx, &task).await);
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
