//! `GET /v2/events`: Marathon's Server-Sent Events stream.
//!
//! Response: 200, `text/event-stream;charset=UTF-8`, `Connection: close`, no
//! chunked encoding (the body ends when the connection does, as with Jetty),
//! never compressed. Frames are `event: <type>\r\ndata: <json>\r\n\r\n`; a bare
//! `\r\n` heartbeat goes out every `heartbeat` period. The body ends on
//! shutdown ([`EventBus::end_streams`]) after what is already queued.

use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};

use super::frame::{accepts_event_stream, StreamQuery};
use super::{error_body, EventBus};

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
        // Jetty's EventSource servlet answers a GET without the SSE media
        // type with 405 (Marathon's error body instead of Jetty's HTML page).
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
    let Some((id, mut rx, outstanding)) = bus.attach(query, &remote) else {
        return HttpResponse::ServiceUnavailable()
            .json(error_body("The event bus is shutting down"));
    };
    tracing::debug!(%remote, "SSE client attached");
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
                    // body (the connection closes with it).
                    let mut buf = BytesMut::new();
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(more.sse(light));
                    }
                    if !buf.is_empty() {
                        yield Ok::<Bytes, std::convert::Infallible>(buf.freeze());
                    }
                    break;
                }
                frame = rx.recv() => {
                    let Some(frame) = frame else { break };
                    // Send what is already queued in one write.
                    let mut buf = BytesMut::from(frame.sse(light).as_ref());
                    let mut n = 1;
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(more.sse(light));
                        n += 1;
                    }
                    outstanding.fetch_sub(n, Ordering::SeqCst);
                    yield Ok::<Bytes, std::convert::Infallible>(buf.freeze());
                }
                _ = beat.tick() => {
                    yield Ok(Bytes::from_static(marathon::sse::HEARTBEAT.as_bytes()));
                }
            }
        }
    };
    let mut res = HttpResponse::Ok()
        .content_type(marathon::sse::CONTENT_TYPE)
        // Keeps a compression middleware away: events must not be buffered.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .force_close()
        .streaming(body);
    res.head_mut().no_chunking(true);
    res
}
