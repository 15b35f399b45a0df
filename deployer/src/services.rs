//! The services view: what runs, grouped by service and labeled group, with
//! `host:port` per named port and health. Built (purely) from the apps the
//! Marathon API returns; served as JSON, the CLI's status table, and the
//! base of the dashboard's rows.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::translate::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    pub id: String,
    pub host: String,
    pub state: String,
    /// None when the app has no health checks or no result yet.
    pub healthy: Option<bool>,
    /// Port name -> `host:port`.
    pub endpoints: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    pub service: String,
    pub group: String,
    pub labels: Vec<String>,
    pub app_id: String,
    /// Created by the deployer (label `MDO_MANAGED_BY=deployer`).
    pub managed: bool,
    /// What runs: the image, else the command.
    pub runs: String,
    pub instances: u64,
    pub running: u64,
    pub healthy: u64,
    pub unhealthy: u64,
    pub deploying: bool,
    /// Port name -> every task's `host:port`.
    pub endpoints: BTreeMap<String, Vec<String>>,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicesView {
    pub services: Vec<ServiceView>,
}

fn label<'a>(app: &'a Value, key: &str) -> Option<&'a str> {
    app.get("labels")?.get(key)?.as_str()
}

/// Port names of an app by index (`portN` when unnamed).
fn port_names(app: &Value) -> Vec<String> {
    let list = app
        .get("container")
        .and_then(|c| c.get("portMappings"))
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .or_else(|| app.get("portDefinitions").and_then(Value::as_array));
    list.map(|l| {
        l.iter()
            .enumerate()
            .map(|(i, p)| {
                p.get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or(format!("port{i}"))
            })
            .collect()
    })
    .unwrap_or_default()
}

pub fn view(apps: &BTreeMap<String, Value>) -> ServicesView {
    let mut services: Vec<ServiceView> = apps.values().map(service_view).collect();
    services.sort_by(|a, b| (&a.service, &a.group).cmp(&(&b.service, &b.group)));
    ServicesView { services }
}

fn service_view(app: &Value) -> ServiceView {
    let app_id = app
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (derived_service, derived_labels) = registry::naming::app_id_parts(&app_id);
    let service = label(app, "SERVICE_NAME")
        .map(str::to_string)
        .unwrap_or(derived_service);
    let labels: Vec<String> = match label(app, "SERVICE_LABELS") {
        Some(l) => l
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => derived_labels,
    };
    let group = label(app, "SERVICE_GROUP")
        .map(str::to_string)
        .unwrap_or_else(|| registry::naming::group_from_labels(&labels));
    let has_checks = app
        .get("healthChecks")
        .and_then(Value::as_array)
        .is_some_and(|h| !h.is_empty());
    let names = port_names(app);
    let mut tasks = Vec::new();
    let mut endpoints: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in app
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let host = t
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut eps = BTreeMap::new();
        for (i, port) in t
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(p) = port.as_u64() {
                let name = names.get(i).cloned().unwrap_or(format!("port{i}"));
                let hp = format!("{host}:{p}");
                endpoints.entry(name.clone()).or_default().push(hp.clone());
                eps.insert(name, hp);
            }
        }
        let results = t.get("healthCheckResults").and_then(Value::as_array);
        let healthy = match results {
            Some(r) if has_checks && !r.is_empty() => Some(
                r.iter()
                    .all(|x| x.get("alive").and_then(Value::as_bool) == Some(true)),
            ),
            _ => None,
        };
        tasks.push(TaskView {
            id: t
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            host,
            state: t
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("TASK_RUNNING")
                .to_string(),
            healthy,
            endpoints: eps,
        });
    }
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let running = tasks.iter().filter(|t| t.state == "TASK_RUNNING").count() as u64;
    let runs = app
        .get("container")
        .and_then(|c| c.get("docker"))
        .and_then(|d| d.get("image"))
        .and_then(Value::as_str)
        .or_else(|| app.get("cmd").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    ServiceView {
        service,
        group,
        labels,
        managed: label(app, MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE),
        runs,
        instances: app.get("instances").and_then(Value::as_u64).unwrap_or(0),
        running,
        healthy: tasks.iter().filter(|t| t.healthy == Some(true)).count() as u64,
        unhealthy: tasks.iter().filter(|t| t.healthy == Some(false)).count() as u64,
        deploying: app
            .get("deployments")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty()),
        endpoints,
        tasks,
        app_id,
    }
}

/// A plain-text table for `deployer status`.
pub fn table(v: &ServicesView) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "GROUP".into(),
        "APP".into(),
        "RUNNING".into(),
        "HEALTHY".into(),
        "ENDPOINTS".into(),
    ]];
    for s in &v.services {
        let eps: Vec<String> = s
            .endpoints
            .iter()
            .map(|(n, hs)| format!("{n}={}", hs.join(",")))
            .collect();
        rows.push([
            s.service.clone(),
            s.group.clone(),
            s.app_id.clone(),
            format!(
                "{}/{}{}",
                s.running,
                s.instances,
                if s.deploying { " (deploying)" } else { "" }
            ),
            if s.healthy + s.unhealthy == 0 {
                "-".into()
            } else {
                format!("{}/{}", s.healthy, s.healthy + s.unhealthy)
            },
            if eps.is_empty() {
                "-".into()
            } else {
                eps.join(" ")
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apps() -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert(
            "/dev/web".to_string(),
            json!({"id": "/dev/web", "instances": 2,
                "labels": {"SERVICE_NAME": "web", "SERVICE_GROUP": "dev", "SERVICE_LABELS": "dev", "MDO_MANAGED_BY": "deployer"},
                "container": {"docker": {"image": "nginx"}, "portMappings": [{"name": "http", "containerPort": 80}, {"containerPort": 81}]},
                "healthChecks": [{"protocol": "HTTP"}], "deployments": [],
                "tasks": [
                    {"id": "b", "host": "h1", "state": "TASK_RUNNING", "ports": [31000, 31001], "healthCheckResults": [{"alive": true}]},
                    {"id": "a", "host": "h2", "state": "TASK_STAGING", "ports": [31002, 31003], "healthCheckResults": [{"alive": false}]}
                ]}),
        );
        m.insert("/legacy".to_string(), json!({"id": "/legacy", "cmd": "sleep 1 <x>", "instances": 1, "labels": {}, "tasks": []}));
        m
    }

    #[test]
    fn view_names_ports_and_health() {
        let v = view(&apps());
        assert_eq!(v.services.len(), 2);
        let legacy = &v.services[0];
        assert_eq!(
            (
                legacy.service.as_str(),
                legacy.group.as_str(),
                legacy.managed
            ),
            ("legacy", "default", false)
        );
        let web = &v.services[1];
        assert_eq!(web.labels, vec!["dev"]);
        assert!(web.managed);
        assert_eq!(web.running, 1);
        assert_eq!((web.healthy, web.unhealthy), (1, 1));
        assert_eq!(web.endpoints["http"], vec!["h1:31000", "h2:31002"]);
        assert_eq!(web.endpoints["port1"], vec!["h1:31001", "h2:31003"]);
        assert_eq!(web.tasks[0].id, "a");
        assert_eq!(web.tasks[1].endpoints["http"], "h1:31000");
    }

    #[test]
    fn table() {
        let v = view(&apps());
        let t = super::table(&v);
        assert!(t.starts_with("SERVICE"), "{t}");
        assert!(t.contains("web      dev"), "{t}");
    }
}
