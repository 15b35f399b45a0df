//! The runtime's shared state: the task table (who reports an end, exactly
//! once), and the Docker calls both the runtime and its watchers make.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bollard::container::{
    InspectContainerOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::image::CreateImageOptions;
use bollard::models::ContainerInspectResponse;
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::recover::classify_exit;
use super::DockerConfig;
use crate::runtime::{EventSender, Exit, RuntimeError, RuntimeEvent};

/// Where a task is in its life, as this runtime sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    /// `kill` owns the ending (and reports `Exit::Killed`).
    Killing,
    /// Reported; the container is (being) removed.
    Done,
}

pub(super) struct Tracked {
    pub(super) container_id: String,
    pub(super) phase: Phase,
    /// Flips to true once the task's end has been reported and cleaned up.
    pub(super) done: watch::Sender<bool>,
    /// The log tail kept when the container was removed.
    pub(super) logs: Option<Vec<u8>>,
}

#[derive(Default)]
pub(super) struct Table {
    pub(super) tasks: HashMap<String, Tracked>,
    /// Done tasks, oldest first, for bounded retention.
    pub(super) finished: VecDeque<String>,
}

/// Containers whose `oom` event came and whose exit has not yet: both exit
/// streams (Docker's and containerd's) keep one, bounded (cleared when
/// full: an exit is then reported as a plain kill, never lost).
#[derive(Default)]
pub(super) struct OomSeen(std::collections::HashSet<String>);

impl OomSeen {
    const MAX: usize = 1024;

    pub(super) fn mark(&mut self, container_id: String) {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(container_id);
    }

    /// Whether an `oom` came for the container (and forgets it).
    pub(super) fn take(&mut self, container_id: &str) -> bool {
        self.0.remove(container_id)
    }
}

/// State shared with the watcher tasks.
pub(super) struct Shared {
    pub(super) docker: Docker,
    pub(super) config: DockerConfig,
    pub(super) events: EventSender,
    pub(super) table: Mutex<Table>,
}

pub(super) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(super) fn message_of(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// `name[:tag]` / `name@digest` -> (name, tag-or-digest) for a pull.
pub(super) fn split_reference(image: &str) -> (String, String) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name.to_string(), digest.to_string());
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_string(),
            image[last_slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// Keeps the last `max_lines` lines and `max_bytes` bytes.
pub(super) fn bound_tail(mut bytes: Vec<u8>, max_lines: usize, max_bytes: usize) -> Vec<u8> {
    let mut cut = 0;
    let body_end = if bytes.ends_with(b"\n") {
        bytes.len() - 1
    } else {
        bytes.len()
    };
    let mut lines = 0;
    for i in (0..body_end).rev() {
        if bytes[i] == b'\n' {
            lines += 1;
            if lines == max_lines {
                cut = i + 1;
                break;
            }
        }
    }
    if max_lines == 0 {
        cut = bytes.len();
    }
    cut = cut.max(bytes.len().saturating_sub(max_bytes));
    bytes.drain(..cut);
    bytes
}

impl Shared {
    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `docker inspect` of one container (by name or id).
    pub(super) async fn inspect(
        &self,
        container: &str,
    ) -> Result<ContainerInspectResponse, bollard::errors::Error> {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
    }

    /// Reads a container's log tail from Docker.
    pub(super) async fn docker_logs(
        &self,
        container_id: &str,
        tail: Option<usize>,
    ) -> Result<Vec<u8>, bollard::errors::Error> {
        let lines = tail
            .unwrap_or(self.config.log_max_lines)
            .min(self.config.log_max_lines);
        let mut stream = self.docker.logs::<String>(
            container_id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?.into_bytes());
            if out.len() > 2 * self.config.log_max_bytes {
                out = bound_tail(out, usize::MAX, self.config.log_max_bytes);
            }
        }
        Ok(bound_tail(out, lines, self.config.log_max_bytes))
    }

    /// Keeps the container's log tail so `logs` works after removal.
    pub(super) async fn keep_logs(&self, task_id: &str, container_id: &str) {
        if let Ok(logs) = self.docker_logs(container_id, None).await {
            if let Some(t) = self.table().tasks.get_mut(task_id) {
                t.logs = Some(logs);
            }
        }
    }

    /// Reports the end, then keeps the log tail, removes the container and
    /// marks the task done. The report goes first: it is what peers wait
    /// for, and reading the tail is a call to an engine that is still
    /// cleaning the container up. Logs stay readable throughout: from the
    /// container until it is removed, which happens only after the tail
    /// is kept (see `logs`).
    pub(super) async fn finish(&self, task_id: &str, container_id: &str, report: Option<Exit>) {
        if let Some(exit) = report {
            let _ = self.events.send(RuntimeEvent::Exited {
                task_id: task_id.to_string(),
                exit,
            });
        }
        self.keep_logs(task_id, container_id).await;
        self.remove(container_id).await;
        let mut table = self.table();
        let retained = self.config.finished_retained;
        if let Some(t) = table.tasks.get_mut(task_id) {
            t.phase = Phase::Done;
            t.done.send_replace(true);
            table.finished.push_back(task_id.to_string());
        }
        while table.finished.len() > retained {
            if let Some(old) = table.finished.pop_front() {
                if table
                    .tasks
                    .get(&old)
                    .is_some_and(|t| t.phase == Phase::Done)
                {
                    table.tasks.remove(&old);
                }
            }
        }
    }

    pub(super) async fn remove(&self, container_id: &str) {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if let Err(e) = self.docker.remove_container(container_id, Some(opts)).await {
            if status_of(&e) != Some(404) {
                warn!(container_id, error = %message_of(&e), "cannot remove container");
            }
        }
    }

    /// SIGTERM, `grace`, SIGKILL (Docker's stop), tolerating gone containers.
    pub(super) async fn stop(&self, container_id: &str, grace: Duration) {
        let t = grace.as_secs_f64().ceil() as i64;
        let client = self
            .docker
            .clone()
            .with_timeout(grace.saturating_add(Duration::from_secs(120)));
        if let Err(e) = client
            .stop_container(container_id, Some(StopContainerOptions { t }))
            .await
        {
            if !matches!(status_of(&e), Some(304) | Some(404)) {
                warn!(container_id, error = %message_of(&e), "cannot stop container");
            }
        }
    }

    /// The task whose container this is (a scan: called once per exit).
    pub(super) fn task_of_container(&self, container_id: &str) -> Option<String> {
        self.table()
            .tasks
            .iter()
            .find(|(_, t)| t.container_id == container_id)
            .map(|(id, _)| id.clone())
    }

    /// Claims the report of a container's end: true for the first caller
    /// only, and never while `kill` owns the ending. Both exit paths (the
    /// `die` event and `wait`) go through here, so an exit is reported once.
    pub(super) fn claim_exit(&self, task_id: &str, container_id: &str) -> bool {
        let mut table = self.table();
        match table.tasks.get_mut(task_id) {
            Some(t) if t.phase == Phase::Running && t.container_id == container_id => {
                t.phase = Phase::Done;
                true
            }
            _ => false,
        }
    }

    /// Whether the task still runs in this container as far as the table
    /// knows (not reported, removed or replaced).
    pub(super) fn still_running(&self, task_id: &str, container_id: &str) -> bool {
        self.table()
            .tasks
            .get(task_id)
            .is_some_and(|t| t.container_id == container_id && t.phase != Phase::Done)
    }

    /// Asks the engine whether the container stopped and reports how it
    /// ended if so (gone entirely: lost); true once there is nothing more
    /// to watch, false while it runs or the engine does not answer.
    pub(super) async fn report_if_stopped(&self, task_id: &str, container_id: &str) -> bool {
        match self.inspect(container_id).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running == Some(true) {
                    return false;
                }
                self.exited(task_id, container_id, classify_exit(&state))
                    .await;
                true
            }
            Err(e) if status_of(&e) == Some(404) => {
                let exit = Exit::Lost {
                    message: "the container was removed outside the manager".into(),
                };
                self.exited(task_id, container_id, exit).await;
                true
            }
            Err(e) => {
                warn!(task_id, error = %message_of(&e), "cannot inspect container; retrying");
                false
            }
        }
    }

    /// Called by a watcher when a container stopped on its own: reports the
    /// exit unless `kill` owns the ending or it was reported already.
    pub(super) async fn exited(&self, task_id: &str, container_id: &str, exit: Exit) {
        if self.claim_exit(task_id, container_id) {
            self.report_exit(task_id, container_id, exit).await;
        }
    }

    /// Reports an exit claimed by [`Shared::claim_exit`] and cleans up.
    pub(super) async fn report_exit(&self, task_id: &str, container_id: &str, exit: Exit) {
        info!(task_id, container_id, exit = ?exit, "container exited");
        self.finish(task_id, container_id, Some(exit)).await;
    }

    pub(super) async fn ensure_image(
        &self,
        image: &str,
        force_pull: bool,
    ) -> Result<(), RuntimeError> {
        let present = match self.docker.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if status_of(&e) == Some(404) => false,
            Err(e) => {
                return Err(RuntimeError::Unavailable(format!(
                    "cannot inspect image {image}: {}",
                    message_of(&e)
                )))
            }
        };
        if present && !force_pull {
            return Ok(());
        }
        let (name, tag) = split_reference(image);
        let pull = async {
            let mut stream = self.docker.create_image(
                Some(CreateImageOptions {
                    from_image: name.clone(),
                    tag: tag.clone(),
                    ..Default::default()
                }),
                None,
                None,
            );
            while let Some(item) = stream.next().await {
                item.map_err(|e| message_of(&e))?;
            }
            Ok::<(), String>(())
        };
        let outcome = match tokio::time::timeout(self.config.pull_timeout, pull).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "pull timed out after {:?}",
                self.config.pull_timeout
            )),
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(e) if present => {
                warn!(image, error = %e, "forced pull failed; using the local image");
                Ok(())
            }
            Err(e) => Err(RuntimeError::Launch(format!(
                "image {image} is not present locally and cannot be pulled: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        // No I/O: claiming an exit only reads and writes the table.
        let docker =
            Docker::connect_with_http("tcp://127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION)
                .expect("client");
        Shared {
            docker,
            config: DockerConfig::new("m"),
            events: tokio::sync::mpsc::unbounded_channel().0,
            table: Mutex::new(Table::default()),
        }
    }

    fn track(s: &Shared, task: &str, container: &str, phase: Phase) {
        s.table().tasks.insert(
            task.to_string(),
            Tracked {
                container_id: container.to_string(),
                phase,
                done: watch::channel(false).0,
                logs: None,
            },
        );
    }

    #[test]
    fn an_exit_is_claimed_once_by_whichever_path_comes_first() {
        let s = shared();
        track(&s, "t1", "c1", Phase::Running);
        assert!(
            !s.claim_exit("t1", "other"),
            "another container of the task"
        );
        assert!(
            s.claim_exit("t1", "c1"),
            "the first path (die event or wait)"
        );
        assert!(!s.claim_exit("t1", "c1"), "the second path");
        track(&s, "t2", "c2", Phase::Killing);
        assert!(!s.claim_exit("t2", "c2"), "kill owns the ending");
        assert!(!s.claim_exit("unknown", "c3"));
    }
}
