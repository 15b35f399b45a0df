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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bench::setup::{delete_apps, serve_manager, Manager};
use bench::{report_latency, Stats};
use clap::Parser;
use serde_json::{json, Value};
use testkit::Etcd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
}

/// What one consumer received: (event JSON, wall-clock receive time in µs).
type Sink = Arc<Mutex<Vec<(String, i64)>>>;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One complete HTTP/1.1 request at the start of `buf`: (body, bytes used).
/// `None` when more bytes are needed. Handles Content-Length and chunked.
fn parse_request(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut len = 0usize;
    let mut chunked = false;
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.contains("chunked"),
                _ => {}
            }
        }
    }
    if !chunked {
        return (buf.len() >= head_end + len)
            .then(|| (buf[head_end..head_end + len].to_vec(), head_end + len));
    }
    let mut body = Vec::new();
    let mut at = head_end;
    loop {
        let line_end = at + find(&buf[at..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[at..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let end = at + find(&buf[at..], b"\r\n")? + 2;
            return Some((body, end));
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// One keep-alive connection of a callback receiver: answers 200 to each POST
/// as soon as it is complete (a fair receiver: no framework, no JSON parsing,
/// the receive time taken before anything else).
async fn serve_conn(mut s: TcpStream, sink: Sink) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((body, used)) = parse_request(&buf) {
            let at = now_us();
            buf.drain(..used);
            // Answer first: the sender waits for it before its next POST.
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            sink.lock()
                .expect("sink")
                .push((String::from_utf8_lossy(&body).into_owned(), at));
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn callback_receiver(listener: TcpListener, sink: Sink) {
    while let Ok((s, _)) = listener.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(serve_conn(s, sink.clone()));
    }
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
        let Some(ts) = v["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<marathon::Timestamp>().ok())
        else {
            continue;
        };
        let ms = ts.as_millis();
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

struct Figures {
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
        tokio::spawn(callback_receiver(listener, sink.clone()));
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

    scale_all(&http, base, ids, args.instances).await?;
    wait_quiet(&http, base, ids.len() * args.instances).await?;
    scale_all(&http, base, ids, 0).await?;
    wait_quiet(&http, base, 0).await?;

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
        sse: sse_sinks.iter().map(|s| in_window(s, from_ms)).collect(),
        cb: cb_sinks.iter().map(|s| in_window(s, from_ms)).collect(),
        received_total: sse_sinks
            .iter()
            .chain(&cb_sinks)
            .map(|s| s.lock().expect("sink").len())
            .collect(),
    })
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
    if sse_lat.is_empty() || cb_lat.is_empty() {
        bail!("no events delivered");
    }
    let sse = Stats::of(&sse_lat);
    let cb = Stats::of(&cb_lat);
    println!(
        "sse: {} deliveries, max {}; callbacks: {} deliveries, max {}; raw max {}",
        sse.count,
        bench::ms(sse.max),
        cb.count,
        bench::ms(cb.max),
        bench::ms(raw.max)
    );
    report_latency(
        &format!(
            "event -> {} SSE clients (raw: etcd put->watch)",
            figures.sse.len()
        ),
        &sse,
        &raw,
    );
    report_latency(
        &format!(
            "event -> {} callback URLs (raw: etcd put->watch)",
            figures.cb.len()
        ),
        &cb,
        &raw,
    );
    if missing > 0 {
        bail!("{missing} deliveries missing");
    }
    Ok(())
}
