//! Counters users alert on (Prometheus text on `/metrics`) and the status
//! `/health` reports: whether events are flowing and when the last
//! successful sync was.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Metrics {
    events: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    pub records_written: AtomicU64,
    pub records_removed: AtomicU64,
    pub resyncs: AtomicU64,
    pub resync_failures: AtomicU64,
    resync_seconds_micros: AtomicU64,
    pub resync_added: AtomicU64,
    pub resync_updated: AtomicU64,
    pub resync_removed: AtomicU64,
    pub reconnects: AtomicU64,
    pub queue_overflows: AtomicU64,
    pub queue_depth: AtomicU64,
    pub apps_cached: AtomicU64,
    pub events_dropped: AtomicU64,
    pub stream_connected: AtomicBool,
    last_sync: Mutex<Option<Instant>>,
    last_sync_unix: AtomicU64,
}

/// Error kinds counted in `subscriber_errors_total{kind=...}`.
pub mod kind {
    pub const ETCD: &str = "etcd";
    pub const MARATHON: &str = "marathon";
    pub const MALFORMED_EVENT: &str = "malformed_event";
    pub const INVALID_NAME: &str = "invalid_name";
    pub const CONFLICT: &str = "conflict";
}

impl Metrics {
    pub fn event(&self, event_type: &str) {
        let mut g = self.events.lock().expect("metrics lock");
        match g.get_mut(event_type) {
            Some(n) => *n += 1,
            None => {
                // Bound the label set: unknown types beyond 200 are lumped together.
                let key = if g.len() < 200 { event_type } else { "other" };
                *g.entry(key.to_string()).or_default() += 1;
            }
        }
    }

    pub fn error(&self, kind: &'static str) {
        *self
            .errors
            .lock()
            .expect("metrics lock")
            .entry(kind)
            .or_default() += 1;
    }

    pub fn errors_of(&self, kind: &'static str) -> u64 {
        self.errors
            .lock()
            .expect("metrics lock")
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    pub fn events_of(&self, event_type: &str) -> u64 {
        self.events
            .lock()
            .expect("metrics lock")
            .get(event_type)
            .copied()
            .unwrap_or(0)
    }

    pub fn resync_done(&self, took: Duration) {
        self.resyncs.fetch_add(1, Relaxed);
        self.resync_seconds_micros
            .fetch_add(took.as_micros() as u64, Relaxed);
        self.synced();
    }

    /// Marks a successful sync (a resync that wrote everything it planned).
    pub fn synced(&self) {
        *self.last_sync.lock().expect("metrics lock") = Some(Instant::now());
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_sync_unix.store(unix, Relaxed);
    }

    pub fn last_sync_age(&self) -> Option<Duration> {
        self.last_sync
            .lock()
            .expect("metrics lock")
            .map(|t| t.elapsed())
    }

    /// `Ok(())` when healthy, else the reason.
    pub fn health(&self, resync_interval: Duration) -> Result<String, String> {
        if !self.stream_connected.load(Relaxed) {
            return Err("event stream not connected (or callback not subscribed)".into());
        }
        match self.last_sync_age() {
            None => Err("no successful sync yet".into()),
            Some(age) if age > resync_interval * 3 => Err(format!(
                "last successful sync {:.1}s ago (limit {:.1}s)",
                age.as_secs_f64(),
                (resync_interval * 3).as_secs_f64()
            )),
            Some(age) => Ok(format!(
                "ok: events flowing, last successful sync {:.1}s ago",
                age.as_secs_f64()
            )),
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let gauge = |s: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let _ = writeln!(
            s,
            "# HELP subscriber_events_total Marathon events received, by type.\n# TYPE subscriber_events_total counter"
        );
        for (t, n) in self.events.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                s,
                "subscriber_events_total{{type=\"{}\"}} {n}",
                escape_label(t)
            );
        }
        let _ = writeln!(
            s,
            "# HELP subscriber_errors_total Errors by kind.\n# TYPE subscriber_errors_total counter"
        );
        for (k, n) in self.errors.lock().expect("metrics lock").iter() {
            let _ = writeln!(s, "subscriber_errors_total{{kind=\"{k}\"}} {n}");
        }
        counter(
            &mut s,
            "subscriber_records_written_total",
            "Records put into etcd.",
            self.records_written.load(Relaxed),
        );
        counter(
            &mut s,
            "subscriber_records_removed_total",
            "Records deleted from etcd.",
            self.records_removed.load(Relaxed),
        );
        counter(
            &mut s,
            "subscriber_resyncs_total",
            "Completed resyncs.",
            self.resyncs.load(Relaxed),
        );
        counter(
            &mut s,
            "subscriber_resync_failures_total",
            "Resyncs that failed (Marathon or etcd unavailable).",
            self.resync_failures.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP subscriber_resync_duration_seconds_sum Total time spent in resyncs.\n# TYPE subscriber_resync_duration_seconds_sum counter\nsubscriber_resync_duration_seconds_sum {:.6}",
            self.resync_seconds_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "# HELP subscriber_resync_fixes_total Records a resync had to fix, by action.\n# TYPE subscriber_resync_fixes_total counter\nsubscriber_resync_fixes_total{{action=\"added\"}} {}\nsubscriber_resync_fixes_total{{action=\"updated\"}} {}\nsubscriber_resync_fixes_total{{action=\"removed\"}} {}",
            self.resync_added.load(Relaxed),
            self.resync_updated.load(Relaxed),
            self.resync_removed.load(Relaxed)
        );
        counter(
            &mut s,
            "subscriber_reconnects_total",
            "Event stream (re)connections.",
            self.reconnects.load(Relaxed),
        );
        counter(
            &mut s,
            "subscriber_queue_overflows_total",
            "Times the event queue overflowed (a full resync was scheduled).",
            self.queue_overflows.load(Relaxed),
        );
        counter(
            &mut s,
            "subscriber_events_dropped_total",
            "Events dropped on overflow (covered by the scheduled resync).",
            self.events_dropped.load(Relaxed),
        );
        gauge(
            &mut s,
            "subscriber_queue_depth",
            "Events waiting for the writer.",
            self.queue_depth.load(Relaxed).to_string(),
        );
        gauge(
            &mut s,
            "subscriber_app_definitions_cached",
            "App definitions cached (by app version); rebuilt at every resync.",
            self.apps_cached.load(Relaxed).to_string(),
        );
        gauge(
            &mut s,
            "subscriber_stream_connected",
            "1 when the event stream is connected (or the callback subscribed).",
            (self.stream_connected.load(Relaxed) as u8).to_string(),
        );
        gauge(
            &mut s,
            "subscriber_last_sync_timestamp_seconds",
            "Unix time of the last successful sync.",
            self.last_sync_unix.load(Relaxed).to_string(),
        );
        s
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.event("status_update_event");
        m.event("status_update_event");
        m.error(kind::ETCD);
        m.records_written.fetch_add(3, Relaxed);
        let text = m.render();
        assert!(
            text.contains("subscriber_events_total{type=\"status_update_event\"} 2"),
            "{text}"
        );
        assert!(text.contains("subscriber_errors_total{kind=\"etcd\"} 1"));
        assert!(text.contains("subscriber_records_written_total 3"));
    }

    #[test]
    fn health_needs_stream_and_recent_sync() {
        let m = Metrics::default();
        let i = Duration::from_secs(60);
        assert!(m.health(i).unwrap_err().contains("not connected"));
        m.stream_connected.store(true, Relaxed);
        assert!(m.health(i).unwrap_err().contains("no successful sync"));
        m.synced();
        assert!(m.health(i).is_ok());
        assert!(m.health(Duration::ZERO).is_err());
    }
}
