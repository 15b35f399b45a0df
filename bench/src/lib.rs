//! Shared helpers for the benchmarks in `src/bin/`: percentiles and the one
//! output format every figure uses — our number, the raw baseline measured in
//! the same run, and the ratio.

use std::time::Duration;

pub mod chain;
pub mod faults;
pub mod raw_chain;
pub mod receiver;
pub mod setup;

/// Latency summary of one series of samples.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Stats {
    /// Summarises samples (order does not matter). Panics on an empty series.
    pub fn of(samples: &[Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort_unstable();
        let pick = |q: f64| s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1];
        let total: Duration = s.iter().sum();
        Stats {
            count: s.len(),
            p50: pick(0.50),
            p99: pick(0.99),
            max: *s.last().unwrap(),
            mean: total / s.len() as u32,
        }
    }
}

/// The median of a series (the upper one of an even count). Panics on an
/// empty series.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Prints one figure: ours beside the raw baseline, and ours/raw.
pub fn report(figure: &str, ours: f64, raw: f64, unit: &str) {
    let ratio = if raw > 0.0 { ours / raw } else { f64::NAN };
    println!(
        "{figure:<58} ours {ours:>12.3} {unit:<6} raw {raw:>12.3} {unit:<6} ratio {ratio:>7.2}"
    );
}

/// Prints one duration figure in milliseconds beside its raw baseline.
pub fn report_ms(figure: &str, ours: Duration, raw: Duration) {
    report(
        figure,
        ours.as_secs_f64() * 1e3,
        raw.as_secs_f64() * 1e3,
        "ms",
    );
}

/// Prints one latency figure (p50 and p99) beside its raw baseline.
pub fn report_latency(figure: &str, ours: &Stats, raw: &Stats) {
    let f = |d: Duration| d.as_secs_f64() * 1e3;
    report(&format!("{figure} p50"), f(ours.p50), f(raw.p50), "ms");
    report(&format!("{figure} p99"), f(ours.p99), f(raw.p99), "ms");
}

/// A binary built beside the running benchmark (same `target/<profile>`),
/// with a clear message naming the cargo command when it is missing.
pub fn sibling_binary(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe =
        std::env::current_exe().map_err(|e| anyhow::anyhow!("locating this benchmark: {e}"))?;
    let path = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("this benchmark has no folder"))?
        .join(name);
    if !path.exists() {
        anyhow::bail!(
            "{} not found: build it with `cargo build --release -p bench --bins -p manager -p deployer`",
            path.display()
        );
    }
    Ok(path)
}

/// Resident set size of a process in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The manager binary set up for a benchmark, not yet spawned: a free
/// loopback port, this etcd, `data` as its data folder, a node large enough
/// that no bench waits for resources, `RUST_LOG=warn`, stdout discarded.
/// Callers add their own flags (`--docker`, `--internal-prefix`, ...) and
/// spawn it. Returns the command and the base URL it will serve.
pub fn manager_command(
    bin: &std::path::Path,
    etcd_endpoint: &str,
    data: &std::path::Path,
) -> anyhow::Result<(std::process::Command, String)> {
    let port = testkit::free_port()?;
    Ok((
        manager_command_on(bin, etcd_endpoint, data, port),
        format!("http://127.0.0.1:{port}"),
    ))
}

/// [`manager_command`] on a given port (a manager restarted on the same address).
pub fn manager_command_on(
    bin: &std::path::Path,
    etcd_endpoint: &str,
    data: &std::path::Path,
    port: u16,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--etcd-endpoints", etcd_endpoint])
        .args(["--node-cpus", "1000", "--node-mem", "1000000"])
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Stats::of(&samples);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.count, 100);
    }
}
