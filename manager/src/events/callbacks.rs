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
//! shared `reqwest` client. A failed POST (error, timeout, non-2xx) is retried,
//! same event, after an exponential backoff; later events wait behind it, so
//! every receiver sees events in publication order.

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
use super::{error_body, EventBus, EventsError};

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
}

/// The etcd record of one subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    callback_url: String,
    /// Milliseconds since the epoch: the order of `GET`.
    subscribed_at: i64,
}

/// `Ok(())` for an absolute http(s) URL with a host.
pub fn validate_callback_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("Invalid URL '{raw}': {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "Invalid URL '{raw}': only http and https callbacks are supported"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("Invalid URL '{raw}': no host"));
    }
    Ok(())
}

/// The URL without its password, for logs.
fn redacted(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
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

    /// Subscribes `url` (persisted first), publishes and returns the `subscribe_event`.
    pub async fn subscribe(&self, url: &str, client_ip: &str) -> Result<Value, EventsError> {
        let _change = self.inner.subscription_changes.lock().await;
        if !self.callback_urls().iter().any(|u| u == url) {
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
        let event = subscription_event("subscribe_event", url, client_ip);
        self.publish_value(event.clone());
        Ok(event)
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
        let event = subscription_event("unsubscribe_event", url, client_ip);
        self.publish_value(event.clone());
        Ok(event)
    }
}

fn subscription_event(event_type: &str, url: &str, client_ip: &str) -> Value {
    json!({
        "callbackUrl": url,
        "clientIp": client_ip,
        "eventType": event_type,
        "timestamp": marathon::Timestamp::now().to_string(),
    })
}

/// How one URL's events are POSTed.
enum Sender {
    /// Plain `http://`: our own kept-alive connection.
    Direct(http1::Conn),
    /// `https://` or credentials in the URL: the shared `reqwest` client
    /// (which keeps its connections alive too).
    Reqwest(reqwest::Url),
}

impl Sender {
    fn new(raw: &str) -> Sender {
        match url::Url::parse(raw) {
            Ok(url) => match http1::Conn::for_url(&url) {
                Some(conn) => Sender::Direct(conn),
                None => Sender::Reqwest(url),
            },
            // Validated on subscription; a stored record may predate that.
            Err(_) => Sender::Reqwest(
                "http://invalid.invalid/"
                    .parse()
                    .expect("static URL parses"),
            ),
        }
    }

    /// POSTs one event body; `None` on success, else why it failed.
    async fn post(&mut self, bus: &EventBus, body: &Bytes) -> Option<String> {
        match self {
            Sender::Direct(conn) => {
                match tokio::time::timeout(bus.inner.config.callback_timeout, conn.post(body)).await
                {
                    Ok(Ok(status)) if (200..300).contains(&status) => None,
                    Ok(Ok(status)) => Some(format!("status {status}")),
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("timed out".into()),
                }
            }
            Sender::Reqwest(url) => {
                let sent = bus
                    .inner
                    .http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        // Reading the body lets the connection be reused.
                        let _ = resp.bytes().await;
                        (!status.is_success()).then(|| format!("status {status}"))
                    }
                    Err(e) => Some(e.without_url().to_string()),
                }
            }
        }
    }
}

/// Delivers one URL's queue in order until unsubscribed or shut down: one
/// POST at a time, the next event only after the previous one succeeded.
async fn deliver(bus: EventBus, queue: Arc<CallbackQueue>) {
    let cfg = bus.inner.config.clone();
    let counters = &bus.inner.counters;
    let mut backoff = cfg.callback_backoff;
    let url_for_logs = redacted(&queue.url);
    let mut sender = Sender::new(&queue.url);
    let mut next = queue.front();
    loop {
        let Some(frame) = next.take() else {
            tokio::select! {
                _ = queue.notify.notified() => {}
                _ = queue.cancel.cancelled() => return,
            }
            next = queue.front();
            continue;
        };
        let failure = tokio::select! {
            r = sender.post(&bus, &frame.body) => r,
            _ = queue.cancel.cancelled() => return,
        };
        match failure {
            None => {
                next = queue.pop_delivered(&frame);
                counters.deliveries.fetch_add(1, Ordering::Relaxed);
                backoff = cfg.callback_backoff;
            }
            Some(reason) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %url_for_logs, %reason, retry_in = ?backoff, event_type = %frame.event_type, "callback delivery failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = queue.cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(cfg.callback_backoff_max);
                // The same event again, unless the full queue dropped it.
                next = queue.front();
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

fn unavailable(e: EventsError) -> HttpResponse {
    tracing::error!(error = %e, "event subscription change failed");
    HttpResponse::ServiceUnavailable().json(error_body(
        "The subscription store is unavailable; try again",
    ))
}

/// Checks the `callbackUrl` parameter: 400 when missing, 422 when invalid.
#[allow(clippy::result_large_err)]
fn checked_url(req: &HttpRequest) -> Result<String, HttpResponse> {
    let Some(url) = callback_url_param(req) else {
        return Err(
            HttpResponse::BadRequest().json(error_body("Missing query parameter 'callbackUrl'"))
        );
    };
    validate_callback_url(&url).map_err(|msg| {
        HttpResponse::UnprocessableEntity().json(json!({
            "message": "Object is not valid",
            "details": [{"path": "/callbackUrl", "errors": [msg]}],
        }))
    })?;
    Ok(url)
}

pub(super) async fn list(bus: web::Data<EventBus>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "callbackUrls": bus.callback_urls() }))
}

pub(super) async fn subscribe(bus: web::Data<EventBus>, req: HttpRequest) -> HttpResponse {
    let url = match checked_url(&req) {
        Ok(u) => u,
        Err(res) => return res,
    };
    match bus.subscribe(&url, &client_ip(&req)).await {
        Ok(event) => HttpResponse::Ok().json(event),
        Err(e) => unavailable(e),
    }
}

pub(super) async fn unsubscribe(bus: web::Data<EventBus>, req: HttpRequest) -> HttpResponse {
    let url = match checked_url(&req) {
        Ok(u) => u,
        Err(res) => return res,
    };
    match bus.unsubscribe(&url, &client_ip(&req)).await {
        Ok(event) => HttpResponse::Ok().json(event),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_must_be_absolute_http() {
        assert!(validate_callback_url("http://127.0.0.1:9090/callback").is_ok());
        assert!(validate_callback_url("https://user:pw@example.com/cb?x=1").is_ok());
        for bad in ["", "not a url", "/relative", "ftp://h/x", "http://"] {
            assert!(validate_callback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logged_urls_have_no_password() {
        assert_eq!(redacted("http://u:secret@h:1/x"), "http://u@h:1/x");
    }
}
