//! Subscriber benchmarks, each beside raw etcd measured in the same run:
//!
//! - event -> record visible through an etcd watch at 1,000 events/s (p50/p99)
//!   vs raw put -> watch at the same rate;
//! - sustained TASK_RUNNING / TASK_KILLING / TASK_KILLED throughput vs raw
//!   puts+deletes with 64 in flight;
//! - `/cleanup` over 10,000 tasks with everything to write (vs raw puts in
//!   128-op transactions) and with nothing to change (vs one raw prefix read;
//!   `--noop-rounds` calls, each followed by its raw read, medians reported);
//! - RSS of the subscriber holding 10,000 records (beside etcd's own RSS).
//!
//! The load generator is the Marathon API stub of the subscriber's tests
//! (`testkit::marathon_stub`): it serves `/v2/apps` with the tasks
//! and emits events at the chosen rate on `/v2/events`.
//!
//! `cargo build --release -p subscriber && cargo run --release -p bench --bin subscriber_bench`

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::{median, report, report_latency, report_ms, rss_mib, Stats};
use clap::Parser;
use etcd_client::{EventType, TxnOp, WatchOptions};
use futures::StreamExt;
use registry::{Instance, Port, Registry, Scope, Settings, WatchEvent};
use testkit::marathon_stub::{self as stub, bridge_app, Stub};
use testkit::Etcd;

#[derive(Parser)]
struct Args {
    /// The subscriber binary (default: target/release/subscriber).
    #[arg(long)]
    subscriber: Option<PathBuf>,
    /// Events for the latency run (at 1,000/s).
    #[arg(long, default_value_t = 3000)]
    latency_events: usize,
    /// Tasks started then killed in the throughput run (3 events each).
    #[arg(long, default_value_t = 10_000)]
    throughput_tasks: usize,
    /// Tasks for the /cleanup and RSS runs.
    #[arg(long, default_value_t = 10_000)]
    cleanup_tasks: usize,
    /// No-op /cleanup calls, each followed by a raw read; the medians are
    /// reported (one call alone is noise on a shared machine).
    #[arg(long, default_value_t = 5)]
    noop_rounds: usize,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn instance(container: &str, port: u16) -> Instance {
    Instance {
        schema: 1,
        service: "rawbench".into(),
        group: "default".into(),
        labels: vec![],
        container: container.into(),
        app_id: "/rawbench".into(),
        app_version: stub::VERSION.into(),
        node: "node-1".into(),
        host: "127.0.0.1".into(),
        internal_address: Some("172.17.0.9".into()),
        ports: [("api".to_string(), Port::tcp(port, 5000))]
            .into_iter()
            .collect(),
        state: "TASK_RUNNING".into(),
        healthy: None,
        started_at: "2026-11-22T10:00:01.000Z".into(),
        owner: "default".into(),
    }
}

async fn start_subscriber(bin: &PathBuf, marathon: &str, etcd: &Etcd) -> Result<(Proc, String)> {
    let port = testkit::free_port()?;
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--marathon-url", marathon])
        .args(["--etcd-endpoints", &etcd.endpoint()])
        .args(["--resync-interval", "1h"])
        // BENCH_SUBSCRIBER_LOG=subscriber=debug shows each resync's phases.
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SUBSCRIBER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("MDO_AUTH_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the subscriber")?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{url}/health")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("subscriber not healthy within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((Proc(child), url))
}

/// What the bench's own registry watch saw.
#[derive(Default)]
struct WatchLog {
    /// Container -> when its record was first seen (a put, or a re-list).
    seen: HashMap<String, Instant>,
    /// The initial listing arrived: the watch follows changes from there.
    ready: bool,
    /// Records first seen in a re-list after the initial one (their time is
    /// when the re-list arrived: an upper bound).
    relisted: usize,
    /// Errors the watch recovered from (it resumes from the revision after
    /// the last event it delivered, or re-lists after a compaction).
    errors: usize,
    first_errors: Vec<String>,
}

type Log = Arc<Mutex<WatchLog>>;

/// Watches every record, and returns once the initial listing arrived, so
/// no record written afterwards can be missed.
async fn watch_puts(reg: &Registry) -> Result<Log> {
    let log: Log = Arc::default();
    let l = log.clone();
    let mut stream = reg.watch(Scope::All, None);
    tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            let mut g = l.lock().unwrap();
            match ev {
                Ok(WatchEvent::Put(i, _)) => {
                    g.seen.entry(i.container).or_insert(now);
                }
                Ok(WatchEvent::Delete(..)) => {}
                Ok(WatchEvent::Relisted(snap)) => {
                    let initial = !g.ready;
                    g.ready = true;
                    for e in snap.entries {
                        if let std::collections::hash_map::Entry::Vacant(v) =
                            g.seen.entry(e.instance.container)
                        {
                            v.insert(now);
                            if !initial {
                                g.relisted += 1;
                            }
                        }
                    }
                }
                Err(e) => {
                    g.errors += 1;
                    if g.first_errors.len() < 3 {
                        g.first_errors.push(e.to_string());
                    }
                }
            }
        }
    });
    wait_until("registry watch listed", Duration::from_secs(30), || {
        log.lock().unwrap().ready
    })
    .await?;
    Ok(log)
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out: {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Waits until the watch saw every container in `ids`; on timeout, reads
/// the registry to say which records are missing and where.
async fn wait_seen(reg: &Registry, log: &Log, ids: &[String], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut next = 0;
    loop {
        {
            let g = log.lock().unwrap();
            while next < ids.len() && g.seen.contains_key(&ids[next]) {
                next += 1;
            }
        }
        if next == ids.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (missing, errors, first_errors) = {
        let g = log.lock().unwrap();
        let missing: Vec<&String> = ids.iter().filter(|id| !g.seen.contains_key(*id)).collect();
        (missing, g.errors, g.first_errors.clone())
    };
    let read = match reg.list_all().await {
        Ok(snap) => {
            let stored: std::collections::HashSet<&str> = snap
                .entries
                .iter()
                .map(|e| e.instance.container.as_str())
                .collect();
            let in_etcd = missing
                .iter()
                .filter(|id| stored.contains(id.as_str()))
                .count();
            format!(
                "a range read at revision {} finds {in_etcd} of them in etcd (the watch lost them) and {} absent (never written)",
                snap.revision,
                missing.len() - in_etcd
            )
        }
        Err(e) => format!("the range read to locate them failed too: {e}"),
    };
    bail!(
        "timed out: {} of {} records never seen on the watch; {read}; first missing: {:?}; watch errors: {errors} {:?}",
        missing.len(),
        ids.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        first_errors
    )
}

async fn latency_ours(reg: &Registry, stub: &Stub, log: &Log, n: usize) -> Result<Vec<Duration>> {
    stub.add_app(bridge_app("/bench/lat", &[("api", 5000)]));
    let start = Instant::now();
    let mut emitted = Vec::with_capacity(n);
    for i in 0..n {
        let at = start + Duration::from_micros(1000 * i as u64);
        tokio::time::sleep_until(at.into()).await;
        let t0 = Instant::now();
        let id = stub.start_task("/bench/lat", &[20000 + (i % 10000) as u32]);
        emitted.push((id, t0));
    }
    let ids: Vec<String> = emitted.iter().map(|(id, _)| id.clone()).collect();
    wait_seen(reg, log, &ids, Duration::from_secs(60))
        .await
        .context("latency run")?;
    let g = log.lock().unwrap();
    if g.relisted > 0 || g.errors > 0 {
        println!(
            "  latency run: watch recovered from {} errors, {} records first seen in a re-list (times are upper bounds)",
            g.errors, g.relisted
        );
    }
    Ok(emitted
        .iter()
        .skip(100)
        .map(|(id, t0)| g.seen[id].duration_since(*t0))
        .collect())
}

async fn latency_raw(reg: &Registry, n: usize) -> Result<Vec<Duration>> {
    let prefix = registry::keys::service_prefix(reg.prefix(), "rawbench")?;
    let mut client = reg.client();
    let (_w, mut stream) = client
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await?;
    let seen: Arc<Mutex<HashMap<Vec<u8>, Instant>>> = Arc::default();
    // Why the raw watch stopped, if it did (for the timeout's message).
    let ended: Arc<Mutex<Option<String>>> = Arc::default();
    let (s, end) = (seen.clone(), ended.clone());
    tokio::spawn(async move {
        let why = loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    let now = Instant::now();
                    for e in resp.events() {
                        if e.event_type() == EventType::Put {
                            if let Some(kv) = e.kv() {
                                s.lock().unwrap().entry(kv.key().to_vec()).or_insert(now);
                            }
                        }
                    }
                    if resp.canceled() {
                        break format!(
                            "canceled (compact revision {}): {}",
                            resp.compact_revision(),
                            resp.cancel_reason()
                        );
                    }
                }
                Ok(None) => break "stream closed".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        *end.lock().unwrap() = Some(why);
    });
    let mut kv = reg.client().kv_client();
    let start = Instant::now();
    let mut emitted = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until((start + Duration::from_micros(1000 * i as u64)).into()).await;
        let inst = instance(&format!("lat-{i}"), 20000);
        let key = inst.key(reg.prefix())?;
        let t0 = Instant::now();
        kv.put(key.clone(), inst.to_json(), None).await?;
        emitted.push((key.into_bytes(), t0));
    }
    let mut next = 0;
    let waited = wait_until("raw watch saw every put", Duration::from_secs(30), || {
        let g = seen.lock().unwrap();
        while next < emitted.len() && g.contains_key(&emitted[next].0) {
            next += 1;
        }
        next == emitted.len()
    })
    .await;
    if let Err(e) = waited {
        let missing = {
            let g = seen.lock().unwrap();
            emitted.iter().filter(|(k, _)| !g.contains_key(k)).count()
        };
        bail!(
            "{e}: {missing} of {n} puts never seen; raw watch ended: {:?}",
            ended.lock().unwrap().clone()
        );
    }
    let g = seen.lock().unwrap();
    Ok(emitted
        .iter()
        .skip(100)
        .map(|(k, t0)| g[k].duration_since(*t0))
        .collect())
}

/// The subscriber's own counters the throughput run waits on.
struct SubMetrics {
    status_events: u64,
    queue_depth: u64,
    dropped: u64,
}

async fn sub_metrics(http: &reqwest::Client, url: &str) -> Result<SubMetrics> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let val = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(SubMetrics {
        status_events: val("subscriber_events_total{type=\"status_update_event\"}"),
        queue_depth: val("subscriber_queue_depth"),
        dropped: val("subscriber_events_dropped_total"),
    })
}

/// Start `n` tasks then kill them all; events/s until etcd reflects the end
/// state. A start and its kill that land in one writer batch coalesce into
/// nothing, so deletes can't be counted: the run ends when the subscriber
/// has taken every event and its queue is empty, and a range read finds no
/// record of the app left (the final state).
async fn throughput_ours(
    reg: &Registry,
    stub: &Stub,
    url: &str,
    log: &Log,
    n: usize,
) -> Result<f64> {
    const APP: &str = "/bench/tput";
    let http = reqwest::Client::new();
    let before = sub_metrics(&http, url).await?;
    stub.add_app(bridge_app(APP, &[("api", 5000)]));
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(stub.start_task(APP, &[20000 + (i % 10000) as u32]));
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for (i, id) in ids.iter().enumerate() {
        stub.kill_task(APP, id);
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let sent = 3 * n;
    let deadline = start + Duration::from_secs(120);
    let mut left = None;
    let after = loop {
        let m = sub_metrics(&http, url).await?;
        if m.status_events >= before.status_events + sent as u64 && m.queue_depth == 0 {
            let snap = reg.list_all().await?;
            let l = snap
                .entries
                .iter()
                .filter(|e| e.instance.app_id == APP)
                .count();
            if l == 0 {
                break m;
            }
            left = Some(l);
        }
        if Instant::now() > deadline {
            bail!(
                "timed out: throughput final state: subscriber took {} of {sent} events, queue depth {}, {} dropped; {APP} records left at the last read: {}",
                m.status_events - before.status_events,
                m.queue_depth,
                m.dropped - before.dropped,
                left.map_or("not read yet".to_string(), |l| l.to_string())
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = start.elapsed();
    let written = {
        let g = log.lock().unwrap();
        ids.iter().filter(|id| g.seen.contains_key(*id)).count()
    };
    println!(
        "  throughput run: {n} tasks, {written} records seen written (coalescing may skip some), {} dropped, {sent} events in {:.3} s",
        after.dropped - before.dropped,
        took.as_secs_f64()
    );
    Ok(sent as f64 / took.as_secs_f64())
}

async fn throughput_raw(reg: &Registry, n: usize) -> Result<f64> {
    let kv = reg.client().kv_client();
    let keys: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let inst = instance(&format!("tput-{i}"), 20000);
            Ok((inst.key(reg.prefix())?, inst.to_json()))
        })
        .collect::<Result<_>>()?;
    let start = Instant::now();
    futures::stream::iter(keys.iter().cloned())
        .map(|(k, v)| {
            let mut kv = kv.clone();
            async move { kv.put(k, v, None).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    futures::stream::iter(keys.iter().cloned())
        .map(|(k, _)| {
            let mut kv = kv.clone();
            async move { kv.delete(k, None).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok((2 * n) as f64 / start.elapsed().as_secs_f64())
}

async fn cleanup(url: &str) -> Result<(serde_json::Value, Duration)> {
    let t0 = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{url}/cleanup"))
        .send()
        .await?
        .error_for_status()?
        .json::<serde_json::Value>()
        .await?;
    Ok((r, t0.elapsed()))
}

async fn raw_full_write(reg: &Registry, n: usize) -> Result<Duration> {
    let mut kv = reg.client().kv_client();
    let ops: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let inst = instance(&format!("full-{i}"), 20000);
            Ok((inst.key(reg.prefix())?, inst.to_json()))
        })
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    for chunk in ops.chunks(128) {
        let txn = etcd_client::Txn::new().and_then(
            chunk
                .iter()
                .map(|(k, v)| TxnOp::put(k.clone(), v.clone(), None))
                .collect::<Vec<_>>(),
        );
        kv.txn(txn).await?;
    }
    let took = t0.elapsed();
    // The raw records are a baseline only: remove them, or the next
    // "nothing to change" /cleanup would find 10,000 stale records of its
    // owner to delete (and read twice the keys).
    let prefix = registry::keys::service_prefix(reg.prefix(), "rawbench")?;
    kv.delete(
        prefix,
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    Ok(took)
}

fn etcd_rss(etcd: &Etcd) -> Option<f64> {
    let needle = etcd.data_dir().to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            return rss_mib(pid);
        }
    }
    None
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = args
        .subscriber
        .clone()
        .unwrap_or_else(|| testkit::target_dir().join("release").join("subscriber"));
    if !bin.exists() {
        bail!(
            "{} not found: cargo build --release -p subscriber",
            bin.display()
        );
    }
    println!("subscriber benchmarks ({})", bin.display());

    // Latency and throughput: one etcd, one stub, one subscriber.
    {
        let etcd = Etcd::start()?;
        let reg = Registry::connect(&Settings::new([etcd.endpoint()])).await?;
        let stub = Stub::start().await;
        let (_sub, url) = start_subscriber(&bin, &stub.url, &etcd).await?;
        let log = watch_puts(&reg).await?;
        let ours = latency_ours(&reg, &stub, &log, args.latency_events).await?;
        let raw = latency_raw(&reg, args.latency_events).await?;
        report_latency(
            "event -> record on a watch @1,000 events/s",
            &Stats::of(&ours),
            &Stats::of(&raw),
        );
        let ours = throughput_ours(&reg, &stub, &url, &log, args.throughput_tasks).await?;
        let raw = throughput_raw(&reg, args.throughput_tasks).await?;
        report(
            "sustained events/s (raw: puts+deletes, 64 in flight)",
            ours,
            raw,
            "ev/s",
        );
    }

    // /cleanup and RSS over 10,000 tasks.
    {
        let n = args.cleanup_tasks;
        let etcd = Etcd::start()?;
        let reg = Registry::connect(&Settings::new([etcd.endpoint()])).await?;
        let stub = Stub::start().await;
        let (sub, url) = start_subscriber(&bin, &stub.url, &etcd).await?;
        stub.add_app(bridge_app("/bench/many", &[("api", 5000), ("admin", 9000)]));
        for i in 0..n {
            stub.add_task_silently(
                "/bench/many",
                &[20000 + (i % 10000) as u32, 30000 + (i % 10000) as u32],
            );
        }
        let (full, full_wall) = cleanup(&url).await?;
        if full["added"].as_u64() != Some(n as u64) {
            bail!(
                "full-write cleanup added {} (expected {n}): {full}",
                full["added"]
            );
        }
        let raw_full = raw_full_write(&reg, n).await?;
        report_ms(
            &format!("/cleanup, {n} tasks, everything to write"),
            full_wall,
            raw_full,
        );
        let (mut noop_walls, mut raw_reads, mut keys) = (Vec::new(), Vec::new(), 0);
        let mut noop = serde_json::Value::Null;
        for _ in 0..args.noop_rounds.max(1) {
            let (r, wall) = cleanup(&url).await?;
            let counts = ["added", "updated", "removed", "unchanged"].map(|k| r[k].as_u64());
            if counts != [Some(0), Some(0), Some(0), Some(n as u64)] {
                bail!("no-op cleanup changed something: {r}");
            }
            let t0 = Instant::now();
            let snap = reg.list_all().await?;
            raw_reads.push(t0.elapsed());
            keys = snap.entries.len();
            noop_walls.push(wall);
            noop = r;
        }
        println!(
            "  no-op rounds (ours / raw ms): {}",
            noop_walls
                .iter()
                .zip(&raw_reads)
                .map(|(o, r)| format!("{:.1}/{:.1}", o.as_secs_f64() * 1e3, r.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        );
        report_ms(
            &format!(
                "/cleanup, {n} tasks, nothing to change (raw: read {keys} keys; medians of {})",
                noop_walls.len()
            ),
            median(noop_walls),
            median(raw_reads),
        );
        println!(
            "  took_ms reported: full {} no-op {}",
            full["took_ms"], noop["took_ms"]
        );
        let ours = rss_mib(sub.0.id()).context("subscriber RSS")?;
        let raw = etcd_rss(&etcd).unwrap_or(f64::NAN);
        report(
            &format!("RSS with {n} records (raw: etcd's own RSS)"),
            ours,
            raw,
            "MiB",
        );
    }
    Ok(())
}
