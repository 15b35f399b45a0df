//! Manager benchmarks, each beside a raw baseline measured in the same run:
//! - `GET /v2/apps?embed=apps.tasks` with 1,000 apps (p50/p99) vs a raw etcd
//!   range read of the same 1,000 app records;
//! - 100 command tasks to TASK_RUNNING (one app, instances 100: from the
//!   POST to the last TASK_RUNNING event on `/v2/events`) vs spawning the
//!   same 100 processes directly: the medians of `--rounds` rounds (each
//!   round ours, then raw);
//! - manager restart with 1,000 apps until it serves them vs a restart with
//!   no apps;
//! - idle RSS with 1,000 apps vs with none.
//!
//! `cargo build --release -p manager && cargo run --release -p bench --bin manager_bench`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bench::chain::{follow_events, Seen};
use bench::setup::{api_call, serve_manager, wait_no_tasks, Manager};
use bench::{report, report_latency, report_ms, rss_mib, Stats};
use clap::Parser;
use serde_json::{json, Value};
use testkit::{ChildGuard, Etcd};

#[derive(Parser)]
struct Args {
    /// Apps created for the list / restart / RSS figures.
    #[arg(long, env = "BENCH_APPS", default_value_t = 1000)]
    apps: usize,
    /// Tasks launched for the launch figure.
    #[arg(long, env = "BENCH_TASKS", default_value_t = 100)]
    tasks: usize,
    /// Launch rounds (ours, then raw, each round) for the launch figure.
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 5)]
    rounds: usize,
    /// Requests per side for the latency figure.
    #[arg(long, env = "BENCH_REQUESTS", default_value_t = 300)]
    requests: usize,
}

async fn start(bin: &Path, etcd: &Etcd, prefix: &str, data: &Path) -> Result<(Manager, Duration)> {
    let t0 = Instant::now();
    let (mut cmd, base) = bench::manager_command(bin, &etcd.endpoint(), data)?;
    cmd.args(["--internal-prefix", prefix, "--docker", "off"]);
    let m = serve_manager(cmd, base).await?;
    Ok((m, t0.elapsed()))
}

/// One app of `tasks` command tasks: from the POST until the last of their
/// TASK_RUNNING events arrives on the followed `/v2/events` stream (`seen`;
/// how Marathon clients learn it, and no polling load on the two cores the
/// launches need: polling the app every 2 ms, as this bench did up to
/// session 15, served ~100 tasks' JSON ~80 times per round); then the app is
/// deleted and its tasks are gone.
async fn launch_round(
    http: &reqwest::Client,
    base: &str,
    tasks: usize,
    round: usize,
    seen: &Seen,
) -> Result<Duration> {
    let id = format!("/bench/launch-{round}");
    // The task ids of `/bench/launch-<round>` (`ids::new_task_id`).
    let prefix = format!("bench_launch-{round}.");
    let t = Instant::now();
    let r = http
        .post(format!("{base}/v2/apps"))
        .json(&json!({"id": id, "cmd": "exec sleep 1000", "cpus": 0.001, "mem": 1, "instances": tasks, "portDefinitions": []}))
        .send()
        .await?;
    if r.status() != 201 {
        bail!("launch app: {}", r.status());
    }
    let last = loop {
        {
            let seen = seen.lock().unwrap();
            let running: Vec<Instant> = seen
                .iter()
                .filter(|(_, task, state)| task.starts_with(&prefix) && state == "TASK_RUNNING")
                .map(|(at, _, _)| *at)
                .collect();
            if running.len() >= tasks {
                break running.into_iter().max().unwrap_or(t);
            }
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("tasks did not start");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let took = last.duration_since(t);
    let (_, v) = api_call(
        http,
        base,
        reqwest::Method::GET,
        &format!("/v2/apps{id}"),
        None,
    )
    .await?;
    if v["app"]["tasksRunning"].as_u64() != Some(tasks as u64) {
        bail!(
            "{tasks} TASK_RUNNING events, but the app says {}",
            v["app"]["tasksRunning"]
        );
    }
    let r = http.delete(format!("{base}/v2/apps{id}")).send().await?;
    if r.status() != 200 {
        bail!("delete launch app: {}", r.status());
    }
    wait_no_tasks(http, base).await?;
    Ok(took)
}

/// The same number of processes spawned directly (the task's command line).
fn raw_round(tasks: usize) -> Result<Duration> {
    let t = Instant::now();
    let mut children = Vec::new();
    for _ in 0..tasks {
        children.push(ChildGuard::new(
            Command::new("/bin/sh")
                .args(["-c", "exec sleep 1000"])
                .spawn()?,
        ));
    }
    let took = t.elapsed();
    drop(children);
    Ok(took)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let bin = bench::sibling_binary("manager")?;
    let etcd = Etcd::start()?;
    let dir = tempfile::Builder::new()
        .prefix("manager-bench-")
        .tempdir()?;
    let http = reqwest::Client::new();

    // Empty-state baselines first: restart time and RSS with no apps.
    let (mut empty, _) = start(&bin, &etcd, "/bench/empty", &dir.path().join("empty")).await?;
    empty.stop();
    let (mut empty, empty_start) =
        start(&bin, &etcd, "/bench/empty", &dir.path().join("empty")).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty_rss = rss_mib(empty.guard.id()).unwrap_or(0.0);
    empty.stop();

    let data = dir.path().join("data");
    let (mut m, _) = start(&bin, &etcd, "/bench/main", &data).await?;
    // 1,000 apps (no instances), created through the API.
    for chunk in (0..args.apps).collect::<Vec<_>>().chunks(50) {
        let futs = chunk.iter().map(|i| {
            let http = http.clone();
            let url = format!("{}/v2/apps", m.base);
            async move {
                let body = json!({"id": format!("/bench/g{}/app-{i}", i % 10), "cmd": "sleep 1000", "cpus": 0.01, "mem": 8, "instances": 0,
                                  "labels": {"team": "bench"}, "env": {"A": "b"}});
                http.post(url).json(&body).send().await.map(|r| r.status().as_u16())
            }
        });
        for r in futures::future::join_all(futs).await {
            if r? != 201 {
                bail!("app creation failed");
            }
        }
    }

    // GET /v2/apps?embed=apps.tasks vs raw etcd range read.
    let mut ours = Vec::new();
    for _ in 0..args.requests {
        let t = Instant::now();
        let body = http
            .get(format!("{}/v2/apps?embed=apps.tasks", m.base))
            .send()
            .await?
            .bytes()
            .await?;
        ours.push(t.elapsed());
        if body.len() < 1000 {
            bail!("short answer");
        }
    }
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    let mut raw = Vec::new();
    for _ in 0..args.requests {
        let t = Instant::now();
        let r = client
            .get(
                "/bench/main/apps/",
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await?;
        raw.push(t.elapsed());
        if r.kvs().len() != args.apps {
            bail!("expected {} app records, got {}", args.apps, r.kvs().len());
        }
    }
    report_latency(
        &format!(
            "GET /v2/apps?embed=apps.tasks, {} apps (raw: etcd range)",
            args.apps
        ),
        &Stats::of(&ours),
        &Stats::of(&raw),
    );

    // 100 tasks to TASK_RUNNING vs 100 processes spawned directly, in
    // rounds, ours then raw each time; the medians are the figure.
    let mut ours_rounds = Vec::new();
    let mut raw_rounds = Vec::new();
    let seen: Seen = Default::default();
    let stream = follow_events(&m.base, seen.clone()).await?;
    for round in 0..args.rounds {
        let ours = launch_round(&http, &m.base, args.tasks, round, &seen).await?;
        if stream.ended() {
            bail!("the manager ended the event stream this bench follows");
        }
        let raw = raw_round(args.tasks)?;
        println!(
            "  launch round {}: ours {:.1} ms, raw {:.1} ms",
            round + 1,
            ours.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3
        );
        ours_rounds.push(ours);
        raw_rounds.push(raw);
    }
    report_ms(
        &format!(
            "{} command tasks to TASK_RUNNING, median of {} (raw: spawn directly)",
            args.tasks, args.rounds
        ),
        Stats::of(&ours_rounds).p50,
        Stats::of(&raw_rounds).p50,
    );

    // Idle RSS with 1,000 apps.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_mib(m.guard.id()).unwrap_or(0.0);

    // Restart with 1,000 apps until it serves them.
    m.stop();
    let (mut m2, restart) = start(&bin, &etcd, "/bench/main", &data).await?;
    let v: Value = http
        .get(format!("{}/v2/apps", m2.base))
        .send()
        .await?
        .json()
        .await?;
    let n = v["apps"].as_array().map_or(0, Vec::len);
    if n != args.apps {
        bail!("after restart {n} apps served, expected {}", args.apps);
    }
    report_ms(
        &format!(
            "restart until {} apps are served (raw: restart with none)",
            args.apps
        ),
        restart,
        empty_start,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_restarted = rss_mib(m2.guard.id()).unwrap_or(0.0);
    report(
        &format!("idle RSS, {} apps, after restart (raw: no apps)", args.apps),
        rss_restarted,
        empty_rss,
        "MiB",
    );
    report(
        &format!(
            "RSS, {} apps, after the runs above (raw: no apps)",
            args.apps
        ),
        rss,
        empty_rss,
        "MiB",
    );
    m2.stop();
    Ok(())
}
