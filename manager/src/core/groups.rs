//! Group writes: `POST /v2/groups`, `PUT /v2/groups/{id}`,
//! `DELETE /v2/groups/{id}`. The built-in manager keeps no group objects of
//! its own: a group is the set of apps whose ids lie below it, so a group
//! write is one multi-app change (one deployment, one etcd transaction).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Change, Core, CoreError};
use crate::events;
use crate::ids;
use crate::state::DeploymentRecord;

/// How deep group definitions may nest (Marathon sets no limit; a bound
/// keeps a hostile body from costing more than it is worth).
pub const MAX_GROUP_DEPTH: usize = 16;

/// One app of a flattened group: its absolute id, the JSON path of its
/// definition in the body (for error messages) and the definition.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupApp {
    pub id: String,
    pub path: String,
    pub body: Map<String, Value>,
}

/// What a group body asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupPlan {
    /// Replace the group's apps with these (apps below the group that are
    /// not listed go).
    Apps(Vec<GroupApp>),
    /// Multiply every app's `instances` by this factor (rounded up).
    ScaleBy(f64),
}

/// Joins a group-relative id: absolute ids stay, relative ones are taken
/// below `parent`.
fn resolve(parent: &str, raw: &str) -> String {
    if raw.starts_with('/') {
        ids::canonical(raw)
    } else {
        ids::canonical(&format!("{parent}/{raw}"))
    }
}

fn below(id: &str, group: &str) -> bool {
    group == "/" || id.starts_with(&format!("{group}/"))
}

/// Flattens a group definition (`id`, `apps`, nested `groups`) whose id is
/// `group` into its apps, with absolute ids. Pure: checks shapes and ids,
/// not the app definitions themselves (the app rules do that).
pub fn plan_group(group: &str, body: &Value) -> Result<GroupPlan, CoreError> {
    let Value::Object(obj) = body else {
        return Err(CoreError::InvalidJson("error.expected.jsobject".into()));
    };
    if let Some(factor) = obj.get("scaleBy") {
        if obj.keys().any(|k| k != "scaleBy" && k != "id") {
            return Err(CoreError::invalid(
                "/scaleBy",
                "may only be combined with the 'id' field",
            ));
        }
        return match factor.as_f64() {
            Some(f)
                if f.is_finite() && f >= 0.0 && f <= f64::from(crate::bounds::MAX_INSTANCES) =>
            {
                Ok(GroupPlan::ScaleBy(f))
            }
            _ => Err(CoreError::invalid(
                "/scaleBy",
                &format!(
                    "must be a number from 0 to {}",
                    crate::bounds::MAX_INSTANCES
                ),
            )),
        };
    }
    let mut apps = Vec::new();
    let mut seen = BTreeSet::new();
    collect(group, obj, "", 0, &mut apps, &mut seen)?;
    Ok(GroupPlan::Apps(apps))
}

fn collect(
    group: &str,
    obj: &Map<String, Value>,
    at: &str,
    depth: usize,
    apps: &mut Vec<GroupApp>,
    seen: &mut BTreeSet<String>,
) -> Result<(), CoreError> {
    if depth > MAX_GROUP_DEPTH {
        return Err(CoreError::invalid(
            at,
            &format!("groups nest at most {MAX_GROUP_DEPTH} levels deep"),
        ));
    }
    for field in ["version", "pods"] {
        let present = match obj.get(field) {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if present {
            let why = if field == "pods" {
                "pods are not supported by the built-in manager"
            } else {
                "rolling a group back to a version is not supported by the built-in manager"
            };
            return Err(CoreError::invalid(&format!("{at}/{field}"), why));
        }
    }
    match obj.get("apps") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let path = format!("{at}/apps({i})");
                let (id, app) = member(group, item, &path)?;
                if !seen.insert(id.clone()) {
                    return Err(CoreError::invalid(
                        &format!("{path}/id"),
                        &format!("{id} is given twice"),
                    ));
                }
                apps.push(GroupApp {
                    id,
                    path,
                    body: app.clone(),
                });
            }
        }
        Some(_) => {
            return Err(CoreError::InvalidJson(format!(
                "{at}/apps: error.expected.jsarray"
            )))
        }
    }
    match obj.get("groups") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let path = format!("{at}/groups({i})");
                let (id, sub) = member(group, item, &path)?;
                collect(&id, sub, &path, depth + 1, apps, seen)?;
            }
        }
        Some(_) => {
            return Err(CoreError::InvalidJson(format!(
                "{at}/groups: error.expected.jsarray"
            )))
        }
    }
    Ok(())
}

/// An app or a nested group of `group`, at `path` in the body: an object
/// whose `id` (relative to the group, or absolute and below it) is valid.
fn member<'a>(
    group: &str,
    item: &'a Value,
    path: &str,
) -> Result<(String, &'a Map<String, Value>), CoreError> {
    let Value::Object(obj) = item else {
        return Err(CoreError::InvalidJson(format!(
            "{path}: error.expected.jsobject"
        )));
    };
    let raw = match obj.get("id") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(CoreError::invalid(&format!("{path}/id"), "is required")),
    };
    if let Err(e) = ids::validate_app_id(raw) {
        return Err(CoreError::invalid(&format!("{path}/id"), &e));
    }
    let id = resolve(group, raw);
    if !below(&id, group) || id == group {
        return Err(CoreError::invalid(
            &format!("{path}/id"),
            &format!("{id} is not below the group {group}"),
        ));
    }
    Ok((id, obj))
}

/// The group id a body names, relative ids taken below the root.
pub fn body_group_id(body: &Value) -> Option<String> {
    body.get("id")
        .and_then(Value::as_str)
        .map(|raw| resolve("/", raw))
}

impl Core {
    /// `POST /v2/groups`: creates the group's apps (one deployment); `409`
    /// when the group already has apps.
    pub async fn create_group(
        &self,
        body: Value,
        force: bool,
    ) -> Result<(String, DeploymentRecord), CoreError> {
        let raw = match body.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(CoreError::invalid("/id", "is required")),
        };
        ids::validate_app_id(&raw).map_err(|e| CoreError::invalid("/id", &e))?;
        let group = resolve("/", &raw);
        let GroupPlan::Apps(apps) = plan_group(&group, &body)? else {
            return Err(CoreError::invalid(
                "/scaleBy",
                "a group that does not exist yet cannot be scaled",
            ));
        };
        let _w = self.writes.lock().await;
        {
            let s = self.state();
            if s.apps.keys().any(|id| below(id, &group) || *id == group) {
                return Err(CoreError::Conflict(format!(
                    "Group {group} is already created. Use PUT to change this group."
                )));
            }
        }
        let d = self.apply_group(&group, apps, false, force).await?;
        Ok((group, d))
    }

    /// `PUT /v2/groups/{id}`: the group's apps become the body's (created,
    /// updated, the others below the group removed), or `scaleBy` scales
    /// every app of the group; one deployment either way.
    pub async fn update_group(
        &self,
        group: &str,
        body: Value,
        force: bool,
    ) -> Result<DeploymentRecord, CoreError> {
        if group == "/" {
            return Err(CoreError::invalid(
                "/id",
                "give the group's id: replacing the root group is not supported",
            ));
        }
        if let Some(named) = body_group_id(&body) {
            if named != group {
                return Err(CoreError::invalid(
                    "/id",
                    &format!("{named} is not the group of the path, {group}"),
                ));
            }
        }
        let plan = plan_group(group, &body)?;
        let _w = self.writes.lock().await;
        match plan {
            GroupPlan::Apps(apps) => self.apply_group(group, apps, true, force).await,
            GroupPlan::ScaleBy(factor) => {
                let apps: Vec<GroupApp> = {
                    let s = self.state();
                    s.apps
                        .values()
                        .filter(|a| below(&a.id, group))
                        .map(|a| {
                            let n = (f64::from(a.instances) * factor).ceil() as u64;
                            let mut body = Map::new();
                            body.insert("instances".into(), Value::from(n));
                            GroupApp {
                                id: a.id.clone(),
                                path: "/scaleBy".into(),
                                body,
                            }
                        })
                        .collect()
                };
                if apps.is_empty() {
                    return Err(CoreError::NotFound(format!(
                        "Group '{group}' does not exist"
                    )));
                }
                self.apply_changes(group, apps, true, false, force).await
            }
        }
    }

    /// `DELETE /v2/groups/{id}`: removes every app below the group (one
    /// deployment).
    pub async fn delete_group(
        &self,
        group: &str,
        force: bool,
    ) -> Result<DeploymentRecord, CoreError> {
        let _w = self.writes.lock().await;
        let gone: Vec<String> = {
            let s = self.state();
            s.apps
                .keys()
                .filter(|id| below(id, group))
                .cloned()
                .collect()
        };
        if gone.is_empty() {
            return Err(CoreError::NotFound(format!(
                "Group '{group}' does not exist"
            )));
        }
        let version = self.next_version();
        let changes = gone
            .iter()
            .map(|id| Change::Delete { app_id: id.clone() })
            .collect();
        let d = self.commit(changes, force, version).await?;
        for id in &gone {
            self.bus.publish(&events::build::app_terminated(id));
        }
        Ok(d)
    }

    /// The apps of a group definition as one change; with `replace`, the
    /// group's other apps go. Call with the write lock held.
    async fn apply_group(
        &self,
        group: &str,
        apps: Vec<GroupApp>,
        replace: bool,
        force: bool,
    ) -> Result<DeploymentRecord, CoreError> {
        if apps.is_empty() && !replace {
            return Err(CoreError::invalid(
                "/apps",
                "give at least one app: the built-in manager keeps no empty groups",
            ));
        }
        self.apply_changes(group, apps, replace, true, force).await
    }

    async fn apply_changes(
        &self,
        group: &str,
        apps: Vec<GroupApp>,
        replace: bool,
        full: bool,
        force: bool,
    ) -> Result<DeploymentRecord, CoreError> {
        let version = self.next_version();
        let (changes, gone) = {
            let s = self.state();
            let mut changes = Vec::new();
            for a in &apps {
                let (change, _) = self
                    .change_for(&s, &a.id, &a.body, !full, version)
                    .map_err(|e| prefix_paths(e, &a.path))?;
                changes.push(change);
            }
            let listed: BTreeSet<&str> = apps.iter().map(|a| a.id.as_str()).collect();
            let gone: Vec<String> = if replace && full {
                s.apps
                    .keys()
                    .filter(|id| below(id, group) && !listed.contains(id.as_str()))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            let put: Vec<&marathon::App> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Put { app, .. } => Some(app),
                    Change::Delete { .. } => None,
                })
                .collect();
            crate::ports::check_fixed_ports(&s, &put, true)?;
            (changes, gone)
        };
        let mut changes = changes;
        changes.extend(gone.iter().map(|id| Change::Delete { app_id: id.clone() }));
        if changes.is_empty() {
            return Err(CoreError::NotFound(format!(
                "Group '{group}' does not exist"
            )));
        }
        let d = self.commit(changes, force, version).await?;
        for id in &gone {
            self.bus.publish(&events::build::app_terminated(id));
        }
        Ok(d)
    }
}

/// Puts an app's place in the group body in front of its violation paths.
fn prefix_paths(e: CoreError, at: &str) -> CoreError {
    match e {
        CoreError::Invalid(v) => CoreError::Invalid(
            v.into_iter()
                .map(|mut x| {
                    x.path = format!("{at}{}", if x.path == "/" { "" } else { &x.path });
                    x
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids_of(plan: GroupPlan) -> Vec<(String, String)> {
        match plan {
            GroupPlan::Apps(a) => a.into_iter().map(|a| (a.id, a.path)).collect(),
            GroupPlan::ScaleBy(f) => panic!("scaleBy {f}"),
        }
    }

    fn refusal(e: CoreError) -> String {
        match e {
            CoreError::Invalid(v) => format!("{}: {}", v[0].path, v[0].errors[0]),
            CoreError::InvalidJson(m) => m,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn nested_groups_flatten_to_absolute_ids() {
        let body = json!({
            "id": "/prod",
            "apps": [{"id": "web"}, {"id": "/prod/api"}],
            "groups": [{"id": "db", "apps": [{"id": "pg"}],
                        "groups": [{"id": "/prod/db/cache", "apps": [{"id": "redis"}]}]}]
        });
        assert_eq!(
            ids_of(plan_group("/prod", &body).unwrap()),
            [
                ("/prod/web".into(), "/apps(0)".into()),
                ("/prod/api".into(), "/apps(1)".into()),
                ("/prod/db/pg".into(), "/groups(0)/apps(0)".into()),
                (
                    "/prod/db/cache/redis".into(),
                    "/groups(0)/groups(0)/apps(0)".into()
                ),
            ]
        );
        assert_eq!(
            ids_of(plan_group("/prod", &json!({"id": "/prod"})).unwrap()),
            []
        );
    }

    #[test]
    fn bad_group_bodies_are_refused_with_the_path() {
        let table = [
            (json!([]), "error.expected.jsobject"),
            (json!({"apps": {}}), "/apps: error.expected.jsarray"),
            (json!({"apps": [1]}), "/apps(0): error.expected.jsobject"),
            (json!({"apps": [{}]}), "/apps(0)/id: is required"),
            (
                json!({"apps": [{"id": "/other/x"}]}),
                "/apps(0)/id: /other/x is not below the group /prod",
            ),
            (json!({"apps": [{"id": ".."}]}), "/apps(0)/id:"),
            (
                json!({"apps": [{"id": "Bad_Id"}]}),
                "/apps(0)/id: must fully match",
            ),
            (
                json!({"apps": [{"id": "a"}, {"id": "/prod/a"}]}),
                "/apps(1)/id: /prod/a is given twice",
            ),
            (
                json!({"groups": [{"id": "/elsewhere"}]}),
                "/groups(0)/id: /elsewhere is not below",
            ),
            (json!({"groups": "x"}), "/groups: error.expected.jsarray"),
            (
                json!({"pods": [{"id": "p"}]}),
                "/pods: pods are not supported",
            ),
            (
                json!({"version": "2026-01-01T00:00:00.000Z"}),
                "/version: rolling a group back",
            ),
            (json!({"scaleBy": -1}), "/scaleBy: must be a number from 0"),
            (
                json!({"scaleBy": 1e300}),
                "/scaleBy: must be a number from 0",
            ),
            (
                json!({"scaleBy": 2, "apps": []}),
                "/scaleBy: may only be combined",
            ),
        ];
        for (body, want) in table {
            let got = refusal(plan_group("/prod", &body).expect_err(&body.to_string()));
            assert!(got.starts_with(want) || got.contains(want), "{body}: {got}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut body = json!({"id": "x", "apps": [{"id": "a"}]});
        for _ in 0..MAX_GROUP_DEPTH + 1 {
            body = json!({"id": "x", "groups": [body]});
        }
        let got = refusal(plan_group("/", &json!({"groups": [body]})).unwrap_err());
        assert!(got.contains("nest at most"), "{got}");
    }

    #[test]
    fn scale_by_is_a_plan_of_its_own() {
        assert_eq!(
            plan_group("/prod", &json!({"scaleBy": 1.5})).unwrap(),
            GroupPlan::ScaleBy(1.5)
        );
    }
}
