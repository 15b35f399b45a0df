//! `/v2/eventSubscriptions` (Marathon 1.4's HTTP callbacks): subscriptions
//! persisted in etcd, one ordered, bounded queue and one delivery task per URL.
//!
//! - `GET` -> `{"callbackUrls":[...]}` (subscription order).
//! - `POST ?callbackUrl=<url>` -> 200 with the `subscribe_event` (also
//!   published; the new URL receives it too). Idempotent. Invalid URL -> 422.
//! - `DELETE ?callbackUrl=<url>` -> 200 with the `unsubscribe_event` (even if
//!   it was not subscribed; also published).
//!
//! Each event is POSTed as JSON (`Content-Type` and `Accept:
//! application/json`), the body serialised once for every URL. Plain `http`
//! URLs use one kept-alive connection of their own (`http1.rs`), others the
//! shared `reqwest` client.
//!
//! Delivery is at least once, in publication order. On a plain `http`
//! connection up to `callback_pipeline` POSTs are in flight at once
//! (HTTP/1.1 pipelining, go-back-N): the requests go out in publication
//! order and the responses are read in that order, an event leaving the
//! queue when its own response is 2xx. When a response is not 2xx, does not
//! come within `callback_timeout`, or the connection breaks, the connection
//! is closed and, after an exponential backoff, the events are sent again
//! from the first one not acknowledged, in order. A receiver therefore sees
//! the events in publication order, except that after such a failure it
//! sees again the failed event and those after it that were already in
//! flight (repeats, never gaps, never an older event after a newer one
//! within one run of requests). A connection that ends between two
//! responses (closed by the receiver: an idle keep-alive timeout,
//! `Connection: close`; or by the manager after a response body it does not
//! read whole) is reopened at once, no backoff, and the events not answered
//! on it are sent again, so the receiver may see those it had already read
//! a second time too.
//! `https` and credential URLs go through `reqwest`, one POST at a time, the
//! failed event retried after the backoff.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use etcd_client::GetOptions;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::frame::Frame;
use super::http1;
use super::policy::{redacted, redacted_url, CallbackPolicy};
use super::{error_body, EventBus, EventsConfig, EventsError};

/// Pending events of one callback URL.
pub(super) struct CallbackQueue {
    pub url: String,
    /// Subscription order.
    pub seq: u64,
    events: Mutex<VecDeque<Arc<Frame>>>,
    cap: usize,
    notify: Notify,
    cancel: CancellationToken,
}

impl CallbackQueue {
    /// Queues an event; returns true when the oldest one had to be dropped.
    pub fn push(&self, frame: Arc<Frame>) -> bool {
        let dropped = {
            let mut q = self.events.lock().expect("callback queue lock");
            let dropped = q.len() >= self.cap.max(1) && q.pop_front().is_some();
            q.push_back(frame);
            dropped
        };
        self.notify.notify_one();
        dropped
    }

    fn front(&self) -> Option<Arc<Frame>> {
        self.events
            .lock()
            .expect("callback queue lock")
            .front()
            .cloned()
    }

    /// Removes `frame` if it is still first (it may have been dropped
    /// meanwhile); returns the next event to deliver.
    fn pop_delivered(&self, frame: &Arc<Frame>) -> Option<Arc<Frame>> {
        let mut q = self.events.lock().expect("callback queue lock");
        if q.front().is_some_and(|f| Arc::ptr_eq(f, frame)) {
            q.pop_front();
        }
        q.front().cloned()
    }

    /// The events `window` sends next (recorded there as in flight).
    fn take_next(&self, window: &mut Window<Frame>) -> Vec<Arc<Frame>> {
        window.take_next(&self.events.lock().expect("callback queue lock"))
    }
}

/// The events of one URL written on its connection and not answered yet,
/// oldest first: always the first ones of its queue still there (events
/// leave the queue from its front only, when acknowledged or dropped).
pub(super) struct Window<T> {
    in_flight: VecDeque<Arc<T>>,
    cap: usize,
}

impl<T> Window<T> {
    pub fn new(cap: usize) -> Window<T> {
        Window {
            in_flight: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub fn has_room(&self) -> bool {
        self.in_flight.len() < self.cap
    }

    /// The queued events that follow the last one in flight, as many as the
    /// window has room for; they count as in flight from now on. When the
    /// last one in flight is no longer queued (the full queue dropped it),
    /// the next is the queue's first.
    pub fn take_next(&mut self, queue: &VecDeque<Arc<T>>) -> Vec<Arc<T>> {
        let start = match self.in_flight.back() {
            None => 0,
            Some(last) => queue
                .iter()
                .take(self.in_flight.len())
                .position(|f| Arc::ptr_eq(f, last))
                .map_or(0, |i| i + 1),
        };
        let room = self.cap.saturating_sub(self.in_flight.len());
        let fresh: Vec<Arc<T>> = queue.iter().skip(start).take(room).cloned().collect();
        self.in_flight.extend(fresh.iter().cloned());
        fresh
    }

    /// The oldest event in flight, answered now (responses come in order).
    pub fn answered(&mut self) -> Option<Arc<T>> {
        self.in_flight.pop_front()
    }

    /// Go back: nothing is in flight; the next [`Window::take_next`] starts
    /// at the queue's first event, the first one not acknowledged.
    pub fn reset(&mut self) {
        self.in_flight.clear();
    }
}

/// The etcd record of one subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    callback_url: String,
    /// Milliseconds since the epoch: the order of `GET`.
    subscribed_at: i64,
}

/// `Ok(url)` for an absolute URL with a host (any scheme: the policy
/// decides which are accepted).
fn parse_callback_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("Invalid URL '{}': {e}", redacted(raw)))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("Invalid URL '{}': no host", redacted(raw)));
    }
    Ok(url)
}

impl EventBus {
    fn subscription_key(&self, url: &str) -> String {
        self.inner.keys.subscription(url)
    }

    pub(super) async fn load_subscriptions(&self) -> Result<Vec<String>, EventsError> {
        let mut kv = self.inner.etcd.kv_client();
        let resp = kv
            .get(
                self.inner.keys.subscriptions_prefix(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut subs = Vec::new();
        for kv in resp.kvs() {
            let sub: Subscription =
                serde_json::from_slice(kv.value()).map_err(|source| EventsError::Corrupt {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    source,
                })?;
            subs.push(sub);
        }
        subs.sort_by(|a, b| {
            (a.subscribed_at, &a.callback_url).cmp(&(b.subscribed_at, &b.callback_url))
        });
        Ok(subs.into_iter().map(|s| s.callback_url).collect())
    }

    /// Starts delivering to `url` (no-op when already subscribed).
    pub(super) fn add_callback(&self, url: &str) {
        let queue = {
            let mut hub = self.inner.hub.lock().expect("event hub lock");
            if hub.closed || hub.callbacks.contains_key(url) {
                return;
            }
            hub.next_client += 1;
            let queue = Arc::new(CallbackQueue {
                url: url.to_string(),
                seq: hub.next_client,
                events: Mutex::new(VecDeque::new()),
                cap: self.inner.config.callback_queue,
                notify: Notify::new(),
                cancel: self.inner.cancel.child_token(),
            });
            hub.callbacks.insert(url.to_string(), queue.clone());
            queue
        };
        tracing::info!(url = %redacted(url), "delivering events to a callback URL");
        self.inner.tasks.spawn(deliver(self.clone(), queue));
    }

    fn remove_callback(&self, url: &str) {
        let queue = self
            .inner
            .hub
            .lock()
            .expect("event hub lock")
            .callbacks
            .remove(url);
        if let Some(q) = queue {
            tracing::info!(url = %redacted(url), "callback URL unsubscribed");
            q.cancel.cancel();
        }
    }

    /// Subscribes `url` (persisted first), publishes and returns the
    /// `subscribe_event`. [`EventsError::Refused`] for a URL the callback
    /// policy refuses, or a new one beyond `max_subscriptions`.
    pub async fn subscribe(&self, url: &str, client_ip: &str) -> Result<Value, EventsError> {
        let parsed = parse_callback_url(url).map_err(EventsError::Refused)?;
        self.inner
            .config
            .callback_policy
            .check_url(&parsed)
            .map_err(EventsError::Refused)?;
        let _change = self.inner.subscription_changes.lock().await;
        let existing = self.callback_urls();
        if !existing.iter().any(|u| u == url) {
            let max = self.inner.config.max_subscriptions;
            if existing.len() >= max {
                return Err(EventsError::Refused(format!(
                    "Too many event subscriptions: at most {max} may exist (--max-event-subscriptions)"
                )));
            }
            let record = Subscription {
                callback_url: url.to_string(),
                subscribed_at: marathon::Timestamp::now().as_millis(),
            };
            let value = serde_json::to_vec(&record).expect("subscription serialises");
            self.inner
                .etcd
                .kv_client()
                .put(self.subscription_key(url), value, None)
                .await?;
            self.add_callback(url);
        }
        let event = super::build::subscription(true, url, client_ip);
        self.publish(&published(&event));
        Ok(serde_json::to_value(&event).unwrap_or_default())
    }

    /// Unsubscribes `url` (removed from etcd first), publishes and returns the `unsubscribe_event`.
    pub async fn unsubscribe(&self, url: &str, client_ip: &str) -> Result<Value, EventsError> {
        let _change = self.inner.subscription_changes.lock().await;
        self.inner
            .etcd
            .kv_client()
            .delete(self.subscription_key(url), None)
            .await?;
        self.remove_callback(url);
        let event = super::build::subscription(false, url, client_ip);
        self.publish(&published(&event));
        Ok(serde_json::to_value(&event).unwrap_or_default())
    }
}

/// A subscription event as every consumer sees it: the URL without its
/// password and secret query values (a subscriber's `token=`), which only
/// the caller's own answer and `GET /v2/eventSubscriptions` show.
fn published(event: &marathon::Event) -> marathon::Event {
    let mut shown = event.clone();
    if let marathon::Event::Subscribe(s) | marathon::Event::Unsubscribe(s) = &mut shown {
        let secret = url::Url::parse(&s.callback_url).ok().filter(|u| {
            u.password().is_some() || u.query_pairs().any(|(k, _)| daemon::is_secret_param(&k))
        });
        if let Some(url) = secret {
            s.callback_url = redacted_url(&url);
        }
    }
    shown
}

/// Most response-body bytes read from a callback receiver; the rest is
/// not read (the connection is then not reused).
pub(super) const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How one URL's events are POSTed (public for the callback benchmark).
pub struct CallbackSender {
    how: Sender,
    timeout: std::time::Duration,
    policy: Arc<CallbackPolicy>,
}

impl CallbackSender {
    /// The sender the delivery task of `url` uses.
    pub fn new(url: &str, cfg: &EventsConfig) -> CallbackSender {
        CallbackSender {
            how: Sender::new(url, cfg),
            timeout: cfg.callback_timeout,
            policy: Arc::new(cfg.callback_policy.clone()),
        }
    }

    /// POSTs one event body; `Err` says why it failed (error, timeout, non-2xx).
    pub async fn post(&mut self, body: &Bytes) -> Result<(), String> {
        match self.how.post(self.timeout, &self.policy, body).await {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// How one URL's events are POSTed.
enum Sender {
    /// Plain `http://`: our own kept-alive connection.
    Direct(http1::Conn),
    /// `https://` or credentials in the URL: a `reqwest` client of this URL
    /// (kept-alive connections, no redirects, names resolved through the
    /// callback policy).
    Reqwest {
        url: reqwest::Url,
        client: Result<reqwest::Client, String>,
    },
    /// A stored URL that no longer parses.
    Invalid,
}

impl Sender {
    fn new(raw: &str, cfg: &EventsConfig) -> Sender {
        let Ok(url) = url::Url::parse(raw) else {
            // Validated on subscription; a stored record may predate that.
            return Sender::Invalid;
        };
        let policy = Arc::new(cfg.callback_policy.clone());
        if let Some(conn) = http1::Conn::for_url(&url, policy.clone()) {
            return Sender::Direct(conn);
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let client = reqwest::Client::builder()
            .timeout(cfg.callback_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect wherever it likes: the checked
            // addresses hold only for direct connections.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy, port }))
            .build()
            .map_err(|e| format!("http client: {e}"));
        Sender::Reqwest { url, client }
    }

    /// POSTs one event body; `None` on success, else why it failed.
    async fn post(
        &mut self,
        timeout: std::time::Duration,
        policy: &CallbackPolicy,
        body: &Bytes,
    ) -> Option<String> {
        match self {
            Sender::Direct(conn) => match tokio::time::timeout(timeout, conn.post(body)).await {
                Ok(Ok(status)) if (200..300).contains(&status) => None,
                Ok(Ok(status)) => Some(format!("status {status}")),
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("timed out".into()),
            },
            Sender::Reqwest { url, client } => {
                let client = match client {
                    Ok(c) => c,
                    Err(e) => return Some(e.clone()),
                };
                // Literal addresses never reach the resolver: checked here.
                let literal = match url.host() {
                    Some(url::Host::Ipv4(a)) => Some(std::net::IpAddr::V4(a)),
                    Some(url::Host::Ipv6(a)) => Some(std::net::IpAddr::V6(a)),
                    _ => None,
                };
                if let Some(ip) = literal {
                    let port = url.port_or_known_default().unwrap_or(80);
                    let addr = std::net::SocketAddr::new(ip, port);
                    if let Err(e) = policy.check_addr(addr).await {
                        return Some(e);
                    }
                }
                let sent = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(mut resp) => {
                        let status = resp.status();
                        // Reading a short body lets the connection be
                        // reused; a long one is not read to its end.
                        let mut read = 0;
                        while read <= MAX_RESPONSE_BODY {
                            match resp.chunk().await {
                                Ok(Some(c)) => read += c.len(),
                                _ => break,
                            }
                        }
                        (!status.is_success()).then(|| format!("status {status}"))
                    }
                    Err(e) => Some(error_chain(&e.without_url())),
                }
            }
            Sender::Invalid => Some("the stored callback URL is invalid".into()),
        }
    }
}

/// An error and its causes on one line (a refused address shows up as the
/// resolver's error deep in reqwest's chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// reqwest's name resolution for one callback URL: only the addresses the
/// callback policy permits for its port, resolved at connection time.
struct GuardedResolver {
    policy: Arc<CallbackPolicy>,
    port: u16,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let port = self.port;
        Box::pin(async move {
            let addrs = policy
                .resolve(name.as_str(), port)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// One URL's delivery state shared by both ways of sending.
struct Delivery {
    bus: EventBus,
    queue: Arc<CallbackQueue>,
    backoff: daemon::Backoff,
    url_for_logs: String,
}

impl Delivery {
    /// `frame` got a 2xx: it leaves the queue (unless dropped meanwhile).
    fn acknowledged(&mut self, frame: &Arc<Frame>) -> Option<Arc<Frame>> {
        self.bus
            .inner
            .counters
            .deliveries
            .fetch_add(1, Ordering::Relaxed);
        self.backoff.reset();
        self.queue.pop_delivered(frame)
    }

    /// Counts and logs a failure, then waits out the backoff; false when
    /// the delivery ends meanwhile.
    async fn failed(&mut self, reason: &str, event_type: &str) -> bool {
        self.bus
            .inner
            .counters
            .failures
            .fetch_add(1, Ordering::Relaxed);
        let delay = self.backoff.next();
        tracing::warn!(url = %self.url_for_logs, %reason, retry_in = ?delay, %event_type, "callback delivery failed");
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.queue.cancel.cancelled() => false,
        }
    }

    /// Waits for an event to be queued; false when the delivery ends.
    async fn idle(&self) -> bool {
        tokio::select! {
            _ = self.queue.notify.notified() => true,
            _ = self.queue.cancel.cancelled() => false,
        }
    }
}

/// Delivers one URL's queue in order until unsubscribed or shut down.
async fn deliver(bus: EventBus, queue: Arc<CallbackQueue>) {
    let cfg = bus.inner.config.clone();
    let mut d = Delivery {
        backoff: daemon::Backoff::new(cfg.callback_backoff, cfg.callback_backoff_max),
        url_for_logs: redacted(&queue.url),
        bus,
        queue,
    };
    let mut sender = CallbackSender::new(&d.queue.url, &cfg);
    if let Sender::Direct(conn) = &mut sender.how {
        pipelined(&mut d, conn, &cfg).await;
    } else {
        one_at_a_time(&mut d, &mut sender).await;
    }
}

/// Up to `callback_pipeline` POSTs in flight on one connection, go-back-N
/// on failure (see the module comment).
async fn pipelined(d: &mut Delivery, conn: &mut http1::Conn, cfg: &EventsConfig) {
    let mut window = Window::new(cfg.callback_pipeline);
    // While events are in flight: by when the oldest must be answered
    // (`callback_timeout` after it was sent or its predecessor answered).
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let fresh = d.queue.take_next(&mut window);
        for frame in &fresh {
            conn.queue_request(&frame.body);
        }
        if window.is_empty() {
            if !d.idle().await {
                return;
            }
            continue;
        }
        let due =
            *deadline.get_or_insert_with(|| tokio::time::Instant::now() + cfg.callback_timeout);
        // More events join once connected (a connection attempt is not
        // interrupted: it would start over).
        let room = window.has_room() && conn.is_open();
        let outcome = tokio::select! {
            r = conn.next_response() => r.map_err(|e| match e {
                http1::PostError::Stale(e) => (true, e),
                http1::PostError::Failed(e) => (false, e),
            }),
            _ = d.queue.notify.notified(), if room => continue,
            _ = tokio::time::sleep_until(due) => Err((false, "timed out".to_string())),
            _ = d.queue.cancel.cancelled() => return,
        };
        let answer = match outcome {
            Ok(answer) if (200..300).contains(&answer.status) => {
                let frame = window
                    .answered()
                    .expect("a response answers an event in flight");
                d.acknowledged(&frame);
                deadline = None;
                if !answer.reusable {
                    // Closed by the receiver: the rest again on a new one.
                    window.reset();
                }
                continue;
            }
            Ok(answer) => format!("status {}", answer.status),
            Err((true, _)) => {
                // Closed between two responses: reopen at once.
                conn.close();
                window.reset();
                deadline = None;
                continue;
            }
            Err((false, reason)) => reason,
        };
        conn.close();
        let event_type = window
            .answered()
            .map(|f| f.event_type.clone())
            .unwrap_or_default();
        window.reset();
        deadline = None;
        if !d.failed(&answer, &event_type).await {
            return;
        }
    }
}

/// One POST at a time, the next event only after the previous one
/// succeeded; a failed one again after the backoff.
async fn one_at_a_time(d: &mut Delivery, sender: &mut CallbackSender) {
    let mut next = d.queue.front();
    loop {
        let Some(frame) = next.take() else {
            if !d.idle().await {
                return;
            }
            next = d.queue.front();
            continue;
        };
        let failure = tokio::select! {
            r = sender.post(&frame.body) => r.err(),
            _ = d.queue.cancel.cancelled() => return,
        };
        match failure {
            None => next = d.acknowledged(&frame),
            Some(reason) => {
                if !d.failed(&reason, &frame.event_type).await {
                    return;
                }
                // The same event again, unless the full queue dropped it.
                next = d.queue.front();
            }
        }
    }
}

fn callback_url_param(req: &HttpRequest) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "callbackUrl")
        .map(|(_, v)| v.into_owned())
}

fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// 422 with Marathon's body for a refused `callbackUrl`.
fn refused(msg: &str) -> HttpResponse {
    HttpResponse::UnprocessableEntity().json(json!({
        "message": "Object is not valid",
        "details": [{"path": "/callbackUrl", "errors": [msg]}],
    }))
}

fn failed(e: EventsError) -> HttpResponse {
    if let EventsError::Refused(msg) = &e {
        return refused(msg);
    }
    tracing::error!(error = %e, "event subscription change failed");
    HttpResponse::ServiceUnavailable().json(error_body(
        "The subscription store is unavailable; try again",
    ))
}

/// The `callbackUrl` parameter: 400 when missing.
#[allow(clippy::result_large_err)]
fn url_param(req: &HttpRequest) -> Result<String, HttpResponse> {
    callback_url_param(req).ok_or_else(|| {
        HttpResponse::BadRequest().json(error_body("Missing query parameter 'callbackUrl'"))
    })
}

pub(super) async fn list(bus: web::Data<EventBus>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "callbackUrls": bus.callback_urls() }))
}

/// `POST`: 400 without `callbackUrl`, 422 when the URL is invalid or refused
/// (scheme, address, etcd, the subscription cap), 200 with the event.
pub(super) async fn subscribe(bus: web::Data<EventBus>, req: HttpRequest) -> HttpResponse {
    let url = match url_param(&req) {
        Ok(u) => u,
        Err(res) => return res,
    };
    match bus.subscribe(&url, &client_ip(&req)).await {
        Ok(event) => HttpResponse::Ok().json(event),
        Err(e) => failed(e),
    }
}

/// `DELETE`: any well-formed URL may be unsubscribed (also one a stricter
/// policy would now refuse).
pub(super) async fn unsubscribe(bus: web::Data<EventBus>, req: HttpRequest) -> HttpResponse {
    let url = match url_param(&req) {
        Ok(u) => u,
        Err(res) => return res,
    };
    if let Err(msg) = parse_callback_url(&url) {
        return refused(&msg);
    }
    match bus.unsubscribe(&url, &client_ip(&req)).await {
        Ok(event) => HttpResponse::Ok().json(event),
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_must_be_absolute() {
        assert!(parse_callback_url("http://127.0.0.1:9090/callback").is_ok());
        assert!(parse_callback_url("https://user:pw@example.com/cb?x=1").is_ok());
        for bad in ["", "not a url", "/relative", "http://"] {
            assert!(parse_callback_url(bad).is_err(), "{bad}");
        }
        let err = parse_callback_url("http://h:99999/?token=s3cret").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }

    /// What happens to a queue and its window, step by step.
    enum Step {
        /// Events published (the queue drops its oldest beyond `CAP`).
        Publish(&'static [u32]),
        /// The window takes these events to send.
        Take(&'static [u32]),
        /// The oldest in flight is answered 2xx: this one, leaving the queue
        /// if still first.
        Ack(u32),
        /// A failure: go back to the queue's first event.
        Reset,
    }

    const CAP: usize = 6;

    fn run(window_cap: usize, steps: &[Step]) {
        let mut queue: VecDeque<Arc<u32>> = VecDeque::new();
        let mut window = Window::new(window_cap);
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Publish(ids) => {
                    for id in *ids {
                        if queue.len() >= CAP {
                            queue.pop_front();
                        }
                        queue.push_back(Arc::new(*id));
                    }
                }
                Step::Take(want) => {
                    let got: Vec<u32> = window.take_next(&queue).iter().map(|f| **f).collect();
                    assert_eq!(got, *want, "step {i}");
                    assert_eq!(
                        window.has_room(),
                        window.in_flight.len() < window_cap.max(1)
                    );
                }
                Step::Ack(want) => {
                    let f = window.answered().expect("in flight");
                    assert_eq!(*f, *want, "step {i}");
                    if queue.front().is_some_and(|q| Arc::ptr_eq(q, &f)) {
                        queue.pop_front();
                    }
                }
                Step::Reset => window.reset(),
            }
        }
    }

    #[test]
    fn window_sends_in_order_up_to_its_cap_and_goes_back_n() {
        use Step::*;
        // Up to the cap, then more as answers come; nothing twice.
        run(
            3,
            &[
                Publish(&[1, 2, 3, 4, 5]),
                Take(&[1, 2, 3]),
                Take(&[]),
                Ack(1),
                Take(&[4]),
                Ack(2),
                Ack(3),
                Publish(&[6]),
                Take(&[5, 6]),
                Ack(4),
                Ack(5),
                Ack(6),
                Take(&[]),
                Publish(&[7]),
                Take(&[7]),
            ],
        );
        // A failure: again from the first one not acknowledged, in order.
        run(
            4,
            &[
                Publish(&[1, 2, 3, 4, 5]),
                Take(&[1, 2, 3, 4]),
                Ack(1),
                Reset,
                Take(&[2, 3, 4, 5]),
                Ack(2),
                Ack(3),
                Reset,
                Take(&[4, 5]),
            ],
        );
        // Window 1: one at a time.
        run(
            1,
            &[Publish(&[1, 2]), Take(&[1]), Take(&[]), Ack(1), Take(&[2])],
        );
        // 0 means 1.
        run(0, &[Publish(&[1, 2]), Take(&[1])]);
    }

    #[test]
    fn window_follows_a_full_queue_dropping_events_in_flight() {
        use Step::*;
        run(
            3,
            &[
                Publish(&[1, 2, 3, 4, 5, 6]),
                Take(&[1, 2, 3]),
                // 1 and 2 dropped while in flight: 3 is still queued.
                Publish(&[7, 8]),
                Take(&[]),
                Ack(1),
                Take(&[4]),
                // Answered after being dropped: the queue keeps its first.
                Ack(2),
                Ack(3),
                Take(&[5, 6]),
                // The rest of the window dropped: on from the queue's first
                // (5 and 6 still count as in flight until answered).
                Publish(&[9, 10, 11, 12, 13]),
                Ack(4),
                Take(&[8]),
                Ack(5),
                Ack(6),
                Take(&[9, 10]),
                // A failure after drops: from the first still queued.
                Publish(&[14, 15, 16]),
                Reset,
                Take(&[11, 12, 13]),
            ],
        );
    }
}
