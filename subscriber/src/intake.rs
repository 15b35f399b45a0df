//! Where events come from: the `/v2/events` stream (reconnecting with
//! backoff, a resync after every connect) or, in callback mode, a
//! subscription kept alive through `/v2/eventSubscriptions` (the events
//! themselves arrive on `POST /callback`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::convert::task_event;
use crate::marathon_api::{parse_event, MarathonApi};
use crate::metrics::{kind, Metrics};
use crate::writer::EventSink;

/// No byte for this long (Marathon heartbeats every 10 s) -> reconnect.
const STREAM_IDLE: Duration = Duration::from_secs(35);

/// Handles one event body (SSE data or callback POST). Err on malformed input.
pub fn accept(body: &str, sink: &EventSink, metrics: &Metrics) -> Result<(), String> {
    match parse_event(body) {
        Ok(ev) => {
            metrics.event(ev.event_type());
            sink.push(task_event(&ev));
            Ok(())
        }
        Err(e) => {
            metrics.error(kind::MALFORMED_EVENT);
            Err(e.to_string())
        }
    }
}

/// Reads the event stream until cancelled.
pub async fn run_sse(
    api: MarathonApi,
    sink: EventSink,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let resp = tokio::select! {
            r = api.open_events() => r,
            _ = cancel.cancelled() => return,
        };
        match resp {
            Ok(resp) => {
                metrics.reconnects.fetch_add(1, Relaxed);
                metrics.stream_connected.store(true, Relaxed);
                info!("event stream connected");
                // Whatever happened while we were away: resync.
                sink.schedule_resync();
                backoff = Duration::from_millis(100);
                let mut parser = marathon::sse::Parser::new();
                let mut body = resp.bytes_stream();
                loop {
                    let next = tokio::select! {
                        n = tokio::time::timeout(STREAM_IDLE, body.next()) => n,
                        _ = cancel.cancelled() => {
                            metrics.stream_connected.store(false, Relaxed);
                            return;
                        }
                    };
                    match next {
                        Ok(Some(Ok(chunk))) => {
                            for msg in parser.push(&chunk) {
                                if msg.data.is_empty() {
                                    continue;
                                }
                                if let Err(e) = accept(&msg.data, &sink, &metrics) {
                                    warn!(error = %e, "malformed event on the stream ignored");
                                }
                            }
                        }
                        Ok(Some(Err(e))) => {
                            warn!(error = %e, "event stream broke");
                            break;
                        }
                        Ok(None) => {
                            warn!("event stream closed by Marathon");
                            break;
                        }
                        Err(_) => {
                            warn!("event stream silent for {STREAM_IDLE:?}; reconnecting");
                            break;
                        }
                    }
                }
                metrics.stream_connected.store(false, Relaxed);
            }
            Err(e) => {
                metrics.error(kind::MARATHON);
                debug!(error = %e, "cannot open the event stream");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Keeps `callback_url` subscribed until cancelled, then unsubscribes.
pub async fn run_callback(
    api: MarathonApi,
    callback_url: String,
    sink: EventSink,
    metrics: Arc<Metrics>,
    check_every: Duration,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut subscribed = false;
    loop {
        let ok = if subscribed {
            match api.subscriptions().await {
                Ok(urls) => urls.iter().any(|u| u == &callback_url),
                Err(e) => {
                    metrics.error(kind::MARATHON);
                    debug!(error = %e, "cannot list event subscriptions");
                    false
                }
            }
        } else {
            false
        };
        if !ok {
            metrics.stream_connected.store(false, Relaxed);
            subscribed = false;
            match api.subscribe(&callback_url).await {
                Ok(()) => {
                    subscribed = true;
                    metrics.reconnects.fetch_add(1, Relaxed);
                    metrics.stream_connected.store(true, Relaxed);
                    info!(callback_url = %callback_url, "subscribed to Marathon events");
                    sink.schedule_resync();
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    metrics.error(kind::MARATHON);
                    warn!(error = %e, "cannot subscribe to Marathon events");
                }
            }
        }
        let wait = if subscribed { check_every } else { backoff };
        if !subscribed {
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => break,
        }
    }
    metrics.stream_connected.store(false, Relaxed);
    match tokio::time::timeout(Duration::from_secs(5), api.unsubscribe(&callback_url)).await {
        Ok(Ok(())) => info!(callback_url = %callback_url, "unsubscribed from Marathon events"),
        Ok(Err(e)) => warn!(error = %e, "unsubscribe failed"),
        Err(_) => warn!("unsubscribe timed out"),
    }
}
