//! What the event bus tests share (`events.rs`: SSE; `event_callbacks.rs`:
//! callbacks): a bus served on a free port with a real etcd, a raw SSE
//! client that keeps every byte, and small helpers.
#![allow(dead_code)]

use std::time::Duration;

use actix_web::{web, App, HttpServer};
use manager::events::{EventBus, EventsConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(20);
pub const PREFIX: &str = "/mdo/test-events";

pub fn fast_config() -> EventsConfig {
    EventsConfig {
        heartbeat: Duration::from_millis(100),
        callback_backoff: Duration::from_millis(20),
        callback_backoff_max: Duration::from_millis(200),
        callback_timeout: Duration::from_secs(5),
        ..EventsConfig::default()
    }
}

pub async fn etcd_client(etcd: &testkit::Etcd) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap()
}

/// A bus served by a tiny app with its routes, on a free port.
pub struct Served {
    pub bus: EventBus,
    pub port: u16,
    pub handle: actix_web::dev::ServerHandle,
}

impl Served {
    pub async fn start(etcd: &testkit::Etcd, cfg: EventsConfig) -> Served {
        let bus = EventBus::new(etcd_client(etcd).await, PREFIX.to_string(), cfg)
            .await
            .unwrap();
        let data = web::Data::new(bus.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(EventBus::configure)
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Served { bus, port, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn stop(self) {
        self.bus.shutdown().await;
        self.handle.stop(false).await;
    }
}

/// A raw SSE connection: every byte the server sent is kept.
pub struct Sse {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Sse {
    pub async fn connect(port: u16, query: &str, accept: Option<&str>) -> Sse {
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        let req = format!("GET /v2/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Cache-Control: no-cache\r\n\r\n");
        Sse::send(port, &req).await
    }

    /// Opens a connection and sends `request` as is.
    pub async fn send(port: u16, request: &str) -> Sse {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        Sse {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends another request on the same connection.
    pub async fn write(&mut self, request: &str) {
        self.stream.write_all(request.as_bytes()).await.unwrap();
    }

    /// Reads until `done(self)` holds.
    pub async fn read_until(&mut self, what: &str, done: impl Fn(&Sse) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut chunk = vec![0u8; 64 * 1024];
        while !done(self) {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what}; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                })
                .unwrap();
            assert!(
                n > 0 || done(self),
                "connection closed while waiting for {what}"
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes the connection.
    pub async fn read_to_eof(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("server never closed the stream")
                .unwrap_or(0);
            if n == 0 {
                return;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn head(&self) -> Option<String> {
        let end = find(&self.buf, b"\r\n\r\n")?;
        Some(String::from_utf8_lossy(&self.buf[..end + 4]).into_owned())
    }

    /// The body bytes as sent (chunk framing included).
    pub fn raw_body(&self) -> &[u8] {
        match find(&self.buf, b"\r\n\r\n") {
            Some(end) => &self.buf[end + 4..],
            None => &[],
        }
    }

    pub fn chunked(&self) -> bool {
        self.head().is_some_and(|h| {
            h.to_ascii_lowercase()
                .contains("\r\ntransfer-encoding: chunked\r\n")
        })
    }

    /// The body: the data of every complete chunk when chunked (panics on bad
    /// chunk framing), else the bytes as sent.
    pub fn body(&self) -> Vec<u8> {
        if self.chunked() {
            dechunk(self.raw_body()).0
        } else {
            self.raw_body().to_vec()
        }
    }

    /// Whether the chunked body ended with its last (empty) chunk.
    pub fn complete(&self) -> bool {
        self.chunked() && dechunk(self.raw_body()).1.is_some()
    }

    /// What the connection carried after the (complete, chunked) body: the
    /// answers to requests sent on it afterwards.
    pub fn after_body(&self) -> &[u8] {
        let raw = self.raw_body();
        match dechunk(raw).1 {
            Some(end) if self.chunked() => &raw[end..],
            _ => &[],
        }
    }

    /// The body split into tokens; panics on any byte outside Marathon's framing.
    pub fn tokens(&self) -> Vec<Token> {
        let body = self.body();
        let mut body = &body[..];
        let mut out = Vec::new();
        while !body.is_empty() {
            if let Some(rest) = body.strip_prefix(b"\r\n") {
                out.push(Token::Heartbeat);
                body = rest;
                continue;
            }
            let Some(end) = find(body, b"\r\n\r\n") else {
                break;
            }; // incomplete frame
            let text = std::str::from_utf8(&body[..end]).unwrap();
            let (event_line, data_line) = text.split_once("\r\n").expect("two lines");
            let event = event_line
                .strip_prefix("event: ")
                .unwrap_or_else(|| panic!("bad frame {text:?}"));
            let data = data_line
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad frame {text:?}"));
            assert!(!data.contains('\n') && !data.contains('\r'));
            let value: Value = serde_json::from_str(data).unwrap();
            assert_eq!(value["eventType"], event);
            out.push(Token::Event(event.to_string(), value));
            body = &body[end + 4..];
        }
        out
    }

    pub fn events(&self) -> Vec<(String, Value)> {
        self.tokens()
            .into_iter()
            .filter_map(|t| match t {
                Token::Event(e, v) => Some((e, v)),
                Token::Heartbeat => None,
            })
            .collect()
    }

    pub fn types(&self) -> Vec<String> {
        self.events().into_iter().map(|(t, _)| t).collect()
    }
}

#[derive(Debug, PartialEq)]
pub enum Token {
    Heartbeat,
    Event(String, Value),
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body: the data of its complete chunks, and where the
/// body ends in `raw` once its last chunk (`0\r\n\r\n`) was seen. A trailing
/// partial chunk is left out.
pub fn dechunk(all: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut out = Vec::new();
    let mut raw = all;
    while let Some(eol) = find(raw, b"\r\n") {
        let line = std::str::from_utf8(&raw[..eol]).expect("chunk size line");
        let size = usize::from_str_radix(line, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        let data = &raw[eol + 2..];
        if size == 0 {
            if data.len() < 2 {
                break;
            }
            assert_eq!(&data[..2], b"\r\n", "no trailers after the last chunk");
            return (out, Some(all.len() - data.len() + 2));
        }
        if data.len() < size + 2 {
            break;
        }
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk data ends with CRLF");
        out.extend_from_slice(&data[..size]);
        raw = &data[size + 2..];
    }
    (out, None)
}

pub fn event(event_type: &str, extra: Value) -> Value {
    let mut v = json!({"eventType": event_type, "timestamp": "2026-11-22T04:00:00.000Z"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

pub async fn wait_clients(bus: &EventBus, n: u64) {
    testkit::eventually_async(&format!("{n} SSE clients"), WAIT, || async {
        (bus.metrics().sse_clients == n).then_some(())
    })
    .await;
}
