//! Where the control plane publishes events: the event bus of
//! [`crate::events`] (SSE clients + callback URLs) plus a local broadcast
//! copy so the control plane's own machinery and tests can observe events.

use serde_json::Value;
use tokio::sync::broadcast;

use crate::events::EventBus;

#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<Value>,
    delivery: Option<EventBus>,
}

impl Bus {
    pub fn new(delivery: Option<EventBus>) -> Bus {
        let (local, _) = broadcast::channel(4096);
        Bus { local, delivery }
    }

    /// Publishes one event (already carrying `eventType` and `timestamp`).
    pub fn publish_value(&self, event: Value) {
        if let Some(d) = &self.delivery {
            d.publish_value(event.clone());
        }
        let _ = self.local.send(event);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.local.subscribe()
    }

    /// The delivery bus (SSE + callbacks), when wired.
    pub fn delivery(&self) -> Option<&EventBus> {
        self.delivery.as_ref()
    }
}
