//! What the Docker runtime tests share (`docker_runtime.rs`,
//! `docker_runtime_engine.rs`): specs, a runtime on the real engine, waiting
//! for its events, `docker` CLI checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use manager::runtime::docker::{DockerConfig, DockerRuntime, ExitSources};
use manager::runtime::{DockerSpec, Exit, LaunchSpec, RuntimeEvent, Workload};
use testkit::docker::ContainerGuard;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

pub const WAIT: Duration = Duration::from_secs(60);

pub fn docker_spec(image: &str, guard: &ContainerGuard) -> DockerSpec {
    let (k, v) = guard.label();
    DockerSpec {
        labels: [(k, v)].into_iter().collect(),
        ..DockerSpec::bridged(image)
    }
}

pub fn launch(task_id: &str, docker: DockerSpec) -> LaunchSpec {
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

pub fn sh(cmd: &str) -> Option<String> {
    Some(cmd.to_string())
}

pub async fn runtime(guard: &ContainerGuard) -> (DockerRuntime, UnboundedReceiver<RuntimeEvent>) {
    runtime_with(guard, ExitSources::All).await
}

/// A runtime learning exits only from `exits` (to prove one path alone).
pub async fn runtime_with(
    guard: &ContainerGuard,
    exits: ExitSources,
) -> (DockerRuntime, UnboundedReceiver<RuntimeEvent>) {
    let (tx, rx) = unbounded_channel();
    let mut config = DockerConfig::new(guard.id());
    config.exit_sources = exits;
    config.containerd_socket = manager::runtime::docker::containerd::detect_socket(None);
    let rt = DockerRuntime::new(config, tx)
        .await
        .expect("Docker runtime");
    (rt, rx)
}

/// The next `Exited` for `task_id` (other events are skipped).
pub async fn next_exit(rx: &mut UnboundedReceiver<RuntimeEvent>, task_id: &str) -> Exit {
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

pub async fn next_health(rx: &mut UnboundedReceiver<RuntimeEvent>, task_id: &str) -> bool {
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

pub fn docker_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Starts `sleep 3600` in `image` by hand (`docker run -d`, each of
/// `labels` as a `--label key=value`), as something other than the runtime
/// would; the container's id.
pub fn run_by_hand(image: &str, labels: &[&str]) -> String {
    let mut args = vec!["run", "-d"];
    for label in labels {
        args.extend(["--label", label]);
    }
    args.extend([image, "sleep", "3600"]);
    let (ok, id) = docker_cli(&args);
    assert!(ok, "docker {args:?}: {id}");
    id
}

pub fn inspect(container: &str, format: &str) -> Option<String> {
    let (ok, out) = docker_cli(&["inspect", "--format", format, container]);
    ok.then_some(out)
}

pub async fn http_get(port: u16, path: &str) -> Option<String> {
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

pub fn failed(exit: Exit) -> String {
    match exit {
        Exit::Failed { message } => message,
        other => panic!("expected Failed, got {other:?}"),
    }
}
