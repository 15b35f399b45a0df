//! The runtime's background tasks, owned by the runtime's `JoinSet` (aborted
//! when it drops): one exit watcher per container, one health event stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::WaitContainerOptions;
use bollard::system::EventsOptions;
use daemon::Backoff;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::recover::classify_exit;
use super::shared::{message_of, status_of, Phase, Shared};
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
        let still_ours = shared
            .table()
            .tasks
            .get(&task_id)
            .is_some_and(|t| t.container_id == container_id && t.phase != Phase::Done);
        if !still_ours {
            return;
        }
        match shared.inspect(&container_id).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running != Some(true) {
                    shared
                        .exited(&task_id, &container_id, classify_exit(&state))
                        .await;
                    return;
                }
            }
            Err(e) if status_of(&e) == Some(404) => {
                let exit = Exit::Lost {
                    message: "the container was removed outside the manager".into(),
                };
                shared.exited(&task_id, &container_id, exit).await;
                return;
            }
            Err(e) => warn!(task_id, error = %message_of(&e), "cannot inspect container; retrying"),
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

/// Follows `health_status` events of this manager's containers and reports
/// them as [`RuntimeEvent::Health`]; reconnects with backoff, resuming from
/// the last event seen.
pub(super) async fn health_events(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    let mut since: Option<i64> = None;
    loop {
        let filters: HashMap<String, Vec<String>> = [
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["health_status".to_string()]),
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
            match next {
                Some(Ok(event)) => {
                    backoff.reset();
                    since = event.time.or(since);
                    let action = event.action.unwrap_or_default();
                    let attrs = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                    let Some(task_id) = attrs.get(LABEL_TASK_ID) else {
                        continue;
                    };
                    let healthy = match action.split_once(':').map(|(_, s)| s.trim()) {
                        Some("healthy") => true,
                        Some("unhealthy") => false,
                        _ => continue,
                    };
                    let running = shared
                        .table()
                        .tasks
                        .get(task_id)
                        .is_some_and(|t| t.phase == Phase::Running);
                    if running {
                        let _ = shared.events.send(RuntimeEvent::Health {
                            task_id: task_id.clone(),
                            healthy,
                        });
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
