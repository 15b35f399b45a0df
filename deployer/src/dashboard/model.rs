//! What the dashboard shows, built purely from one snapshot of the cluster:
//! the apps (with tasks), the launch queue, the deployments in progress and
//! the registry's records. The colour rule lives here, with its table test.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::services::{self, ServiceView};

/// Everything one page (or fragment) is rendered from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// App id -> app JSON with `tasks`, counts, `deployments`, `lastTaskFailure`.
    pub apps: BTreeMap<String, Value>,
    pub queue: Vec<Queued>,
    pub deployments: Vec<DeploymentRow>,
    /// The registry's records, or why they could not be read (`None`: no
    /// registry configured).
    pub registry: Option<Result<Vec<registry::Instance>, String>>,
}

/// An app waiting in the launch queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    pub app_id: String,
    /// Instances still to launch.
    pub count: u32,
    /// Seconds of backoff left before the next launch.
    pub delay_seconds: u64,
}

/// A deployment in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentRow {
    pub id: String,
    pub apps: Vec<String>,
    /// 1-based; 0 before the first step starts.
    pub current_step: u32,
    pub total_steps: u32,
    /// Per step, its actions as `"ScaleApplication /web"`.
    pub steps: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// Every wanted instance runs (and is healthy, with health checks).
    Green,
    /// Deploying, scaling, or partially healthy.
    Amber,
    /// Failing health checks, or waiting in the queue with a backoff.
    Red,
    /// Suspended: no instance wanted, none running.
    Grey,
}

impl Colour {
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Green => "green",
            Colour::Amber => "amber",
            Colour::Red => "red",
            Colour::Grey => "grey",
        }
    }
}

/// The inputs of the colour rule for one app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub instances: u64,
    pub running: u64,
    pub healthy: u64,
    pub unhealthy: u64,
    pub has_checks: bool,
    pub deploying: bool,
    /// (instances to launch, backoff seconds left) when queued.
    pub queued: Option<(u32, u64)>,
}

/// The colour of a service and the words that say why.
pub fn colour(c: &Counts) -> (Colour, String) {
    if let Some((count, delay)) = c.queued.filter(|(_, d)| *d > 0) {
        return (
            Colour::Red,
            format!("waiting in the queue: {count} to launch, backoff {delay} s"),
        );
    }
    if c.instances == 0 && c.running == 0 {
        return (Colour::Grey, "suspended (0 instances)".into());
    }
    if c.has_checks && c.unhealthy > 0 && c.healthy == 0 {
        return (
            Colour::Red,
            format!("failing health checks ({} unhealthy)", c.unhealthy),
        );
    }
    if c.deploying {
        return (
            Colour::Amber,
            format!("deploying: {} running, {} wanted", c.running, c.instances),
        );
    }
    if c.running < c.instances {
        let waiting = c
            .queued
            .map(|(n, _)| format!(", {n} waiting to launch"))
            .unwrap_or_default();
        return (
            Colour::Amber,
            format!("{}/{} running{waiting}", c.running, c.instances),
        );
    }
    if c.has_checks && c.healthy < c.running {
        return (
            Colour::Amber,
            format!("{}/{} healthy", c.healthy, c.running),
        );
    }
    if c.running > c.instances {
        return (
            Colour::Amber,
            format!("scaling down: {}/{} running", c.running, c.instances),
        );
    }
    if c.has_checks {
        (
            Colour::Green,
            format!("{}/{} healthy", c.healthy, c.running),
        )
    } else {
        (
            Colour::Green,
            format!("{}/{} running", c.running, c.instances),
        )
    }
}

/// One `host:port` of a named port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub address: String,
    /// Known from Marathon only: a registry is configured but holds no
    /// record of this task (yet), or could not be read.
    pub unregistered: bool,
}

/// One row of the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRow {
    #[serde(flatten)]
    pub view: ServiceView,
    pub has_checks: bool,
    pub colour: Colour,
    pub status: String,
    /// Port name -> endpoints, registry first.
    pub endpoint_list: BTreeMap<String, Vec<Endpoint>>,
    /// Ids of the deployments touching this app.
    pub deployment_ids: Vec<String>,
    /// Marathon's last task failure message, if any.
    pub last_failure: Option<String>,
}

/// The whole page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dashboard {
    pub services: Vec<ServiceRow>,
    pub deployments: Vec<DeploymentRow>,
    pub queue: Vec<Queued>,
    /// Why the registry could not be read; `None` when it was (or is not configured).
    pub registry_error: Option<String>,
    pub registry_configured: bool,
    /// Services per colour, for the summary line.
    pub totals: BTreeMap<&'static str, usize>,
}

fn has_checks(app: &Value) -> bool {
    app.get("healthChecks")
        .and_then(Value::as_array)
        .is_some_and(|h| !h.is_empty())
}

fn last_failure(app: &Value) -> Option<String> {
    let f = app.get("lastTaskFailure")?;
    let state = f.get("state").and_then(Value::as_str).unwrap_or("");
    let message = f.get("message").and_then(Value::as_str).unwrap_or("");
    let at = f.get("timestamp").and_then(Value::as_str).unwrap_or("");
    Some(format!("{state} {message} {at}").trim().to_string()).filter(|s| !s.is_empty())
}

/// Builds the page's model from a snapshot.
pub fn build(snapshot: &Snapshot) -> Dashboard {
    let views = services::view(&snapshot.apps);
    let records: &[registry::Instance] = match &snapshot.registry {
        Some(Ok(r)) => r,
        _ => &[],
    };
    let mut rows = Vec::with_capacity(views.services.len());
    for view in views.services {
        let app = snapshot.apps.get(&view.app_id);
        let checks = app.is_some_and(has_checks);
        let queued = snapshot
            .queue
            .iter()
            .find(|q| q.app_id == view.app_id)
            .map(|q| (q.count, q.delay_seconds));
        let deployment_ids: Vec<String> = snapshot
            .deployments
            .iter()
            .filter(|d| d.apps.contains(&view.app_id))
            .map(|d| d.id.clone())
            .collect();
        let counts = Counts {
            instances: view.instances,
            running: view.running,
            healthy: view.healthy,
            unhealthy: view.unhealthy,
            has_checks: checks,
            deploying: view.deploying || !deployment_ids.is_empty(),
            queued,
        };
        let (colour, status) = colour(&counts);
        let mut endpoint_list: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        let mine: Vec<&registry::Instance> = records
            .iter()
            .filter(|r| {
                r.app_id == view.app_id
                    || (r.app_id.is_empty() && r.service == view.service && r.group == view.group)
            })
            .collect();
        for r in &mine {
            for (name, port) in &r.ports {
                endpoint_list
                    .entry(name.clone())
                    .or_default()
                    .push(Endpoint {
                        address: format!("{}:{}", r.host, port.external),
                        unregistered: false,
                    });
            }
        }
        // Tasks the registry does not (yet) hold: Marathon's view, marked.
        for t in &view.tasks {
            if mine.iter().any(|r| r.container == t.id) {
                continue;
            }
            for (name, address) in &t.endpoints {
                endpoint_list
                    .entry(name.clone())
                    .or_default()
                    .push(Endpoint {
                        address: address.clone(),
                        unregistered: snapshot.registry.is_some(),
                    });
            }
        }
        for list in endpoint_list.values_mut() {
            list.sort_by(|a, b| a.address.cmp(&b.address));
            list.dedup_by(|a, b| a.address == b.address);
        }
        rows.push(ServiceRow {
            has_checks: checks,
            colour,
            status,
            endpoint_list,
            deployment_ids,
            last_failure: app.and_then(last_failure),
            view,
        });
    }
    let mut totals = BTreeMap::new();
    for r in &rows {
        *totals.entry(r.colour.as_str()).or_insert(0) += 1;
    }
    Dashboard {
        services: rows,
        deployments: snapshot.deployments.clone(),
        queue: snapshot.queue.clone(),
        registry_error: match &snapshot.registry {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        },
        registry_configured: snapshot.registry.is_some(),
        totals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn colour_rule() {
        let c = |instances, running, healthy, unhealthy, has_checks, deploying, queued| Counts {
            instances,
            running,
            healthy,
            unhealthy,
            has_checks,
            deploying,
            queued,
        };
        let table: &[(Counts, Colour, &str)] = &[
            (
                c(3, 3, 0, 0, false, false, None),
                Colour::Green,
                "3/3 running",
            ),
            (
                c(3, 3, 3, 0, true, false, None),
                Colour::Green,
                "3/3 healthy",
            ),
            (
                c(3, 3, 2, 0, true, false, None),
                Colour::Amber,
                "2/3 healthy",
            ),
            (
                c(3, 3, 2, 1, true, false, None),
                Colour::Amber,
                "2/3 healthy",
            ),
            (
                c(3, 1, 0, 0, false, true, None),
                Colour::Amber,
                "deploying: 1 running, 3 wanted",
            ),
            (
                c(3, 2, 0, 0, false, false, Some((1, 0))),
                Colour::Amber,
                "1 waiting",
            ),
            (
                c(1, 3, 0, 0, false, false, None),
                Colour::Amber,
                "scaling down",
            ),
            (
                c(1, 1, 0, 1, true, false, None),
                Colour::Red,
                "failing health checks",
            ),
            (
                c(1, 1, 0, 1, true, true, None),
                Colour::Red,
                "failing health checks",
            ),
            (
                c(2, 0, 0, 0, false, false, Some((2, 12))),
                Colour::Red,
                "backoff 12 s",
            ),
            (c(0, 0, 0, 0, false, false, None), Colour::Grey, "suspended"),
        ];
        for (counts, want, words) in table {
            let (got, why) = colour(counts);
            assert_eq!(got, *want, "{counts:?}: {why}");
            assert!(why.contains(words), "{counts:?}: {why}");
        }
    }

    fn record(container: &str, app_id: &str, port: u16) -> registry::Instance {
        serde_json::from_value(json!({
            "service": "web", "group": "dev", "container": container, "app_id": app_id,
            "host": "10.0.0.5", "ports": {"http": {"external": port, "exposed": 80}}
        }))
        .unwrap()
    }

    fn snapshot(registry: Option<Result<Vec<registry::Instance>, String>>) -> Snapshot {
        let mut apps = BTreeMap::new();
        apps.insert(
            "/dev/web".to_string(),
            json!({"id": "/dev/web", "instances": 2,
                "labels": {"SERVICE_NAME": "web", "SERVICE_GROUP": "dev"},
                "portDefinitions": [{"name": "http", "port": 0}],
                "healthChecks": [{"protocol": "HTTP"}], "deployments": [],
                "lastTaskFailure": {"state": "TASK_FAILED", "message": "exit 1", "timestamp": "t"},
                "tasks": [
                    {"id": "a", "host": "h", "state": "TASK_RUNNING", "ports": [31000], "healthCheckResults": [{"alive": true}]},
                    {"id": "b", "host": "h", "state": "TASK_RUNNING", "ports": [31001], "healthCheckResults": [{"alive": false}]}
                ]}),
        );
        Snapshot {
            apps,
            queue: vec![],
            deployments: vec![DeploymentRow {
                id: "d1".into(),
                apps: vec!["/dev/web".into()],
                current_step: 1,
                total_steps: 1,
                steps: vec![vec!["ScaleApplication /dev/web".into()]],
            }],
            registry,
        }
    }

    #[test]
    fn endpoints_come_from_the_registry_and_marathon_fills_in_marked() {
        let d = build(&snapshot(Some(Ok(vec![record("a", "/dev/web", 31000)]))));
        let row = &d.services[0];
        assert_eq!(row.colour, Colour::Amber);
        assert_eq!(row.deployment_ids, vec!["d1"]);
        assert_eq!(
            row.endpoint_list["http"],
            vec![
                Endpoint {
                    address: "10.0.0.5:31000".into(),
                    unregistered: false
                },
                Endpoint {
                    address: "h:31001".into(),
                    unregistered: true
                },
            ]
        );
        assert_eq!(row.last_failure.as_deref(), Some("TASK_FAILED exit 1 t"));
        assert_eq!(d.totals["amber"], 1);
        assert!(d.registry_error.is_none());
    }

    #[test]
    fn without_a_registry_marathon_endpoints_are_shown_plainly() {
        let d = build(&snapshot(None));
        assert!(d.services[0].endpoint_list["http"]
            .iter()
            .all(|e| !e.unregistered));
        assert!(!d.registry_configured);
        let d = build(&snapshot(Some(Err("etcd down".into()))));
        assert_eq!(d.registry_error.as_deref(), Some("etcd down"));
        assert!(d.services[0].endpoint_list["http"]
            .iter()
            .all(|e| e.unregistered));
    }
}
