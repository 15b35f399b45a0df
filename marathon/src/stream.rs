//! The reconnecting event stream (`GET /v2/events`).
//!
//! [`Client::events`] yields [`StreamItem::Connected`] every time a
//! connection is (re)established (so a consumer can resync its state, since
//! events missed while disconnected are gone), then one
//! [`StreamItem::Event`] per event, and [`StreamItem::Disconnected`] when
//! that connection ends (closed, broken or idle), so a consumer always knows
//! whether it is connected (a `/health` view). Errors are yielded, never
//! fatal: the stream reconnects with exponential backoff until it is
//! dropped. An event that cannot be decoded is yielded as
//! [`Error::Decode`] and the connection stays. A connection that sends
//! nothing, not even a heartbeat, for [`StreamConfig::idle_timeout`] is
//! treated as dead.

use std::time::Duration;

use backoff::Backoff;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, CACHE_CONTROL, LOCATION};
use url::Url;

use crate::client::path;
use crate::sse::Parser;
use crate::{Client, Error, Event, Result};

/// Settings of [`Client::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// First delay before reconnecting (default 500 ms); doubles per failure.
    pub initial_backoff: Duration,
    /// Upper bound of the delay (default 30 s).
    pub max_backoff: Duration,
    /// Reconnect when no byte arrived for this long (default 30 s; Marathon
    /// sends a heartbeat every 10 s).
    pub idle_timeout: Duration,
    /// Redirects followed per connection attempt (default 5; a standby
    /// Marathon answers 302 to the leader).
    pub max_redirects: u32,
    /// An SSE line longer than this is treated as a broken stream (default 16 MiB).
    pub max_line_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_redirects: 5,
            max_line_bytes: 16 << 20,
        }
    }
}

/// One item of the event stream.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum StreamItem {
    /// A connection was (re)established: events may have been missed, resync.
    Connected,
    Event(Event),
    /// The connection announced by the last [`StreamItem::Connected`]
    /// ended (any error that ended it was yielded just before); a
    /// reconnect follows after the backoff.
    Disconnected,
}

impl Client {
    /// Subscribes to `/v2/events` (all types when `event_types` is empty),
    /// with `plan-format=light`. Never ends on its own; drop it to stop.
    /// The stream is boxed (`Unpin`): drive it with
    /// `while let Some(item) = stream.next().await`.
    pub fn events(&self, event_types: &[&str]) -> BoxStream<'static, Result<StreamItem>> {
        let client = self.clone();
        let mut url = self.url(path::EVENTS, None, &[]);
        {
            let mut q = url.query_pairs_mut();
            for t in event_types {
                q.append_pair("event_type", t);
            }
            q.append_pair("plan-format", "light");
        }
        let cfg = self.inner.stream.clone();
        Box::pin(async_stream::stream! {
            let mut backoff = Backoff::new(cfg.initial_backoff, cfg.max_backoff);
            loop {
                match client.connect_events(url.clone(), &cfg).await {
                    Ok(resp) => {
                        backoff.reset();
                        tracing::debug!(url = %resp.url(), "event stream connected");
                        yield Ok(StreamItem::Connected);
                        let mut parser = Parser::new();
                        let mut body = resp.bytes_stream();
                        loop {
                            match tokio::time::timeout(cfg.idle_timeout, body.next()).await {
                                Err(_) => {
                                    yield Err(Error::Idle { seconds: cfg.idle_timeout.as_secs() });
                                    break;
                                }
                                Ok(None) => {
                                    tracing::debug!("event stream closed by the server");
                                    break;
                                }
                                Ok(Some(Err(e))) => {
                                    yield Err(Error::Transport(e));
                                    break;
                                }
                                Ok(Some(Ok(chunk))) => {
                                    for msg in parser.push(&chunk) {
                                        if msg.data.trim().is_empty() {
                                            continue;
                                        }
                                        match Event::from_json(&msg.data) {
                                            Ok(ev) => yield Ok(StreamItem::Event(ev)),
                                            Err(e) => yield Err(Error::Decode(e)),
                                        }
                                    }
                                    if parser.pending() > cfg.max_line_bytes {
                                        yield Err(Error::Unexpected {
                                            status: 200,
                                            message: format!("SSE line longer than {} bytes", cfg.max_line_bytes),
                                        });
                                        break;
                                    }
                                }
                            }
                        }
                        yield Ok(StreamItem::Disconnected);
                    }
                    Err(e) => yield Err(e),
                }
                tokio::time::sleep(backoff.next()).await;
            }
        })
    }

    /// One connection attempt, following redirects with the credentials kept.
    async fn connect_events(&self, mut url: Url, cfg: &StreamConfig) -> Result<reqwest::Response> {
        for _ in 0..=cfg.max_redirects {
            let req = self
                .inner
                .stream_http
                .get(url.clone())
                .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
                .header(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // No total timeout on this client: bound the wait for headers here.
            let resp = tokio::time::timeout(cfg.idle_timeout, self.authorize(req).send())
                .await
                .map_err(|_| Error::Idle {
                    seconds: cfg.idle_timeout.as_secs(),
                })?
                .map_err(Error::Transport)?;
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| Error::Unexpected {
                        status: status.as_u16(),
                        message: "redirect without Location".to_owned(),
                    })?;
                url = url
                    .join(location)
                    .map_err(|e| Error::Url(format!("{location:?}: {e}")))?;
                tracing::debug!(%url, "event stream redirected");
                continue;
            }
            if !status.is_success() {
                let body = tokio::time::timeout(cfg.idle_timeout, resp.bytes())
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default();
                return Err(Error::from_response(status.as_u16(), &body));
            }
            return Ok(resp);
        }
        Err(Error::Unexpected {
            status: 302,
            message: format!("more than {} redirects", cfg.max_redirects),
        })
    }
}
