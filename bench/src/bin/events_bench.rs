//! Event delivery benchmark (issue 2): 10 SSE clients on `GET /v2/events`
//! and 10 callback URLs subscribed through `/v2/eventSubscriptions` while 50
//! command apps scale at once (all up, then all down). Latency of one
//! delivered event = the time it was received minus its own `timestamp` (the
//! manager's time of the state change; same machine, same clock). The
//! timestamp has millisecond precision and is truncated, so each figure may
//! be up to 1 ms pessimistic. Every consumer must see every event of the
//! window; missing ones are reported.
//!
//! Raw baseline, same run: etcd put -> watch event on another client (the
//! put carries its start time in microseconds).
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-release cargo build --release -p bench --bin events_bench -p manager
//! /work/target-release/release/events_bench
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::receiver::{now_us, Sink};
use bench::setup::{delete_apps, serve_manager, Manager};
use bench::{report_latency, Stats};
use clap::Parser;
use serde_json::{json, Value};
use testkit::Etcd;
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// The manager binary (default: `manager` beside this executable).
    #[arg(long, env = "BENCH_MANAGER")]
    manager: Option<PathBuf>,
    /// SSE clients on `/v2/events`.
    #[arg(long, env = "BENCH_SSE_CLIENTS", default_value_t = 10)]
    sse: usize,
    /// Callback receivers subscribed through `/v2/eventSubscriptions`.
    #[arg(long, env = "BENCH_CALLBACKS", default_value_t = 10)]
    callbacks: usize,
    /// Apps scaled at once.
    #[arg(long, env = "BENCH_APPS", default_value_t = 50)]
    apps: usize,
    /// Instances per app in the scale-up (then all back to 0).
    #[arg(long, env = "BENCH_INSTANCES", default_value_t = 2)]
    instances: usize,
    /// Puts for the raw etcd put -> watch baseline.
    #[arg(long, env = "BENCH_RAW_PUTS", default_value_t = 1000)]
    raw_puts: usize,
    /// Writes every delivery to this file, one line each: consumer, event
    /// type, the event's timestamp (ms since the epoch) and its latency
    /// (us), tab-separated: for finding when a tail happened.
    #[arg(long, env = "BENCH_EVENTS_DUMP")]
    dump: Option<PathBuf>,
}

/// One SSE client: records every message's data with its receive time.
async fn sse_client(url: String, sink: Sink) -> Result<()> {
    let http = reqwest::Client::new();
    let mut resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await?;
    if resp.status() != 200 {
        bail!("GET /v2/events: {}", resp.status());
    }
    let mut parser = marathon::sse::Parser::new();
    while let Some(chunk) = resp.chunk().await? {
        let at = now_us();
        let msgs = parser.push(&chunk);
        if !msgs.is_empty() {
            let mut s = sink.lock().expect("sink");
            s.extend(msgs.into_iter().map(|m| (m.data, at)));
        }
    }
    Ok(())
}

/// The identity of an event across consumers: canonical JSON without the
/// heavy plan parts (SSE clients ask for `plan-format=light`, callbacks get
/// the heavy form).
fn identity(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(plan) = v.get_mut("plan").and_then(Value::as_object_mut) {
        plan.remove("original");
        plan.remove("target");
    }
    v.to_string()
}

/// An event's `timestamp` in milliseconds since the epoch.
fn event_millis(v: &Value) -> Option<i64> {
    v["timestamp"]
        .as_str()
        .and_then(|t| t.parse::<marathon::Timestamp>().ok())
        .map(|t| t.as_millis())
}

/// The events of one consumer inside the window (timestamp >= `from_ms`):
/// identity -> latency.
fn in_window(sink: &Sink, from_ms: i64) -> BTreeMap<String, Duration> {
    // Copied out first: the receivers push into the sink while answering,
    // so parsing must not hold its lock.
    let received = sink.lock().expect("sink").clone();
    let mut out = BTreeMap::new();
    for (data, at) in &received {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        let Some(ms) = event_millis(&v) else {
            continue;
        };
        if ms < from_ms {
            continue;
        }
        let lat = Duration::from_micros((at - ms * 1000).max(0) as u64);
        out.entry(identity(&v)).or_insert(lat);
    }
    out
}

async fn wait_quiet(http: &reqwest::Client, base: &str, want_tasks: usize) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let tasks: Value = http
            .get(format!("{base}/v2/tasks"))
            .send()
            .await?
            .json()
            .await?;
        let running = tasks["tasks"].as_array().map_or(0, |t| {
            t.iter().filter(|t| t["state"] == "TASK_RUNNING").count()
        });
        let total = tasks["tasks"].as_array().map_or(0, Vec::len);
        let deps: Value = http
            .get(format!("{base}/v2/deployments"))
            .send()
            .await?
            .json()
            .await?;
        if running == want_tasks
            && total == want_tasks
            && deps.as_array().is_some_and(Vec::is_empty)
        {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("not settled after 120 s: {running}/{total} tasks, want {want_tasks}; deployments {deps}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scale_all(http: &reqwest::Client, base: &str, ids: &[String], n: usize) -> Result<()> {
    let futs = ids.iter().map(|id| {
        let http = http.clone();
        let url = format!("{base}/v2/apps{id}");
        async move {
            http.put(url)
                .json(&json!({"instances": n}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    for (id, r) in ids.iter().zip(futures::future::join_all(futs).await) {
        let s = r?;
        if s != 200 {
            bail!("scale {id} to {n}: {s}");
        }
    }
    Ok(())
}

/// How late a plain thread wakes from a 1 ms sleep while the workload
/// runs: how far the machine's CPUs are saturated (every delivery waits
/// for a CPU too; this is the part of a latency no design of ours removes).
struct LagProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Duration>>,
}

impl LagProbe {
    fn start() -> LagProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut lags = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                lags.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            lags
        });
        LagProbe { stop, thread }
    }

    fn stop(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

struct Figures {
    /// Wake-up lags of the [`LagProbe`] during the scaling.
    lag: Vec<Duration>,
    sse: Vec<BTreeMap<String, Duration>>,
    cb: Vec<BTreeMap<String, Duration>>,
    received_total: Vec<usize>,
}

/// Subscribes the consumers, runs the scale-up and scale-down, and collects.
async fn workload(args: &Args, m: &Manager, ids: &[String]) -> Result<Figures> {
    let http = reqwest::Client::new();
    let base = &m.base;
    for id in ids {
        let body = json!({"id": id, "cmd": "exec sleep 3600", "cpus": 0.01, "mem": 8, "instances": 0, "portDefinitions": []});
        let r = http
            .post(format!("{base}/v2/apps"))
            .json(&body)
            .send()
            .await?;
        if r.status() != 201 {
            bail!("create {id}: {} {}", r.status(), r.text().await?);
        }
    }
    wait_quiet(&http, base, 0).await?;

    let sse_sinks: Vec<Sink> = (0..args.sse).map(|_| Sink::default()).collect();
    for sink in &sse_sinks {
        let url = format!("{base}/v2/events?plan-format=light");
        let sink = sink.clone();
        tokio::spawn(async move {
            if let Err(e) = sse_client(url, sink).await {
                eprintln!("sse client: {e:#}");
            }
        });
    }
    let cb_sinks: Vec<Sink> = (0..args.callbacks).map(|_| Sink::default()).collect();
    for sink in &cb_sinks {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!(
            "http://127.0.0.1:{}/callback",
            listener.local_addr()?.port()
        );
        tokio::spawn(bench::receiver::serve(listener, Some(sink.clone())));
        let r = http
            .post(format!("{base}/v2/eventSubscriptions"))
            .query(&[("callbackUrl", &url)])
            .send()
            .await?;
        if r.status() != 200 {
            bail!("subscribe {url}: {}", r.status());
        }
    }
    // Every consumer connected: each has received something.
    let t0 = Instant::now();
    while !sse_sinks
        .iter()
        .chain(&cb_sinks)
        .all(|s| !s.lock().expect("sink").is_empty())
    {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("consumers did not attach within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The window starts at the next millisecond: attach/subscribe events are before it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let from_ms = now_us() / 1000;

    let probe = LagProbe::start();
    scale_all(&http, base, ids, args.instances).await?;
    wait_quiet(&http, base, ids.len() * args.instances).await?;
    scale_all(&http, base, ids, 0).await?;
    wait_quiet(&http, base, 0).await?;
    let lag = probe.stop();

    // Let the last events arrive: stop when every consumer holds the union
    // and nothing new came for 500 ms (or after 30 s).
    let t0 = Instant::now();
    let mut last = (usize::MAX, Instant::now());
    loop {
        let counts: Vec<usize> = sse_sinks
            .iter()
            .chain(&cb_sinks)
            .map(|s| in_window(s, from_ms).len())
            .collect();
        let total: usize = sse_sinks
            .iter()
            .chain(&cb_sinks)
            .map(|s| s.lock().expect("sink").len())
            .sum();
        if total != last.0 {
            last = (total, Instant::now());
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        let all_equal = counts.iter().all(|&c| c == max);
        if (all_equal && last.1.elapsed() > Duration::from_millis(500))
            || t0.elapsed() > Duration::from_secs(30)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Figures {
        lag,
        sse: sse_sinks.iter().map(|s| in_window(s, from_ms)).collect(),
        cb: cb_sinks.iter().map(|s| in_window(s, from_ms)).collect(),
        received_total: sse_sinks
            .iter()
            .chain(&cb_sinks)
            .map(|s| s.lock().expect("sink").len())
            .collect(),
    })
}

/// Every delivery as a line (see `--dump`).
fn dump(path: &std::path::Path, figures: &Figures) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let consumers = figures
        .sse
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("sse{i}"), c))
        .chain(
            figures
                .cb
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("cb{i}"), c)),
        );
    for (name, c) in consumers {
        for (k, lat) in c {
            let v: Value = serde_json::from_str(k)?;
            let ts = event_millis(&v).unwrap_or(0);
            let ty = v["eventType"].as_str().unwrap_or("?");
            writeln!(out, "{name}\t{ty}\t{ts}\t{}", lat.as_micros())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Raw baseline: etcd put -> watch event latency on a second client.
async fn raw_etcd(etcd: &Etcd, puts: usize) -> Result<Vec<Duration>> {
    let mut writer = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    let mut watcher = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    let (_w, mut stream) = watcher
        .watch(
            "/bench/raw/",
            Some(etcd_client::WatchOptions::new().with_prefix()),
        )
        .await?;
    let reader = tokio::spawn(async move {
        let mut out = Vec::with_capacity(puts);
        while out.len() < puts {
            let Some(resp) = stream.message().await? else {
                break;
            };
            let at = now_us();
            for ev in resp.events() {
                if let Some(kv) = ev.kv() {
                    let sent: i64 = kv.value_str()?.parse()?;
                    out.push(Duration::from_micros((at - sent).max(0) as u64));
                }
            }
        }
        anyhow::Ok(out)
    });
    for i in 0..puts {
        writer
            .put(format!("/bench/raw/{}", i % 50), now_us().to_string(), None)
            .await?;
    }
    let out = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .context("watch timed out")???;
    if out.len() != puts {
        bail!("watch saw {} of {puts} puts", out.len());
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match &args.manager {
        Some(p) => p.clone(),
        None => bench::sibling_binary("manager")?,
    };
    let etcd = Etcd::start()?;
    let dir = tempfile::Builder::new().prefix("events-bench-").tempdir()?;
    let (mut cmd, base) = bench::manager_command(&bin, &etcd.endpoint(), &dir.path().join("data"))?;
    cmd.args(["--internal-prefix", "/bench/events", "--docker", "off"])
        .args(["--drain-delay", "0"]);
    let mut m = serve_manager(cmd, base).await?;
    let ids: Vec<String> = (0..args.apps)
        .map(|i| format!("/bench-events/app-{i:02}"))
        .collect();

    let result = workload(&args, &m, &ids).await;
    let cleaned = delete_apps(&reqwest::Client::new(), &m.base, &ids).await;
    m.stop();
    let figures = result?;
    cleaned?;

    let raw = Stats::of(&raw_etcd(&etcd, args.raw_puts).await?);
    if let Some(path) = &args.dump {
        dump(path, &figures)
            .with_context(|| format!("writing the deliveries to {}", path.display()))?;
    }

    let union: HashSet<&String> = figures
        .sse
        .iter()
        .chain(&figures.cb)
        .flat_map(|c| c.keys())
        .collect();
    let sse_lat: Vec<Duration> = figures
        .sse
        .iter()
        .flat_map(|c| c.values().copied())
        .collect();
    let cb_lat: Vec<Duration> = figures
        .cb
        .iter()
        .flat_map(|c| c.values().copied())
        .collect();
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for k in &union {
        let v: Value = serde_json::from_str(k)?;
        *types
            .entry(v["eventType"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    println!(
        "{} apps scaled 0 -> {} -> 0 at once; {} distinct events in the window: {types:?}",
        args.apps,
        args.instances,
        union.len()
    );
    for (i, c) in figures.sse.iter().enumerate() {
        println!(
            "  sse client {i:>2}: {} events in window ({} received in all), missing {}",
            c.len(),
            figures.received_total[i],
            union.len() - c.len()
        );
    }
    for (i, c) in figures.cb.iter().enumerate() {
        let j = figures.sse.len() + i;
        println!(
            "  callback   {i:>2}: {} events in window ({} received in all), missing {}",
            c.len(),
            figures.received_total[j],
            union.len() - c.len()
        );
    }
    let missing: usize = figures
        .sse
        .iter()
        .chain(&figures.cb)
        .map(|c| union.len() - c.len())
        .sum();
    println!("missing deliveries in total: {missing}");
    if sse_lat.is_empty() && cb_lat.is_empty() {
        bail!("no events delivered");
    }
    if !figures.lag.is_empty() {
        let lag = Stats::of(&figures.lag);
        println!(
            "CPU saturation while scaling: a plain thread's 1 ms sleep woke late by p50 {} p99 {} max {} ({} samples)",
            bench::ms(lag.p50),
            bench::ms(lag.p99),
            bench::ms(lag.max),
            lag.count
        );
    }
    println!("raw: etcd put -> watch, max {}", bench::ms(raw.max));
    for (what, lat) in [("SSE clients", &sse_lat), ("callback URLs", &cb_lat)] {
        if lat.is_empty() {
            continue;
        }
        let stats = Stats::of(lat);
        let n = if what == "SSE clients" {
            figures.sse.len()
        } else {
            figures.cb.len()
        };
        println!(
            "{what}: {} deliveries, max {}",
            stats.count,
            bench::ms(stats.max)
        );
        report_latency(
            &format!("event -> {n} {what} (raw: etcd put->watch)"),
            &stats,
            &raw,
        );
    }
    if missing > 0 {
        bail!("{missing} deliveries missing");
    }
    Ok(())
}
