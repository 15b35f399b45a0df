//! Issue 14's soak: the stack of the fault suite (`bench::faults`: the
//! manager and subscriber binaries on a 3-member etcd cluster, command tasks
//! and Docker containers behind a socket proxy) under seeded random churn
//! and random faults for a chosen number of minutes. Prints every fault and
//! the converge time after it, per fault p50 / p99 / max, the converge time
//! of plain churn with no fault (the baseline) and every invariant violation;
//! exits 1 when there was any.
//!
//! ```sh
//! cargo build --release -p bench --bin soak -p manager -p subscriber
//! target/release/soak --minutes 10 --seed 1
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bench::faults::{self, inject, Checker, Delivery, Fault, Stack, StackOptions};
use bench::{ms, Stats};
use clap::Parser;
use testkit::docker_proxy::Mode;
use testkit::fuzz::Rng;

/// Seeded random churn and faults against the whole stack; every converge
/// time and invariant violation printed.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// How long to run (churn and faults), in minutes.
    #[arg(long, env = "SOAK_MINUTES", default_value_t = 10.0)]
    minutes: f64,
    /// Seed of the churn and of the choice of faults.
    #[arg(long, env = "SOAK_SEED", default_value_t = 1)]
    seed: u64,
    /// How long all etcd members stay down in that fault, in seconds.
    #[arg(long, env = "SOAK_ETCD_DOWN_SECONDS", default_value_t = 20)]
    etcd_down_seconds: u64,
    /// Longest wait for the invariant after one fault, in seconds (longer =
    /// a violation).
    #[arg(long, env = "SOAK_DEADLINE_SECONDS", default_value_t = 120)]
    deadline_seconds: u64,
    /// Only faults whose name contains this text (e.g. `docker`, `etcd`).
    #[arg(long, env = "SOAK_ONLY")]
    only: Option<String>,
    /// Copy the manager's and the subscriber's logs into this folder at the end.
    #[arg(long, env = "SOAK_LOGS")]
    logs: Option<std::path::PathBuf>,
    /// The subscriber's --resync-interval.
    #[arg(long, env = "SOAK_RESYNC_INTERVAL", default_value = "60s")]
    resync_interval: String,
}

fn pick_fault(rng: &mut Rng, etcd_down: Duration, only: Option<&str>) -> Fault {
    let all = [
        Fault::ManagerKill,
        Fault::SubscriberKill,
        Fault::EtcdLeaderKill,
        Fault::EtcdAllDown(etcd_down),
        Fault::DockerDownAtStart(if rng.chance(50) {
            Mode::Refuse
        } else {
            Mode::Stall
        }),
        Fault::KillDuringSlowLaunch,
        Fault::SubscriberRestartKillsInFlight,
        Fault::UnreachableThenRunning,
    ];
    let chosen: Vec<Fault> = all
        .iter()
        .copied()
        .filter(|f| only.is_none_or(|o| f.name().contains(o)))
        .collect();
    if chosen.is_empty() {
        return *rng.pick(&all);
    }
    *rng.pick(&chosen)
}

fn kind(f: &Fault) -> String {
    match f {
        Fault::DockerDownAtStart(_) => "docker engine down at manager start".into(),
        other => other.name(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("this binary has no folder"))?;
    let deadline = Duration::from_secs(args.deadline_seconds);
    let etcd_down = Duration::from_secs(args.etcd_down_seconds);
    println!(
        "soak: seed {}, {} min, etcd down {} s, deadline {} s, resync {}",
        args.seed,
        args.minutes,
        args.etcd_down_seconds,
        args.deadline_seconds,
        args.resync_interval
    );
    testkit::images::busybox();
    let mut stack = Stack::start(StackOptions {
        bin_dir,
        delivery: Delivery::Callback,
        resync_interval: args.resync_interval.clone(),
        log_level: "info".into(),
    })
    .await?;
    let reg = stack.readers().await?;
    let mut checker = Checker::new();
    let mut rng = Rng::new(args.seed);
    faults::deploy(&stack).await?;
    match faults::inject::settle(&stack, &reg, &mut checker, deadline).await {
        Some(t) => println!("workload running everywhere after {}", ms(t)),
        None => anyhow::bail!("the workload never converged: {:?}", checker.violations),
    }

    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut by_kind: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let mut all_faults: Vec<Duration> = Vec::new();
    let mut churn_only: Vec<Duration> = Vec::new();
    let mut n = 0;
    while started.elapsed() < run_for {
        // Plain churn first: 1 to 3 changes, then the invariant (baseline).
        let t = Instant::now();
        let mut done = Vec::new();
        for _ in 0..1 + rng.below(3) {
            done.push(faults::churn(&stack, &mut rng).await?);
        }
        let label = format!("churn #{n}");
        match checker.converge(&stack, &reg, &label, t, deadline).await {
            Some(c) => {
                churn_only.push(c.took);
                println!(
                    "[{:>6.1} s] churn: {} -> converged {}",
                    started.elapsed().as_secs_f64(),
                    done.join("; "),
                    ms(c.took)
                );
            }
            None => println!("[churn] NOT converged: {:?}", checker.last_problems),
        }
        // Then one fault.
        n += 1;
        let fault = pick_fault(&mut rng, etcd_down, args.only.as_deref());
        let before = checker.violations.len();
        let o = inject(&mut stack, &reg, &mut checker, &mut rng, fault, deadline).await?;
        let conv = o.converge.map_or("NEVER".into(), ms);
        println!(
            "[{:>6.1} s] fault #{n}: {} -> converged {} after healing ({} from its first action); {}",
            started.elapsed().as_secs_f64(),
            fault.name(),
            conv,
            o.total.map_or("-".into(), ms),
            o.notes.join("; ")
        );
        for v in &checker.violations[before..] {
            println!("    VIOLATION: {v}");
        }
        if let Some(c) = o.converge {
            by_kind.entry(kind(&fault)).or_default().push(c);
            all_faults.push(c);
        }
    }

    println!();
    println!(
        "== {} faults in {:.1} min (seed {})",
        n,
        started.elapsed().as_secs_f64() / 60.0,
        args.seed
    );
    println!(
        "{:<44} {:>5} {:>12} {:>12} {:>12}",
        "converge time after healing", "n", "p50", "p99", "max"
    );
    let line = |name: &str, v: &[Duration]| {
        if v.is_empty() {
            println!("{name:<44} {:>5}", 0);
        } else {
            let s = Stats::of(v);
            println!(
                "{name:<44} {:>5} {:>12} {:>12} {:>12}",
                s.count,
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            );
        }
    };
    for (k, v) in &by_kind {
        line(k, v);
    }
    line("every fault", &all_faults);
    line("baseline: churn alone, no fault", &churn_only);
    println!("invariant violations: {}", checker.violations.len());
    for v in &checker.violations {
        println!("  {v}");
    }
    if let Some(dir) = &args.logs {
        stack.copy_logs(dir)?;
        println!("logs copied to {}", dir.display());
    }
    if !checker.violations.is_empty() {
        println!("{}", stack.log_tails(60));
        std::process::exit(1);
    }
    Ok(())
}
