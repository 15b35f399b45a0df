//! The one writer of task records to etcd.
//!
//! A task's state moves on in memory whatever etcd does (a task that runs,
//! runs). Every change of a task's record goes through here: the caller
//! marks the task ([`Core::save_tasks`]), and one loop
//! ([`Core::run_task_writer`]) writes each marked task's *current* record,
//! or deletes its key when the task has ended, many tasks per transaction.
//!
//! - Order: one writer, and it always writes what memory holds at the time
//!   of the write, so two writes of one task can never land in the wrong
//!   order (a `TASK_RUNNING` put arriving after the ended task's delete
//!   would leave a dead task in etcd for the next manager to look for).
//! - Group commit: tasks marked while a transaction is in flight go in the
//!   next one. A launch of 100 tasks costs a few transactions, not one
//!   etcd write (and fsync) per state change, on the CPUs the launches need.
//!   A lone change is written at once: nothing waits for a batch to fill.
//! - etcd away: a write that fails keeps its tasks marked and the writer
//!   tries again after a backoff (100 ms doubling to 500 ms, the
//!   reconcile tick that retried them before) until etcd holds
//!   what memory holds, so that a restarted manager loads the tasks that
//!   really run. Callers get the failure and go on (the launch starts, the
//!   kill proceeds), as before.
//! - Not atomic across tasks: a batch bigger than one transaction is split
//!   ([`Store::apply_chunked`]); task records are safe to write again.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use daemon::Backoff;

use crate::core::Core;
use crate::state::TaskRecord;
use crate::state_store::{Store, Write};

/// The writer's half of [`Core`]: its wake-up and the outcome of its flushes.
pub struct TaskWrites {
    wake: tokio::sync::Notify,
    flushed: tokio::sync::watch::Sender<Flushed>,
}

impl Default for TaskWrites {
    fn default() -> Self {
        TaskWrites {
            wake: tokio::sync::Notify::new(),
            flushed: tokio::sync::watch::channel(Flushed::default()).0,
        }
    }
}

/// The last flush done: its generation ([`crate::state::State::write_gen`])
/// and its error, if it failed.
#[derive(Debug, Clone, Default)]
struct Flushed {
    generation: u64,
    error: Option<String>,
}

/// First delay after a failed flush; it doubles up to [`RETRY_MAX`]
/// (the project's one [`Backoff`]).
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// The writes that make etcd hold `records` (a marked task's current
/// record, `None` once it ended): a put of each record, a delete of each
/// ended task's key. Ids that cannot form a key (validated upstream, so a
/// bug) and records that cannot be encoded are left out and logged.
pub(crate) fn plan_writes(
    keys: &registry::ManagerKeys,
    records: Vec<(String, Option<TaskRecord>)>,
) -> Vec<Write> {
    records
        .into_iter()
        .filter_map(|(id, rec)| {
            let write = keys
                .task(&id)
                .map_err(crate::state_store::StoreError::from)
                .and_then(|key| match &rec {
                    Some(t) => Store::put(key, t),
                    None => Ok(Write::Delete(key)),
                });
            write
                .map_err(|e| tracing::error!(task_id = %id, error = %e, "cannot write this task's record"))
                .ok()
        })
        .collect()
}

/// The marks a round took: put back unless the round wrote them (it
/// failed, or panicked and was contained).
struct Remark<'a> {
    core: &'a Core,
    ids: BTreeSet<String>,
    written: bool,
}

impl Drop for Remark<'_> {
    fn drop(&mut self) {
        if !self.written {
            let ids = std::mem::take(&mut self.ids);
            self.core.state().unsaved.extend(ids);
        }
    }
}

impl Core {
    /// Marks tasks whose record changed (or which ended) and waits until a
    /// write that started after the marking is done; its error, if it
    /// failed (the tasks stay marked and are written once etcd is back).
    pub(crate) async fn save_tasks(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<(), String> {
        let mut flushed = self.task_writes.flushed.subscribe();
        let wanted = {
            let mut s = self.state();
            s.unsaved.extend(ids);
            // The next flush takes the marks under this lock and is this
            // generation.
            s.write_gen + 1
        };
        self.task_writes.wake.notify_one();
        let done = flushed
            .wait_for(|f| f.generation >= wanted)
            .await
            .map(|f| f.error.clone());
        match done {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            // (The sender lives as long as the core.)
            Err(_) => Err("the manager stopped before writing it".into()),
        }
    }

    /// Runs until shutdown, and past it while other background work (a
    /// launch or kill finishing) may still mark tasks: it stops once nothing
    /// is marked and it is the last task of the core's tracker. Any wait
    /// after that ends at once with an error (nothing writes any more).
    pub(crate) async fn run_task_writer(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        loop {
            if self.state().unsaved.is_empty() {
                if self.shutdown.is_cancelled() {
                    if self.tracker.len() <= 1 {
                        break;
                    }
                    tokio::select! {
                        _ = self.task_writes.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                    continue;
                }
                tokio::select! {
                    _ = self.task_writes.wake.notified() => {}
                    _ = self.shutdown.cancelled() => {}
                }
                continue;
            }
            let round = crate::contain::run_async(
                &self.counters.loop_panics,
                "task writer",
                "",
                self.flush_tasks(failures == 0),
            )
            .await;
            let written = round.unwrap_or_else(|| {
                // A bug, contained: the round's waiters get an error; its
                // tasks were marked again ([`Remark`]).
                let generation = self.state().write_gen;
                self.task_writes.flushed.send_replace(Flushed {
                    generation,
                    error: Some("the task writer failed; retrying".into()),
                });
                false
            });
            if written {
                if failures > 0 {
                    tracing::info!("task records written to etcd again");
                }
                failures = 0;
                backoff.reset();
                continue;
            }
            failures = failures.saturating_add(1);
            tokio::time::sleep(backoff.next()).await;
        }
        self.task_writes.flushed.send_replace(Flushed {
            generation: u64::MAX,
            error: Some("the manager stopped before writing it".into()),
        });
    }

    /// One flush: every marked task's current record in as few transactions
    /// as fit; whether it was written.
    /// (`loud`: a failure is logged as a warning; later ones of the same
    /// outage at debug level.)
    async fn flush_tasks(&self, loud: bool) -> bool {
        let (generation, records) = {
            let mut s = self.state();
            let ids = std::mem::take(&mut s.unsaved);
            s.write_gen += 1;
            let records: Vec<(String, Option<TaskRecord>)> = ids
                .into_iter()
                .map(|id| {
                    let rec = s.tasks.get(&id).cloned();
                    (id, rec)
                })
                .collect();
            (s.write_gen, records)
        };
        let mut taken = Remark {
            core: self,
            ids: records.iter().map(|(id, _)| id.clone()).collect(),
            written: false,
        };
        let writes = plan_writes(self.store.keys(), records);
        let count = writes.len() as u64;
        let result = self.store.apply_chunked(writes).await;
        let error = match result {
            Ok(()) => {
                taken.written = true;
                self.counters
                    .task_writes
                    .fetch_add(count, Ordering::Relaxed);
                self.counters.task_flushes.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                if loud {
                    tracing::warn!(tasks = taken.ids.len(), error = %e, "writing task records failed; retried until etcd takes them");
                } else {
                    tracing::debug!(tasks = taken.ids.len(), error = %e, "task records still not written; retrying");
                }
                Some(e.cause())
            }
        };
        let ok = error.is_none();
        // (Not written: marked again here, so the next round writes their
        // state of then.)
        drop(taken);
        self.task_writes
            .flushed
            .send_replace(Flushed { generation, error });
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_task_is_put_as_memory_holds_it_and_an_ended_one_deleted() {
        use marathon::TaskState;
        let keys = registry::ManagerKeys::new("/mdo/manager").unwrap();
        let running = TaskRecord::test("a.1", "/a", TaskState::Running);
        let got = plan_writes(
            &keys,
            vec![
                ("a.1".into(), Some(running.clone())),
                ("a.2".into(), None),
                // Cannot be part of a key: left out, the rest still written.
                ("../x".into(), None),
            ],
        );
        let put_key = keys.task("a.1").unwrap();
        let del_key = keys.task("a.2").unwrap();
        match got.as_slice() {
            [Write::Put(k, v), Write::Delete(d)] => {
                assert_eq!(k, &put_key);
                let back: TaskRecord = serde_json::from_slice(v).unwrap();
                assert_eq!(back, running);
                assert_eq!(d, &del_key);
            }
            other => panic!("unexpected writes: {other:?}"),
        }
    }
}
