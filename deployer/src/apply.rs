//! The thin async layer: document -> validated specs -> app JSON -> plan ->
//! Marathon calls -> a report per service; and waiting for deployments.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tracing::{info, instrument};

use crate::parse::{self, Format, Limits, ParseError};
use crate::plan::{self, Action, Desired, Planned, Removal, Step};
use crate::spec::{self, Detail, Document};
use crate::translate::{self, TranslateConfig};
use crate::upstream::{Marathon, UpstreamError};

/// Why a document was not (fully) applied.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("the document is not valid")]
    Invalid(Vec<Detail>),
    /// The Marathon API failed; `applied` lists what was done before it did.
    #[error("{source}")]
    Upstream {
        #[source]
        source: UpstreamError,
        applied: Vec<ServiceReport>,
    },
}

/// What happened to one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceReport {
    pub service: String,
    pub labels: Vec<String>,
    pub group: String,
    pub app_id: String,
    pub action: Action,
    pub deployment_id: Option<String>,
    pub instances: u64,
    /// For updates: the app fields that differed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// After waiting: `finished` or `pending`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// After waiting: running tasks of the app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks_running: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Finished,
    Pending,
}

/// The answer to one document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployReport {
    pub services: Vec<ServiceReport>,
    /// Present when asked to wait: every deployment finished in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
}

/// Parses and validates a body: nothing is applied when this fails.
pub fn load(body: &[u8], format: Format, limits: &Limits) -> Result<Document, DeployError> {
    let value = parse::parse(body, format, limits)?;
    spec::validate(&value).map_err(DeployError::Invalid)
}

/// Desired apps and removals for a validated document. Each app must read
/// as a Marathon app (this catches a `marathon:` map with wrong types before
/// anything is applied).
pub fn prepare(
    doc: &Document,
    config: &TranslateConfig,
) -> Result<(Vec<Desired>, Vec<Removal>), DeployError> {
    let desired: Vec<Desired> = doc
        .deploy
        .iter()
        .map(|s| Desired {
            service: s.service.clone(),
            labels: s.labels.clone(),
            app: translate::app_json(s, config),
            fixed_host: s.fixed_host,
        })
        .collect();
    let removals = doc
        .remove
        .iter()
        .map(|r| Removal {
            service: r.service.clone(),
            labels: r.labels.clone(),
            app_id: r.app_id(),
        })
        .collect();
    let problems: Vec<Detail> = desired
        .iter()
        .filter_map(|d| {
            let e = serde_json::from_value::<marathon::App>(d.app.clone()).err()?;
            Some(Detail {
                path: format!("/deploy/{}/marathon", d.service),
                errors: vec![format!(
                    "the app definition is not a valid Marathon app: {e}"
                )],
            })
        })
        .collect();
    if !problems.is_empty() {
        return Err(DeployError::Invalid(problems));
    }
    Ok((desired, removals))
}

fn report_of(p: &Planned, deployment_id: Option<String>) -> ServiceReport {
    let changes = match &p.step {
        Step::Update { changes, .. } => changes.clone(),
        _ => Vec::new(),
    };
    ServiceReport {
        service: p.service.clone(),
        labels: p.labels.clone(),
        group: crate::naming::group_name(&p.labels),
        app_id: p.app_id.clone(),
        action: p.step.action(),
        deployment_id,
        instances: p.instances,
        changes,
        outcome: None,
        tasks_running: None,
    }
}

/// Reads the current apps, plans, and applies the plan in order.
#[instrument(skip_all, fields(apps = desired.len(), removals = removals.len()))]
pub async fn apply(
    marathon: &Marathon,
    desired: &[Desired],
    removals: &[Removal],
) -> Result<Vec<ServiceReport>, DeployError> {
    let actual = marathon
        .apps()
        .await
        .map_err(|source| DeployError::Upstream {
            source,
            applied: Vec::new(),
        })?;
    let planned = plan::plan(desired, removals, &actual);
    let mut reports = Vec::with_capacity(planned.len());
    for p in &planned {
        let result = match &p.step {
            Step::Create(app) => marathon.create_app(app).await,
            Step::Scale(n) => marathon.scale_app(&p.app_id, *n).await,
            Step::Update { app, .. } => marathon.replace_app(&p.app_id, app).await,
            Step::Delete => marathon.delete_app(&p.app_id).await,
            Step::Unchanged | Step::AlreadyAbsent => Ok(None),
        };
        match result {
            Ok(deployment_id) => {
                let r = report_of(p, deployment_id);
                info!(app_id = %r.app_id, action = ?r.action, deployment_id = ?r.deployment_id, "applied");
                reports.push(r);
            }
            Err(source) => {
                return Err(DeployError::Upstream {
                    source,
                    applied: reports,
                })
            }
        }
    }
    Ok(reports)
}

/// Polls until none of the reports' deployments is running, or `timeout`.
/// `progress(finished, total)` is called on every poll.
pub async fn wait(
    marathon: &Marathon,
    reports: &mut [ServiceReport],
    timeout: Duration,
    mut progress: impl FnMut(usize, usize),
) -> Result<bool, UpstreamError> {
    let wanted: Vec<String> = reports
        .iter()
        .filter_map(|r| r.deployment_id.clone())
        .collect();
    // A timeout too large for the clock waits forever rather than panicking.
    let deadline = Instant::now().checked_add(timeout);
    let mut running: Vec<String>;
    loop {
        let current = marathon.deployment_ids().await?;
        running = wanted
            .iter()
            .filter(|id| current.contains(id))
            .cloned()
            .collect();
        progress(wanted.len() - running.len(), wanted.len());
        if running.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let apps: BTreeMap<String, Value> = marathon.apps().await?;
    for r in reports.iter_mut() {
        if let Some(id) = &r.deployment_id {
            r.outcome = Some(if running.contains(id) {
                Outcome::Pending
            } else {
                Outcome::Finished
            });
        }
        r.tasks_running = Some(apps.get(&r.app_id).map(running_tasks).unwrap_or(0));
    }
    Ok(running.is_empty())
}

/// Tasks in TASK_RUNNING of an app as the API returns it.
pub fn running_tasks(app: &Value) -> u64 {
    match app.get("tasks").and_then(Value::as_array) {
        Some(tasks) => tasks
            .iter()
            .filter(|t| {
                t.get("state")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s == "TASK_RUNNING")
            })
            .count() as u64,
        None => app.get("tasksRunning").and_then(Value::as_u64).unwrap_or(0),
    }
}
