//! The deployer's dashboard (issue 17): loading `GET /` with 100 services,
//! each with one running command task and its registry record, beside the
//! raw baseline measured in the same run: the largest read the page makes,
//! `GET /v2/apps?embed=apps.tasks` from the manager. Also the page's live
//! part (`GET /dashboard/live`, what a page fetches after an event).
//!
//! Uses the release binaries next to this one:
//! `cargo build --release -p manager -p deployer --bins && cargo build --release -p bench --bin dashboard_bench && target/release/dashboard_bench`
//! (`--bins`: the manager needs `mdo-task-shim` beside it)

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::setup::{delete_apps, deployer_stack};
use bench::{report_latency, Stats};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Services on the page (one task each).
    #[arg(long, env = "BENCH_SERVICES", default_value_t = 100)]
    services: usize,
    /// Requests per series.
    #[arg(long, env = "BENCH_REQUESTS", default_value_t = 200)]
    requests: usize,
}

/// Times `requests` GETs of `url` (after a few to warm up); checks each is 200.
async fn series(http: &reqwest::Client, url: &str, requests: usize) -> Result<Stats> {
    let mut samples = Vec::with_capacity(requests);
    for i in 0..requests + 5 {
        let started = Instant::now();
        let resp = http.get(url).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() || body.is_empty() {
            bail!("GET {url}: {status}");
        }
        if i >= 5 {
            samples.push(took);
        }
    }
    Ok(Stats::of(&samples))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let stack = deployer_stack("dashboard-bench", true).await?;
    let (marathon, deployer) = (&stack.marathon, &stack.deployer);
    let http = reqwest::Client::new();

    // N services, one sleeping command task each, with a named port.
    let apps: Vec<Value> = (0..args.services)
        .map(|i| {
            json!({"id": format!("/bench/svc-{i}"), "cmd": "sleep 3600", "instances": 1,
                "cpus": 0.001, "mem": 1, "portDefinitions": [{"port": 0, "name": "http"}],
                "labels": {"SERVICE_NAME": format!("svc-{i}"), "SERVICE_GROUP": "bench"}})
        })
        .collect();
    // In lists of 30: one change is one etcd transaction (about 40 apps fit).
    for chunk in apps.chunks(30) {
        http.put(format!("{marathon}/v2/apps?force=true"))
            .json(chunk)
            .send()
            .await?
            .error_for_status()?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let tasks = loop {
        let v: Value = http
            .get(format!("{marathon}/v2/tasks?status=running"))
            .send()
            .await?
            .json()
            .await?;
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        if tasks.len() >= args.services {
            break tasks;
        }
        if Instant::now() > deadline {
            bail!("{} of {} tasks running", tasks.len(), args.services);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Their records, as the subscriber would write them.
    let registry =
        registry::Registry::connect(&registry::Settings::new([stack.etcd.endpoint()])).await?;
    for t in &tasks {
        let app_id = t["appId"].as_str().context("appId")?;
        let service = app_id.rsplit('/').next().unwrap_or_default();
        let record: registry::Instance = serde_json::from_value(json!({
            "service": service, "group": "bench", "labels": ["bench"],
            "container": t["id"], "app_id": app_id, "host": t["host"],
            "ports": {"http": {"external": t["ports"][0], "exposed": t["ports"][0]}},
            "state": "TASK_RUNNING", "healthy": null, "owner": "default",
        }))?;
        registry.put(&record).await?;
    }

    let page = format!("{deployer}/");
    let body = http.get(&page).send().await?.text().await?;
    let rows = body.matches("<tr class=\"svc ").count();
    if rows != args.services {
        bail!("the page shows {rows} services, not {}", args.services);
    }
    println!(
        "{} services, {} tasks, {} records; page {} bytes",
        args.services,
        tasks.len(),
        tasks.len(),
        body.len()
    );
    let raw = series(
        &http,
        &format!("{marathon}/v2/apps?embed=apps.tasks"),
        args.requests,
    )
    .await?;
    let ours = series(&http, &page, args.requests).await?;
    report_latency(
        &format!(
            "dashboard GET / with {} services (raw: GET /v2/apps?embed=apps.tasks)",
            args.services
        ),
        &ours,
        &raw,
    );
    let live = series(&http, &format!("{deployer}/dashboard/live"), args.requests).await?;
    report_latency(
        &format!(
            "dashboard GET /dashboard/live, {} services (raw: same)",
            args.services
        ),
        &live,
        &raw,
    );

    let ids: Vec<String> = apps
        .iter()
        .map(|a| a["id"].as_str().unwrap_or_default().to_string())
        .collect();
    // Best effort: the figures are printed already.
    let _ = delete_apps(&http, marathon, &ids).await;
    Ok(())
}
