//! `/metrics` for every binary: one `prometheus-client` [`Registry`] per
//! binary, encoded as Prometheus text (version 0.0.4, the format our metric
//! names and `# TYPE` lines have always had) with label values escaped by
//! the library. [`Scraped`] is for values that live elsewhere (the manager's
//! task counts, read from its state at each scrape).
//!
//! prometheus-client adds `_total` to a counter's name itself: register
//! `foo`, scrape `foo_total`.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The registry as Prometheus text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; a metric that fails to encode
    // leaves what was written before it.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// A value read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Counter(u64),
    /// Written as an integer when it is one (`3`, not `3.0`).
    Gauge(f64),
}

/// One metric family read at scrape time: `name` without `_total` for
/// counters (it is added), help without the final full stop (it is added).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub counter: bool,
    /// Label pairs and value of each series.
    pub series: Vec<(Vec<(String, String)>, Value)>,
}

impl Family {
    /// A family of one series without labels.
    pub fn single(name: &str, help: &str, value: Value) -> Family {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            counter: matches!(value, Value::Counter(_)),
            series: vec![(Vec::new(), value)],
        }
    }
}

/// A [`Collector`] that calls `read` at each scrape.
pub struct Scraped<F>(pub F);

impl<F> fmt::Debug for Scraped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scraped")
    }
}

impl<F: Fn() -> Vec<Family> + Send + Sync + 'static> Collector for Scraped<F> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for family in (self.0)() {
            let kind = if family.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut metric = encoder.encode_descriptor(&family.name, &family.help, None, kind)?;
            for (labels, value) in &family.series {
                let series = metric.encode_family(labels)?;
                match *value {
                    Value::Counter(n) => ConstCounter::new(n).encode(series)?,
                    Value::Gauge(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => {
                        ConstGauge::new(v as i64).encode(series)?
                    }
                    Value::Gauge(v) => ConstGauge::new(v).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as Labelled;

    #[test]
    fn label_values_with_quotes_backslashes_and_newlines_are_escaped() {
        let mut registry = Registry::default();
        let events: Labelled<[(&'static str, String); 1], Counter> = Labelled::default();
        registry.register("demo_events", "Events, by type", events.clone());
        events
            .get_or_create(&[("type", "a\"b\\c\nd".to_string())])
            .inc();
        let text = encode(&registry);
        assert_eq!(
            text,
            "# HELP demo_events_total Events, by type.\n\
             # TYPE demo_events_total counter\n\
             demo_events_total{type=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn scraped_values_read_at_each_scrape() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scraped(|| {
            vec![
                Family::single("demo_apps", "Apps", Value::Gauge(3.0)),
                Family::single("demo_cpus", "CPUs", Value::Gauge(0.25)),
                Family {
                    name: "demo_published".into(),
                    help: "Published, by type".into(),
                    counter: true,
                    series: vec![(
                        vec![("event_type".into(), "x\"y".into())],
                        Value::Counter(2),
                    )],
                },
            ]
        })));
        let text = encode(&registry);
        assert!(
            text.contains("# TYPE demo_apps gauge\ndemo_apps 3\n"),
            "{text}"
        );
        assert!(text.contains("demo_cpus 0.25\n"), "{text}");
        assert!(
            text.contains("# TYPE demo_published_total counter\ndemo_published_total{event_type=\"x\\\"y\"} 2\n"),
            "{text}"
        );
    }
}
