//! Docker runtime benchmarks, each beside a raw bollard baseline measured in
//! the same run:
//! - N containers to running through `DockerRuntime::launch` vs creating and
//!   starting the same containers with bollard directly (target ratio <= 1.2);
//! - adopting M running containers with a fresh runtime's `recover` vs just
//!   listing them with bollard;
//! - kill -9 of the manager *binary* with M running containers, restarted on
//!   the same etcd, until `/v2/tasks` serves all M adopted (same task ids,
//!   same container ids and `State.StartedAt`: zero restarts; target <= 3 s)
//!   vs listing the same M containers with bollard.
//!
//! Needs a Docker engine and the manager binary built beside this one; builds
//! its busybox image locally (no registry).
//! `CARGO_TARGET_DIR=/work/target-release cargo build --release -p bench -p manager`
//! then `/work/target-release/release/docker_bench --containers 20 --adopt 50`

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions,
};
use bollard::models::{ContainerSummary, HostConfig};
use bollard::Docker;
use clap::Parser;
use futures::future::try_join_all;
use manager::runtime::docker::{DockerConfig, DockerRuntime};
use manager::runtime::{DockerNetwork, DockerSpec, KnownTask, LaunchSpec, Runtime, Workload};
use serde_json::{json, Value};
use testkit::docker::ContainerGuard;
use testkit::{ChildGuard, Etcd};

#[derive(Parser)]
struct Args {
    /// Containers started per round.
    #[arg(long, env = "BENCH_CONTAINERS", default_value_t = 20)]
    containers: usize,
    /// Rounds per side (the median round is reported).
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// Running containers a restarted runtime adopts.
    #[arg(long, env = "BENCH_ADOPT", default_value_t = 50)]
    adopt: usize,
}

const LABEL: &str = "mdo.bench";

fn spec(run: &str, i: usize, image: &str) -> LaunchSpec {
    LaunchSpec {
        task_id: format!("bench_{run}.instance-{i}._app.1"),
        app_id: "/bench".into(),
        app_version: "2026-11-22T10:00:00.000Z".into(),
        env: BTreeMap::from([("BENCH".to_string(), i.to_string())]),
        cpus: 0.1,
        mem_mib: 32.0,
        kill_grace: Duration::from_secs(1),
        workload: Workload::Docker(DockerSpec {
            image: image.into(),
            force_pull: false,
            privileged: false,
            cmd: Some("sleep 3600".into()),
            args: vec![],
            parameters: vec![],
            network: DockerNetwork::Bridge,
            ports: vec![],
            volumes: vec![],
            labels: BTreeMap::from([(LABEL.to_string(), run.to_string())]),
        }),
    }
}

async fn raw_round(docker: &Docker, run: &str, n: usize, image: &str) -> Result<Duration> {
    let t0 = Instant::now();
    try_join_all((0..n).map(|i| async move {
        let config = Config {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["/bin/sh".to_string()]),
            cmd: Some(vec!["-c".to_string(), "sleep 3600".to_string()]),
            env: Some(vec![format!("BENCH={i}")]),
            labels: Some(HashMap::from([(LABEL.to_string(), run.to_string())])),
            host_config: Some(HostConfig {
                memory: Some(32 << 20),
                memory_swap: Some(32 << 20),
                cpu_shares: Some(102),
                network_mode: Some("bridge".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("raw-{run}-{i}");
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name,
                    platform: None,
                }),
                config,
            )
            .await?;
        docker.start_container::<String>(&created.id, None).await?;
        Ok::<_, bollard::errors::Error>(())
    }))
    .await
    .context("raw create+start")?;
    Ok(t0.elapsed())
}

async fn ours_round(rt: &DockerRuntime, run: &str, n: usize, image: &str) -> Result<Duration> {
    let specs: Vec<LaunchSpec> = (0..n).map(|i| spec(run, i, image)).collect();
    let t0 = Instant::now();
    try_join_all(specs.iter().map(|s| rt.launch(s)))
        .await
        .context("DockerRuntime::launch")?;
    Ok(t0.elapsed())
}

async fn cleanup(docker: &Docker, run: &str) -> Result<()> {
    let ids = list(docker, run).await?;
    try_join_all(ids.iter().map(|id| {
        docker.remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
    }))
    .await?;
    Ok(())
}

async fn list(docker: &Docker, run: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL}={run}")])]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let image = testkit::images::busybox();
    let docker = Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    let manager_id = format!("bench-{}", std::process::id());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = DockerRuntime::new(DockerConfig::new(&manager_id), tx).await?;

    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Alternate the order so neither side always runs on a warmer engine.
        let (r, o) = (
            format!("{manager_id}-raw{round}"),
            format!("{manager_id}-ours{round}"),
        );
        if round % 2 == 0 {
            raw.push(raw_round(&docker, &r, args.containers, image).await?);
            cleanup(&docker, &r).await?;
            ours.push(ours_round(&rt, &o, args.containers, image).await?);
            cleanup(&docker, &o).await?;
        } else {
            ours.push(ours_round(&rt, &o, args.containers, image).await?);
            cleanup(&docker, &o).await?;
            raw.push(raw_round(&docker, &r, args.containers, image).await?);
            cleanup(&docker, &r).await?;
        }
    }
    let (o, r) = (bench::median(ours), bench::median(raw));
    bench::report_ms(
        &format!(
            "{} containers to running (median of {} rounds)",
            args.containers, args.rounds
        ),
        o,
        r,
    );

    // Adoption after a restart: launch M, drop the runtime, recover.
    let run = format!("{manager_id}-adopt");
    let specs: Vec<LaunchSpec> = (0..args.adopt).map(|i| spec(&run, i, image)).collect();
    let started = try_join_all(specs.iter().map(|s| rt.launch(s))).await?;
    let known: Vec<KnownTask> = specs
        .iter()
        .zip(&started)
        .map(|(s, st)| KnownTask {
            task_id: s.task_id.clone(),
            app_id: s.app_id.clone(),
            handle: st.handle.clone(),
            workload_is_docker: true,
        })
        .collect();
    drop(rt);
    let t0 = Instant::now();
    let (tx, _rx2) = tokio::sync::mpsc::unbounded_channel();
    let rt2 = DockerRuntime::new(DockerConfig::new(&manager_id), tx).await?;
    let recovery = rt2.recover(&known).await?;
    let adopt = t0.elapsed();
    let t0 = Instant::now();
    let listed = list(&docker, &run).await?;
    let list_time = t0.elapsed();
    anyhow::ensure!(
        recovery.adopted.len() == args.adopt,
        "adopted {} of {}",
        recovery.adopted.len(),
        args.adopt
    );
    anyhow::ensure!(
        listed.len() == args.adopt,
        "listed {} of {}",
        listed.len(),
        args.adopt
    );
    bench::report_ms(
        &format!("adopt {} running containers (raw: list them)", args.adopt),
        adopt,
        list_time,
    );
    drop(rt2);
    cleanup(&docker, &run).await?;

    binary_restart(&docker, image, args.adopt).await
}

/// Starts the manager binary (Docker on, drain delay 0) on this etcd.
fn start_manager(bin: &Path, etcd: &Etcd, data: &Path) -> Result<(ChildGuard, String)> {
    let (mut cmd, base) = bench::manager_command(bin, &etcd.endpoint(), data)?;
    let child = cmd
        .args(["--docker", "on", "--drain-delay", "0"])
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok((ChildGuard::new(child), base))
}

/// Task ids in TASK_RUNNING served by `/v2/tasks` (None: not answering yet).
async fn running_tasks(http: &reqwest::Client, base: &str) -> Option<Vec<String>> {
    let r = http.get(format!("{base}/v2/tasks")).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    let mut ids: Vec<String> = v["tasks"]
        .as_array()?
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    Some(ids)
}

/// task id -> (container id, State.StartedAt) of every container carrying
/// `mdo.manager=<manager_id>`, and how many there are.
async fn containers_of(
    docker: &Docker,
    manager_id: &str,
) -> Result<(BTreeMap<String, (String, String)>, usize)> {
    let list = listed_by_manager(docker, manager_id).await?;
    let count = list.len();
    let mut out = BTreeMap::new();
    for c in list {
        let id = c.id.unwrap_or_default();
        let task = c
            .labels
            .unwrap_or_default()
            .get("mdo.task-id")
            .cloned()
            .unwrap_or_default();
        let info = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await?;
        let started = info.state.and_then(|s| s.started_at).unwrap_or_default();
        out.insert(task, (id, started));
    }
    Ok((out, count))
}

/// kill -9 of the manager binary with `n` running containers, restart on the
/// same etcd, until `/v2/tasks` serves all `n` again (recovery runs before
/// the API binds, so served = adopted). Zero restarts is checked, not assumed.
async fn binary_restart(docker: &Docker, image: &str, n: usize) -> Result<()> {
    let bin = bench::sibling_binary("manager")?;
    // The guard's id is the manager's identity: every container it creates
    // is removed on exit, error or not.
    let guard = ContainerGuard::new("bench-restart");
    let etcd = Etcd::start()?;
    let data = std::env::temp_dir().join(format!("docker-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let mut kv = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    kv.put("/mdo/manager/meta/manager-id", guard.id(), None)
        .await?;
    let http = reqwest::Client::new();

    let (mut first, base) = start_manager(&bin, &etcd, &data)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_tasks(&http, &base).await.is_none() {
        if Instant::now() > deadline {
            bail!("the manager did not serve within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = http
        .post(format!("{base}/v2/apps"))
        .json(
            &json!({"id": "/bench/adopt", "cmd": "exec sleep 3600", "cpus": 0.01, "mem": 8,
            "instances": n,
            "container": {"type": "DOCKER", "docker": {"image": image}},
            "networks": [{"mode": "container/bridge"}]}),
        )
        .send()
        .await?;
    if r.status() != 201 {
        bail!("POST /v2/apps: {} {}", r.status(), r.text().await?);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let before = loop {
        if let Some(ids) = running_tasks(&http, &base)
            .await
            .filter(|ids| ids.len() == n)
        {
            break ids;
        }
        if Instant::now() > deadline {
            bail!("{n} containers did not reach TASK_RUNNING within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (seen_before, count) = containers_of(docker, guard.id()).await?;
    if count != n || seen_before.keys().cloned().collect::<Vec<_>>() != before {
        bail!("expected {n} containers matching the tasks, found {count}");
    }

    // kill -9, restart, poll /v2/tasks until all n are served again.
    first.kill();
    let t0 = Instant::now();
    let (second, base) = start_manager(&bin, &etcd, &data)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if running_tasks(&http, &base).await.as_ref() == Some(&before) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the restarted manager did not serve the {n} tasks within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ours = t0.elapsed();
    let t0 = Instant::now();
    let listed = listed_by_manager(docker, guard.id()).await?.len();
    let raw = t0.elapsed();
    if listed != n {
        bail!("listed {listed} of {n}");
    }
    let (seen_after, count) = containers_of(docker, guard.id()).await?;
    let restarted = seen_before
        .iter()
        .filter(|(task, v)| seen_after.get(*task) != Some(*v))
        .count();
    if count != n || restarted != 0 {
        bail!("after the restart: {count} containers, {restarted} restarted or replaced");
    }
    bench::report_ms(
        &format!("manager kill -9 + restart, {n} containers adopted"),
        ours,
        raw,
    );
    println!(
        "  (raw: bollard list of the same {n}; zero restarts: {n} container ids and StartedAt unchanged; target <= 3000 ms)"
    );
    drop(second);
    drop(guard);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// Every container (running or not) labelled `mdo.manager=<manager_id>`.
async fn listed_by_manager(docker: &Docker, manager_id: &str) -> Result<Vec<ContainerSummary>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("mdo.manager={manager_id}")],
    )]);
    Ok(docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await?)
}
