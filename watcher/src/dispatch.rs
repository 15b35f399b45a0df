//! Runs the callbacks, one at a time and in order, each after an optional
//! random splay. A failing callback is logged and the next one runs.

use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hook::{HookError, Notification, Runner};

/// Until `rx` closes or `stop` is cancelled. A callback that is running when
/// `stop` is cancelled finishes first (the caller bounds that wait).
pub async fn dispatch(
    mut rx: mpsc::Receiver<Notification>,
    runner: Runner,
    splay: Duration,
    stop: CancellationToken,
) {
    loop {
        let n = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            n = rx.recv() => match n {
                Some(n) => n,
                None => return,
            },
        };
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
    fn splay_stays_in_range_and_varies() {
        let max = Duration::from_millis(50);
        let draws: Vec<Duration> = (0..200).map(|_| random_splay(max)).collect();
        assert!(draws.iter().all(|d| *d < max));
        assert!(draws.iter().any(|d| *d != draws[0]), "not constant");
        assert_eq!(random_splay(Duration::ZERO), Duration::ZERO);
    }
}
