//! Planning: what to do for each service, from the desired app definitions
//! and the apps as the Marathon API returns them. Pure; table-tested.
//!
//! Comparison looks only at the fields the deployer sets (plus whatever the
//! service's `marathon:` map sets), and reads the server's normalised output
//! leniently: defaults it fills in (health-check timings, `servicePort`,
//! Docker flags, empty lists) do not count as differences.

//! Here: the steps and how they are chosen; `compare` holds the field
//! comparison rules, `pin` the host pin of fixed-host services.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

mod compare;
mod pin;

pub use compare::diff;
use pin::{pin_for, take_pin, task_hosts};

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

#[cfg(test)]
mod tests;
