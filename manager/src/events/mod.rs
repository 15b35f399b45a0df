//! The one event bus: every Marathon event the manager publishes is a typed
//! [`marathon::Event`] (built from the manager's records by [`build`]) and
//! goes through [`EventBus::publish`]; it is delivered to `/v2/events` SSE
//! clients, to `/v2/eventSubscriptions` callback URLs and to local observers
//! ([`EventBus::observe`]), in publication order for every consumer.
//!
//! - Publishing never blocks: each event is serialised once (`frame.rs`:
//!   the SSE frames in both plan formats and the callback body), then queued
//!   for each consumer under one lock (that lock defines the publication
//!   order).
//! - SSE (`GET /v2/events`, see `sse.rs`): Marathon's framing, heartbeats,
//!   `event_type` filters, `plan-format=light`, `event_stream_attached` /
//!   `event_stream_detached`; a client more than `max_outstanding` events
//!   behind is disconnected.
//! - Callbacks (`/v2/eventSubscriptions`, Marathon 1.4's API, see
//!   `callbacks.rs`): subscriptions persisted in etcd under
//!   `<internal_prefix>/subscriptions/`; one bounded queue, one delivery
//!   task and one kept-alive connection per URL with up to
//!   `callback_pipeline` POSTs in flight (pipelined, responses in order; at
//!   least once: after a failure, an exponential backoff, then again from
//!   the first event not acknowledged), oldest dropped (and counted) when
//!   the queue is full; a dead receiver delays nobody else. Callback URLs pass the
//!   callback policy (`policy.rs`: no link-local/metadata addresses, not the
//!   manager's etcd, unless `--callback-allow`) at subscription and again,
//!   per resolved address, at delivery; redirects are not followed and at
//!   most 64 KiB of a response body is read; at most `max_subscriptions`.
//!
//! Wiring: `App::new().app_data(web::Data::new(bus.clone())).configure(EventBus::configure)`;
//! on SIGTERM call [`EventBus::end_streams`] before stopping the HTTP server
//! (open SSE streams flush what is queued and end, so a graceful stop is not
//! held by them), then [`EventBus::shutdown`] (deliveries stop).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod build;
mod callbacks;
mod frame;
mod http1;
mod policy;
mod sse;

pub use callbacks::CallbackSender;
pub use frame::{accepts_event_stream, StreamQuery};
pub use policy::{redacted_url, CallbackPolicy, Cidr};

use callbacks::CallbackQueue;
use frame::Frame;

/// Tunables of the event bus; [`Default`] gives Marathon's values.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// SSE keep-alive (`\r\n`) period; Marathon/Jetty: 10 s.
    pub heartbeat: Duration,
    /// SSE events buffered for one client before it is disconnected
    /// (Marathon's `--event_stream_max_outstanding_messages`, 1024).
    pub max_outstanding: usize,
    /// Events queued per callback URL; beyond it the oldest are dropped.
    pub callback_queue: usize,
    /// Timeout of one callback POST (pipelined: of the oldest one in
    /// flight, from when it was sent or its predecessor answered).
    pub callback_timeout: Duration,
    /// Most POSTs in flight at once on one plain `http` callback connection
    /// (HTTP/1.1 pipelining, `--callback-pipeline`); 1 = one at a time.
    pub callback_pipeline: usize,
    /// First retry delay after a failed delivery; doubles up to `callback_backoff_max`.
    pub callback_backoff: Duration,
    pub callback_backoff_max: Duration,
    /// Where callbacks may go (`--callback-allow`, the etcd endpoints).
    pub callback_policy: CallbackPolicy,
    /// Most callback URLs subscribed at once (`--max-event-subscriptions`).
    pub max_subscriptions: usize,
}

/// Default of `--callback-pipeline`.
pub const DEFAULT_CALLBACK_PIPELINE: usize = 32;

/// Default of `--max-event-subscriptions`.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 100;

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            heartbeat: Duration::from_secs(10),
            max_outstanding: 1024,
            callback_queue: 10_000,
            callback_timeout: Duration::from_secs(10),
            callback_pipeline: DEFAULT_CALLBACK_PIPELINE,
            callback_backoff: Duration::from_secs(1),
            callback_backoff_max: Duration::from_secs(60),
            callback_policy: CallbackPolicy::default(),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
        }
    }
}

impl EventsConfig {
    /// The manager's settings: Marathon's defaults, the callback policy from
    /// `--callback-allow` with the manager's etcd endpoints (and those handed
    /// to tasks) refused, and `--max-event-subscriptions`.
    pub fn for_manager(cfg: &crate::config::Config) -> Result<EventsConfig, String> {
        let mut etcd = cfg.etcd.endpoints.clone();
        etcd.extend(cfg.container_etcd_endpoints.split(',').map(str::to_string));
        let callback_policy = CallbackPolicy::new(&cfg.callback_allow, &etcd)
            .map_err(|e| format!("--callback-allow: {e}"))?;
        Ok(EventsConfig {
            callback_policy,
            max_subscriptions: cfg.max_event_subscriptions,
            callback_pipeline: cfg.callback_pipeline,
            ..EventsConfig::default()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("invalid subscription record at {key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Prefix(#[from] registry::Error),
    /// A subscription refused by the callback policy or the cap (422).
    #[error("{0}")]
    Refused(String),
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMetrics {
    /// Events published, by `eventType`.
    pub published: BTreeMap<String, u64>,
    /// SSE clients connected now.
    pub sse_clients: u64,
    /// SSE clients disconnected for being too slow.
    pub sse_slow_disconnects: u64,
    /// Callback URLs subscribed now.
    pub callback_subscriptions: u64,
    /// Events POSTed successfully to a callback URL.
    pub callback_deliveries: u64,
    /// Failed callback POSTs (each is retried).
    pub callback_failures: u64,
    /// Events dropped from full callback queues.
    pub callback_dropped: u64,
}

impl EventMetrics {
    /// These counters as metric families for `/metrics/prometheus`.
    pub fn families(&self) -> Vec<daemon::metrics::Family> {
        use daemon::metrics::{Family, Value};
        let published = Family {
            name: "mdo_events_published".into(),
            help: "Events published on the bus, by type".into(),
            counter: true,
            series: self
                .published
                .iter()
                .map(|(t, n)| {
                    (
                        vec![("event_type".to_string(), t.clone())],
                        Value::Counter(*n),
                    )
                })
                .collect(),
        };
        let gauge = |n: u64| Value::Gauge(n as f64);
        let mut out = vec![published];
        out.extend([
            Family::single(
                "mdo_events_sse_clients",
                "SSE clients connected to /v2/events now",
                gauge(self.sse_clients),
            ),
            Family::single(
                "mdo_events_sse_slow_disconnects",
                "SSE clients disconnected for being too slow",
                Value::Counter(self.sse_slow_disconnects),
            ),
            Family::single(
                "mdo_events_callback_subscriptions",
                "Callback URLs subscribed now",
                gauge(self.callback_subscriptions),
            ),
            Family::single(
                "mdo_events_callback_deliveries",
                "Events POSTed successfully to a callback URL",
                Value::Counter(self.callback_deliveries),
            ),
            Family::single(
                "mdo_events_callback_failures",
                "Failed callback POSTs (each is retried)",
                Value::Counter(self.callback_failures),
            ),
            Family::single(
                "mdo_events_callback_dropped",
                "Events dropped from full callback queues",
                Value::Counter(self.callback_dropped),
            ),
        ]);
        out
    }
}

/// The manager's event bus. Cheap to clone (one shared hub).
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: EventsConfig,
    hub: Mutex<Hub>,
    etcd: etcd_client::Client,
    /// Builds `<internal_prefix>/subscriptions/...`.
    keys: registry::ManagerKeys,
    /// Serialises subscription changes (etcd write + hub change).
    subscription_changes: tokio::sync::Mutex<()>,
    counters: Counters,
    /// Local observers ([`EventBus::observe`]): the control plane's own
    /// machinery and tests.
    observers: broadcast::Sender<Value>,
    cancel: CancellationToken,
    /// Cancelled by [`EventBus::end_streams`]: every open SSE stream ends.
    streams: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Default)]
struct Counters {
    slow_disconnects: AtomicU64,
    deliveries: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Hub {
    next_client: u64,
    sse: HashMap<u64, SseClient>,
    callbacks: BTreeMap<String, Arc<CallbackQueue>>,
    published: BTreeMap<String, u64>,
    /// No more events (shutdown).
    closed: bool,
    /// No more SSE clients (shutdown started).
    streams_closed: bool,
}

struct SseClient {
    query: StreamQuery,
    tx: mpsc::UnboundedSender<Arc<Frame>>,
    /// Events queued for this client and not yet written.
    outstanding: Arc<AtomicUsize>,
    /// Set when the bus cuts this client for being too slow.
    cut: Arc<AtomicBool>,
}

/// What [`EventBus::attach`] hands to the SSE handler.
struct Attached {
    id: u64,
    rx: mpsc::UnboundedReceiver<Arc<Frame>>,
    outstanding: Arc<AtomicUsize>,
    /// Set when the bus cut this client for being too slow: its stream
    /// writes what is queued, then drops the connection.
    cut: Arc<AtomicBool>,
}

impl EventBus {
    /// Connects the bus to etcd and loads the persisted callback subscriptions
    /// (their delivery tasks start at once). Must run inside a tokio runtime.
    pub async fn new(
        etcd: etcd_client::Client,
        internal_prefix: String,
        config: EventsConfig,
    ) -> Result<EventBus, EventsError> {
        let keys = registry::ManagerKeys::new(&internal_prefix)?;
        let bus = EventBus {
            inner: Arc::new(Inner {
                config,
                hub: Mutex::new(Hub::default()),
                etcd,
                keys,
                subscription_changes: tokio::sync::Mutex::new(()),
                counters: Counters::default(),
                observers: broadcast::channel(4096).0,
                cancel: CancellationToken::new(),
                streams: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        for url in bus.load_subscriptions().await? {
            bus.add_callback(&url);
        }
        Ok(bus)
    }

    /// Registers `GET /v2/events` and `GET|POST|DELETE /v2/eventSubscriptions`.
    /// The app must hold `web::Data<EventBus>`.
    pub fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/v2/events", web::get().to(sse::stream_events))
            .route("/v2/eventSubscriptions", web::get().to(callbacks::list))
            .route(
                "/v2/eventSubscriptions",
                web::post().to(callbacks::subscribe),
            )
            .route(
                "/v2/eventSubscriptions",
                web::delete().to(callbacks::unsubscribe),
            );
    }

    /// Publishes an event: serialised once, queued for every consumer.
    /// Never blocks on consumers.
    pub fn publish(&self, event: &marathon::Event) {
        match serde_json::to_value(event) {
            Ok(v) => self.publish_value(v),
            Err(e) => {
                tracing::error!(error = %e, event_type = event.event_type(), "cannot serialise event")
            }
        }
    }

    /// Publishes an event given as JSON (an object with `eventType` and
    /// `timestamp`): what [`EventBus::publish`] does after serialising, open
    /// to tests and to events this crate does not model.
    pub fn publish_value(&self, value: Value) {
        let frame = Arc::new(frame::prepare(&value));
        let mut hub = self.inner.hub.lock().expect("event hub lock");
        self.fan_out(&mut hub, frame);
        if self.inner.observers.receiver_count() > 0 {
            let _ = self.inner.observers.send(value);
        }
    }

    /// A receiver of every event published from now on (as its JSON).
    pub fn observe(&self) -> broadcast::Receiver<Value> {
        self.inner.observers.subscribe()
    }

    /// Queues one event for every consumer; the hub lock held by the caller
    /// defines the publication order.
    fn fan_out(&self, hub: &mut Hub, frame: Arc<Frame>) {
        if hub.closed {
            return;
        }
        let max = self.inner.config.max_outstanding;
        *hub.published.entry(frame.event_type.clone()).or_insert(0) += 1;
        let mut gone = Vec::new();
        for (id, client) in &hub.sse {
            if !client.query.wants(&frame.event_type) {
                continue;
            }
            if client.outstanding.fetch_add(1, Ordering::SeqCst) >= max {
                self.inner
                    .counters
                    .slow_disconnects
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(client = id, max, "SSE client too slow; disconnecting it");
                client.cut.store(true, Ordering::SeqCst);
                gone.push(*id);
            } else if client.tx.send(frame.clone()).is_err() {
                gone.push(*id);
            }
        }
        for id in gone {
            // Dropping the sender ends that client's stream once it drained.
            hub.sse.remove(&id);
        }
        for queue in hub.callbacks.values() {
            if queue.push(frame.clone()) {
                self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn metrics(&self) -> EventMetrics {
        let hub = self.inner.hub.lock().expect("event hub lock");
        let c = &self.inner.counters;
        EventMetrics {
            published: hub.published.clone(),
            sse_clients: hub.sse.len() as u64,
            sse_slow_disconnects: c.slow_disconnects.load(Ordering::Relaxed),
            callback_subscriptions: hub.callbacks.len() as u64,
            callback_deliveries: c.deliveries.load(Ordering::Relaxed),
            callback_failures: c.failures.load(Ordering::Relaxed),
            callback_dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// The subscribed callback URLs, in subscription order.
    pub fn callback_urls(&self) -> Vec<String> {
        let hub = self.inner.hub.lock().expect("event hub lock");
        let mut queues: Vec<_> = hub.callbacks.values().collect();
        queues.sort_by_key(|q| q.seq);
        queues.iter().map(|q| q.url.clone()).collect()
    }

    /// Ends every open SSE stream (each writes what is already queued for
    /// it, then its body ends with the last chunk; the HTTP server's graceful
    /// stop then closes the idle connection) and refuses new ones with 503. Callbacks keep
    /// being delivered. Idempotent.
    pub fn end_streams(&self) {
        {
            let mut hub = self.inner.hub.lock().expect("event hub lock");
            hub.streams_closed = true;
            hub.sse.clear();
        }
        self.inner.streams.cancel();
    }

    /// Ends every SSE stream and stops callback deliveries (graceful
    /// shutdown), waiting at most 5 s for the delivery tasks.
    pub async fn shutdown(&self) {
        self.shutdown_within(Duration::from_secs(5)).await;
    }

    /// [`EventBus::shutdown`], waiting at most `limit` for the delivery tasks.
    pub async fn shutdown_within(&self, limit: Duration) {
        self.end_streams();
        self.inner.hub.lock().expect("event hub lock").closed = true;
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(limit, self.inner.tasks.wait()).await;
    }

    /// Fires when [`EventBus::end_streams`] is called.
    fn streams_ended(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.streams.clone().cancelled_owned()
    }

    /// Registers an SSE client and publishes its `event_stream_attached`
    /// under the same lock, so that is the first event it receives.
    fn attach(&self, query: StreamQuery, remote: &str) -> Option<Attached> {
        let (tx, rx) = mpsc::unbounded_channel();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let attached = match serde_json::to_value(build::stream_change(true, remote)) {
            Ok(v) => Arc::new(frame::prepare(&v)),
            Err(_) => return None,
        };
        let mut hub = self.inner.hub.lock().expect("event hub lock");
        if hub.closed || hub.streams_closed {
            return None;
        }
        hub.next_client += 1;
        let id = hub.next_client;
        hub.sse.insert(
            id,
            SseClient {
                query,
                tx,
                outstanding: outstanding.clone(),
                cut: cut.clone(),
            },
        );
        self.fan_out(&mut hub, attached);
        Some(Attached {
            id,
            rx,
            outstanding,
            cut,
        })
    }

    fn detach(&self, id: u64, remote: &str) {
        self.inner
            .hub
            .lock()
            .expect("event hub lock")
            .sse
            .remove(&id);
        self.publish(&build::stream_change(false, remote));
    }
}

/// Marathon's error body.
fn error_body(message: &str) -> Value {
    serde_json::json!({ "message": message })
}
