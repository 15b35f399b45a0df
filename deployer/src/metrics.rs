//! Prometheus counters of the deployer on `/metrics` (one prometheus-client
//! registry, encoded by `daemon::metrics`).

use daemon::metrics::{encode, Registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// A counter family with one label.
type ByLabel = Family<[(&'static str, String); 1], Counter>;

/// (metric as scraped, its label, the family).
pub struct Metrics {
    registry: Registry,
    families: Vec<(&'static str, &'static str, ByLabel)>,
}

/// (metric as scraped, label, help without the final full stop).
const COUNTERS: &[(&str, &str, &str)] = &[
    (
        "deployer_deploy_requests_total",
        "status",
        "POST /deploy requests by HTTP status",
    ),
    (
        "deployer_app_actions_total",
        "action",
        "Apps created, scaled, updated, unchanged or removed",
    ),
    (
        "deployer_marathon_errors_total",
        "kind",
        "Failed calls to the Marathon API (unreachable or rejected)",
    ),
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let families = COUNTERS
            .iter()
            .map(|(name, label, help)| {
                let family = ByLabel::default();
                // prometheus-client adds `_total` back.
                let registered = name.strip_suffix("_total").unwrap_or(name);
                registry.register(registered, *help, family.clone());
                (*name, *label, family)
            })
            .collect();
        Metrics { registry, families }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Adds one to `metric` (as scraped, e.g. `deployer_app_actions_total`)
    /// for `label`; an unknown metric is a programming error and is ignored.
    pub fn inc(&self, metric: &'static str, label: &str) {
        if let Some((_, key, family)) = self.families.iter().find(|(name, ..)| *name == metric) {
            family.get_or_create(&[(*key, label.to_string())]).inc();
        }
    }

    pub fn render(&self) -> String {
        encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        let m = super::Metrics::default();
        m.inc("deployer_app_actions_total", "created");
        m.inc("deployer_app_actions_total", "created");
        let t = m.render();
        assert!(
            t.contains("# TYPE deployer_app_actions_total counter"),
            "{t}"
        );
        assert!(
            t.contains("# HELP deployer_app_actions_total Apps created, scaled, updated, unchanged or removed.\n"),
            "{t}"
        );
        assert!(
            t.contains("deployer_app_actions_total{action=\"created\"} 2"),
            "{t}"
        );
    }
}
