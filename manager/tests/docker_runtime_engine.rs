//! The Docker runtime against the real engine: a restarted runtime adopts
//! its containers, the engine's resources and bridge gateway, user networks,
//! UDP ports. Under `CI=true` a missing engine fails these tests.

mod docker_harness;

use std::process::Command;
use std::time::Duration;

use manager::runtime::docker::bridge_gateway;
use manager::runtime::{DockerNetwork, Exit, KnownTask, PortBinding, Runtime, RuntimeError};
use testkit::docker::{require_docker, ContainerGuard};

use docker_harness::*;

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
    let orphan = run_by_hand(
        image,
        &[
            &manager_label,
            "mdo.task-id=test_recover.instance-o._app.1",
            &test_label_arg,
        ],
    );
    // Started by hand: no manager label. Never touched.
    let stranger = run_by_hand(image, &[&test_label_arg]);

    let (rt2, mut rx2) = runtime(&guard).await;
    // What the state knows: A and B, C whose container never existed, and
    // a command task (not the Docker runtime's).
    let known = |task_id: &str, app_id: &str, handle: &str, workload_is_docker| KnownTask {
        task_id: task_id.into(),
        app_id: app_id.into(),
        handle: handle.into(),
        workload_is_docker,
    };
    let known = [
        known(a, "/test/app", &a_started.handle, true),
        known(b, "/test/app", &b_started.handle, true),
        known(
            "test_recover.instance-c._app.1",
            "/test/app",
            "0123456789ab",
            true,
        ),
        known("cmd-task", "/test/cmd", "4242", false),
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
