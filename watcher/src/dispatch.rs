//! Runs the callbacks, one at a time and in order, each after an optional
//! random splay. A failing callback is logged and the next one runs. The
//! changes that queued up behind a slow callback ([`SLOW_CALLBACK`]) are
//! coalesced: one net change per watch (from what the last callback saw to
//! the latest state), never a backlog of stale ones.

use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::delta::merge;
use crate::hook::{HookError, Notification, Runner};

/// A callback that ran at least this long is slow: the changes that queued
/// up meanwhile are coalesced (faster callbacks get every change in turn).
pub const SLOW_CALLBACK: Duration = Duration::from_secs(1);

/// Until `rx` closes or `stop` is cancelled. A callback that is running when
/// `stop` is cancelled finishes first (the caller bounds that wait).
pub async fn dispatch(
    mut rx: mpsc::Receiver<Notification>,
    runner: Runner,
    splay: Duration,
    stop: CancellationToken,
) {
    // Changes taken out of `rx` but not delivered yet (oldest first).
    let mut pending: Vec<Notification> = Vec::new();
    loop {
        if pending.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                n = rx.recv() => match n {
                    Some(n) => pending.push(n),
                    None => return,
                },
            }
        }
        let n = pending.remove(0);
        if !splay.is_zero() {
            let wait = random_splay(splay);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let started = Instant::now();
        match runner.run(&n).await {
            Ok(()) => info!(
                watch = %n.watch,
                delta = n.change.delta,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "callback done"
            ),
            Err(HookError::PythonRaised { traceback }) => warn!(
                watch = %n.watch,
                delta = n.change.delta,
                "service_change raised, going on:\n{}",
                traceback.trim_end()
            ),
            Err(e) => {
                warn!(watch = %n.watch, delta = n.change.delta, error = %e, "callback failed, going on")
            }
        }
        if started.elapsed() >= SLOW_CALLBACK {
            let mut coalesced = 0usize;
            while let Ok(n) = rx.try_recv() {
                coalesce(&mut pending, n);
                coalesced += 1;
            }
            if coalesced > 0 {
                info!(
                    coalesced,
                    pending = pending.len(),
                    "changes queued behind a slow callback coalesced: the next callbacks get the latest state"
                );
            }
        }
    }
}

/// Adds `n` to the waiting changes: merged into the waiting change of the
/// same watch (dropped when they cancel out), else queued after the others.
pub fn coalesce(pending: &mut Vec<Notification>, n: Notification) {
    match pending.iter().position(|p| p.watch == n.watch) {
        None => pending.push(n),
        Some(i) => match merge(&pending[i].change, &n.change) {
            Some(change) => pending[i].change = change,
            None => {
                pending.remove(i);
            }
        },
    }
}

/// Uniform in [0, max).
pub fn random_splay(max: Duration) -> Duration {
    let nanos = max.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_changes_coalesce_per_watch() {
        use crate::delta::{delta, InstanceSet, Node};
        let set = |names: &[&str]| -> InstanceSet {
            names
                .iter()
                .map(|n| {
                    let node = Node::new(*n, serde_json::json!({"container": n, "host": "h"}));
                    (n.to_string(), node)
                })
                .collect()
        };
        let note = |watch: &str, from: &[&str], to: &[&str]| Notification {
            watch: watch.into(),
            change: delta(&set(from), &set(to)).unwrap(),
        };
        let mut pending = Vec::new();
        coalesce(&mut pending, note("a", &[], &["1"]));
        coalesce(&mut pending, note("b", &[], &["x"]));
        coalesce(&mut pending, note("a", &["1"], &["1", "2"]));
        coalesce(&mut pending, note("a", &["1", "2"], &["2", "3"]));
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].watch, "a");
        assert_eq!(
            pending[0].change,
            delta(&set(&[]), &set(&["2", "3"])).unwrap()
        );
        assert_eq!(pending[1].watch, "b");
        coalesce(&mut pending, note("b", &["x"], &[]));
        assert_eq!(pending.len(), 1, "b came and went");
    }

    #[test]
    fn splay_stays_in_range_and_varies() {
        let max = Duration::from_millis(50);
        let draws: Vec<Duration> = (0..200).map(|_| random_splay(max)).collect();
        assert!(draws.iter().all(|d| *d < max));
        assert!(draws.iter().any(|d| *d != draws[0]), "not constant");
        assert_eq!(random_splay(Duration::ZERO), Duration::ZERO);
    }
}
