//! Benchmark: `get_node_list` for a service with 100 instances and 2 ports,
//! from Rust and from Python, beside a raw etcd prefix get of the same keys
//! measured in the same run (interleaved, same etcd, same connection kind).
//!
//! cargo run --release -p bench --bin guestutils_bench -- [ITERATIONS] [PYTHON]
//!
//! PYTHON is an interpreter that can `import guestutils` (a venv with the
//! wheel installed); without one the Python figure is skipped.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use guestutils::{AsyncGuestUtils, Environment};
use registry::etcd_client::GetOptions;
use registry::{Instance, Op, Port, Registry, Settings};

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(figure: &str, ours: f64, raw: f64) {
    let ratio = if raw > 0.0 { ours / raw } else { f64::NAN };
    println!("{figure:<58} ours {ours:>9.3} ms  raw {raw:>9.3} ms  ratio {ratio:>6.2}");
}

fn instance(i: usize) -> Instance {
    Instance {
        schema: 1,
        service: "bench".into(),
        group: "default".into(),
        labels: vec![],
        container: format!("bench.instance-{i:04}"),
        app_id: "/bench".into(),
        app_version: "2026-11-22T10:00:00.000Z".into(),
        node: "node-1".into(),
        host: format!("10.0.{}.{}", i / 250, i % 250 + 1),
        internal_address: Some(format!("172.17.{}.{}", i / 250, i % 250 + 2)),
        ports: BTreeMap::from([
            ("api".to_string(), Port::tcp(31000 + i as u16, 5000)),
            ("ssh".to_string(), Port::tcp(32000 + i as u16, 22)),
        ]),
        state: "TASK_RUNNING".into(),
        healthy: Some(true),
        started_at: "2026-11-22T10:00:01.000Z".into(),
        owner: "default".into(),
    }
}

const PY: &str = r#"
import json, os, sys, time
import guestutils
n = int(sys.argv[1])
for _ in range(50):
    guestutils.get_node_list("bench", ["api", "ssh"], 100)
out = []
for _ in range(n):
    t = time.perf_counter_ns()
    nodes = guestutils.get_node_list("bench", ["api", "ssh"], 100)
    out.append(time.perf_counter_ns() - t)
assert len(nodes) == 100
print(json.dumps(out))
"#;

#[tokio::main]
async fn main() -> anyhow_free::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let iterations: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let python = args.get(2).cloned();

    let etcd = testkit::Etcd::start().map_err(|e| e.to_string())?;
    let settings = Settings::new([etcd.endpoint()]);
    let reg = Registry::connect(&settings)
        .await
        .map_err(|e| e.to_string())?;
    reg.apply((0..100).map(|i| Op::put(instance(i))).collect())
        .await
        .map_err(|e| e.to_string())?;

    let env: Environment = [("ETCD_ENDPOINTS", etcd.endpoint())].into_iter().collect();
    let guest = AsyncGuestUtils::new(env);
    let mut raw = reg.client();
    let key = registry::keys::service_prefix(reg.prefix(), "bench").map_err(|e| e.to_string())?;
    let ports = ["api", "ssh"];
    let none: [&str; 0] = [];

    for _ in 0..100 {
        let nodes = guest
            .get_node_list("bench", &ports, 100, &none)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(nodes.len(), 100);
        raw.get(key.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| e.to_string())?;
    }
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let t = Instant::now();
        let resp = raw
            .get(key.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| e.to_string())?;
        base.push(t.elapsed());
        assert_eq!(resp.kvs().len(), 100);
        let t = Instant::now();
        let nodes = guest
            .get_node_list("bench", &ports, 100, &none)
            .await
            .map_err(|e| e.to_string())?;
        ours.push(t.elapsed());
        assert_eq!(nodes.len(), 100);
    }
    let raw_p50 = percentile(&mut base, 0.50);
    let raw_p99 = percentile(&mut base, 0.99);
    println!("get_node_list, service with 100 instances x 2 ports, {iterations} calls");
    report(
        "rust get_node_list p50 vs raw etcd prefix get",
        ms(percentile(&mut ours, 0.50)),
        ms(raw_p50),
    );
    report(
        "rust get_node_list p99 vs raw etcd prefix get",
        ms(percentile(&mut ours, 0.99)),
        ms(raw_p99),
    );

    let python = python.or_else(|| {
        let ok = Command::new("python3")
            .args(["-c", "import guestutils"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then(|| "python3".to_string())
    });
    match python {
        None => println!("python get_node_list: skipped (no interpreter can import guestutils; pass one as the 2nd argument)"),
        Some(py) => {
            let out = Command::new(&py)
                .args(["-c", PY, &iterations.to_string()])
                .env("ETCD_ENDPOINTS", etcd.endpoint())
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("python failed: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut samples: Vec<Duration> = text
                .trim()
                .trim_matches(['[', ']'])
                .split(',')
                .filter_map(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_nanos)
                .collect();
            report("python get_node_list p50 vs raw etcd prefix get", ms(percentile(&mut samples, 0.50)), ms(raw_p50));
            report("python get_node_list p99 vs raw etcd prefix get", ms(percentile(&mut samples, 0.99)), ms(raw_p99));
        }
    }
    Ok(())
}

/// Examples may not use anyhow (not a dependency of this crate): a boxed error.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}
