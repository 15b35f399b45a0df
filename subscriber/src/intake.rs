//! Where events come from: the `/v2/events` stream (reconnecting with
//! backoff, a resync after every connect) or, in callback mode, a
//! subscription kept alive through `/v2/eventSubscriptions` (the events
//! themselves arrive on `POST /callback`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use marathon::{Client, Event, StreamItem};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::convert::task_event;
use crate::http::TOKEN_PARAM;
use crate::metrics::{kind, Metrics};
use crate::writer::EventSink;

/// Event types the subscriber asks the stream for.
pub const EVENT_TYPES: &[&str] = &[
    "status_update_event",
    "instance_health_changed_event",
    "health_status_changed_event",
];

/// Handles one event body (SSE data or callback POST). Err on malformed input.
pub fn accept(body: &str, sink: &EventSink, metrics: &Metrics) -> Result<(), String> {
    match Event::from_json(body) {
        Ok(ev) => {
            accept_event(&ev, sink, metrics);
            Ok(())
        }
        Err(e) => {
            metrics.error(kind::MALFORMED_EVENT);
            Err(e.to_string())
        }
    }
}

fn accept_event(ev: &Event, sink: &EventSink, metrics: &Metrics) {
    metrics.event(ev.event_type());
    sink.push(task_event(ev));
}

/// Reads the event stream until cancelled. The client reconnects by
/// itself with backoff (see [`crate::source::client`]); every connect
/// schedules a resync, since events missed while away are gone.
pub async fn run_sse(
    client: Client,
    sink: EventSink,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut events = client.events(EVENT_TYPES);
    let mut connected = false;
    loop {
        let item = tokio::select! {
            i = events.next() => i,
            _ = cancel.cancelled() => break,
        };
        let Some(item) = item else { break };
        match item {
            Ok(StreamItem::Event(ev)) => accept_event(&ev, &sink, &metrics),
            Ok(StreamItem::Connected) => {
                connected = true;
                metrics.reconnects.inc();
                metrics.set_connected(true);
                info!("event stream connected");
                // Whatever happened while we were away: resync.
                sink.schedule_resync();
            }
            Ok(StreamItem::Disconnected) => {
                connected = false;
                metrics.set_connected(false);
                info!("event stream ended; reconnecting");
            }
            Err(marathon::Error::Decode(e)) => {
                metrics.error(kind::MALFORMED_EVENT);
                warn!(error = %e, "malformed event on the stream ignored");
            }
            Err(e) if connected => warn!(error = %e, "event stream broke"),
            Err(e) => {
                metrics.error(kind::MARATHON);
                debug!(error = %e, "cannot open the event stream");
            }
        }
    }
    metrics.set_connected(false);
}

/// The URL the subscriber subscribes in callback mode: `--callback-url`,
/// plus `token=<--auth-token>` in its query when a token is set (Marathon
/// cannot add headers to its callbacks, so the deliveries carry the token
/// there). Never logged with the token.
#[derive(Clone)]
pub struct CallbackUrl {
    registered: String,
    for_logs: String,
    /// Forms of the token that may show up in error texts.
    secrets: Vec<String>,
}

impl std::fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.for_logs)
    }
}

impl CallbackUrl {
    pub fn new(callback_url: &str, token: Option<&str>) -> CallbackUrl {
        let as_given = || CallbackUrl {
            registered: callback_url.to_string(),
            for_logs: daemon::redact_url(callback_url),
            secrets: Vec::new(),
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return as_given();
        };
        let Ok(mut url) = url::Url::parse(callback_url) else {
            // Validated by the config.
            return as_given();
        };
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != TOKEN_PARAM)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        url.query_pairs_mut()
            .extend_pairs(&kept)
            .append_pair(TOKEN_PARAM, token);
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let mut secrets = vec![token.to_string(), encoded];
        secrets.dedup();
        CallbackUrl {
            for_logs: daemon::redact_url(url.as_str()),
            registered: url.into(),
            secrets,
        }
    }

    /// The URL given to `/v2/eventSubscriptions` (with the token).
    pub fn registered(&self) -> &str {
        &self.registered
    }

    /// `text` without the token (an error may echo the URL).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "redacted");
        }
        out
    }
}

impl std::fmt::Display for CallbackUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.for_logs)
    }
}

/// Keeps `callback_url` subscribed until cancelled, then unsubscribes.
pub async fn run_callback(
    api: Client,
    callback_url: CallbackUrl,
    sink: EventSink,
    metrics: Arc<Metrics>,
    check_every: Duration,
    cancel: CancellationToken,
) {
    let mut backoff = daemon::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut subscribed = false;
    loop {
        let ok = if subscribed {
            match api.list_event_subscriptions().await {
                Ok(urls) => urls.iter().any(|u| u == callback_url.registered()),
                Err(e) => {
                    metrics.error(kind::MARATHON);
                    debug!(error = %callback_url.scrub(&e.to_string()), "cannot list event subscriptions");
                    false
                }
            }
        } else {
            false
        };
        if !ok {
            metrics.set_connected(false);
            subscribed = false;
            // A 2xx whose body is not a readable event still subscribed.
            match api
                .create_event_subscription(callback_url.registered())
                .await
                .map(drop)
                .or_else(ignore_decode)
            {
                Ok(()) => {
                    subscribed = true;
                    metrics.reconnects.inc();
                    metrics.set_connected(true);
                    info!(callback_url = %callback_url, "subscribed to Marathon events");
                    sink.schedule_resync();
                    backoff.reset();
                }
                Err(e) => {
                    metrics.error(kind::MARATHON);
                    warn!(error = %callback_url.scrub(&e.to_string()), "cannot subscribe to Marathon events");
                }
            }
        }
        let wait = if subscribed {
            check_every
        } else {
            backoff.next()
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => break,
        }
    }
    metrics.set_connected(false);
    match tokio::time::timeout(
        Duration::from_secs(5),
        api.delete_event_subscription(callback_url.registered()),
    )
    .await
    .map(|r| r.map(drop).or_else(ignore_decode))
    {
        Ok(Ok(())) => info!(callback_url = %callback_url, "unsubscribed from Marathon events"),
        Ok(Err(e)) => warn!(error = %callback_url.scrub(&e.to_string()), "unsubscribe failed"),
        Err(_) => warn!("unsubscribe timed out"),
    }
}

/// A subscription call answered 2xx with a body that is not an event we
/// can read: it was still done.
fn ignore_decode(e: marathon::Error) -> Result<(), marathon::Error> {
    match e {
        marathon::Error::Decode(_) => Ok(()),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_rides_in_the_query_and_never_in_logs() {
        let plain = CallbackUrl::new("http://h:5001/callback", None);
        assert_eq!(plain.registered(), "http://h:5001/callback");
        let with_user = CallbackUrl::new("http://u:pw@h:5001/callback", None);
        assert_eq!(with_user.to_string(), "http://h:5001/callback");
        let c = CallbackUrl::new("http://h:5001/callback?a=1&token=old", Some("s3 cr&t"));
        assert_eq!(c.registered(), "http://h:5001/callback?a=1&token=s3+cr%26t");
        assert_eq!(c.to_string(), "http://h:5001/callback?a=1&token=redacted");
        assert_eq!(format!("{c:?}"), c.to_string());
        assert_eq!(
            c.scrub("HTTP 422 Invalid URL 'http://h/callback?token=s3 cr&t' (s3+cr%26t)"),
            "HTTP 422 Invalid URL 'http://h/callback?token=redacted' (redacted)"
        );
    }
}
