//! Docker runtime benchmarks, each beside a raw bollard baseline measured in
//! the same run:
//! - N containers to running through `DockerRuntime::launch` vs creating and
//!   starting the same containers with bollard directly (target ratio <= 1.2);
//! - adopting M running containers with a fresh runtime's `recover` vs just
//!   listing them with bollard.
//!
//! Needs a Docker engine; builds its busybox image locally (no registry).
//! `cargo run --release -p bench --bin docker_bench -- --containers 20`

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::models::HostConfig;
use bollard::Docker;
use clap::Parser;
use futures::future::try_join_all;
use manager::runtime::docker::{DockerConfig, DockerRuntime};
use manager::runtime::{DockerNetwork, DockerSpec, KnownTask, LaunchSpec, Runtime, Workload};

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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

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
    let (o, r) = (median(ours), median(raw));
    bench::report(
        &format!(
            "{} containers to running (median of {} rounds)",
            args.containers, args.rounds
        ),
        o.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        "ms",
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
    bench::report(
        &format!("adopt {} running containers (raw: list them)", args.adopt),
        adopt.as_secs_f64() * 1e3,
        list_time.as_secs_f64() * 1e3,
        "ms",
    );
    drop(rt2);
    cleanup(&docker, &run).await?;
    Ok(())
}
