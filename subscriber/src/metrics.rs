//! Counters users alert on (Prometheus text on `/metrics`, one
//! prometheus-client registry encoded by `daemon::metrics`) and the status
//! `/health` reports: whether events are flowing and when the last
//! successful sync was.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daemon::metrics::Registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// A counter family with one label.
type ByLabel = Family<[(&'static str, String); 1], Counter>;

/// Most distinct event types counted by name; the rest are `other`.
const MAX_EVENT_TYPES: usize = 200;

/// Upper bounds of the resync duration buckets, in seconds.
const RESYNC_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub struct Metrics {
    registry: Registry,
    events: ByLabel,
    /// Event types counted by name so far (bounded by `MAX_EVENT_TYPES`).
    event_types: Mutex<BTreeSet<String>>,
    errors: ByLabel,
    pub records_written: Counter,
    pub records_removed: Counter,
    pub resyncs: Counter,
    pub resync_failures: Counter,
    resync_seconds: Histogram,
    pub resync_added: Counter,
    pub resync_updated: Counter,
    pub resync_removed: Counter,
    pub reconnects: Counter,
    pub queue_overflows: Counter,
    pub queue_depth: Gauge,
    pub apps_cached: Gauge,
    pub events_dropped: Counter,
    stream_connected: Gauge,
    last_sync: Mutex<Option<Instant>>,
    last_sync_unix: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let events = ByLabel::default();
        r.register(
            "subscriber_events",
            "Marathon events received, by type",
            events.clone(),
        );
        let errors = ByLabel::default();
        r.register("subscriber_errors", "Errors by kind", errors.clone());
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let records_written = counter(
            &mut r,
            "subscriber_records_written",
            "Records put into etcd",
        );
        let records_removed = counter(
            &mut r,
            "subscriber_records_removed",
            "Records deleted from etcd",
        );
        let resyncs = counter(&mut r, "subscriber_resyncs", "Completed resyncs");
        let resync_failures = counter(
            &mut r,
            "subscriber_resync_failures",
            "Resyncs that failed (Marathon or etcd unavailable)",
        );
        let resync_seconds = Histogram::new(RESYNC_BUCKETS);
        r.register(
            "subscriber_resync_duration_seconds",
            "Time spent in completed resyncs",
            resync_seconds.clone(),
        );
        let fixes = ByLabel::default();
        r.register(
            "subscriber_resync_fixes",
            "Records a resync had to fix, by action",
            fixes.clone(),
        );
        let fix = |action: &str| {
            fixes
                .get_or_create(&[("action", action.to_string())])
                .clone()
        };
        let reconnects = counter(
            &mut r,
            "subscriber_reconnects",
            "Event stream (re)connections",
        );
        let queue_overflows = counter(
            &mut r,
            "subscriber_queue_overflows",
            "Times the event queue overflowed (a full resync was scheduled)",
        );
        let events_dropped = counter(
            &mut r,
            "subscriber_events_dropped",
            "Events dropped on overflow (covered by the scheduled resync)",
        );
        let queue_depth = gauge(
            &mut r,
            "subscriber_queue_depth",
            "Events waiting for the writer",
        );
        let apps_cached = gauge(
            &mut r,
            "subscriber_app_definitions_cached",
            "App definitions cached (by app version); rebuilt at every resync",
        );
        let stream_connected = gauge(
            &mut r,
            "subscriber_stream_connected",
            "1 when the event stream is connected (or the callback subscribed)",
        );
        let last_sync_unix = gauge(
            &mut r,
            "subscriber_last_sync_timestamp_seconds",
            "Unix time of the last successful sync",
        );
        Metrics {
            registry: r,
            events,
            event_types: Mutex::default(),
            errors,
            records_written,
            records_removed,
            resyncs,
            resync_failures,
            resync_seconds,
            resync_added: fix("added"),
            resync_updated: fix("updated"),
            resync_removed: fix("removed"),
            reconnects,
            queue_overflows,
            queue_depth,
            apps_cached,
            events_dropped,
            stream_connected,
            last_sync: Mutex::default(),
            last_sync_unix,
        }
    }
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
        let mut seen = self.event_types.lock().expect("metrics lock");
        // Bound the label set: unknown types beyond the first 200 are lumped together.
        let key = if seen.contains(event_type) || seen.len() < MAX_EVENT_TYPES {
            seen.insert(event_type.to_string());
            event_type
        } else {
            "other"
        };
        drop(seen);
        self.events
            .get_or_create(&[("type", key.to_string())])
            .inc();
    }

    pub fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&[("kind", kind.to_string())])
            .inc();
    }

    pub fn errors_of(&self, kind: &'static str) -> u64 {
        self.errors
            .get(&[("kind", kind.to_string())])
            .map_or(0, |c| c.get())
    }

    pub fn events_of(&self, event_type: &str) -> u64 {
        self.events
            .get(&[("type", event_type.to_string())])
            .map_or(0, |c| c.get())
    }

    /// The event stream connected (or the callback subscribed), or not.
    pub fn set_connected(&self, connected: bool) {
        self.stream_connected.set(i64::from(connected));
    }

    pub fn resync_done(&self, took: Duration) {
        self.resyncs.inc();
        self.resync_seconds.observe(took.as_secs_f64());
        self.synced();
    }

    /// Marks a successful sync (a resync that wrote everything it planned).
    pub fn synced(&self) {
        *self.last_sync.lock().expect("metrics lock") = Some(Instant::now());
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_sync_unix
            .set(i64::try_from(unix).unwrap_or(i64::MAX));
    }

    pub fn last_sync_age(&self) -> Option<Duration> {
        self.last_sync
            .lock()
            .expect("metrics lock")
            .map(|t| t.elapsed())
    }

    /// `Ok(())` when healthy, else the reason.
    pub fn health(&self, resync_interval: Duration) -> Result<String, String> {
        if self.stream_connected.get() != 1 {
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
        daemon::metrics::encode(&self.registry)
    }
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
        m.records_written.inc_by(3);
        m.resync_done(Duration::from_millis(20));
        m.event("a\"b");
        let text = m.render();
        assert!(
            text.contains("subscriber_events_total{type=\"status_update_event\"} 2"),
            "{text}"
        );
        assert!(text.contains("subscriber_errors_total{kind=\"etcd\"} 1"));
        assert!(text.contains("subscriber_records_written_total 3"));
        assert!(
            text.contains("# TYPE subscriber_records_written_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("subscriber_events_total{type=\"a\\\"b\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("subscriber_resync_duration_seconds_sum 0.02"),
            "{text}"
        );
        assert!(
            text.contains("subscriber_resync_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("subscriber_resync_fixes_total{action=\"added\"} 0"),
            "{text}"
        );
        assert!(text.contains("subscriber_stream_connected 0"), "{text}");
        assert_eq!(m.events_of("status_update_event"), 2);
        assert_eq!(m.errors_of(kind::ETCD), 1);
    }

    #[test]
    fn health_needs_stream_and_recent_sync() {
        let m = Metrics::default();
        let i = Duration::from_secs(60);
        assert!(m.health(i).unwrap_err().contains("not connected"));
        m.set_connected(true);
        assert!(m.health(i).unwrap_err().contains("no successful sync"));
        m.synced();
        assert!(m.health(i).is_ok());
        assert!(m.health(Duration::ZERO).is_err());
    }
}
