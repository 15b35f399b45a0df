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
    /// A plan only (`dry_run=true`): each action is what applying would do;
    /// nothing was applied.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
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
        group: registry::naming::group_from_labels(&p.labels),
        app_id: p.app_id.clone(),
        action: p.step.action(),
        deployment_id,
        instances: p.instances,
        changes,
        outcome: None,
        tasks_running: None,
    }
}

/// Reads the current apps, plans, and applies the plan: every create,
/// scale and update in one multi-app `PUT /v2/apps` (one deployment; the
/// Marathon API accepts all of it or none), then the removals, one
/// `DELETE` each, only once the PUT was accepted. A refused PUT leaves
/// everything as it was; a failing `DELETE` leaves the PUT and the
/// removals before it applied (listed in the error).
#[instrument(skip_all, fields(apps = desired.len(), removals = removals.len()))]
pub async fn apply(
    marathon: &Marathon,
    desired: &[Desired],
    removals: &[Removal],
) -> Result<Vec<ServiceReport>, DeployError> {
    let planned = plan_against_server(marathon, desired, removals).await?;
    let calls = plan::calls(&planned);
    let put_id = if calls.put.is_empty() {
        None
    } else {
        let sent: Vec<&Planned> = planned.iter().filter(|p| p.step.app().is_some()).collect();
        marathon
            .put_apps(&calls.put)
            .await
            .map_err(|source| DeployError::Upstream {
                source: name_the_apps(source, &sent),
                applied: Vec::new(),
            })?
    };
    let mut reports = Vec::with_capacity(planned.len());
    for p in &planned {
        let deployment_id = match &p.step {
            Step::Delete => match marathon.delete_app(&p.app_id).await {
                Ok(id) => id,
                Err(source) => {
                    return Err(DeployError::Upstream {
                        source,
                        applied: reports,
                    })
                }
            },
            step if step.app().is_some() => put_id.clone(),
            _ => None,
        };
        let r = report_of(p, deployment_id);
        info!(app_id = %r.app_id, action = ?r.action, deployment_id = ?r.deployment_id, "applied");
        reports.push(r);
    }
    Ok(reports)
}

/// The plan against the current apps, applied to nothing: what [`apply`]
/// would do (its report, without deployment ids).
#[instrument(skip_all, fields(apps = desired.len(), removals = removals.len()))]
pub async fn preview(
    marathon: &Marathon,
    desired: &[Desired],
    removals: &[Removal],
) -> Result<Vec<ServiceReport>, DeployError> {
    Ok(plan_against_server(marathon, desired, removals)
        .await?
        .iter()
        .map(|p| report_of(p, None))
        .collect())
}

/// Reads the current apps and plans against them; nothing is applied yet.
async fn plan_against_server(
    marathon: &Marathon,
    desired: &[Desired],
    removals: &[Removal],
) -> Result<Vec<Planned>, DeployError> {
    let actual = marathon
        .apps()
        .await
        .map_err(|source| DeployError::Upstream {
            source,
            applied: Vec::new(),
        })?;
    Ok(plan::plan(desired, removals, &actual))
}

/// Most details to spell out in the message of a refused PUT.
const NAMED_DETAILS: usize = 5;

/// A refused multi-app PUT reports paths by list index (`/1/portDefinitions(0)/port`):
/// each detail gets the `app_id` and `service` it is about, and the message
/// says which app and why, so one line (the CLI's) is enough to fix it.
fn name_the_apps(e: UpstreamError, sent: &[&Planned]) -> UpstreamError {
    let UpstreamError::Status {
        status,
        what,
        mut message,
        mut details,
    } = e
    else {
        return e;
    };
    let mut named = Vec::new();
    for d in details.as_array_mut().into_iter().flatten() {
        let Some(path) = d.get("path").and_then(Value::as_str) else {
            continue;
        };
        let Some((i, rest)) = list_index(path) else {
            continue;
        };
        let Some(p) = sent.get(i) else { continue };
        let rest = rest.to_string();
        let errors: Vec<&str> = d
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let at = if rest.is_empty() {
            String::new()
        } else {
            format!(" at {rest}")
        };
        named.push(format!("app {}{at}: {}", p.app_id, errors.join(", ")));
        if let Some(o) = d.as_object_mut() {
            o.insert("app_id".into(), Value::String(p.app_id.clone()));
            o.insert("service".into(), Value::String(p.service.clone()));
        }
    }
    if !named.is_empty() {
        let more = named.len().saturating_sub(NAMED_DETAILS);
        named.truncate(NAMED_DETAILS);
        message = format!("{message}: {}", named.join("; "));
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
    }
    UpstreamError::Status {
        status,
        what,
        message,
        details,
    }
}

/// `/1/x` or `/(1)/x` -> (1, "/x").
fn list_index(path: &str) -> Option<(usize, &str)> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let (head, rest) = match p.find('/') {
        Some(k) => (&p[..k], &p[k..]),
        None => (p, ""),
    };
    let head = head
        .strip_prefix('(')
        .and_then(|h| h.strip_suffix(')'))
        .unwrap_or(head);
    if head.is_empty() || !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, rest))
}

/// Polls until none of the reports' deployments is running, or `timeout`.
/// `progress(finished, total)` (in distinct deployments) is called on every poll.
pub async fn wait(
    marathon: &Marathon,
    reports: &mut [ServiceReport],
    timeout: Duration,
    mut progress: impl FnMut(usize, usize),
) -> Result<bool, UpstreamError> {
    // Services of one PUT share its deployment: each id counts once.
    let mut wanted: Vec<String> = Vec::new();
    for id in reports.iter().filter_map(|r| r.deployment_id.clone()) {
        if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn planned(service: &str, app_id: &str) -> Planned {
        Planned {
            service: service.into(),
            labels: vec![],
            app_id: app_id.into(),
            step: Step::Create(json!({"id": app_id})),
            instances: 1,
        }
    }

    #[test]
    fn list_indexes() {
        assert_eq!(
            list_index("/1/portDefinitions(0)/port"),
            Some((1, "/portDefinitions(0)/port"))
        );
        assert_eq!(list_index("/(2)/id"), Some((2, "/id")));
        assert_eq!(list_index("/0"), Some((0, "")));
        for none in ["/", "", "/id", "/x1/y", "/(a)/b"] {
            assert_eq!(list_index(none), None, "{none}");
        }
    }

    #[test]
    fn a_refused_put_names_the_apps() {
        let sent = [planned("a", "/t/a"), planned("b", "/t/b")];
        let sent: Vec<&Planned> = sent.iter().collect();
        let e = UpstreamError::Status {
            status: 422,
            what: "PUT /v2/apps".into(),
            message: "Object is not valid".into(),
            details: json!([
                {"path": "/1/portDefinitions(0)/port", "errors": ["host port 80 is already reserved"]},
                {"path": "/7/id", "errors": ["out of the list"]},
                {"path": "/", "errors": ["not about one app"]}
            ]),
        };
        let UpstreamError::Status {
            message, details, ..
        } = name_the_apps(e, &sent)
        else {
            panic!()
        };
        assert_eq!(
            message,
            "Object is not valid: app /t/b at /portDefinitions(0)/port: host port 80 is already reserved"
        );
        assert_eq!(details[0]["app_id"], "/t/b");
        assert_eq!(details[0]["service"], "b");
        assert_eq!(details[0]["path"], "/1/portDefinitions(0)/port");
        assert!(details[1].get("app_id").is_none());
        assert!(details[2].get("app_id").is_none());

        // other errors pass unchanged
        let e = UpstreamError::Protocol {
            what: "PUT /v2/apps".into(),
            reason: "x".into(),
        };
        assert!(matches!(
            name_the_apps(e, &sent),
            UpstreamError::Protocol { .. }
        ));
    }
}
