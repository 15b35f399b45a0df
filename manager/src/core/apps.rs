//! App changes: create, update (one or many), delete, restart, reset delay.

use std::collections::BTreeSet;

use marathon::{App, Timestamp};
use serde_json::{Map, Value};

use super::{action_for, Change, Core, CoreError};
use crate::events;
use crate::state::{DeploymentRecord, State};
use crate::validation;

impl Core {
    /// Service ports used by apps other than `except`.
    fn used_service_ports(state: &State, except: &str) -> BTreeSet<u32> {
        state
            .apps
            .values()
            .filter(|a| a.id != except)
            .flat_map(App::service_ports)
            .filter(|p| *p != 0)
            .collect()
    }

    /// Normalises, validates and assigns service ports of a new definition.
    fn prepare(
        &self,
        state: &State,
        mut app: App,
        previous: Option<&App>,
    ) -> Result<App, CoreError> {
        validation::normalise(&mut app);
        let violations = validation::validate(&app, &self.limits());
        if !violations.is_empty() {
            return Err(CoreError::Invalid(violations));
        }
        let used = Self::used_service_ports(state, &app.id);
        validation::assign_service_ports(&mut app, previous, &used, self.cfg.service_port_range)?;
        Ok(app)
    }

    /// `POST /v2/apps`.
    pub async fn create_app(
        &self,
        body: Value,
        force: bool,
    ) -> Result<(App, DeploymentRecord), CoreError> {
        let app = validation::app_from_value(body)?;
        let _w = self.writes.lock().await;
        let app = {
            let s = self.state();
            let app = self.prepare(&s, app, None)?;
            if s.apps.contains_key(&app.id) {
                return Err(CoreError::Conflict(format!(
                    "An app with id [{}] already exists.",
                    app.id
                )));
            }
            if s.apps
                .keys()
                .any(|k| k.starts_with(&format!("{}/", app.id)))
            {
                return Err(CoreError::Conflict(format!(
                    "An app with id [{}] already exists.",
                    app.id
                )));
            }
            crate::ports::check_fixed_ports(&s, &[&app], false)?;
            app
        };
        let mut app = app;
        let version = self.next_version();
        Self::stamp(&mut app, None, version, true);
        let d = self
            .commit(
                vec![Change::Put {
                    app: app.clone(),
                    action: marathon::deployment::action::START_APPLICATION,
                }],
                force,
                version,
            )
            .await?;
        Ok((app, d))
    }

    /// Builds the change for an update (or creation) of one app from a body.
    pub(super) fn change_for(
        &self,
        s: &State,
        id: &str,
        body: &Map<String, Value>,
        partial: bool,
        version: Timestamp,
    ) -> Result<(Change, bool), CoreError> {
        let existing = s.apps.get(id);
        // Rollback: {"version": ts} (id allowed beside it).
        if let Some(v) = body.get("version") {
            let only_version = body.keys().all(|k| k == "version" || k == "id");
            if !only_version {
                return Err(CoreError::invalid(
                    "/",
                    "The 'version' field may only be combined with the 'id' field.",
                ));
            }
            let ts: Timestamp = v
                .as_str()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| CoreError::invalid("/version", "is not a valid timestamp"))?;
            let existing = existing.ok_or_else(|| CoreError::app_not_found(id))?;
            let old = s
                .versions
                .get(id)
                .and_then(|vs| vs.get(&ts))
                .cloned()
                .ok_or_else(|| {
                    CoreError::NotFound(format!("App '{id}' does not exist in version {ts}"))
                })?;
            let mut app = old;
            let upgrade = validation::is_upgrade(existing, &app);
            Self::stamp(&mut app, Some(existing), version, upgrade);
            let action = action_for(Some(existing), &app, upgrade);
            return Ok((Change::Put { app, action }, false));
        }
        let (mut app, created) = match existing {
            Some(e) if partial => (validation::merge_update(e, body)?, false),
            _ => {
                let mut b = body.clone();
                b.insert("id".into(), Value::String(id.to_string()));
                (
                    validation::app_from_value(Value::Object(b))?,
                    existing.is_none(),
                )
            }
        };
        app.id = id.to_string();
        app = self.prepare(s, app, existing)?;
        let upgrade = existing.is_none_or(|e| validation::is_upgrade(e, &app));
        Self::stamp(&mut app, existing, version, upgrade);
        let action = action_for(existing, &app, upgrade);
        Ok((Change::Put { app, action }, created))
    }

    /// `PUT|PATCH /v2/apps/{id}`; returns (created, deployment, app).
    pub async fn update_app(
        &self,
        id: &str,
        body: Value,
        partial: bool,
        force: bool,
        may_create: bool,
    ) -> Result<(bool, DeploymentRecord, App), CoreError> {
        let Value::Object(body) = body else {
            return Err(CoreError::InvalidJson("error.expected.jsobject".into()));
        };
        let _w = self.writes.lock().await;
        let version = self.next_version();
        let (change, created) = {
            let s = self.state();
            if !may_create && !s.apps.contains_key(id) {
                return Err(CoreError::app_not_found(id));
            }
            let (change, created) = self.change_for(&s, id, &body, partial, version)?;
            if let Change::Put { app, .. } = &change {
                crate::ports::check_fixed_ports(&s, &[app], false)?;
            }
            (change, created)
        };
        let app = match &change {
            Change::Put { app, .. } => app.clone(),
            Change::Delete { .. } => unreachable!("updates never delete"),
        };
        let d = self.commit(vec![change], force, version).await?;
        Ok((created, d, app))
    }

    /// `PUT|PATCH /v2/apps` with several apps: one deployment.
    pub async fn update_many(
        &self,
        body: Value,
        partial: bool,
        force: bool,
        may_create: bool,
    ) -> Result<DeploymentRecord, CoreError> {
        let Value::Array(items) = body else {
            return Err(CoreError::InvalidJson("error.expected.jsarray".into()));
        };
        let _w = self.writes.lock().await;
        let version = self.next_version();
        let changes = {
            let s = self.state();
            let mut changes = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let Value::Object(obj) = item else {
                    return Err(CoreError::InvalidJson(format!(
                        "/{i}: error.expected.jsobject"
                    )));
                };
                let raw_id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
                if let Err(e) = crate::ids::validate_app_id(raw_id) {
                    return Err(CoreError::invalid(&format!("/{i}/id"), &e));
                }
                let id = crate::ids::canonical(raw_id);
                if !seen.insert(id.clone()) {
                    return Err(CoreError::invalid(&format!("/{i}/id"), "is given twice"));
                }
                if !may_create && !s.apps.contains_key(&id) {
                    return Err(CoreError::app_not_found(&id));
                }
                let (change, _) = self
                    .change_for(&s, &id, obj, partial, version)
                    .map_err(|e| match e {
                        CoreError::Invalid(v) => CoreError::Invalid(
                            v.into_iter()
                                .map(|mut x| {
                                    x.path =
                                        format!("/{i}{}", if x.path == "/" { "" } else { &x.path });
                                    x
                                })
                                .collect(),
                        ),
                        other => other,
                    })?;
                changes.push(change);
            }
            let apps: Vec<&App> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Put { app, .. } => Some(app),
                    Change::Delete { .. } => None,
                })
                .collect();
            crate::ports::check_fixed_ports(&s, &apps, true)?;
            changes
        };
        if changes.is_empty() {
            return Err(CoreError::BadRequest("no apps given".into()));
        }
        self.commit(changes, force, version).await
    }

    /// `DELETE /v2/apps/{id}`.
    pub async fn delete_app(&self, id: &str, force: bool) -> Result<DeploymentRecord, CoreError> {
        let _w = self.writes.lock().await;
        if !self.state().apps.contains_key(id) {
            return Err(CoreError::app_not_found(id));
        }
        let version = self.next_version();
        let d = self
            .commit(
                vec![Change::Delete {
                    app_id: id.to_string(),
                }],
                force,
                version,
            )
            .await?;
        self.bus.publish(&events::build::app_terminated(id));
        Ok(d)
    }

    /// `POST /v2/apps/{id}/restart`.
    pub async fn restart_app(&self, id: &str, force: bool) -> Result<DeploymentRecord, CoreError> {
        let _w = self.writes.lock().await;
        let version = self.next_version();
        let app = {
            let s = self.state();
            let existing = s.apps.get(id).ok_or_else(|| CoreError::app_not_found(id))?;
            let mut app = existing.clone();
            Self::stamp(&mut app, Some(existing), version, true);
            app
        };
        self.commit(
            vec![Change::Put {
                app,
                action: marathon::deployment::action::RESTART_APPLICATION,
            }],
            force,
            version,
        )
        .await
    }

    /// `DELETE /v2/queue/{id}/delay`.
    pub fn reset_delay(&self, app_id: &str) -> Result<(), CoreError> {
        let mut s = self.state();
        if !s.apps.contains_key(app_id) {
            return Err(CoreError::app_not_found(app_id));
        }
        s.backoff.remove(app_id);
        drop(s);
        self.wake();
        Ok(())
    }
}
