//! Issue 14's fault suite: the real manager and subscriber binaries on a
//! real 3-member etcd cluster, real command tasks and real Docker containers
//! (the engine behind a socket proxy of ours). After each fault the
//! invariant is awaited: per app, the processes and containers that run ==
//! the manager's running tasks == the records in etcd, no duplicates, no
//! orphans, nothing back after it was gone. Converge times are printed
//! (`measured:` lines, `--nocapture`); the longer seeded soak is
//! `bench/src/bin/soak.rs`.

use std::time::Duration;

use bench::faults::{
    self, inject, Checker, Delivery, EtcdReaders, Fault, Outcome, Stack, StackOptions,
};
use testkit::docker::require_docker;
use testkit::docker_proxy::Mode;
use testkit::fuzz::Rng;

/// Per fault: far above what any fault takes here (seconds), so that only a
/// stack that does not come back fails.
const DEADLINE: Duration = Duration::from_secs(90);

/// The folder of the manager, its task shim and the subscriber, each built
/// by testkit (`cargo build -p manager` builds the shim too).
fn bin_dir() -> std::path::PathBuf {
    let manager = testkit::manager::binary();
    testkit::subscriber::binary();
    manager.parent().expect("a binary's folder").to_path_buf()
}

async fn stack(delivery: Delivery) -> (Stack, EtcdReaders, Checker) {
    testkit::images::busybox();
    let stack = Stack::start(StackOptions {
        bin_dir: bin_dir(),
        delivery,
        // No periodic resync during the suite: what converges, converges
        // through events and the resync at the subscriber's start.
        resync_interval: "1h".into(),
        log_level: "info".into(),
    })
    .await
    .expect("the stack starts");
    let reg = stack.readers().await.expect("registry");
    let mut checker = Checker::new();
    faults::deploy(&stack).await.expect("deploy the workload");
    let took = faults::inject::settle(&stack, &reg, &mut checker, DEADLINE).await;
    assert!(
        took.is_some(),
        "the workload never ran everywhere: {:?}\n{}",
        checker.violations,
        stack.log_tails(60)
    );
    (stack, reg, checker)
}

fn print(o: &Outcome) {
    let ms =
        |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{} ms", d.as_millis()));
    println!(
        "measured: {}: converged {} after healing ({} from the first action); {}",
        o.fault.name(),
        ms(o.converge),
        ms(o.total),
        o.notes.join("; ")
    );
}

async fn run(stack: &mut Stack, reg: &EtcdReaders, checker: &mut Checker, list: &[Fault]) {
    let mut rng = Rng::new(14);
    for &fault in list {
        let o = inject(stack, reg, checker, &mut rng, fault, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", fault.name(), stack.log_tails(60)));
        print(&o);
        assert!(
            checker.violations.is_empty() && o.converge.is_some(),
            "{}: invariant violated: {:#?}\n{}",
            fault.name(),
            checker.violations,
            stack.log_tails(80)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_and_docker_faults_never_leave_the_stack_wrong() {
    if !require_docker() {
        return;
    }
    let (mut stack, reg, mut checker) = stack(Delivery::Callback).await;
    run(
        &mut stack,
        &reg,
        &mut checker,
        &[
            Fault::ManagerKill,
            Fault::SubscriberKill,
            Fault::SubscriberRestartKillsInFlight,
            Fault::UnreachableThenRunning,
            Fault::KillDuringSlowLaunch,
            Fault::DockerDownAtStart(Mode::Refuse),
            Fault::DockerDownAtStart(Mode::Stall),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_faults_never_leave_the_stack_wrong() {
    if !require_docker() {
        return;
    }
    let (mut stack, reg, mut checker) = stack(Delivery::Sse).await;
    run(
        &mut stack,
        &reg,
        &mut checker,
        &[
            Fault::EtcdLeaderKill,
            Fault::EtcdAllDown(Duration::from_secs(20)),
            Fault::ManagerKill,
        ],
    )
    .await;
}
