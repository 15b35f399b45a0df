//! Planning: what to do for each service, from the desired app definitions
//! and the apps as the Marathon API returns them. Pure; table-tested.
//!
//! Comparison looks only at the fields the deployer sets (plus whatever the
//! service's `marathon:` map sets), and reads the server's normalised output
//! leniently: defaults it fills in (health-check timings, `servicePort`,
//! Docker flags, empty lists) do not count as differences.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Top-level app fields the deployer controls: a field it does not set must
/// be absent (or a default) on the server, so removing a setting from the
/// document is a change.
const CONTROLLED: &[&str] = &[
    "cmd",
    "args",
    "instances",
    "cpus",
    "mem",
    "disk",
    "env",
    "labels",
    "container",
    "networks",
    "portDefinitions",
    "requirePorts",
    "constraints",
    "healthChecks",
    "upgradeStrategy",
];

/// What happens to one app.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Scaled,
    Updated,
    Unchanged,
    Removed,
}

/// What to do with one app. Creates, scales and updates travel together in
/// one multi-app `PUT /v2/apps` ([`calls`]); each carries the full app
/// definition it puts.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new app.
    Create(Value),
    /// Only `instances` differs: the definition the server has, with the new
    /// count (so the server sees nothing but a scale and keeps the tasks).
    Scale {
        instances: u64,
        app: Value,
    },
    /// Replace the definition (the manager rolls the tasks); with the paths that differ.
    Update {
        app: Value,
        changes: Vec<String>,
    },
    Unchanged,
    Delete,
    /// Asked to remove an app that does not exist.
    AlreadyAbsent,
}

impl Step {
    /// The app definition this step puts, if it is part of the PUT.
    pub fn app(&self) -> Option<&Value> {
        match self {
            Step::Create(app) | Step::Scale { app, .. } | Step::Update { app, .. } => Some(app),
            Step::Unchanged | Step::Delete | Step::AlreadyAbsent => None,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Step::Create(_) => Action::Created,
            Step::Scale { .. } => Action::Scaled,
            Step::Update { .. } => Action::Updated,
            Step::Unchanged | Step::AlreadyAbsent => Action::Unchanged,
            Step::Delete => Action::Removed,
        }
    }
}

/// One desired app: the translated definition plus what planning needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub service: String,
    pub labels: Vec<String>,
    pub app: Value,
    pub fixed_host: bool,
}

impl Desired {
    pub fn app_id(&self) -> &str {
        self.app["id"].as_str().unwrap_or_default()
    }
    fn instances(&self) -> u64 {
        self.app["instances"].as_u64().unwrap_or(1)
    }
}

/// An app to remove.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    pub service: String,
    pub labels: Vec<String>,
    pub app_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub service: String,
    pub labels: Vec<String>,
    pub app_id: String,
    pub step: Step,
    /// Instances wanted after the step (0 for removals).
    pub instances: u64,
}

/// Decides the step for every desired app and removal. `actual` maps app
/// ids to the apps as returned by `GET /v2/apps?embed=apps.tasks`.
pub fn plan(
    desired: &[Desired],
    removals: &[Removal],
    actual: &BTreeMap<String, Value>,
) -> Vec<Planned> {
    let mut out = Vec::new();
    for d in desired {
        let id = d.app_id().to_string();
        let step = match actual.get(&id) {
            None => Step::Create(d.app.clone()),
            Some(current) => step_for(d, current),
        };
        out.push(Planned {
            service: d.service.clone(),
            labels: d.labels.clone(),
            app_id: id,
            instances: d.instances(),
            step,
        });
    }
    for r in removals {
        let step = if actual.contains_key(&r.app_id) {
            Step::Delete
        } else {
            Step::AlreadyAbsent
        };
        out.push(Planned {
            service: r.service.clone(),
            labels: r.labels.clone(),
            app_id: r.app_id.clone(),
            step,
            instances: 0,
        });
    }
    out
}

fn step_for(d: &Desired, stored: &Value) -> Step {
    let mut current = stored.clone();
    let pin = if d.fixed_host {
        take_pin(&d.app, &mut current)
    } else {
        None
    };
    let changes = diff(&d.app, &current);
    if changes.is_empty() {
        return Step::Unchanged;
    }
    let pinned_hosts = pin.as_ref().map(|_| task_hosts(&current).len());
    if changes == ["/instances"] && pinned_hosts.is_none_or(|k| d.instances() as usize <= k) {
        return Step::Scale {
            instances: d.instances(),
            app: scale_body(stored, d.instances()),
        };
    }
    let mut app = d.app.clone();
    if d.fixed_host {
        if let Some(pin) = pin_for(&current, d.instances()) {
            if let Some(Value::Array(c)) = app.get_mut("constraints") {
                c.push(json!(["hostname", "LIKE", pin]));
            }
        }
    }
    Step::Update { app, changes }
}

/// Removes (and returns) the host pin constraint the deployer added on an
/// earlier update, so it does not count as a difference.
fn take_pin(desired: &Value, current: &mut Value) -> Option<String> {
    let wanted = desired.get("constraints").cloned().unwrap_or(json!([]));
    let list = current.get_mut("constraints")?.as_array_mut()?;
    let mut pin = None;
    list.retain(|c| {
        let is_pin = c.get(0).and_then(Value::as_str) == Some("hostname")
            && c.get(1).and_then(Value::as_str) == Some("LIKE")
            && !wanted.as_array().is_some_and(|w| w.contains(c));
        if is_pin {
            pin = c.get(2).and_then(Value::as_str).map(str::to_string);
        }
        !is_pin
    });
    pin
}

/// Distinct hosts of the app's tasks.
fn task_hosts(current: &Value) -> Vec<&Value> {
    let mut hosts: Vec<&Value> = Vec::new();
    for t in current
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(h) = t.get("host") {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// `host-a|host-b` (regex-escaped) for the hosts the app's tasks run on,
/// when every wanted instance fits on them. Each task contributes its `host`
/// and its `slaveId`: Marathon matches `hostname` against the agent's host
/// name (= the task's `host`), the built-in manager against its node name
/// (= the task's `slaveId`); an agent id never matches a host name.
fn pin_for(current: &Value, instances: u64) -> Option<String> {
    let hosts = task_hosts(current).len();
    if hosts == 0 || instances as usize > hosts {
        return None;
    }
    let mut names: Vec<String> = current
        .get("tasks")?
        .as_array()?
        .iter()
        .flat_map(|t| [t.get("host"), t.get("slaveId")])
        .flatten()
        .filter_map(Value::as_str)
        .map(regex::escape)
        .collect();
    names.sort();
    names.dedup();
    Some(names.join("|"))
}

/// The Marathon calls for a plan, in the order they are made.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Calls {
    /// The body of one `PUT /v2/apps?partialUpdate=false`: the apps to
    /// create, scale and update, in document order (Marathon applies the
    /// list as one deployment, all or nothing). Nothing to send when empty.
    pub put: Vec<Value>,
    /// `DELETE /v2/apps/<id>`, one by one, once the PUT was accepted
    /// (Marathon has no list delete, and a list PUT cannot remove).
    pub delete: Vec<String>,
}

/// Groups a plan into its calls; unchanged apps are not sent.
pub fn calls(planned: &[Planned]) -> Calls {
    Calls {
        put: planned
            .iter()
            .filter_map(|p| p.step.app().cloned())
            .collect(),
        delete: planned
            .iter()
            .filter(|p| p.step == Step::Delete)
            .map(|p| p.app_id.clone())
            .collect(),
    }
}

/// Fields of Marathon's AppInfo (`GET /v2/apps`) that are status, not
/// definition: never sent back. `version` on input would mean a rollback.
const STATUS_FIELDS: &[&str] = &[
    "version",
    "versionInfo",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "lastTaskFailure",
    "readinessCheckResults",
    "taskStats",
    "tasksStats",
];

/// Legacy fields older Marathons write beside their canonical form (which
/// holds the same data): dropped when the canonical one is there.
const LEGACY_FIELDS: &[(&str, &str)] = &[
    ("ports", "portDefinitions"),
    ("uris", "fetch"),
    ("ipAddress", "networks"),
];

/// A scale as a full definition: the app as the server has it (its own
/// output, without status fields) with the new `instances`. Put with
/// `partialUpdate=false` it differs from the stored app only in the count,
/// so Marathon and the manager scale and keep every task, as a
/// `{"instances": n}` patch would; fields set outside the deployer stay.
pub fn scale_body(stored: &Value, instances: u64) -> Value {
    let mut app = stored.clone();
    if let Some(o) = app.as_object_mut() {
        for f in STATUS_FIELDS {
            o.remove(*f);
        }
        for (legacy, canonical) in LEGACY_FIELDS {
            if o.contains_key(*canonical) {
                o.remove(*legacy);
            }
        }
        o.insert("instances".into(), json!(instances));
    }
    app
}

/// Paths where the server's app differs from the desired one.
pub fn diff(desired: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(d), Some(a)) = (desired.as_object(), actual.as_object()) else {
        return vec!["/".into()];
    };
    let mut keys: Vec<&str> = CONTROLLED.to_vec();
    keys.extend(
        d.keys()
            .map(String::as_str)
            .filter(|k| !CONTROLLED.contains(k)),
    );
    for k in keys {
        if k == "id" {
            continue;
        }
        let path = format!("/{k}");
        match (d.get(k), a.get(k)) {
            (Some(dv), Some(av)) => compare(&path, k, dv, av, &mut out),
            (Some(dv), None) if default_like(k, dv) => {}
            (None, Some(av)) if default_like(k, av) => {}
            (None, None) => {}
            _ => out.push(path),
        }
    }
    out
}

fn compare(path: &str, key: &str, d: &Value, a: &Value, out: &mut Vec<String>) {
    match (d, a) {
        (Value::Object(dm), Value::Object(am)) => {
            // env and labels are the user's data: exact, no defaults.
            let exact = path == "/env" || path == "/labels";
            compare_maps(path, dm, am, exact, out)
        }
        (Value::Array(da), Value::Array(aa)) => {
            if da.len() != aa.len() {
                out.push(path.to_string());
                return;
            }
            for (i, (dv, av)) in da.iter().zip(aa).enumerate() {
                compare(&format!("{path}/{i}"), key, dv, av, out);
            }
        }
        (Value::Number(dn), Value::Number(an)) => {
            if dynamic_port(key) && dn.as_f64() == Some(0.0) {
                return;
            }
            let (x, y) = (
                dn.as_f64().unwrap_or(f64::NAN),
                an.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() > 1e-9 * x.abs().max(1.0) {
                out.push(path.to_string());
            }
        }
        (Value::Number(dn), _) if dynamic_port(key) && dn.as_f64() == Some(0.0) => {}
        (dv, av) if default_like(key, dv) && default_like(key, av) => {}
        (dv, av) => {
            if dv != av {
                out.push(path.to_string());
            }
        }
    }
}

fn compare_maps(
    path: &str,
    d: &Map<String, Value>,
    a: &Map<String, Value>,
    exact: bool,
    out: &mut Vec<String>,
) {
    for (k, dv) in d {
        let p = format!("{path}/{k}");
        match a.get(k) {
            Some(av) => compare(&p, k, dv, av, out),
            None if !exact && default_like(k, dv) => {}
            None => out.push(p),
        }
    }
    for (k, av) in a {
        if !d.contains_key(k) && (exact || !default_like(k, av)) {
            out.push(format!("{path}/{k}"));
        }
    }
}

/// Ports the server assigns when asked for 0.
fn dynamic_port(key: &str) -> bool {
    matches!(key, "port" | "hostPort" | "servicePort")
}

/// Values the Marathon API fills in by default: not differences.
fn default_like(key: &str, v: &Value) -> bool {
    let empty = match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    };
    if empty || key == "servicePort" {
        return true;
    }
    let known = match key {
        "gracePeriodSeconds" => json!(300),
        "intervalSeconds" => json!(60),
        "timeoutSeconds" => json!(20),
        "maxConsecutiveFailures" => json!(3),
        "delaySeconds" => json!(15),
        "ipProtocol" => json!("IPv4"),
        "protocol" => json!("tcp"),
        "type" => json!("DOCKER"),
        "mode" => json!("RW"),
        _ => return false,
    };
    match (&known, v) {
        (Value::Number(k), Value::Number(n)) => k.as_f64() == n.as_f64(),
        _ => &known == v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::validate;
    use crate::translate::{app_json, TranslateConfig};

    fn desired(doc: Value) -> Desired {
        let d = validate(&doc).unwrap();
        let s = &d.deploy[0];
        Desired {
            service: s.service.clone(),
            labels: s.labels.clone(),
            app: app_json(
                s,
                &TranslateConfig {
                    container_etcd_endpoints: "http://e:2379".into(),
                },
            ),
            fixed_host: s.fixed_host,
        }
    }

    /// What a Marathon-like server returns for a stored app: defaults filled
    /// in, service ports assigned, status fields added.
    fn as_server_returns(app: &Value) -> Value {
        let mut a = app.clone();
        let o = a.as_object_mut().unwrap();
        o.insert("version".into(), json!("2026-11-22T10:00:00.000Z"));
        o.insert("backoffSeconds".into(), json!(1));
        o.insert("backoffFactor".into(), json!(1.15));
        o.insert("tasksRunning".into(), json!(1));
        o.insert(
            "tasks".into(),
            json!([{"id": "t1", "host": "10.0.0.1", "slaveId": "node-1"}]),
        );
        o.insert("deployments".into(), json!([]));
        o.insert("executor".into(), json!(""));
        o.insert("killSelection".into(), json!("YOUNGEST_FIRST"));
        o.entry("disk").or_insert(json!(0.0));
        o.entry("requirePorts").or_insert(json!(false));
        if let Some(Value::Array(defs)) = o.get_mut("portDefinitions") {
            for (i, d) in defs.iter_mut().enumerate() {
                if d["port"] == 0 {
                    d["port"] = json!(10000 + i);
                }
            }
        }
        if let Some(c) = o.get_mut("container") {
            c["docker"]["forcePullImage"] = json!(false);
            c["docker"]["privileged"] = json!(false);
            c["docker"]["parameters"] = json!([]);
            if let Some(Value::Array(pm)) = c.get_mut("portMappings") {
                for (i, m) in pm.iter_mut().enumerate() {
                    m["servicePort"] = json!(10100 + i);
                    m["labels"] = json!({});
                }
            }
            c["volumes"] = c.get("volumes").cloned().unwrap_or(json!([]));
        }
        if let Some(Value::Array(hcs)) = o.get_mut("healthChecks") {
            for h in hcs {
                h["delaySeconds"] = json!(15);
                h["ipProtocol"] = json!("IPv4");
            }
        }
        a
    }

    fn actual_of(app: &Value) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert(
            app["id"].as_str().unwrap().to_string(),
            as_server_returns(app),
        );
        m
    }

    fn step(doc_now: Value, doc_before: Option<Value>) -> Step {
        let d = desired(doc_now);
        let actual = doc_before
            .map(|b| actual_of(&desired(b).app))
            .unwrap_or_default();
        plan(&[d], &[], &actual).remove(0).step
    }

    fn base() -> Value {
        json!({"deploy": {"web": {"image": "nginx", "labels": ["dev"], "ports": {"http": 80},
            "environment": {"A": "1"}, "instances": 2,
            "health_checks": [{"port": "http", "path": "/"}]}}})
    }

    fn with(f: impl FnOnce(&mut Value)) -> Value {
        let mut d = base();
        f(&mut d["deploy"]["web"]);
        d
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            now: Value,
            before: Option<Value>,
            want: Action,
        }
        let cases = vec![
            Case {
                name: "new",
                now: base(),
                before: None,
                want: Action::Created,
            },
            Case {
                name: "same",
                now: base(),
                before: Some(base()),
                want: Action::Unchanged,
            },
            Case {
                name: "more instances",
                now: with(|w| w["instances"] = json!(5)),
                before: Some(base()),
                want: Action::Scaled,
            },
            Case {
                name: "fewer instances",
                now: with(|w| w["instances"] = json!(0)),
                before: Some(base()),
                want: Action::Scaled,
            },
            Case {
                name: "env changed",
                now: with(|w| w["environment"]["A"] = json!("2")),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "env removed",
                now: with(|w| w["environment"] = json!({})),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "image changed",
                now: with(|w| w["image"] = json!("nginx:2")),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "port changed",
                now: with(|w| w["ports"]["http"] = json!(81)),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "cmd added",
                now: with(|w| w["cmd"] = json!("run")),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "instances and env",
                now: with(|w| {
                    w["instances"] = json!(3);
                    w["environment"]["B"] = json!("x")
                }),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "marathon map added",
                now: with(|w| w["marathon"] = json!({"backoffSeconds": 7})),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "marathon map equal",
                now: with(|w| w["marathon"] = json!({"backoffSeconds": 1})),
                before: Some(base()),
                want: Action::Unchanged,
            },
            Case {
                name: "health check timing",
                now: with(|w| w["health_checks"][0]["interval_seconds"] = json!(5)),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "cpus changed",
                now: with(|w| w["cpus"] = json!(0.5)),
                before: Some(base()),
                want: Action::Updated,
            },
            Case {
                name: "defaults written out",
                now: with(|w| {
                    w["cpus"] = json!(0.1);
                    w["mem"] = json!(128)
                }),
                before: Some(base()),
                want: Action::Unchanged,
            },
        ];
        for c in cases {
            let got = step(c.now, c.before).action();
            assert_eq!(got, c.want, "case {}", c.name);
        }
    }

    #[test]
    fn command_tasks_with_assigned_service_ports_are_unchanged() {
        let doc = json!({"deploy": {"web": {"cmd": "sleep 3600", "ports": {"http": 8080, "admin": 9090}}}});
        assert_eq!(step(doc.clone(), Some(doc)), Step::Unchanged);
    }

    #[test]
    fn scale_carries_the_new_count_and_update_lists_changes() {
        let before = desired(base()).app;
        let s = step(with(|w| w["instances"] = json!(5)), Some(base()));
        let Step::Scale { instances, app } = s else {
            panic!("{s:?}")
        };
        assert_eq!(instances, 5);
        // the server's definition with the new count, without its status
        let mut want = as_server_returns(&before);
        for f in ["version", "tasks", "tasksRunning", "deployments"] {
            want.as_object_mut().unwrap().remove(f);
        }
        want["instances"] = json!(5);
        assert_eq!(app, want);
        match step(with(|w| w["environment"]["A"] = json!("2")), Some(base())) {
            Step::Update { changes, app } => {
                assert_eq!(changes, vec!["/env/A".to_string()]);
                assert_eq!(app["env"]["A"], "2");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removals() {
        let r = |id: &str| Removal {
            service: "web".into(),
            labels: vec![],
            app_id: id.into(),
        };
        let mut actual = BTreeMap::new();
        actual.insert("/web".to_string(), json!({"id": "/web"}));
        let p = plan(&[], &[r("/web"), r("/gone")], &actual);
        assert_eq!(p[0].step, Step::Delete);
        assert_eq!(p[0].step.action(), Action::Removed);
        assert_eq!(p[1].step, Step::AlreadyAbsent);
        assert_eq!(p[1].step.action(), Action::Unchanged);
    }

    #[test]
    fn fixed_host_pins_an_update_to_the_previous_hosts() {
        let fixed = json!({"deploy": {"db": {"cmd": "run", "custom_constraints": "fixed-host"}}});
        let mut changed = fixed.clone();
        changed["deploy"]["db"]["environment"] = json!({"V": "2"});
        // update: the replacement goes back to node-1
        let s = step(changed.clone(), Some(fixed.clone()));
        let Step::Update { app, .. } = s else {
            panic!("{s:?}")
        };
        assert_eq!(
            app["constraints"],
            json!([
                ["hostname", "UNIQUE"],
                ["hostname", "LIKE", "10\\.0\\.0\\.1|node\\-1"]
            ])
        );
        // posting the changed document again: the pin is not a difference
        let mut actual = actual_of(&app);
        actual.get_mut("/db").unwrap()["constraints"] = app["constraints"].clone();
        let again = plan(&[desired(changed.clone())], &[], &actual)
            .remove(0)
            .step;
        assert_eq!(again, Step::Unchanged);
        // scaling within the pinned hosts is a scale that keeps the pin
        let mut none = changed.clone();
        none["deploy"]["db"]["instances"] = json!(0);
        let s = plan(&[desired(none)], &[], &actual).remove(0).step;
        let Step::Scale {
            instances: 0,
            app: body,
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(body["constraints"], app["constraints"]);
        // scaling beyond the pinned hosts needs an update that drops the pin
        let mut more = changed.clone();
        more["deploy"]["db"]["instances"] = json!(2);
        let s = plan(&[desired(more)], &[], &actual).remove(0).step;
        let Step::Update { app, changes } = s else {
            panic!("{s:?}")
        };
        assert_eq!(changes, vec!["/instances".to_string()]);
        assert_eq!(app["constraints"], json!([["hostname", "UNIQUE"]]));
    }

    #[test]
    fn diff_reports_removed_controlled_fields() {
        let d = json!({"id": "/a", "instances": 1, "cmd": "x"});
        assert_eq!(
            diff(
                &d,
                &json!({"id": "/a", "instances": 1, "cmd": "x", "disk": 0})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            diff(
                &d,
                &json!({"id": "/a", "instances": 1, "cmd": "x", "args": ["y"]})
            ),
            vec!["/args"]
        );
        assert_eq!(diff(&d, &json!({"id": "/a", "instances": 1})), vec!["/cmd"]);
    }

    /// Top-level fields of a Marathon app definition (`RAML/v2/types/app.raml`):
    /// what a real Marathon accepts in a `PUT /v2/apps` list item.
    const MARATHON_APP_FIELDS: &[&str] = &[
        "id",
        "cmd",
        "args",
        "user",
        "env",
        "instances",
        "cpus",
        "mem",
        "disk",
        "gpus",
        "executor",
        "constraints",
        "fetch",
        "acceptedResourceRoles",
        "container",
        "networks",
        "portDefinitions",
        "requirePorts",
        "healthChecks",
        "readinessChecks",
        "check",
        "dependencies",
        "upgradeStrategy",
        "labels",
        "backoffSeconds",
        "backoffFactor",
        "maxLaunchDelaySeconds",
        "taskKillGracePeriodSeconds",
        "killSelection",
        "unreachableStrategy",
        "secrets",
        "role",
        "residency",
        "tty",
        "resourceLimits",
        "executorResources",
    ];

    fn assert_marathon_app(item: &Value) {
        let o = item.as_object().expect("an app is an object");
        assert!(
            o.get("id")
                .and_then(Value::as_str)
                .is_some_and(|i| i.starts_with('/')),
            "every list item names its app: {item}"
        );
        for k in o.keys() {
            assert!(
                MARATHON_APP_FIELDS.contains(&k.as_str()),
                "{k} is not a Marathon app field: {item}"
            );
        }
        serde_json::from_value::<marathon::App>(item.clone())
            .unwrap_or_else(|e| panic!("not an app ({e}): {item}"));
    }

    #[test]
    fn one_put_holds_creates_scales_and_updates_in_order_then_deletes() {
        let doc = json!({"deploy": {
            "new": {"cmd": "sleep 1"},
            "more": {"cmd": "sleep 1", "instances": 3},
            "same": {"cmd": "sleep 1"},
            "changed": {"cmd": "sleep 2"}}});
        let d = validate(&doc).unwrap();
        let config = TranslateConfig::default();
        let desired: Vec<Desired> = d
            .deploy
            .iter()
            .map(|s| Desired {
                service: s.service.clone(),
                labels: s.labels.clone(),
                app: app_json(s, &config),
                fixed_host: s.fixed_host,
            })
            .collect();
        let mut actual = BTreeMap::new();
        for (id, cmd, n) in [
            ("/more", "sleep 1", 1),
            ("/same", "sleep 1", 1),
            ("/changed", "sleep 1", 1),
            ("/old", "sleep 1", 1),
        ] {
            let mut a = desired[0].app.clone();
            a["id"] = json!(id);
            a["cmd"] = json!(cmd);
            a["instances"] = json!(n);
            a["labels"]["SERVICE_NAME"] = json!(&id[1..]);
            a["env"]["SERVICE_NAME"] = json!(&id[1..]);
            actual.insert(id.to_string(), as_server_returns(&a));
        }
        let removals = [
            Removal {
                service: "old".into(),
                labels: vec![],
                app_id: "/old".into(),
            },
            Removal {
                service: "gone".into(),
                labels: vec![],
                app_id: "/gone".into(),
            },
        ];
        let planned = plan(&desired, &removals, &actual);
        let actions: Vec<(&str, Action)> = planned
            .iter()
            .map(|p| (p.app_id.as_str(), p.step.action()))
            .collect();
        let c = calls(&planned);
        let put_ids: Vec<&str> = c.put.iter().map(|a| a["id"].as_str().unwrap()).collect();
        // document order (the validated document sorts services by name)
        let want: Vec<&str> = actions
            .iter()
            .filter(|(_, a)| matches!(a, Action::Created | Action::Scaled | Action::Updated))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(put_ids, want, "{actions:?}");
        let mut sorted = put_ids.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["/changed", "/more", "/new"], "{actions:?}");
        assert_eq!(c.delete, vec!["/old".to_string()]);
        for item in &c.put {
            assert_marathon_app(item);
        }
        let more = c.put.iter().find(|a| a["id"] == "/more").unwrap();
        assert_eq!(more["instances"], 3);
        assert_eq!(more["backoffFactor"], 1.15, "the server's own fields stay");
        // nothing to do: nothing to send
        let again = calls(&plan(&[], &[removals[1].clone()], &actual));
        assert_eq!(again, Calls::default());
    }

    #[test]
    fn every_field_and_a_real_marathon_app_make_list_items_marathon_accepts() {
        let body = include_bytes!("../examples/everything.yaml");
        let doc =
            crate::apply::load(body, crate::parse::Format::Yaml, &Default::default()).unwrap();
        let (desired, _) = crate::apply::prepare(&doc, &TranslateConfig::default()).unwrap();
        let created = calls(&plan(&desired, &[], &BTreeMap::new()));
        assert_eq!(created.put.len(), desired.len());
        for item in &created.put {
            assert_marathon_app(item);
        }
        // What Marathon 1.11 answers for a bridge Docker app (AppInfo with
        // tasks, counts, deployments and a last failure), and a 1.4-era
        // answer with the legacy fields beside the canonical ones.
        let v111 = json!({"id": "/dev/web", "backoffFactor": 1.15, "backoffSeconds": 1,
            "container": {"type": "DOCKER", "docker": {"image": "nginx", "forcePullImage": false,
                "privileged": false, "parameters": []}, "volumes": [],
                "portMappings": [{"containerPort": 80, "hostPort": 0, "labels": {}, "name": "http",
                    "protocol": "tcp", "servicePort": 10002}]},
            "cpus": 0.1, "disk": 0, "executor": "", "instances": 2, "labels": {"SERVICE_NAME": "web"},
            "maxLaunchDelaySeconds": 300, "mem": 128, "gpus": 0,
            "networks": [{"mode": "container/bridge"}], "requirePorts": false,
            "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
            "version": "2026-11-22T10:00:00.000Z",
            "versionInfo": {"lastScalingAt": "2026-11-22T10:00:00.000Z",
                "lastConfigChangeAt": "2026-11-22T10:00:00.000Z"},
            "killSelection": "YOUNGEST_FIRST",
            "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
            "role": "*", "tasksStaged": 0, "tasksRunning": 2, "tasksHealthy": 0, "tasksUnhealthy": 0,
            "deployments": [{"id": "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"}],
            "tasks": [{"id": "dev_web.instance-1._app.1", "host": "10.0.0.1", "state": "TASK_RUNNING"}],
            "lastTaskFailure": {"appId": "/dev/web", "host": "10.0.0.1", "message": "x",
                "state": "TASK_FAILED", "taskId": "t", "timestamp": "2026-11-22T10:00:00.000Z",
                "version": "2026-11-22T10:00:00.000Z"}});
        let v14 = json!({"id": "/web", "cmd": "sleep 1", "instances": 1, "cpus": 0.1, "mem": 128,
            "ports": [10001], "portDefinitions": [{"port": 10001, "protocol": "tcp", "labels": {}}],
            "uris": [], "fetch": [], "labels": {}, "version": "2017-01-01T00:00:00.000Z",
            "tasksRunning": 1, "deployments": []});
        for (server, n) in [(v111, 3), (v14, 0)] {
            let body = scale_body(&server, n);
            assert_marathon_app(&body);
            assert_eq!(body["instances"], n);
            // only the count differs from the server's definition
            let mut same = body.clone();
            same["instances"] = server["instances"].clone();
            assert_eq!(diff(&same, &server), Vec::<String>::new());
        }
    }
}
