//! Prometheus counters of the deployer, rendered as text on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Counters keyed by (metric, label value).
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "deployer_deploy_requests_total",
        "status",
        "POST /deploy requests by HTTP status.",
    ),
    (
        "deployer_app_actions_total",
        "action",
        "Apps created, scaled, updated, unchanged or removed.",
    ),
    (
        "deployer_marathon_errors_total",
        "kind",
        "Failed calls to the Marathon API (unreachable or rejected).",
    ),
];

impl Metrics {
    pub fn inc(&self, metric: &'static str, label: &str) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((metric, label.to_string())).or_default() += 1;
    }

    pub fn render(&self) -> String {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, label, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((metric, value), n) in c.iter() {
                if metric == name {
                    let v = value.replace('\\', "\\\\").replace('"', "\\\"");
                    let _ = writeln!(out, "{name}{{{label}=\"{v}\"}} {n}");
                }
            }
        }
        out
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
        assert!(t.contains("# TYPE deployer_app_actions_total counter"));
        assert!(t.contains("deployer_app_actions_total{action=\"created\"} 2"));
    }
}
