//! Task kills (with and without scaling the app down), their announcement, task id lookup.

use std::collections::BTreeMap;

use marathon::TaskState;

use super::{Change, Core, CoreError};
use crate::events;
use crate::state::{DeploymentRecord, TaskRecord};

impl Core {
    /// Kills tasks (ids already resolved). With `scale`, the apps'
    /// `instances` drop by the number killed (one deployment).
    pub async fn kill_tasks(
        &self,
        task_ids: &[String],
        scale: bool,
        force: bool,
    ) -> Result<(Vec<marathon::Task>, Option<DeploymentRecord>), CoreError> {
        let _w = self.writes.lock().await;
        let mut deployment = None;
        if scale {
            let version = self.next_version();
            let changes = {
                let s = self.state();
                let mut per_app: BTreeMap<String, u32> = BTreeMap::new();
                for id in task_ids {
                    if let Some(t) = s.tasks.get(id).filter(|t| t.state != TaskState::Killing) {
                        *per_app.entry(t.app_id.clone()).or_default() += 1;
                    }
                }
                let mut changes = Vec::new();
                for (app_id, n) in per_app {
                    if let Some(existing) = s.apps.get(&app_id) {
                        let mut app = existing.clone();
                        app.instances = app.instances.saturating_sub(n);
                        Self::stamp(&mut app, Some(existing), version, false);
                        changes.push(Change::Put {
                            app,
                            action: marathon::deployment::action::SCALE_APPLICATION,
                        });
                    }
                }
                changes
            };
            if !changes.is_empty() {
                deployment = Some(self.commit(changes, force, version).await?);
            }
        }
        let killed = self.start_kills(task_ids, "killed on request").await;
        Ok((killed, deployment))
    }

    /// Marks tasks KILLING and kills them in the background; returns their
    /// Marathon view (as of the kill).
    pub async fn start_kills(&self, task_ids: &[String], reason: &str) -> Vec<marathon::Task> {
        let mut out = Vec::new();
        let mut to_kill = Vec::new();
        {
            let mut s = self.state();
            for id in task_ids {
                let Some(t) = s.tasks.get_mut(id) else {
                    continue;
                };
                if t.state.is_terminal() {
                    continue;
                }
                if t.state != TaskState::Killing {
                    t.state = TaskState::Killing;
                    to_kill.push(t.clone());
                }
                let t = t.clone();
                out.push(s.task_json(&t));
            }
        }
        // KILLING is in etcd before the caller answers: a manager killed
        // right after still carries the kill out once it is back.
        if !to_kill.is_empty() {
            if let Err(e) = self.save_tasks(to_kill.iter().map(|t| t.id.clone())).await {
                tracing::warn!(error = %e, "persisting TASK_KILLING failed; killing anyway");
            }
        }
        for t in to_kill {
            self.announce(&t, reason);
            self.spawn_kill_persisted(t);
        }
        out
    }

    /// Publishes `status_update_event` + `instance_changed_event`.
    pub fn announce(&self, t: &TaskRecord, message: &str) {
        self.bus.publish(&events::build::status_update(t, message));
        self.bus.publish(&events::build::instance_changed(t));
    }

    /// Resolves task ids given in any historic format to known task ids.
    /// Err(id) = not a task id at all.
    pub fn resolve_task_ids(&self, ids: &[String]) -> Result<Vec<String>, String> {
        let s = self.state();
        let mut out = Vec::new();
        for id in ids {
            if s.tasks.contains_key(id) {
                out.push(id.clone());
                continue;
            }
            let Some((_app, uuid)) = crate::ids::parse_task_id(id) else {
                return Err(id.clone());
            };
            out.extend(
                s.tasks
                    .keys()
                    .filter(|k| crate::ids::parse_task_id(k).is_some_and(|(_, u)| u == uuid))
                    .cloned(),
            );
        }
        out.dedup();
        Ok(out)
    }
}
