//! After a restart: every task loaded from etcd is handed to its runtime.
//! Adopted tasks keep running, tasks the runtime positively reports gone are
//! finished (and replaced by the reconciler), orphans are removed by the
//! runtime. A task is never declared lost because its runtime failed to
//! answer: until the runtime answers for it, it stays as it was
//! ("unresolved": `tasks_unresolved` in `/metrics`, not replaced, not
//! health-checked), and recovery is retried in the background after 0.5, 1,
//! 2, 4 and 8 s, then every 15 s, until every runtime answered for every task.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use marathon::{TaskState, Timestamp};

use crate::core::Core;
use crate::runtime::{Exit, KnownTask};

/// Delays of the first retries after a failed or partial recovery.
pub const RETRY_DELAYS_MS: [u64; 5] = [500, 1000, 2000, 4000, 8000];
/// Delay of every later retry.
pub const RETRY_EVERY: Duration = Duration::from_secs(15);

/// The delay before retry number `attempt` (0-based).
pub fn retry_delay(attempt: usize) -> Duration {
    RETRY_DELAYS_MS
        .get(attempt)
        .map_or(RETRY_EVERY, |ms| Duration::from_millis(*ms))
}

impl Core {
    /// At start, before the API serves: one recovery attempt per runtime;
    /// what is left unresolved is retried in the background.
    pub async fn recover(&self) {
        let without_runtime: Vec<(String, String)> = {
            let mut s = self.state();
            let ids: Vec<String> = s.tasks.keys().cloned().collect();
            s.unresolved.extend(ids);
            s.tasks
                .values()
                .filter(|t| !self.runtimes.iter().any(|r| r.name() == t.runtime))
                .map(|t| (t.id.clone(), t.runtime.clone()))
                .collect()
        };
        // A runtime this manager was started without (`--docker off`) will
        // never answer for its tasks.
        for (id, runtime) in without_runtime {
            self.finish_task(
                &id,
                Exit::Lost {
                    message: format!("the {runtime} runtime is not enabled on this manager"),
                },
            )
            .await;
        }
        let mut pending: BTreeSet<&'static str> = self.runtimes.iter().map(|r| r.name()).collect();
        self.recover_pass(&mut pending).await;
        if !pending.is_empty() {
            self.retry_recovery(pending);
        }
    }

    fn retry_recovery(&self, mut pending: BTreeSet<&'static str>) {
        let Some(core) = self.self_arc() else { return };
        self.tracker.spawn(async move {
            let mut attempt = 0;
            while !pending.is_empty() {
                let delay = retry_delay(attempt);
                attempt += 1;
                tracing::info!(
                    runtimes = ?pending,
                    retry_in_ms = delay.as_millis() as u64,
                    unresolved = core.state().unresolved.len(),
                    "recovery incomplete; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = core.shutdown.cancelled() => return,
                }
                core.recover_pass(&mut pending).await;
            }
            tracing::info!(attempts = attempt + 1, "recovery complete");
        });
    }

    /// One attempt for each runtime in `pending`; a runtime leaves `pending`
    /// once it answered for all its tasks.
    async fn recover_pass(&self, pending: &mut BTreeSet<&'static str>) {
        let todo: Vec<_> = self
            .runtimes
            .iter()
            .filter(|r| pending.contains(r.name()))
            .cloned()
            .collect();
        for rt in todo {
            // Every task of this runtime is known to it (a task launched
            // since is never taken for an orphan); only the unresolved ones
            // are judged from the answer.
            let (mine, unresolved): (Vec<KnownTask>, BTreeSet<String>) = {
                let s = self.state();
                let of_rt = || s.tasks.values().filter(|t| t.runtime == rt.name());
                (
                    of_rt()
                        .map(|t| KnownTask {
                            task_id: t.id.clone(),
                            app_id: t.app_id.clone(),
                            handle: t.handle.clone(),
                            workload_is_docker: t.is_docker,
                        })
                        .collect(),
                    of_rt()
                        .filter(|t| s.unresolved.contains(&t.id))
                        .map(|t| t.id.clone())
                        .collect(),
                )
            };
            let r = match rt.recover(&mine).await {
                Ok(r) => r,
                Err(e) => {
                    self.counters
                        .recovery_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if unresolved.is_empty() {
                        tracing::debug!(runtime = rt.name(), error = %e, "runtime not available yet");
                    } else {
                        tracing::warn!(
                            runtime = rt.name(),
                            error = %e,
                            kept = unresolved.len(),
                            "recovery failed; its tasks stay as they were until it answers"
                        );
                    }
                    continue;
                }
            };
            tracing::info!(
                runtime = rt.name(),
                adopted = r
                    .adopted
                    .iter()
                    .filter(|id| unresolved.contains(*id))
                    .count(),
                gone = r.gone.len(),
                orphans = r.orphans_removed.len(),
                skipped = r.skipped.len(),
                "recovered"
            );
            let mut accounted: BTreeSet<String> = BTreeSet::new();
            for id in r.adopted.iter().filter(|id| unresolved.contains(*id)) {
                accounted.insert(id.clone());
                let rec = {
                    let mut s = self.state();
                    s.unresolved.remove(id);
                    s.tasks.get_mut(id).map(|t| {
                        if matches!(t.state, TaskState::Staging | TaskState::Starting) {
                            t.state = TaskState::Running;
                            t.started_at.get_or_insert_with(Timestamp::now);
                        }
                        t.clone()
                    })
                };
                // A kill requested before the restart (or while the runtime
                // did not answer) is carried out now.
                if let Some(rec) = rec.filter(|t| t.state == TaskState::Killing) {
                    self.spawn_kill(rec);
                }
            }
            for (id, exit) in r.gone {
                if unresolved.contains(&id) {
                    accounted.insert(id.clone());
                    self.finish_task(&id, exit).await;
                }
            }
            for (id, why) in &r.skipped {
                accounted.insert(id.clone());
                self.counters
                    .recovery_skipped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task_id = %id, reason = %why, "task skipped by recovery; kept as it was");
            }
            // The runtime answered and did not mention them: not there.
            for id in unresolved.difference(&accounted) {
                self.finish_task(
                    id,
                    Exit::Lost {
                        message: "task not found after manager restart".into(),
                    },
                )
                .await;
            }
            if self.container_net_etcd_endpoints.get().is_none()
                && !self.cfg.container_etcd_endpoints_explicit
            {
                // A Docker engine connected only now: its containers reach
                // etcd through its bridge gateway.
                if let Some(gw) = rt.bridge_gateway().await {
                    let _ = self
                        .container_net_etcd_endpoints
                        .set(crate::env::rewrite_loopback(
                            &self.cfg.container_etcd_endpoints,
                            &gw,
                        ));
                }
            }
            if r.skipped.is_empty() {
                pending.remove(rt.name());
            }
        }
        self.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_then_settle() {
        let delays: Vec<u64> = (0..8).map(|i| retry_delay(i).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    }
}
