//! Issue 16 item 3: one busy node. 500 apps with 5,000 command tasks
//! (`sleep`) on this machine, the subscriber and a few watchers running
//! (`bench::chain`). Each figure beside its raw baseline from the same run:
//!
//! - launch of every task (`PUT /v2/apps` of 50 apps at a time: one change
//!   is one etcd transaction, at most 128 operations) until the last
//!   TASK_RUNNING event, and until the last record is in etcd, vs spawning
//!   the same number of `sleep` processes directly;
//! - manager and subscriber RSS;
//! - `GET /v2/apps?embed=apps.tasks` and `GET /v2/tasks` p50 / p99, vs one
//!   etcd read of the manager's whole state;
//! - event → record p99 while 100 apps scale by one, vs raw etcd put → watch;
//! - a kill -9 of the manager until `/v2/tasks` serves every task again, vs
//!   one etcd read of the manager's state;
//! - a full `/cleanup` with nothing to change, vs one etcd read of the records;
//! - nothing lost: processes == running tasks == records at the end (exit 1
//!   otherwise).
//!
//! ```sh
//! cargo build --release -p bench -p manager -p subscriber -p watcher --bins
//! target/release/scale            # 500 apps x 10 tasks
//! ```

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::chain::{
    first, follow_events, follow_records, rss, Chain, ChainOptions, Seen, StreamEnded, WatcherSpec,
};
use bench::setup::ManagerApi;
use bench::{report, report_latency, Stats};
use clap::Parser;
use etcd_client::{GetOptions, WatchOptions};
use serde_json::{json, Value};

/// 500 apps and 5,000 command tasks on one node, every figure beside its
/// raw baseline.
#[derive(Debug, Parser)]
#[command(name = "scale")]
struct Args {
    /// Apps to run.
    #[arg(long, env = "SCALE_APPS", default_value_t = 500)]
    apps: usize,
    /// Tasks per app.
    #[arg(long, env = "SCALE_PER_APP", default_value_t = 10)]
    per_app: u64,
    /// Apps that scale by one while event -> record is measured.
    #[arg(long, env = "SCALE_SCALING", default_value_t = 100)]
    scaling: usize,
    /// Samples of each listing and raw read.
    #[arg(long, env = "SCALE_SAMPLES", default_value_t = 100)]
    samples: usize,
    /// Watcher processes (each watches three of the services).
    #[arg(long, env = "SCALE_WATCHERS", default_value_t = 3)]
    watchers: usize,
    /// Longest wait for any one phase, in seconds.
    #[arg(long, env = "SCALE_DEADLINE_SECONDS", default_value_t = 600)]
    deadline_seconds: u64,
    /// Copy the chain's logs into this folder at the end.
    #[arg(long, env = "SCALE_LOGS")]
    logs: Option<std::path::PathBuf>,
}

fn app_id(i: usize) -> String {
    format!("/scale/s{i}")
}

fn app(i: usize, instances: u64) -> Value {
    json!({
        "id": app_id(i), "instances": instances, "cpus": 0.001, "mem": 1,
        "cmd": "exec sleep 100000",
        "portDefinitions": [],
        "taskKillGracePeriodSeconds": 1,
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls `done` every 10 ms until it holds or `deadline` passes.
async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut done: F) -> Result<Instant>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let end = Instant::now() + deadline;
    loop {
        if done().await? {
            return Ok(Instant::now());
        }
        if Instant::now() > end {
            bail!("{what}: not within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fails when the bench's own event stream ended: the manager cut it off
/// (it fell more than the manager's outstanding-event limit behind) or went
/// away, so the events it saw are incomplete and waiting on them would hang.
fn followed(stream: &StreamEnded) -> Result<()> {
    if stream.ended() {
        bail!("the bench's /v2/events stream ended (cut off by the manager as too slow, or the manager went away; see the manager's log)");
    }
    Ok(())
}

/// Distinct tasks that reached TASK_RUNNING in the manager's events.
fn running_seen(events: &Seen) -> HashSet<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, s)| s == "TASK_RUNNING")
        .map(|(_, id, _)| id.clone())
        .collect()
}

async fn count(kv: &mut etcd_client::Client, prefix: &str) -> Result<usize> {
    let r = kv
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    Ok(r.count() as usize)
}

/// Apps per `PUT /v2/apps`: a change is one etcd transaction, and 50 apps
/// stay under etcd's default 128 operations.
const APPS_PER_PUT: usize = 50;

/// `PUT /v2/apps` of `apps`, [`APPS_PER_PUT`] at a time.
async fn put_apps(chain: &Chain, apps: Vec<Value>) -> Result<()> {
    for chunk in apps.chunks(APPS_PER_PUT) {
        let (s, v) = chain
            .api(
                reqwest::Method::PUT,
                "/v2/apps",
                Some(&Value::Array(chunk.to_vec())),
            )
            .await?;
        if s != 200 && s != 201 {
            bail!("PUT /v2/apps ({} apps): {s} {v}", chunk.len());
        }
    }
    Ok(())
}

/// One full read of a prefix (the raw baseline of the listings).
async fn read_all(kv: &mut etcd_client::Client, prefix: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let r = kv
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let took = t0.elapsed();
    if r.kvs().is_empty() {
        bail!("nothing under {prefix}");
    }
    Ok(took)
}

async fn get_timed(chain: &Chain, path: &str) -> Result<(Duration, Value)> {
    let t0 = Instant::now();
    let r = chain
        .http
        .get(format!("{}{path}", chain.manager_url))
        .send()
        .await?;
    let status = r.status();
    let body = r.bytes().await?;
    let took = t0.elapsed();
    if !status.is_success() {
        bail!("GET {path}: {status}");
    }
    Ok((took, serde_json::from_slice(&body)?))
}

/// Running tasks as `/v2/tasks` lists them.
async fn served(chain: &Chain) -> Result<usize> {
    let (_, v) = get_timed(chain, "/v2/tasks").await?;
    Ok(v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .count())
}

/// Raw etcd put -> watch, one key at a time.
async fn raw_put_watch(endpoint: &str, n: usize) -> Result<Vec<Duration>> {
    let mut kv = etcd_client::Client::connect([endpoint], None).await?;
    let mut w = etcd_client::Client::connect([endpoint], None).await?;
    let (_watcher, mut stream) = w
        .watch("/bench-raw/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        kv.put(format!("/bench-raw/{i}"), "x", None).await?;
        loop {
            let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .context("raw watch")??
                .context("raw watch ended")?;
            if resp.events().iter().any(|e| {
                e.kv()
                    .is_some_and(|k| k.key() == format!("/bench-raw/{i}").as_bytes())
            }) {
                break;
            }
        }
        out.push(t0.elapsed());
    }
    kv.delete(
        "/bench-raw/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    Ok(out)
}

/// Spawns `n` `sleep` processes directly; the time until the last spawn returned.
fn raw_spawn(n: usize) -> Result<Duration> {
    let t0 = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(
            std::process::Command::new("sleep")
                .arg("100000")
                .stdin(std::process::Stdio::null())
                .spawn()
                .context("spawning sleep")?,
        );
    }
    let took = t0.elapsed();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(took)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let deadline = Duration::from_secs(args.deadline_seconds);
    let total = args.apps * args.per_app as usize;
    let watchers = (0..args.watchers)
        .map(|w| WatcherSpec {
            watch: (0..3)
                .map(|k| format!("s{}", (w * 3 + k) % args.apps.max(1)))
                .collect::<Vec<_>>()
                .join(","),
            exec: "true".into(),
        })
        .collect();
    let mut chain = Chain::start(ChainOptions {
        docker: false,
        watchers,
        log_level: None,
    })
    .await?;
    let events: Seen = Seen::default();
    let records: Seen = Seen::default();
    let stream = follow_events(&chain.manager_url, events.clone()).await?;
    follow_records(&chain.etcd.endpoint(), records.clone()).await?;
    let mut kv = etcd_client::Client::connect([chain.etcd.endpoint()], None).await?;
    println!(
        "scale: {} apps x {} tasks = {total} command tasks, {} watchers; load average at start {}",
        args.apps,
        args.per_app,
        args.watchers,
        load()
    );
    // A Ctrl-C or SIGTERM ends the run through the same path as a failure,
    // so the chain's drop kills every task this run started (else thousands
    // of `sleep`s outlive it and skew the next run).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        r = run(&args, &mut chain, &events, &stream, &records, &mut kv, total, deadline) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated")),
    };
    if let Some(to) = &args.logs {
        chain.copy_logs(to)?;
    }
    println!("load average at end {}", load());
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run(
    args: &Args,
    chain: &mut Chain,
    events: &Seen,
    stream: &StreamEnded,
    records: &Seen,
    kv: &mut etcd_client::Client,
    total: usize,
    deadline: Duration,
) -> Result<()> {
    let records_prefix = format!("{}/", registry::DEFAULT_PREFIX);
    let state_prefix = "/mdo/manager/";

    // Launch: ours, then the raw spawn of as many processes.
    let apps: Vec<Value> = (0..args.apps).map(|i| app(i, args.per_app)).collect();
    let t0 = Instant::now();
    put_apps(chain, apps).await?;
    let all_running = wait_until("every task TASK_RUNNING", deadline, || async {
        followed(stream)?;
        Ok(running_seen(events).len() >= total)
    })
    .await?;
    let all_records = wait_until("every record in etcd", deadline, || {
        let mut kv = kv.clone();
        let prefix = records_prefix.clone();
        async move { Ok(count(&mut kv, &prefix).await? >= total) }
    })
    .await?;
    let raw_launch = raw_spawn(total)?;
    println!();
    report(
        &format!("launch {total} tasks -> last TASK_RUNNING (raw: spawn them)"),
        (all_running - t0).as_secs_f64(),
        raw_launch.as_secs_f64(),
        "s",
    );
    report(
        &format!("launch {total} tasks -> last record in etcd (raw: spawn them)"),
        (all_records - t0).as_secs_f64(),
        raw_launch.as_secs_f64(),
        "s",
    );
    println!(
        "{:<58} manager {:>8.1} MiB   subscriber {:>8.1} MiB",
        "RSS with every task running",
        rss(chain.manager_pid()),
        rss(Some(chain.subscriber_pid()))
    );

    // Listings, each beside one read of the manager's whole state.
    let mut raw_state = Vec::new();
    for _ in 0..args.samples {
        raw_state.push(read_all(kv, state_prefix).await?);
    }
    for path in ["/v2/apps?embed=apps.tasks", "/v2/tasks"] {
        let mut ours = Vec::new();
        for _ in 0..args.samples {
            ours.push(get_timed(chain, path).await?.0);
        }
        report_latency(
            &format!("GET {path} (raw: etcd read of the state)"),
            &Stats::of(&ours),
            &Stats::of(&raw_state),
        );
    }

    // Event -> record while `scaling` apps scale by one.
    let before: HashSet<String> = running_seen(events);
    let t_scale = Instant::now();
    let scaled: Vec<Value> = (0..args.scaling.min(args.apps))
        .map(|i| json!({"id": app_id(i), "instances": args.per_app + 1}))
        .collect();
    let added = scaled.len();
    put_apps(chain, scaled).await?;
    let total = total + added;
    wait_until("the scaled tasks' records", deadline, || {
        let mut kv = kv.clone();
        let prefix = records_prefix.clone();
        async move { Ok(count(&mut kv, &prefix).await? >= total) }
    })
    .await?;
    followed(stream)?;
    let new: Vec<String> = running_seen(events).difference(&before).cloned().collect();
    let mut lag = Vec::new();
    for id in &new {
        let ev = first(events, t_scale, id, |w| w == "TASK_RUNNING");
        let rec = first(records, t_scale, id, |w| w == "put");
        if let (Some(e), Some(r)) = (ev, rec) {
            lag.push(r.saturating_duration_since(e));
        }
    }
    let raw = raw_put_watch(&chain.etcd.endpoint(), args.samples).await?;
    if lag.is_empty() {
        bail!("no event -> record sample ({} new tasks seen)", new.len());
    }
    println!(
        "  event -> record: {} samples ({} new tasks)",
        lag.len(),
        new.len()
    );
    report_latency(
        &format!("event -> record while {added} apps scale (raw: put -> watch)"),
        &Stats::of(&lag),
        &Stats::of(&raw),
    );

    // kill -9 of the manager until /v2/tasks serves every task again.
    let t_kill = Instant::now();
    chain.kill_manager();
    chain.start_manager().await?;
    let pinged = t_kill.elapsed();
    let served_at = wait_until("every task served after a restart", deadline, || async {
        Ok(served(chain).await.unwrap_or(0) >= total)
    })
    .await?;
    let raw_read = read_all(kv, state_prefix).await?;
    report(
        &format!("manager kill -9 -> /v2/tasks serves all {total} (raw: state read)"),
        (served_at - t_kill).as_secs_f64() * 1e3,
        raw_read.as_secs_f64() * 1e3,
        "ms",
    );
    println!(
        "{:<58} {:.3} ms",
        "  of which: start until /ping answers",
        pinged.as_secs_f64() * 1e3
    );
    println!(
        "{:<58} manager {:>8.1} MiB",
        "RSS after the restart",
        rss(chain.manager_pid())
    );

    // A full /cleanup with nothing to change.
    let t_clean = Instant::now();
    let r = chain
        .http
        .post(format!("{}/cleanup", chain.subscriber_url))
        .send()
        .await?;
    let status = r.status();
    let summary: Value = r.json().await.unwrap_or(Value::Null);
    let took = t_clean.elapsed();
    if !status.is_success() {
        bail!("POST /cleanup: {status} {summary}");
    }
    let raw_records = read_all(kv, &records_prefix).await?;
    report(
        &format!("/cleanup over {total} tasks (raw: one read of the records)"),
        took.as_secs_f64() * 1e3,
        raw_records.as_secs_f64() * 1e3,
        "ms",
    );
    println!("  /cleanup said: {summary}");

    // Nothing lost.
    let processes = manager::runtime::command::live_tasks(&chain.data_dir()).len();
    let running = served(chain).await?;
    let recs = count(kv, &records_prefix).await?;
    println!(
        "{:<58} processes {processes}  running tasks {running}  records {recs}  (expected {total})",
        "at the end"
    );
    if processes != total || running != total || recs != total {
        bail!("something was lost: processes {processes}, running {running}, records {recs}, expected {total}");
    }
    Ok(())
}
