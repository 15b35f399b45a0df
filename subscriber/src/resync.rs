//! The resync driver: decides when to resync (start-up, every reconnect,
//! every interval, overflow, `/cleanup`), fetches Marathon's apps and tasks,
//! and hands the result to the writer, which diffs and applies it.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::metrics::{kind, Metrics};
use crate::plan::Summary;
use crate::source::AppSource;
use crate::writer::{EpochClock, Msg, ResyncRequest};

const STARTUP_GRACE: Duration = Duration::from_secs(2);

/// A `/cleanup` call waiting for its resync.
pub struct CleanupRequest {
    pub dry_run: bool,
    pub reply: oneshot::Sender<Result<Summary, String>>,
}

pub struct ResyncDriver<A> {
    pub source: Arc<A>,
    pub writer: mpsc::Sender<Msg>,
    pub clock: Arc<EpochClock>,
    pub trigger: Arc<Notify>,
    pub requests: mpsc::Receiver<CleanupRequest>,
    pub interval: Duration,
    pub metrics: Arc<Metrics>,
}

impl<A: AppSource> ResyncDriver<A> {
    pub async fn run(mut self, cancel: CancellationToken) {
        // The start-up resync: at the first connect of the event stream (it
        // triggers one), or after a short grace when that does not come.
        let mut next = Instant::now() + STARTUP_GRACE;
        let mut backoff = daemon::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let request = tokio::select! {
                _ = tokio::time::sleep_until(next) => None,
                _ = self.trigger.notified() => None,
                r = self.requests.recv() => match r {
                    Some(r) => Some(r),
                    None => return,
                },
                _ = cancel.cancelled() => return,
            };
            let dry_run = request.as_ref().is_some_and(|r| r.dry_run);
            if !dry_run {
                // Triggers that arrived before this fetch begins are served by it.
                let _ = self.trigger.notified().now_or_never();
            }
            let result = tokio::select! {
                r = self.once(dry_run) => r,
                _ = cancel.cancelled() => return,
            };
            match &result {
                Ok(_) if !dry_run => {
                    backoff.reset();
                    next = Instant::now() + self.interval;
                }
                Ok(_) => {}
                Err(e) => {
                    let delay = backoff.next().min(self.interval);
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "resync failed");
                    next = Instant::now() + delay;
                }
            }
            if let Some(r) = request {
                let _ = r.reply.send(result);
            }
        }
    }

    /// One resync: fetch, then diff and apply inside the writer.
    async fn once(&self, dry_run: bool) -> Result<Summary, String> {
        let fetch_epoch = self.clock.begin_fetch();
        // The writer reads the registry while Marathon answers. A full
        // queue skips this: the writer then reads when the resync arrives.
        let _ = self.writer.try_send(Msg::Prefetch(fetch_epoch));
        let result = async {
            let t0 = std::time::Instant::now();
            let apps = match self.source.apps_with_tasks().await {
                Ok(a) => {
                    debug!(
                        fetch_ms = t0.elapsed().as_millis() as u64,
                        apps = a.len(),
                        "resync: Marathon's apps and tasks read"
                    );
                    a
                }
                Err(e) => {
                    self.metrics.error(kind::MARATHON);
                    self.metrics.resync_failures.inc();
                    return Err(e.to_string());
                }
            };
            let (reply, rx) = oneshot::channel();
            self.writer
                .send(Msg::Resync(ResyncRequest {
                    apps,
                    fetch_epoch,
                    dry_run,
                    reply,
                }))
                .await
                .map_err(|_| "writer stopped".to_string())?;
            rx.await.map_err(|_| "writer stopped".to_string())?
        }
        .await;
        self.clock.end_fetch();
        result
    }
}
