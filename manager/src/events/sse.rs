//! `GET /v2/events`: Marathon's Server-Sent Events stream.
//!
//! Response: 200, `text/event-stream;charset=UTF-8`, never compressed. Frames
//! are `event: <type>\r\ndata: <json>\r\n\r\n`; a bare `\r\n` heartbeat goes
//! out every `heartbeat` period.
//!
//! Framing (issue 12: parity with what marathon-lb and current clients
//! expect; Marathon 1.4's Jetty servlet sent `Connection: close` and a body
//! delimited by the connection's end): an ordinary HTTP/1.1 keep-alive
//! streaming response, chunked, one chunk per write. HTTP/1.0 clients, which
//! cannot read chunks, get the body delimited by the connection's end.
//!
//! How a stream ends:
//! - shutdown ([`EventBus::end_streams`]): what is already queued, then the
//!   last chunk; the server's graceful stop then closes the idle connection;
//! - a slow consumer cut by the bus: the queued frames, then the connection
//!   is dropped without the last chunk (the client sees a truncated body:
//!   events were lost);
//! - the client going away: a write (a frame or a heartbeat) soon fails, the
//!   server drops the stream, and that detaches the client.

use std::sync::atomic::Ordering;

use actix_web::http::{header, Version};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};

use super::frame::{accepts_event_stream, StreamQuery};
use super::{error_body, Attached, EventBus};

/// Publishes `event_stream_detached` when the client's stream is dropped
/// (disconnect, slow-consumer cut, shutdown).
struct Attachment {
    bus: EventBus,
    id: u64,
    remote: String,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        tracing::debug!(remote = %self.remote, "SSE client detached");
        self.bus.detach(self.id, &self.remote);
    }
}

pub(super) async fn stream_events(bus: web::Data<EventBus>, req: HttpRequest) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if !accepts_event_stream(accept) {
        // Marathon answers a GET without the SSE media type with 405 (its
        // error body here instead of Jetty's HTML page).
        return HttpResponse::MethodNotAllowed().json(error_body(
            "GET /v2/events needs the header 'Accept: text/event-stream'",
        ));
    }
    let query = StreamQuery::parse(req.query_string());
    let remote = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let bus: EventBus = bus.get_ref().clone();
    let light = query.light;
    let Some(Attached {
        id,
        mut rx,
        outstanding,
        cut,
    }) = bus.attach(query, &remote)
    else {
        return HttpResponse::ServiceUnavailable()
            .json(error_body("The event bus is shutting down"));
    };
    tracing::debug!(%remote, "SSE client attached");
    let http10 = req.version() < Version::HTTP_11;
    let heartbeat = bus.inner.config.heartbeat;
    let ended = bus.streams_ended();
    let attachment = Attachment { bus, id, remote };
    let body = async_stream::stream! {
        let _attachment = attachment;
        let start = tokio::time::Instant::now() + heartbeat;
        let mut beat = tokio::time::interval_at(start, heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(ended);
        loop {
            tokio::select! {
                biased;
                _ = &mut ended => {
                    // Shutdown: write what is already queued, then end the
                    // body (last chunk); the graceful stop closes the
                    // connection.
                    let mut buf = BytesMut::new();
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(more.sse(light));
                    }
                    if !buf.is_empty() {
                        yield Ok::<Bytes, std::io::Error>(buf.freeze());
                    }
                    break;
                }
                frame = rx.recv() => {
                    let Some(frame) = frame else {
                        if cut.load(Ordering::SeqCst) {
                            // Too slow: what was queued is handed over; the
                            // error drops the connection without the last
                            // chunk, so the client knows events were lost.
                            yield Err(std::io::Error::other("SSE client too slow; stream cut"));
                        }
                        break;
                    };
                    // Send what is already queued in one write; a single
                    // frame goes out as the shared bytes, without a copy.
                    let first = frame.sse(light).clone();
                    let mut joined: Option<BytesMut> = None;
                    let mut n = 1;
                    while let Ok(more) = rx.try_recv() {
                        joined
                            .get_or_insert_with(|| BytesMut::from(first.as_ref()))
                            .extend_from_slice(more.sse(light));
                        n += 1;
                    }
                    outstanding.fetch_sub(n, Ordering::SeqCst);
                    yield Ok(joined.map_or(first, BytesMut::freeze));
                }
                _ = beat.tick() => {
                    yield Ok(Bytes::from_static(marathon::sse::HEARTBEAT.as_bytes()));
                }
            }
        }
    };
    let mut builder = HttpResponse::Ok();
    builder
        .content_type(marathon::sse::CONTENT_TYPE)
        // Keeps a compression middleware away: events must not be buffered.
        .insert_header((header::CONTENT_ENCODING, "identity"));
    if http10 {
        // No chunks for HTTP/1.0: the body ends with the connection.
        builder.force_close();
    }
    let mut res = builder.streaming(body);
    if http10 {
        res.head_mut().no_chunking(true);
    }
    res
}
