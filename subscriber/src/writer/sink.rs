//! What the producers (SSE reader, `/callback`) and the resync driver hold
//! of the writer: the event sink and the epoch clock.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use super::Msg;
use crate::metrics::Metrics;
use crate::model::TaskEvent;

/// Event counter shared by the writer and the resync driver.
#[derive(Default)]
pub struct EpochClock {
    inner: Mutex<(u64, Option<u64>)>,
}

impl EpochClock {
    /// Marks the start of a Marathon fetch; returns the epoch to send along.
    pub fn begin_fetch(&self) -> u64 {
        let mut g = self.inner.lock().expect("epoch lock");
        g.1 = Some(g.0);
        g.0
    }

    pub fn end_fetch(&self) {
        self.inner.lock().expect("epoch lock").1 = None;
    }

    /// One event processed: its epoch, and the floor of the fetch in flight.
    pub(super) fn tick(&self) -> (u64, Option<u64>) {
        let mut g = self.inner.lock().expect("epoch lock");
        g.0 += 1;
        (g.0, g.1)
    }
}

/// Where producers (SSE reader, /callback) put events. Never blocks: on a
/// full queue the event is dropped, counted, and a resync is scheduled.
#[derive(Clone)]
pub struct EventSink {
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) overflow: Arc<AtomicBool>,
    pub(super) resync: Arc<Notify>,
    pub(super) metrics: Arc<Metrics>,
}

impl EventSink {
    pub fn push(&self, ev: TaskEvent) {
        match self.tx.try_send(Msg::Event(ev)) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.events_dropped.inc();
                if !self.overflow.swap(true, Relaxed) {
                    self.metrics.queue_overflows.inc();
                    warn!("event queue full: dropping events, a full resync follows");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!("writer stopped; event ignored");
            }
        }
    }

    /// Asks the resync driver for a full resync soon.
    pub fn schedule_resync(&self) {
        self.resync.notify_one();
    }
}
