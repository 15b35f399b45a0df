//! The runtime's side of the spawner (`spawner.rs`, `mdo-task-shim -`): the
//! spawner is started on the first launch and again after it died; each
//! launch sends `<seq> <length> <task dir><spec>` and waits for the answer
//! with its number.
//! One reader task per spawner hands the answers to the launches waiting.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::RuntimeError;

/// What became of a launch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// The shim runs the task: `<pid> <shim pid> <shim start> <task start>`
    /// (its marker; the pid alone from an older shim).
    Started(String),
    /// The shim could not start the task (the reason).
    Failed(String),
    /// The shim ended before it answered (how).
    Ended(String),
}

impl Answer {
    fn parse(text: &str) -> Answer {
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        match word {
            "started" => Answer::Started(rest.to_string()),
            "failed" => Answer::Failed(rest.to_string()),
            "ended" => Answer::Ended(rest.to_string()),
            _ => Answer::Failed(format!("unexpected answer from the task spawner: {text}")),
        }
    }
}

/// Launches waiting for their answer, by request number.
#[derive(Default)]
struct Waiting {
    answers: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// The spawner is gone: the next launch starts another one.
    dead: AtomicBool,
}

struct Conn {
    requests: tokio::process::ChildStdin,
    waiting: Arc<Waiting>,
}

pub(super) struct Launcher {
    shim: PathBuf,
    conn: tokio::sync::Mutex<Option<Conn>>,
    next_seq: AtomicU64,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// Forgets a launch's place in [`Waiting`] however its wait ends.
struct Ticket {
    seq: u64,
    waiting: Arc<Waiting>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.waiting
            .answers
            .lock()
            .expect("answers lock")
            .remove(&self.seq);
    }
}

impl Launcher {
    pub(super) fn new(shim: PathBuf, cancel: CancellationToken, tasks: TaskTracker) -> Launcher {
        Launcher {
            shim,
            conn: tokio::sync::Mutex::new(None),
            next_seq: AtomicU64::new(1),
            cancel,
            tasks,
        }
    }

    /// Asks the spawner to start the shim of `dir` running `spec` (one line
    /// of JSON) and waits for its answer.
    pub(super) async fn launch(&self, dir: &Path, spec: &[u8]) -> Result<Answer, RuntimeError> {
        if dir.as_os_str().as_bytes().contains(&b'\n') {
            return Err(RuntimeError::Launch(format!(
                "task directory {} has a newline in its name",
                dir.display()
            )));
        }
        if spec.contains(&b'\n') {
            return Err(RuntimeError::Launch("the task spec is not one line".into()));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let request = super::spawner::request(dir, spec);
        let mut line = Vec::with_capacity(request.len() + 24);
        line.extend_from_slice(format!("{seq} ").as_bytes());
        line.extend_from_slice(&request);
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let mut ticket = None;
        {
            let mut conn = self.conn.lock().await;
            // A spawner that died takes the requests it had not read with
            // it: one retry, with a new spawner.
            for attempt in 0..2 {
                let c = match conn.take() {
                    Some(c) if !c.waiting.dead.load(Ordering::SeqCst) => conn.insert(c),
                    _ => conn.insert(self.start()?),
                };
                let sender = tx.take().expect("one sender per attempt");
                c.waiting
                    .answers
                    .lock()
                    .expect("answers lock")
                    .insert(seq, sender);
                ticket = Some(Ticket {
                    seq,
                    waiting: c.waiting.clone(),
                });
                match c.requests.write_all(&line).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "the task spawner is gone");
                        c.waiting.dead.store(true, Ordering::SeqCst);
                        tx = c.waiting.answers.lock().expect("answers lock").remove(&seq);
                        if attempt == 1 || tx.is_none() {
                            return Err(RuntimeError::Launch(format!(
                                "cannot reach the task spawner: {e}"
                            )));
                        }
                    }
                }
            }
        }
        let _ticket = ticket;
        rx.await.map_err(|_| {
            RuntimeError::Launch("the task spawner ended before the task started".into())
        })
    }

    /// Starts a spawner and the reader of its answers.
    fn start(&self) -> Result<Conn, RuntimeError> {
        let mut child = tokio::process::Command::new(&self.shim)
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map_err(|e| {
                RuntimeError::Launch(format!("cannot start {} -: {e}", self.shim.display()))
            })?;
        tracing::info!(pid = child.id(), shim = %self.shim.display(), "task spawner started");
        let requests = child.stdin.take().expect("piped stdin");
        let answers = child.stdout.take().expect("piped stdout");
        let waiting = Arc::new(Waiting::default());
        let cancel = self.cancel.clone();
        let w = waiting.clone();
        self.tasks.spawn(async move {
            let mut lines = tokio::io::BufReader::new(answers).lines();
            loop {
                let line = tokio::select! {
                    _ = cancel.cancelled() => break,
                    line = lines.next_line() => line,
                };
                let Ok(Some(line)) = line else { break };
                let Some((seq, text)) = line.split_once(' ') else {
                    continue;
                };
                let Ok(seq) = seq.parse::<u64>() else {
                    continue;
                };
                let waiter = w.answers.lock().expect("answers lock").remove(&seq);
                if let Some(tx) = waiter {
                    let _ = tx.send(Answer::parse(text));
                }
            }
            // No answer can come any more: the launches still waiting fail.
            w.dead.store(true, Ordering::SeqCst);
            w.answers.lock().expect("answers lock").clear();
        });
        let cancel = self.cancel.clone();
        let w = waiting.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                status = child.wait() => {
                    w.dead.store(true, Ordering::SeqCst);
                    match status {
                        Ok(s) if s.success() => tracing::info!("task spawner ended"),
                        Ok(s) => tracing::warn!(status = %s, "task spawner died; the next launch starts another"),
                        Err(e) => tracing::warn!(error = %e, "waiting for the task spawner"),
                    }
                }
            }
        });
        Ok(Conn { requests, waiting })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_by_their_first_word() {
        assert_eq!(Answer::parse("started 42"), Answer::Started("42".into()));
        assert_eq!(
            Answer::parse("failed Failed to start 'x': No such file"),
            Answer::Failed("Failed to start 'x': No such file".into())
        );
        assert_eq!(
            Answer::parse("ended signal SIGSEGV"),
            Answer::Ended("signal SIGSEGV".into())
        );
        assert!(matches!(Answer::parse("what"), Answer::Failed(_)));
    }
}
