//! Watcher benchmarks, each beside a raw etcd baseline measured in the same
//! run (one etcd, started here):
//! - etcd change -> callback start, no debounce, exec and Python modes
//!   (target p99 <= 10 ms), beside raw etcd put -> watch event (for exec
//!   mode also beside that plus a direct `sh -c` spawn of the same command);
//! - 1,000 changes within 1 s with a 100 ms debounce: callbacks run
//!   (target <= 11) and whether the last one saw the final state;
//! - idle RSS of the watcher (exec and Python modes), beside an idle
//!   `etcdctl watch` on the same prefix.
//!
//! Uses the release watcher: `cargo build --release -p watcher &&
//! cargo run --release -p bench --bin watcher_bench`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::{report, report_latency, rss_mib, Stats};
use clap::Parser;
use registry::etcd_client::{EventType, WatchOptions};
use registry::{Instance, InstanceName, Registry, Settings};
use testkit::{records, Etcd};

#[derive(Parser)]
struct Args {
    /// Changes measured for the change -> callback latency (per mode).
    #[arg(long, env = "BENCH_SAMPLES", default_value_t = 300)]
    samples: usize,
    /// Changes in the debounce burst.
    #[arg(long, env = "BENCH_BURST", default_value_t = 1000)]
    burst: usize,
    /// The watcher binary (default: target/release/watcher).
    #[arg(long, env = "BENCH_WATCHER")]
    watcher: Option<PathBuf>,
}

/// A healthy record of `container` of `service` with port `api` `port`.
fn instance(service: &str, container: &str, port: u16) -> Instance {
    Instance {
        ports: records::ports(&[("api", port, 5000)]),
        healthy: Some(true),
        ..records::instance(service, "default", container)
    }
}

/// Kills the process on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_watcher(bin: &Path, etcd: &Etcd, dir: &Path, args: &[&str], log: &str) -> Result<Proc> {
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("ETCD_ENDPOINTS", etcd.endpoint())
        .env("RUST_LOG", "warn,watcher::watch=info")
        .env_remove("WATCHES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log))?)
        .spawn()
        .context("starting the watcher")?;
    Ok(Proc(child))
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn wait_watching(dir: &Path, log: &str) -> Result<()> {
    wait_for("the watcher's baseline", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.join(log))
            .map(|l| l.contains(" watching"))
            .unwrap_or(false)
    })
}

/// A FIFO the callbacks write one line to; a thread stamps each line's
/// arrival with `Instant::now()`.
fn fifo_reader(path: &Path) -> Result<std_mpsc::Receiver<Instant>> {
    let status = Command::new("mkfifo").arg(path).status()?;
    if !status.success() {
        bail!("mkfifo failed");
    }
    let (tx, rx) = std_mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || loop {
        // Reopen after every writer closes (each callback opens it once).
        let Ok(file) = std::fs::File::open(&path) else {
            return;
        };
        for line in std::io::BufReader::new(file).lines() {
            if line.is_err() || tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Changes made before the measured ones: they warm up the page cache and
/// the connections.
const WARM_UP: usize = 10;

/// Runs `one` (given the round's number) `WARM_UP + samples` times, one
/// after the other, and keeps the durations it returns after the warm-up.
async fn sampled<F, Fut>(samples: usize, mut one: F) -> Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Duration>>,
{
    let mut out = Vec::with_capacity(samples);
    for i in 0..WARM_UP + samples {
        let took = one(i).await?;
        if i >= WARM_UP {
            out.push(took);
        }
    }
    Ok(out)
}

/// Put -> callback start, one change at a time.
async fn callback_latency(
    reg: &Registry,
    service: &str,
    arrivals: &std_mpsc::Receiver<Instant>,
    samples: usize,
) -> Result<Vec<Duration>> {
    sampled(samples, move |i| async move {
        let t0 = Instant::now();
        reg.put(&instance(service, &format!("c-{i}"), 20000 + i as u16))
            .await?;
        let at = arrivals
            .recv_timeout(Duration::from_secs(10))
            .context("a callback within 10 s")?;
        Ok(at.duration_since(t0))
    })
    .await
}

/// Raw baseline for exec mode's process start: spawn `sh -c CMD` directly
/// (CMD writes one line to the FIFO, as the exec hook does) -> line seen.
async fn raw_spawn(
    hook: &str,
    arrivals: &std_mpsc::Receiver<Instant>,
    samples: usize,
) -> Result<Vec<Duration>> {
    sampled(samples, move |_| async move {
        let t0 = Instant::now();
        let mut child = Command::new("sh")
            .args(["-c", hook])
            .env("WATCH_DELTA", "1")
            .stdin(Stdio::null())
            .spawn()
            .context("spawning sh")?;
        let at = arrivals
            .recv_timeout(Duration::from_secs(10))
            .context("the spawned command's line within 10 s")?;
        child.wait()?;
        Ok(at.duration_since(t0))
    })
    .await
}

/// Raw baseline: put -> watch event on our own etcd watch.
async fn raw_latency(reg: &Registry, samples: usize) -> Result<Vec<Duration>> {
    let prefix = registry::keys::service_prefix(reg.prefix(), "rawbench")?;
    let mut client = reg.client();
    let (_watcher, stream) = client
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await?;
    // Each round borrows the one stream in turn.
    let stream = &tokio::sync::Mutex::new(stream);
    sampled(samples, move |i| async move {
        let mut stream = stream.lock().await;
        let t0 = Instant::now();
        reg.put(&instance("rawbench", &format!("c-{i}"), 20000 + i as u16))
            .await?;
        loop {
            let resp = stream.message().await?.context("watch ended")?;
            if resp
                .events()
                .iter()
                .any(|e| e.event_type() == EventType::Put)
            {
                return Ok(t0.elapsed());
            }
        }
    })
    .await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = args
        .watcher
        .unwrap_or_else(|| testkit::target_dir().join("release").join("watcher"));
    if !bin.is_file() {
        bail!(
            "{} not found: cargo build --release -p watcher",
            bin.display()
        );
    }
    let etcd = Etcd::start()?;
    let reg = Registry::connect(&Settings::new([etcd.endpoint()])).await?;
    let dir_buf = std::env::temp_dir().join(format!("mdo-watcher-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir_buf)?;
    let dir = dir_buf.as_path();
    println!(
        "watcher benchmark: {} (etcd {}, one member, loopback)",
        bin.display(),
        etcd.endpoint()
    );

    // --- change -> callback start, no debounce ---------------------------
    let fifo = dir.join("arrivals");
    let arrivals = fifo_reader(&fifo)?;
    let exec_hook = format!("echo \"$WATCH_DELTA\" > '{}'", fifo.display());
    let mut exec_watcher = start_watcher(
        &bin,
        &etcd,
        dir,
        &["--watch", "execbench", "--exec", &exec_hook],
        "exec.log",
    )?;
    wait_watching(dir, "exec.log")?;
    std::fs::write(
        dir.join("watch_methods.py"),
        format!(
            "def service_change(service, delta, **kwargs):\n    with open({:?}, 'w') as f:\n        f.write('%d\\n' % delta)\n",
            fifo.display().to_string()
        ),
    )?;
    let mut py_watcher = start_watcher(&bin, &etcd, dir, &["--watch", "pybench"], "python.log")?;
    wait_watching(dir, "python.log")?;

    // Idle: baseline listed, no change yet.
    std::thread::sleep(Duration::from_millis(500));
    let exec_idle = rss_mib(exec_watcher.0.id()).context("exec watcher RSS")?;
    let py_idle = rss_mib(py_watcher.0.id()).context("python watcher RSS")?;

    let raw_watch = raw_latency(&reg, args.samples).await?;
    let raw = Stats::of(&raw_watch);
    let spawn = raw_spawn(&exec_hook, &arrivals, args.samples).await?;
    // The least exec mode can do: see the change, then start the command.
    let raw_exec: Vec<Duration> = raw_watch.iter().zip(&spawn).map(|(w, s)| *w + *s).collect();
    let exec = Stats::of(&callback_latency(&reg, "execbench", &arrivals, args.samples).await?);
    let python = Stats::of(&callback_latency(&reg, "pybench", &arrivals, args.samples).await?);
    println!(
        "\n# etcd change -> callback start, no debounce ({} changes each)",
        args.samples
    );
    report_latency("exec callback start vs raw put->watch event", &exec, &raw);
    report_latency(
        "exec callback start vs raw put->watch + direct sh spawn",
        &exec,
        &Stats::of(&raw_exec),
    );
    report_latency(
        "python callback start vs raw put->watch event",
        &python,
        &raw,
    );

    // --- idle RSS ----------------------------------------------------------
    std::thread::sleep(Duration::from_millis(500));
    let exec_rss = rss_mib(exec_watcher.0.id()).context("exec watcher RSS")?;
    let py_rss = rss_mib(py_watcher.0.id()).context("python watcher RSS")?;
    let etcdctl = Command::new("etcdctl")
        .args([
            "--endpoints",
            &etcd.endpoint(),
            "watch",
            "--prefix",
            "/services/execbench/",
        ])
        .env("ETCDCTL_API", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc);
    let raw_rss = match etcdctl {
        Ok(p) => {
            std::thread::sleep(Duration::from_millis(500));
            rss_mib(p.0.id()).unwrap_or(f64::NAN)
        }
        Err(_) => f64::NAN,
    };
    println!("\n# idle resident memory (raw: an idle `etcdctl watch --prefix`)");
    report("watcher idle RSS, exec mode", exec_idle, raw_rss, "MiB");
    report("watcher idle RSS, python mode", py_idle, raw_rss, "MiB");
    let after = format!(
        "after {} changes ({} instances)",
        args.samples + 10,
        args.samples + 10
    );
    report(
        &format!("watcher RSS {after}, exec"),
        exec_rss,
        raw_rss,
        "MiB",
    );
    report(
        &format!("watcher RSS {after}, python"),
        py_rss,
        raw_rss,
        "MiB",
    );
    let _ = exec_watcher.0.kill();
    let _ = py_watcher.0.kill();

    // --- 1,000 changes within 1 s, 100 ms debounce --------------------------
    let calls = dir.join("burst.jsonl");
    let hook = format!(
        "printf '%s %s\\n' \"$WATCH_DELTA\" \"$(printf '%s' \"$WATCH_NODES\" | grep -o '\"container\"' | wc -l)\" >> '{}'",
        calls.display()
    );
    let _burst_watcher = start_watcher(
        &bin,
        &etcd,
        dir,
        &["--watch", "burst", "--exec", &hook, "--debounce", "100ms"],
        "burst.log",
    )?;
    wait_watching(dir, "burst.log")?;
    // 100 containers; every change moves one to a new port, deletes it or
    // brings it back, so each write is a visible change.
    let containers = 100usize;
    let mut present = vec![false; containers];
    let pace = Duration::from_secs(1) / args.burst as u32;
    let t0 = Instant::now();
    for i in 0..args.burst {
        let c = (i * 37) % containers;
        let name = format!("b-{c:03}");
        if present[c] && i % 3 == 0 {
            reg.delete(&InstanceName::new("burst", "default", &name)?)
                .await?;
            present[c] = false;
        } else {
            reg.put(&instance("burst", &name, 30000 + i as u16)).await?;
            present[c] = true;
        }
        // Paced to start at 0 and end before 1 s.
        let due = t0 + pace * (i as u32 + 1).min(args.burst as u32 - 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    let burst_time = t0.elapsed();
    let expected = present.iter().filter(|p| **p).count();
    let read = || -> Vec<(i64, usize)> {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
            })
            .collect()
    };
    let final_ok = wait_for("the final state", Duration::from_secs(10), || {
        read().last().map(|(_, n)| *n == expected).unwrap_or(false)
    })
    .is_ok();
    // One more window: anything still pending would fire now.
    std::thread::sleep(Duration::from_millis(300));
    let burst_calls = read();
    let net: i64 = burst_calls.iter().map(|(d, _)| d).sum();
    println!(
        "\n# {} changes in {:.2} s with --debounce 100ms (raw: changes written)",
        args.burst,
        burst_time.as_secs_f64()
    );
    report(
        "callbacks run (target <= 11)",
        burst_calls.len() as f64,
        args.burst as f64,
        "calls",
    );
    println!(
        "final state: last callback saw {} instances, expected {expected} ({}); sum of deltas {net} (expected {expected})",
        burst_calls.last().map(|(_, n)| *n).unwrap_or(0),
        if final_ok && net == expected as i64 { "right" } else { "WRONG" },
    );
    drop(_burst_watcher);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
