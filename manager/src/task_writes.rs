//! Task state writes outside API changes (a launch's TASK_RUNNING, a kill's
//! TASK_KILLING, the deletion of an ended task's key) by group commit: a
//! caller queues its task id and takes its turn; the turn's holder writes the
//! *current* state of every task queued by then (its record, or the deletion
//! of its key once it ended), in as few transactions as etcd accepts
//! ([`crate::state_store::Store::apply_chunked`]: one operation per task, so
//! one task's change is always in exactly one transaction, whole or not at
//! all). A launch of 100 tasks thus costs a handful of transactions instead of
//! 100 while each caller still returns only once its task's state is written.
//!
//! Order: one turn at a time, each writing the states memory holds when the
//! turn starts, so a later turn never lands an older state over a newer one
//! (a RUNNING written after the task ended and its key was deleted). A failed
//! turn marks its tasks unsaved ([`crate::unsaved`]): retried until etcd
//! takes them.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::core::Core;
use crate::state::TaskRecord;
use crate::state_store::{Store, Write};

/// Tasks waiting for their state to be written, and the one turn.
#[derive(Default)]
pub(crate) struct TaskWrites {
    queued: Mutex<BTreeSet<String>>,
    turn: tokio::sync::Mutex<()>,
}

/// What one turn writes for the queued tasks: the record of a task memory
/// holds, the deletion of its key otherwise (pure; `record`: the task's
/// current record).
pub fn turn_writes<'i, 'r>(
    ids: impl IntoIterator<Item = &'i String>,
    record: impl Fn(&str) -> Option<&'r TaskRecord>,
) -> Vec<(String, Option<&'r TaskRecord>)> {
    ids.into_iter().map(|id| (id.clone(), record(id))).collect()
}

impl Core {
    /// Writes task `id`'s current state to etcd with whatever other task
    /// states are queued (see the module docs); returns once a turn that
    /// wrote it is over. A failure is logged and the tasks are marked
    /// unsaved.
    pub(crate) async fn save_task_state(&self, id: &str) {
        self.task_writes
            .queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        let _turn = self.task_writes.turn.lock().await;
        let ids = std::mem::take(
            &mut *self
                .task_writes
                .queued
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if ids.is_empty() {
            // An earlier turn took this task (its write is over: turns run
            // one at a time and that one ended before ours began).
            return;
        }
        let writes: Vec<Write> = {
            let s = self.state();
            turn_writes(&ids, |id| s.tasks.get(id))
                .into_iter()
                .filter_map(|(id, rec)| {
                    let key = self.store.task_key(&id).ok()?;
                    match rec {
                        Some(t) => Store::put(key, t).ok(),
                        None => Some(Write::Delete(key)),
                    }
                })
                .collect()
        };
        if let Err(e) = self.store.apply_chunked(writes).await {
            tracing::warn!(tasks = ids.len(), error = %e, "writing task states failed; retried until etcd takes them");
            self.mark_unsaved(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queued ids; the writes wanted: (id, whether its record is put).
    type Case = (Vec<&'static str>, Vec<(&'static str, bool)>);

    fn rec(id: &str) -> TaskRecord {
        TaskRecord::test(id, "/a", marathon::TaskState::Running)
    }

    #[test]
    fn a_turn_writes_live_tasks_and_deletes_ended_ones() {
        let live = [rec("a.1"), rec("c.1")];
        let find = |id: &str| live.iter().find(|t| t.id == id);
        let cases: Vec<Case> = vec![
            (vec![], vec![]),
            (vec!["a.1"], vec![("a.1", true)]),
            (vec!["b.1"], vec![("b.1", false)]),
            (
                vec!["a.1", "b.1", "c.1"],
                vec![("a.1", true), ("b.1", false), ("c.1", true)],
            ),
        ];
        for (queued, want) in cases {
            let ids: Vec<String> = queued.iter().map(|s| s.to_string()).collect();
            let got: Vec<(String, bool)> = turn_writes(&ids, find)
                .into_iter()
                .map(|(id, r)| {
                    if let Some(r) = r {
                        assert_eq!(r.id, id, "the record of the task itself");
                    }
                    (id, r.is_some())
                })
                .collect();
            let want: Vec<(String, bool)> = want
                .into_iter()
                .map(|(id, p)| (id.to_string(), p))
                .collect();
            assert_eq!(got, want, "queued {queued:?}");
        }
    }
}
