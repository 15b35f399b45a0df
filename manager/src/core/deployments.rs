//! Deployments: every change is committed as one deployment (one etcd
//! transaction), and cancelled (stopped or rolled back).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use marathon::{App, DeploymentAction, DeploymentStep, Timestamp};

use super::{action_for, Change, Core, CoreError};
use crate::events;
use crate::state::DeploymentRecord;
use crate::state_store::{Store, Write};
use crate::validation;

impl Core {
    /// Applies changes as one deployment (the caller holds `writes`).
    pub(super) async fn commit(
        &self,
        changes: Vec<Change>,
        force: bool,
        version: Timestamp,
    ) -> Result<DeploymentRecord, CoreError> {
        self.commit_replacing(changes, force, version, None).await
    }

    /// [`Core::commit`], also removing `replaced` (a deployment this one
    /// rolls back) in the same etcd transaction. Everything the change
    /// writes (apps, their new versions, the versions dropped beyond
    /// `--max-versions`, cancelled deployments, the new deployment) is ONE
    /// transaction: a change too large for one is refused (422) and nothing
    /// is written.
    async fn commit_replacing(
        &self,
        changes: Vec<Change>,
        force: bool,
        version: Timestamp,
        replaced: Option<&DeploymentRecord>,
    ) -> Result<DeploymentRecord, CoreError> {
        let ids: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Put { app, .. } => app.id.clone(),
                Change::Delete { app_id } => app_id.clone(),
            })
            .collect();
        let (conflicts, original) = {
            let s = self.state();
            let mut conflicts: Vec<String> =
                ids.iter().flat_map(|id| s.deployments_of(id)).collect();
            conflicts.retain(|id| replaced.is_none_or(|r| r.id != *id));
            conflicts.sort();
            conflicts.dedup();
            let original: BTreeMap<String, Option<App>> = ids
                .iter()
                .map(|id| (id.clone(), s.apps.get(id).cloned()))
                .collect();
            (conflicts, original)
        };
        if !conflicts.is_empty() && !force {
            return Err(CoreError::Locked(conflicts));
        }
        let actions: Vec<DeploymentAction> = changes
            .iter()
            .map(|c| match c {
                Change::Put { app, action } => DeploymentAction::app(action, app.id.clone()),
                Change::Delete { app_id } => DeploymentAction::app(
                    marathon::deployment::action::STOP_APPLICATION,
                    app_id.clone(),
                ),
            })
            .collect();
        let deployment = DeploymentRecord {
            id: uuid::Uuid::new_v4().to_string(),
            version,
            affected_apps: ids.clone(),
            steps: vec![DeploymentStep { actions }],
            original,
        };
        let mut writes = Vec::new();
        let mut dropped: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
        for c in &changes {
            match c {
                Change::Put { app, .. } => {
                    writes.push(Store::put(self.store.app_key(&app.id)?, app)?);
                    let v = app.version.unwrap_or(version);
                    writes.push(Store::put(self.store.version_key(&app.id, &v)?, app)?);
                    let old = self
                        .store
                        .versions_to_drop(self.state().versions.get(&app.id), v);
                    for ts in &old {
                        writes.push(Write::Delete(self.store.version_key(&app.id, ts)?));
                    }
                    dropped.insert(app.id.clone(), old);
                }
                Change::Delete { app_id } => {
                    writes.push(Write::Delete(self.store.app_key(app_id)?));
                    writes.push(Write::DeletePrefix(self.store.versions_prefix(app_id)?));
                }
            }
        }
        for id in conflicts.iter().chain(replaced.map(|r| &r.id)) {
            writes.push(Write::Delete(self.store.deployment_key(id)?));
        }
        writes.push(Store::put(
            self.store.deployment_key(&deployment.id)?,
            &deployment,
        )?);
        self.store.apply(writes).await?;
        if let Some(r) = replaced {
            self.state().deployments.remove(&r.id);
            self.counters
                .deployments_failed
                .fetch_add(1, Ordering::Relaxed);
            self.bus
                .publish(&events::build::deployment_failed(r, "cancelled"));
        }

        let cancelled = {
            let mut s = self.state();
            let cancelled: Vec<DeploymentRecord> = conflicts
                .iter()
                .filter_map(|id| s.deployments.remove(id))
                .collect();
            for c in changes {
                match c {
                    Change::Put { app, .. } => {
                        let v = app.version.unwrap_or(version);
                        let prev_cfg = s.apps.get(&app.id).map(Self::config_version);
                        if prev_cfg != Some(Self::config_version(&app)) {
                            s.backoff.remove(&app.id);
                        }
                        let versions = s.versions.entry(app.id.clone()).or_default();
                        versions.insert(v, app.clone());
                        for ts in dropped.get(&app.id).into_iter().flatten() {
                            versions.remove(ts);
                        }
                        s.apps.insert(app.id.clone(), app);
                    }
                    Change::Delete { app_id } => {
                        s.apps.remove(&app_id);
                        s.versions.remove(&app_id);
                        s.backoff.remove(&app_id);
                        s.queue.remove(&app_id);
                        s.last_failure.remove(&app_id);
                    }
                }
            }
            s.deployments
                .insert(deployment.id.clone(), deployment.clone());
            cancelled
        };
        for c in &cancelled {
            self.counters
                .deployments_failed
                .fetch_add(1, Ordering::Relaxed);
            self.bus.publish(&events::build::deployment_failed(
                c,
                "cancelled by a forced deployment",
            ));
        }
        self.counters
            .deployments_started
            .fetch_add(1, Ordering::Relaxed);
        self.bus
            .publish(&events::build::group_change_success(version));
        self.bus
            .publish(&events::build::deployment_info(&deployment));
        self.wake();
        Ok(deployment)
    }

    /// `DELETE /v2/deployments/{id}`: force = stop only; else roll back.
    pub async fn cancel_deployment(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Option<DeploymentRecord>, CoreError> {
        let _w = self.writes.lock().await;
        let Some(d) = self.state().deployments.get(id).cloned() else {
            return Err(CoreError::NotFound(format!(
                "DeploymentPlan {id} does not exist"
            )));
        };
        if force {
            self.store.delete_deployment(id).await?;
            self.state().deployments.remove(id);
            self.counters
                .deployments_failed
                .fetch_add(1, Ordering::Relaxed);
            self.bus
                .publish(&events::build::deployment_failed(&d, "cancelled"));
            return Ok(None);
        }
        // The rollback replaces it: one transaction removes it and stores
        // the rollback (its apps, versions and deployment).
        let version = self.next_version();
        let changes: Vec<Change> = {
            let s = self.state();
            d.original
                .iter()
                .map(|(app_id, orig)| match orig {
                    Some(o) => {
                        let mut app = o.clone();
                        app.version = Some(version);
                        if let Some(vi) = app.version_info.as_mut() {
                            vi.last_scaling_at = version;
                        }
                        let action = action_for(
                            s.apps.get(app_id),
                            &app,
                            s.apps
                                .get(app_id)
                                .is_none_or(|c| validation::is_upgrade(c, &app)),
                        );
                        Change::Put { app, action }
                    }
                    None => Change::Delete {
                        app_id: app_id.clone(),
                    },
                })
                .collect()
        };
        Ok(Some(
            self.commit_replacing(changes, true, version, Some(&d))
                .await?,
        ))
    }
}
