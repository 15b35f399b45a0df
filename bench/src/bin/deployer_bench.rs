//! Deployer benchmarks, each beside a raw baseline measured in the same run:
//! - applying a 100-service document through `POST /deploy` to the real
//!   manager (instances 0: container start excluded) vs the same 100 app
//!   definitions (precomputed JSON) POSTed to `/v2/apps` with plain reqwest;
//! - `deployer render` of a 1,000-service document vs the same binary
//!   rendering one service (process start and I/O: the floor).
//!
//! Uses the release binaries next to this one:
//! `cargo build --release -p manager -p deployer && cargo run --release -p bench --bin deployer_bench`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bench::setup::deployer_stack;
use bench::{median, ms, report_ms};
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// Services in the applied document.
    #[arg(long, env = "BENCH_SERVICES", default_value_t = 100)]
    services: usize,
    /// Services in the rendered document.
    #[arg(long, env = "BENCH_RENDER_SERVICES", default_value_t = 1000)]
    render_services: usize,
    /// Rounds per side (the median is reported).
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 5)]
    rounds: usize,
}

fn document(services: usize, group: &str) -> String {
    let mut doc = String::from("deploy:\n");
    for i in 0..services {
        doc.push_str(&format!(
            "  svc-{i}:\n    cmd: sleep 3600\n    labels: [{group}]\n    instances: 0\n    ports: {{http: 8080}}\n    \
             environment: {{INDEX: \"{i}\"}}\n"
        ));
    }
    doc
}

fn render(deployer: &Path, file: &Path) -> Result<(Duration, Vec<Value>)> {
    let started = Instant::now();
    let out = Command::new(deployer)
        .arg("render")
        .arg(file)
        .stderr(Stdio::inherit())
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!("render failed");
    }
    Ok((took, serde_json::from_slice(&out.stdout)?))
}

async fn delete_all(http: &reqwest::Client, marathon: &str, ids: &[String]) -> Result<()> {
    for id in ids {
        http.delete(format!("{marathon}/v2/apps{id}?force=true"))
            .send()
            .await?
            .error_for_status()?;
    }
    // wait until the manager has forgotten them, so the next round starts clean
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http
            .get(format!("{marathon}/v2/apps"))
            .send()
            .await?
            .json()
            .await?;
        if v["apps"].as_array().is_some_and(|a| a.is_empty()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("apps not deleted in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let stack = deployer_stack("deployer-bench", false).await?;
    let (marathon, deployer_url) = (&stack.marathon, &stack.deployer);
    let (deployer_bin, dir) = (&stack.deployer_bin, &stack.dir);
    let http = reqwest::Client::new();

    // Apply N services: ours (POST /deploy) vs raw (N POST /v2/apps).
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    for round in 0..args.rounds {
        let doc = document(args.services, &format!("ours{round}"));
        let started = Instant::now();
        let resp = http
            .post(format!("{deployer_url}/deploy"))
            .header("Content-Type", "application/yaml")
            .body(doc)
            .send()
            .await?;
        let status = resp.status();
        let report: Value = resp.json().await?;
        ours.push(started.elapsed());
        if !status.is_success() {
            bail!("deploy failed: {report}");
        }
        let ids: Vec<String> = report["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["app_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), args.services);
        delete_all(&http, marathon, &ids).await?;

        // the same definitions, precomputed (rendering is not timed here)
        let file = dir.path().join(format!("raw{round}.yaml"));
        std::fs::write(&file, document(args.services, &format!("raw{round}")))?;
        let (_, apps) = render(deployer_bin, &file)?;
        let started = Instant::now();
        for app in &apps {
            http.post(format!("{marathon}/v2/apps"))
                .json(app)
                .send()
                .await?
                .error_for_status()?;
        }
        raw.push(started.elapsed());
        let ids: Vec<String> = apps
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        delete_all(&http, marathon, &ids).await?;
    }
    let (o, r) = (median(ours), median(raw));
    report_ms(
        &format!(
            "apply {} services (POST /deploy vs {} x POST /v2/apps)",
            args.services, args.services
        ),
        o,
        r,
    );

    // Render: 1,000 services vs one (the process floor).
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, document(args.render_services, "render"))?;
    let one = dir.path().join("one.yaml");
    std::fs::write(&one, document(1, "render"))?;
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..args.rounds {
        let (t, apps) = render(deployer_bin, &big)?;
        assert_eq!(apps.len(), args.render_services);
        ours.push(t);
        floor.push(render(deployer_bin, &one)?.0);
    }
    let (o, f) = (median(ours), median(floor));
    report_ms(
        &format!(
            "render {} services (deployer render vs 1 service)",
            args.render_services
        ),
        o,
        f,
    );
    println!(
        "render work alone (difference): {}",
        ms(o.saturating_sub(f))
    );
    Ok(())
}
