//! The runtime's background tasks, owned by the runtime's `JoinSet` (aborted
//! when it drops): one exit watcher per container (`wait`), one stream of
//! the engine's events (health, and exits as they happen).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::WaitContainerOptions;
use bollard::system::EventsOptions;
use daemon::Backoff;
use futures::StreamExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::recover::classify_code;
use super::shared::{message_of, OomSeen, Phase, Shared};
use super::spec::{LABEL_MANAGER, LABEL_TASK_ID};
use crate::runtime::{Exit, RuntimeEvent};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Sleeps the next delay of `backoff` unless cancelled; false when cancelled.
async fn pause(backoff: &mut Backoff, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(backoff.next()) => true,
    }
}

/// Waits for the container to stop, then reports how it ended (once: the
/// shared table decides whether this watcher or `kill` reports).
pub(super) async fn wait_exit(
    shared: Arc<Shared>,
    task_id: String,
    container_id: String,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    loop {
        let waited_since = tokio::time::Instant::now();
        let mut wait = shared.docker.wait_container(
            &container_id,
            Some(WaitContainerOptions {
                condition: "not-running",
            }),
        );
        // The outcome of `wait` itself (a non-zero code arrives as an error)
        // matters less than the container's state afterwards.
        tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = wait.next() => debug!(task_id, outcome = ?outcome.map(|r| r.map(|w| w.status_code)), "wait returned"),
        }
        if !shared.still_running(&task_id, &container_id)
            || shared.report_if_stopped(&task_id, &container_id).await
        {
            return;
        }
        // A wait that held for a while was healthy: start backing off afresh.
        if waited_since.elapsed() > BACKOFF_MAX {
            backoff.reset();
        }
        if !pause(&mut backoff, &cancel).await {
            return;
        }
    }
}

/// Engine event actions this runtime follows.
const HEALTH: &str = "health_status";
const OOM: &str = "oom";
const DIE: &str = "die";

/// How a container ended, from its `die` event's attributes (`exitCode`)
/// and whether an `oom` event came first. `None` without a readable exit
/// code: the `wait` watcher reads the state instead.
pub(super) fn die_exit(attrs: &HashMap<String, String>, oom: bool) -> Option<Exit> {
    let code = attrs.get("exitCode")?.trim().parse::<i64>().ok()?;
    Some(classify_code(code, oom, None))
}

/// Follows this manager's containers on the engine's event stream:
/// `health_status` becomes [`RuntimeEvent::Health`]; `die` (after `oom`
/// when out of memory) reports the container's exit, the fast path beside
/// [`wait_exit`], which waits for Docker to finish cleaning up before it
/// can read the state (only the first of the two reports, see
/// [`Shared::claim_exit`]). Reconnects with backoff, resuming from the
/// last event seen; an exit in a gap is still reported by `wait_exit`.
pub(super) async fn engine_events(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    let mut since: Option<i64> = None;
    let mut actions = vec![HEALTH.to_string()];
    if shared.config.exit_sources.events() {
        actions.extend([OOM.to_string(), DIE.to_string()]);
    }
    let mut oom_seen = OomSeen::default();
    // The reports the stream claimed, cleaning up (the stream reads on).
    let mut finishing: JoinSet<()> = JoinSet::new();
    loop {
        let filters: HashMap<String, Vec<String>> = [
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), actions.clone()),
            (
                "label".to_string(),
                vec![format!("{LABEL_MANAGER}={}", shared.config.manager_id)],
            ),
        ]
        .into_iter()
        .collect();
        let mut stream = shared.docker.events(Some(EventsOptions::<String> {
            since: since.map(|s| s.to_string()),
            until: None,
            filters,
        }));
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next() => next,
            };
            while finishing.try_join_next().is_some() {}
            match next {
                Some(Ok(event)) => {
                    backoff.reset();
                    since = event.time.or(since);
                    let action = event.action.unwrap_or_default();
                    let actor = event.actor.unwrap_or_default();
                    let container_id = actor.id.unwrap_or_default();
                    let attrs = actor.attributes.unwrap_or_default();
                    let Some(task_id) = attrs.get(LABEL_TASK_ID) else {
                        continue;
                    };
                    match action.as_str() {
                        OOM => {
                            oom_seen.mark(container_id);
                        }
                        DIE => {
                            let oom = oom_seen.take(&container_id);
                            let Some(exit) = die_exit(&attrs, oom) else {
                                continue;
                            };
                            if shared.claim_exit(task_id, &container_id) {
                                let (shared, task_id) = (shared.clone(), task_id.clone());
                                finishing.spawn(async move {
                                    shared.report_exit(&task_id, &container_id, exit).await;
                                });
                            }
                        }
                        _ => report_health(&shared, task_id, &action),
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %message_of(&e), "Docker event stream failed; reconnecting");
                    break;
                }
                None => break,
            }
        }
        if !pause(&mut backoff, &cancel).await {
            return;
        }
    }
}

/// A `health_status: healthy|unhealthy` event of a running task.
fn report_health(shared: &Shared, task_id: &str, action: &str) {
    let healthy = match action.split_once(':').map(|(_, s)| s.trim()) {
        Some("healthy") => true,
        Some("unhealthy") => false,
        _ => return,
    };
    let running = shared
        .table()
        .tasks
        .get(task_id)
        .is_some_and(|t| t.phase == Phase::Running);
    if running {
        let _ = shared.events.send(RuntimeEvent::Health {
            task_id: task_id.to_string(),
            healthy,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::recover::classify_exit;
    use super::*;
    use bollard::models::ContainerState;

    fn attrs(code: &str) -> HashMap<String, String> {
        [("exitCode".to_string(), code.to_string())]
            .into_iter()
            .collect()
    }

    #[test]
    fn a_die_event_reads_as_the_inspected_state_does() {
        for (code, oom) in [
            (0, false),
            (3, false),
            (137, false),
            (143, false),
            (137, true),
        ] {
            let state = ContainerState {
                exit_code: Some(code),
                oom_killed: Some(oom),
                ..Default::default()
            };
            assert_eq!(
                die_exit(&attrs(&code.to_string()), oom),
                Some(classify_exit(&state)),
                "exit code {code}, oom {oom}"
            );
        }
        assert_eq!(
            die_exit(&attrs("137"), false),
            Some(Exit::Failed {
                message: "killed by signal 9 (exit code 137)".into()
            })
        );
    }

    #[test]
    fn a_die_event_without_a_code_leaves_the_exit_to_wait() {
        assert_eq!(die_exit(&attrs("x"), false), None);
        assert_eq!(die_exit(&HashMap::new(), true), None);
    }
}
