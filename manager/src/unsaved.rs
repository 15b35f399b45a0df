//! Task state writes that failed while etcd was away, written again until
//! etcd holds what memory holds.
//!
//! A task's state moves on in memory whatever etcd does (a task that runs,
//! runs): a write that fails is only logged by its caller, which marks the
//! task here. Without a second write, etcd would keep the old state for good
//! (a replacement launched during an etcd outage missing, a dead task still
//! listed), and the next manager would load that: stop the replacement as an
//! orphan, look for the dead one. The reconcile tick starts a catch-up round
//! (at most one at a time, off the reconcile pass) that writes each marked
//! task's *current* record, or deletes its key when the task has ended.

use crate::core::Core;

impl Core {
    /// A write of these tasks' state failed: retry them from the reconcile
    /// tick until etcd takes them.
    pub(crate) fn mark_unsaved(&self, ids: impl IntoIterator<Item = String>) {
        self.state().unsaved.extend(ids);
    }

    /// Starts one catch-up round unless none is needed or one is running.
    pub(crate) fn spawn_save_unsaved(&self) {
        {
            let mut s = self.state();
            if s.unsaved.is_empty() || s.saving_unsaved {
                return;
            }
            s.saving_unsaved = true;
        }
        let Some(core) = self.self_arc() else {
            self.state().saving_unsaved = false;
            return;
        };
        self.tracker.spawn(async move {
            core.save_unsaved().await;
            core.state().saving_unsaved = false;
        });
    }

    /// Writes every marked task's current state (deletes the key of a task
    /// that ended); stops at the first failure (etcd still away: the next
    /// tick tries again).
    async fn save_unsaved(&self) {
        let ids: Vec<String> = self.state().unsaved.iter().cloned().collect();
        let mut saved = 0usize;
        for id in ids {
            let rec = self.state().tasks.get(&id).cloned();
            let result = match &rec {
                Some(t) => self.store.put_task(&id, t).await,
                None => self.store.delete_task(&id).await,
            };
            if let Err(e) = result {
                tracing::debug!(task_id = %id, error = %e, "task state still not written; retrying later");
                break;
            }
            let mut s = self.state();
            // Changed while it was written: the next round writes the newer
            // state (a write of the caller may have landed before ours).
            if s.tasks.get(&id) == rec.as_ref() {
                s.unsaved.remove(&id);
                saved += 1;
            }
        }
        if saved > 0 {
            tracing::info!(
                tasks = saved,
                "task states written to etcd after failed writes"
            );
        }
    }
}
