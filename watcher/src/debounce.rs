//! Debouncing as a small state machine over explicit instants: the first
//! change fires at once and opens a quiet window; changes seen during the
//! window are not reported one by one: when it ends, the net change since
//! the last report (if any) fires and opens a new window. A burst therefore
//! costs at most one callback per window, and a lone change is never delayed.

use std::time::Duration;

use tokio::time::Instant;

use crate::delta::{delta, Change, InstanceSet};

#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    /// The instance set the last callback was told about (or the baseline).
    reported: InstanceSet,
    /// End of the current quiet window.
    quiet_until: Option<Instant>,
}

impl Debouncer {
    /// Starts from `baseline`, the state at start-up: it is never reported.
    pub fn new(window: Duration, baseline: InstanceSet) -> Debouncer {
        Debouncer {
            window,
            reported: baseline,
            quiet_until: None,
        }
    }

    /// The state changed to `current` at `now`: the change to report now, if any.
    pub fn offer(&mut self, now: Instant, current: &InstanceSet) -> Option<Change> {
        if matches!(self.quiet_until, Some(until) if now < until) {
            return None;
        }
        self.fire(now, current)
    }

    /// Call at [`Debouncer::deadline`]: reports what accumulated in the window.
    pub fn expire(&mut self, now: Instant, current: &InstanceSet) -> Option<Change> {
        self.quiet_until = None;
        self.fire(now, current)
    }

    /// When [`Debouncer::expire`] must be called, if a window is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.quiet_until
    }

    fn fire(&mut self, now: Instant, current: &InstanceSet) -> Option<Change> {
        let change = delta(&self.reported, current)?;
        self.reported = current.clone();
        if !self.window.is_zero() {
            self.quiet_until = Some(now + self.window);
        }
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Node;
    use serde_json::json;

    fn set(names: &[&str]) -> InstanceSet {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Node::new(*n, json!({"container": n, "host": "h"})),
                )
            })
            .collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn without_window_every_change_fires() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::ZERO, set(&["a"]));
        assert!(
            d.offer(t0, &set(&["a"])).is_none(),
            "baseline is not a change"
        );
        assert_eq!(d.offer(t0, &set(&["a", "b"])).unwrap().delta, 1);
        assert_eq!(d.offer(t0, &set(&["a", "b", "c"])).unwrap().delta, 1);
        assert!(d.deadline().is_none());
        assert!(d.offer(t0, &set(&["a", "b", "c"])).is_none());
    }

    #[test]
    fn first_change_fires_at_once_then_the_window_coalesces() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(100), set(&[]));
        let first = d.offer(t0, &set(&["a"])).unwrap();
        assert_eq!(first.delta, 1);
        assert_eq!(d.deadline(), Some(t0 + ms(100)));
        // Within the window: nothing fires.
        assert!(d.offer(t0 + ms(10), &set(&["a", "b"])).is_none());
        assert!(d.offer(t0 + ms(20), &set(&["a", "b", "c"])).is_none());
        // At the deadline: one net change, and a new window.
        let net = d.expire(t0 + ms(100), &set(&["a", "b", "c"])).unwrap();
        assert_eq!(net.delta, 2);
        assert_eq!(net.added.len(), 2);
        assert_eq!(d.deadline(), Some(t0 + ms(200)));
        // A quiet window closes with nothing to report, and the next change
        // fires at once again.
        assert!(d.expire(t0 + ms(200), &set(&["a", "b", "c"])).is_none());
        assert!(d.deadline().is_none());
        assert_eq!(d.offer(t0 + ms(500), &set(&["a", "b"])).unwrap().delta, -1);
    }

    #[test]
    fn changes_that_cancel_out_in_the_window_report_nothing() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(100), set(&["a"]));
        assert!(d.offer(t0, &set(&["a", "b"])).is_some());
        assert!(d.offer(t0 + ms(1), &set(&["a", "b", "c"])).is_none());
        assert!(d.offer(t0 + ms(2), &set(&["a", "b"])).is_none());
        assert!(d.expire(t0 + ms(100), &set(&["a", "b"])).is_none());
    }

    #[test]
    fn a_late_offer_after_the_deadline_fires() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(100), set(&[]));
        assert!(d.offer(t0, &set(&["a"])).is_some());
        // The timer has not been handled yet, but the window is over.
        let c = d.offer(t0 + ms(150), &set(&["a", "b"])).unwrap();
        assert_eq!(c.delta, 1);
        assert_eq!(d.deadline(), Some(t0 + ms(250)));
    }
}
