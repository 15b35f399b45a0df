//! The event bus over real HTTP (actix on port 0) and a real etcd: exact SSE
//! bytes (chunked, kept alive for HTTP/1.1; close-delimited for HTTP/1.0),
//! filters, attach/detach, slow consumers, how streams end, callbacks (order,
//! retries, persistence across a new bus).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use manager::events::{EventBus, EventsConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);
const PREFIX: &str = "/mdo/test-events";

fn fast_config() -> EventsConfig {
    EventsConfig {
        heartbeat: Duration::from_millis(100),
        callback_backoff: Duration::from_millis(20),
        callback_backoff_max: Duration::from_millis(200),
        callback_timeout: Duration::from_secs(5),
        ..EventsConfig::default()
    }
}

async fn etcd_client(etcd: &testkit::Etcd) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap()
}

/// A bus served by a tiny app with its routes, on a free port.
struct Served {
    bus: EventBus,
    port: u16,
    handle: actix_web::dev::ServerHandle,
}

impl Served {
    async fn start(etcd: &testkit::Etcd, cfg: EventsConfig) -> Served {
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

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn stop(self) {
        self.bus.shutdown().await;
        self.handle.stop(false).await;
    }
}

/// A raw SSE connection: every byte the server sent is kept.
struct Sse {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Sse {
    async fn connect(port: u16, query: &str, accept: Option<&str>) -> Sse {
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        let req = format!("GET /v2/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Cache-Control: no-cache\r\n\r\n");
        Sse::send(port, &req).await
    }

    /// Opens a connection and sends `request` as is.
    async fn send(port: u16, request: &str) -> Sse {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        Sse {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends another request on the same connection.
    async fn write(&mut self, request: &str) {
        self.stream.write_all(request.as_bytes()).await.unwrap();
    }

    /// Reads until `done(self)` holds.
    async fn read_until(&mut self, what: &str, done: impl Fn(&Sse) -> bool) {
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
    async fn read_to_eof(&mut self) {
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

    fn head(&self) -> Option<String> {
        let end = find(&self.buf, b"\r\n\r\n")?;
        Some(String::from_utf8_lossy(&self.buf[..end + 4]).into_owned())
    }

    /// The body bytes as sent (chunk framing included).
    fn raw_body(&self) -> &[u8] {
        match find(&self.buf, b"\r\n\r\n") {
            Some(end) => &self.buf[end + 4..],
            None => &[],
        }
    }

    fn chunked(&self) -> bool {
        self.head().is_some_and(|h| {
            h.to_ascii_lowercase()
                .contains("\r\ntransfer-encoding: chunked\r\n")
        })
    }

    /// The body: the data of every complete chunk when chunked (panics on bad
    /// chunk framing), else the bytes as sent.
    fn body(&self) -> Vec<u8> {
        if self.chunked() {
            dechunk(self.raw_body()).0
        } else {
            self.raw_body().to_vec()
        }
    }

    /// Whether the chunked body ended with its last (empty) chunk.
    fn complete(&self) -> bool {
        self.chunked() && dechunk(self.raw_body()).1.is_some()
    }

    /// What the connection carried after the (complete, chunked) body: the
    /// answers to requests sent on it afterwards.
    fn after_body(&self) -> &[u8] {
        let raw = self.raw_body();
        match dechunk(raw).1 {
            Some(end) if self.chunked() => &raw[end..],
            _ => &[],
        }
    }

    /// The body split into tokens; panics on any byte outside Marathon's framing.
    fn tokens(&self) -> Vec<Token> {
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

    fn events(&self) -> Vec<(String, Value)> {
        self.tokens()
            .into_iter()
            .filter_map(|t| match t {
                Token::Event(e, v) => Some((e, v)),
                Token::Heartbeat => None,
            })
            .collect()
    }

    fn types(&self) -> Vec<String> {
        self.events().into_iter().map(|(t, _)| t).collect()
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Heartbeat,
    Event(String, Value),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body: the data of its complete chunks, and where the
/// body ends in `raw` once its last chunk (`0\r\n\r\n`) was seen. A trailing
/// partial chunk is left out.
fn dechunk(all: &[u8]) -> (Vec<u8>, Option<usize>) {
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

fn event(event_type: &str, extra: Value) -> Value {
    let mut v = json!({"eventType": event_type, "timestamp": "2026-11-22T04:00:00.000Z"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

async fn wait_clients(bus: &EventBus, n: u64) {
    testkit::eventually_async(&format!("{n} SSE clients"), WAIT, || async {
        (bus.metrics().sse_clients == n).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn sse_bytes_are_marathons_framing_with_crlf_and_heartbeats() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let mut sse = Sse::connect(s.port, "", Some("text/event-stream")).await;
    sse.read_until("attached", |c| !c.events().is_empty()).await;
    let head = sse.head().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncontent-type: text/event-stream;charset=utf-8\r\n"),
        "{head}"
    );
    // An ordinary HTTP/1.1 keep-alive streaming response (issue 12).
    assert!(!lower.contains("\r\nconnection:"), "kept alive: {head}");
    assert!(
        lower.contains("\r\ntransfer-encoding: chunked\r\n"),
        "chunked: {head}"
    );
    assert!(!lower.contains("content-length"), "{head}");
    assert!(!lower.contains("content-encoding: gzip"), "{head}");

    // The first frame is this client's own attach event, in a chunk of its
    // own (hex size line, then the frame).
    let raw = String::from_utf8(sse.raw_body().to_vec()).unwrap();
    let (size, rest) = raw.split_once("\r\n").unwrap();
    assert!(
        !size.is_empty() && size.chars().all(|c| c.is_ascii_hexdigit()),
        "{raw:?}"
    );
    assert!(
        rest.starts_with("event: event_stream_attached\r\ndata: {"),
        "{raw:?}"
    );
    let body = String::from_utf8(sse.body()).unwrap();
    assert_eq!(
        usize::from_str_radix(size, 16).unwrap(),
        find(body.as_bytes(), b"\r\n\r\n").unwrap() + 4,
        "one frame in the first chunk: {body:?}"
    );
    let (_, attached) = &sse.events()[0];
    assert_eq!(attached["remoteAddress"], "127.0.0.1");
    assert!(attached["timestamp"].as_str().unwrap().ends_with('Z'));

    let published = event(
        "status_update_event",
        json!({"taskId": "web.instance-1._app.1", "taskStatus": "TASK_RUNNING"}),
    );
    s.bus.publish_value(published.clone());
    let expected = format!("event: status_update_event\r\ndata: {}\r\n\r\n", published);
    sse.read_until("the published frame", |c| {
        find(&c.body(), expected.as_bytes()).is_some()
    })
    .await;
    // ...followed by heartbeats (bare CRLF) while nothing happens.
    let after = find(&sse.body(), expected.as_bytes()).unwrap() + expected.len();
    sse.read_until("two heartbeats", |c| {
        c.body()[after..].starts_with(b"\r\n\r\n")
    })
    .await;
    let tokens = sse.tokens();
    assert!(tokens.iter().filter(|t| **t == Token::Heartbeat).count() >= 2);
    assert_eq!(
        sse.types(),
        vec!["event_stream_attached", "status_update_event"]
    );

    // A typed event goes through the same path.
    s.bus.publish(&marathon::Event::AppTerminated(
        marathon::event::AppIdEvent {
            app_id: "/web".into(),
            timestamp: marathon::Timestamp::now(),
        },
    ));
    sse.read_until("typed event", |c| c.types().len() == 3)
        .await;
    assert_eq!(sse.events()[2].1["appId"], "/web");
    assert_eq!(s.bus.metrics().published["status_update_event"], 1);
    s.stop().await;
}

#[actix_web::test]
async fn event_type_filter_and_plan_formats() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let mut all = Sse::connect(s.port, "", Some("text/event-stream")).await;
    let mut some = Sse::connect(
        s.port,
        "?event_type=status_update_event&event_type=deployment_info&plan-format=light",
        Some("application/json, text/event-stream"),
    )
    .await;
    wait_clients(&s.bus, 2).await;
    let plan = json!({"id": "p1", "version": "2026-11-22T04:00:00.000Z", "steps": [{"actions": [{"action": "StartApplication", "app": "/web"}]}]});
    s.bus.publish_value(event(
        "api_post_event",
        json!({"clientIp": "127.0.0.1", "uri": "/v2/apps", "appDefinition": {"id": "/web"}}),
    ));
    s.bus.publish_value(event(
        "deployment_info",
        json!({"plan": plan, "currentStep": {"actions": []}}),
    ));
    s.bus
        .publish_value(event("status_update_event", json!({"taskId": "t1"})));
    s.bus.publish_value(event(
        "scheduler_registered_event",
        json!({"frameworkId": "f", "master": "m"}),
    ));
    some.read_until("two filtered events", |c| c.types().len() == 2)
        .await;
    all.read_until("all events", |c| {
        c.types().contains(&"status_update_event".to_string())
    })
    .await;
    assert_eq!(some.types(), vec!["deployment_info", "status_update_event"]);
    let light = &some.events()[0].1;
    assert_eq!(light["plan"], plan, "light: the plan as published");
    // Unfiltered streams never carry scheduler_* events (marathon-python raises on them).
    assert_eq!(
        all.types(),
        vec![
            "event_stream_attached",
            "event_stream_attached",
            "api_post_event",
            "deployment_info",
            "status_update_event"
        ]
    );
    let heavy = &all.events()[3].1;
    let root = json!({"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": [], "version": "2026-11-22T04:00:00.000Z"});
    assert_eq!(heavy["plan"]["original"], root);
    assert_eq!(heavy["plan"]["target"], root);
    assert_eq!(heavy["plan"]["steps"], plan["steps"]);
    s.stop().await;
}

#[actix_web::test]
async fn clients_see_attach_and_detach_and_need_the_event_stream_accept_header() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let mut watcher = Sse::connect(s.port, "", Some("text/event-stream")).await;
    watcher
        .read_until("own attach", |c| c.types().len() == 1)
        .await;
    let mut other = Sse::connect(
        s.port,
        "?event_type=event_stream_attached",
        Some("text/event-stream"),
    )
    .await;
    other
        .read_until("own attach", |c| c.types().len() == 1)
        .await;
    watcher
        .read_until("other's attach", |c| c.types().len() == 2)
        .await;
    assert_eq!(s.bus.metrics().sse_clients, 2);
    drop(other);
    watcher
        .read_until("other's detach", |c| c.types().len() == 3)
        .await;
    let (t, detached) = &watcher.events()[2];
    assert_eq!(t, "event_stream_detached");
    assert_eq!(detached["remoteAddress"], "127.0.0.1");
    wait_clients(&s.bus, 1).await;

    let http = reqwest::Client::new();
    for accept in ["application/json", "text/html"] {
        let res = http
            .get(s.url("/v2/events"))
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 405, "Accept {accept:?}");
        let body: Value = res.json().await.unwrap();
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("text/event-stream"));
    }
    // Without any Accept header (Marathon: 405 too).
    let mut bare = Sse::connect(s.port, "", None).await;
    bare.read_until("a response", |c| c.head().is_some()).await;
    assert!(
        bare.head().unwrap().starts_with("HTTP/1.1 405"),
        "{:?}",
        bare.head()
    );
    s.stop().await;
}

#[actix_web::test]
async fn a_slow_consumer_is_disconnected_without_blocking_others() {
    let etcd = testkit::Etcd::start().unwrap();
    let cfg = EventsConfig {
        max_outstanding: 5,
        heartbeat: Duration::from_secs(3600),
        ..fast_config()
    };
    let s = Served::start(&etcd, cfg).await;
    let mut slow = Sse::connect(s.port, "", Some("text/event-stream")).await;
    wait_clients(&s.bus, 1).await;
    let big = "x".repeat(256 * 1024);
    // Socket buffers absorb a few MB; then the backlog grows past 5 events.
    for i in 0..400 {
        s.bus.publish_value(event(
            "status_update_event",
            json!({"taskId": format!("t{i}"), "message": big}),
        ));
        if s.bus.metrics().sse_slow_disconnects > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(s.bus.metrics().sse_slow_disconnects, 1);
    assert_eq!(s.bus.metrics().sse_clients, 0);
    slow.read_to_eof().await;
    // The connection is dropped without the last chunk: the client can tell
    // a cut (events lost) from a stream that ended.
    assert!(slow.chunked(), "{:?}", slow.head());
    assert!(!slow.complete(), "no last chunk after a cut");
    // What it got before the cut is well-framed and in order.
    let events = slow.events();
    assert!(events.len() < 400);
    for (i, (_, v)) in events.iter().skip(1).enumerate() {
        assert_eq!(v["taskId"], format!("t{i}"));
    }
    s.stop().await;
}

#[actix_web::test]
async fn an_ended_stream_keeps_its_connection_alive_until_the_graceful_stop() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let mut sse = Sse::connect(s.port, "", Some("text/event-stream")).await;
    sse.read_until("attached", |c| !c.events().is_empty()).await;
    s.bus
        .publish_value(event("status_update_event", json!({"taskId": "t1"})));
    // Shutdown starts: what is queued goes out, then the last chunk.
    s.bus.end_streams();
    sse.read_until("the last chunk", Sse::complete).await;
    assert_eq!(
        sse.types(),
        vec!["event_stream_attached", "status_update_event"]
    );
    assert!(sse.after_body().is_empty(), "nothing after the last chunk");

    // The connection is kept alive: a second request on it is answered.
    sse.write("GET /v2/eventSubscriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let want = br#"{"callbackUrls":[]}"#;
    sse.read_until("the second answer", |c| c.after_body().ends_with(want))
        .await;
    let second = String::from_utf8_lossy(sse.after_body()).into_owned();
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second:?}");
    assert!(
        !second
            .to_ascii_lowercase()
            .contains("\r\nconnection: close"),
        "{second:?}"
    );

    // A graceful stop of the server closes the idle connection.
    let stopped = s.handle.stop(true);
    sse.read_to_eof().await;
    stopped.await;
    s.bus.shutdown().await;
}

#[actix_web::test]
async fn an_http_1_0_client_gets_the_stream_delimited_by_the_connection() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let mut sse = Sse::send(
        s.port,
        "GET /v2/events HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await;
    sse.read_until("attached", |c| !c.events().is_empty()).await;
    let head = sse.head().unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "no chunks: {head}");
    assert!(!lower.contains("content-length"), "{head}");
    assert!(
        sse.raw_body()
            .starts_with(b"event: event_stream_attached\r\ndata: {"),
        "{:?}",
        String::from_utf8_lossy(sse.raw_body())
    );
    s.bus
        .publish_value(event("status_update_event", json!({"taskId": "t1"})));
    s.bus.end_streams();
    // The body ends with the connection.
    sse.read_to_eof().await;
    assert_eq!(
        sse.types(),
        vec!["event_stream_attached", "status_update_event"]
    );
    s.stop().await;
}

type Received = Arc<Mutex<Vec<Value>>>;

/// A callback receiver on `port` recording every POSTed body.
async fn receiver(port: u16, got: Received) -> actix_web::dev::ServerHandle {
    let server = HttpServer::new(move || {
        App::new().app_data(web::Data::new(got.clone())).route(
            "/callback",
            web::post().to(
                |got: web::Data<Received>, body: web::Json<Value>| async move {
                    got.lock().unwrap().push(body.into_inner());
                    HttpResponse::Ok().finish()
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    handle
}

fn task_ids(got: &Received) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|v| v["eventType"] == "status_update_event")
        .map(|v| v["taskId"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn callbacks_are_delivered_in_order_and_retried_until_the_receiver_is_up() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let live_got: Received = Default::default();
    let live_port = testkit::free_port().unwrap();
    let live = receiver(live_port, live_got.clone()).await;
    let dead_port = testkit::free_port().unwrap();
    let http = reqwest::Client::new();
    for port in [live_port, dead_port] {
        let res = http
            .post(s.url(&format!(
                "/v2/eventSubscriptions?callbackUrl=http://127.0.0.1:{port}/callback"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
    }
    let mut sse = Sse::connect(
        s.port,
        "?event_type=status_update_event",
        Some("text/event-stream"),
    )
    .await;
    wait_clients(&s.bus, 1).await;
    let want: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    for id in &want {
        s.bus
            .publish_value(event("status_update_event", json!({"taskId": id})));
    }
    // The dead receiver delays neither the live one nor SSE clients.
    testkit::eventually_async("live receiver got every event", WAIT, || async {
        (task_ids(&live_got).len() == 50).then_some(())
    })
    .await;
    assert_eq!(task_ids(&live_got), want);
    assert_eq!(
        live_got.lock().unwrap()[0]["eventType"],
        "subscribe_event",
        "its own subscription first"
    );
    sse.read_until("SSE events", |c| c.types().len() == 50)
        .await;
    testkit::eventually_async("failed deliveries counted", WAIT, || async {
        (s.bus.metrics().callback_failures >= 2).then_some(())
    })
    .await;

    // The receiver comes up: everything queued arrives, in order.
    let dead_got: Received = Default::default();
    let late = receiver(dead_port, dead_got.clone()).await;
    testkit::eventually_async("late receiver caught up", WAIT, || async {
        (task_ids(&dead_got).len() == 50).then_some(())
    })
    .await;
    assert_eq!(task_ids(&dead_got), want);
    assert_eq!(dead_got.lock().unwrap()[0]["eventType"], "subscribe_event");
    let m = s.bus.metrics();
    assert!(
        m.callback_deliveries >= 100 && m.callback_dropped == 0,
        "{m:?}"
    );
    live.stop(false).await;
    late.stop(false).await;
    s.stop().await;
}

#[actix_web::test]
async fn subscriptions_api_shapes_validation_and_persistence() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let http = reqwest::Client::new();
    let cb = "http://127.0.0.1:9/callback";
    let cb2 = "http://example.invalid:8080/hook";
    let sub = |url: &str| {
        http.post(s.url(&format!("/v2/eventSubscriptions?callbackUrl={url}")))
            .send()
    };
    let res = sub(cb).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["eventType"], "subscribe_event");
    assert_eq!(body["callbackUrl"], cb);
    assert_eq!(body["clientIp"], "127.0.0.1");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(sub(cb).await.unwrap().status().as_u16(), 200, "idempotent");
    assert_eq!(sub(cb2).await.unwrap().status().as_u16(), 200);
    let list: Value = http
        .get(s.url("/v2/eventSubscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!({"callbackUrls": [cb, cb2]}));

    let bad = sub("not-a-url").await.unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["details"][0]["path"], "/callbackUrl");
    let missing = http
        .post(s.url("/v2/eventSubscriptions"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 400);
    assert!(missing.json::<Value>().await.unwrap()["message"].is_string());

    // Stored in etcd under the internal prefix.
    let mut kv = etcd_client(&etcd).await;
    let stored = kv
        .get(
            format!("{PREFIX}/subscriptions/"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(stored.kvs().len(), 2);
    s.stop().await;

    // A new bus (a restarted manager) over the same etcd has them back.
    let s2 = Served::start(&etcd, fast_config()).await;
    assert_eq!(
        s2.bus.callback_urls(),
        vec![cb.to_string(), cb2.to_string()]
    );
    assert_eq!(s2.bus.metrics().callback_subscriptions, 2);
    let res = http
        .delete(s2.url(&format!("/v2/eventSubscriptions?callbackUrl={cb}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["eventType"], "unsubscribe_event");
    assert_eq!(body["callbackUrl"], cb);
    let list: Value = http
        .get(s2.url("/v2/eventSubscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!({"callbackUrls": [cb2]}));
    // Unsubscribing an unknown URL is fine too.
    let res = http
        .delete(s2.url("/v2/eventSubscriptions?callbackUrl=http://127.0.0.1:1/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    s2.stop().await;
    let s3 = Served::start(&etcd, fast_config()).await;
    assert_eq!(s3.bus.callback_urls(), vec![cb2.to_string()]);
    assert_eq!(s3.bus.metrics().published.get("unsubscribe_event"), None);
    s3.stop().await;
}

#[actix_web::test]
async fn concurrent_publishers_every_consumer_sees_one_order() {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let got: Received = Default::default();
    let port = testkit::free_port().unwrap();
    let rcv = receiver(port, got.clone()).await;
    s.bus
        .subscribe(&format!("http://127.0.0.1:{port}/callback"), "127.0.0.1")
        .await
        .unwrap();
    let q = "?event_type=status_update_event";
    let mut a = Sse::connect(s.port, q, Some("text/event-stream")).await;
    let mut b = Sse::connect(s.port, q, Some("text/event-stream")).await;
    wait_clients(&s.bus, 2).await;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let bus = s.bus.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    bus.publish_value(event(
                        "status_update_event",
                        json!({"taskId": format!("{t}-{i}")}),
                    ));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    a.read_until("400 events", |c| c.types().len() == 400).await;
    b.read_until("400 events", |c| c.types().len() == 400).await;
    testkit::eventually_async("callback got 400 events", WAIT, || async {
        (task_ids(&got).len() == 400).then_some(())
    })
    .await;
    let ids = |c: &Sse| -> Vec<String> {
        c.events()
            .iter()
            .map(|(_, v)| v["taskId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(ids(&a), task_ids(&got));
    // Each publisher's own events stay in its order.
    for t in 0..4 {
        let mine: Vec<String> = ids(&a)
            .into_iter()
            .filter(|id| id.starts_with(&format!("{t}-")))
            .collect();
        assert_eq!(
            mine,
            (0..100).map(|i| format!("{t}-{i}")).collect::<Vec<_>>()
        );
    }
    rcv.stop(false).await;
    s.stop().await;
}

#[actix_web::test]
async fn a_full_callback_queue_drops_its_oldest_events_and_counts_them() {
    let etcd = testkit::Etcd::start().unwrap();
    let cfg = EventsConfig {
        callback_queue: 3,
        ..fast_config()
    };
    let s = Served::start(&etcd, cfg).await;
    let port = testkit::free_port().unwrap();
    s.bus
        .subscribe(&format!("http://127.0.0.1:{port}/callback"), "127.0.0.1")
        .await
        .unwrap();
    for i in 0..10 {
        s.bus.publish_value(event(
            "status_update_event",
            json!({"taskId": format!("t{i}")}),
        ));
    }
    // subscribe_event + 10 events through a queue of 3.
    assert_eq!(s.bus.metrics().callback_dropped, 8);
    let failures = s.bus.metrics().callback_failures;
    testkit::eventually_async("two more failed attempts", WAIT, || async {
        (s.bus.metrics().callback_failures >= failures + 2).then_some(())
    })
    .await;
    let got: Received = Default::default();
    let rcv = receiver(port, got.clone()).await;
    testkit::eventually_async("the newest 3 delivered", WAIT, || async {
        (task_ids(&got).len() == 3).then_some(())
    })
    .await;
    assert_eq!(task_ids(&got), vec!["t7", "t8", "t9"]);
    assert_eq!(
        got.lock().unwrap().len(),
        3,
        "nothing older than what was kept"
    );
    rcv.stop(false).await;
    s.stop().await;
}

/// A hand-written HTTP receiver that varies what a real one may do: some
/// POSTs answered 500 (without keeping the event), chunked and unframed
/// (HTTP/1.0, body until close) answers, connections closed right after an
/// answer without saying so, and a timeout. Records accepted task ids.
async fn unruly_receiver(listener: tokio::net::TcpListener, got: Arc<Mutex<Vec<String>>>) {
    let refused = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while let Ok((mut s, _)) = listener.accept().await {
        let (got, refused, answered) = (got.clone(), refused.clone(), answered.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                // One request (the manager always sends Content-Length).
                let (body, used) = loop {
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse().unwrap())
                            .expect("content-length");
                        if buf.len() >= end + 4 + len {
                            break (buf[end + 4..end + 4 + len].to_vec(), end + 4 + len);
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                buf.drain(..used);
                let v: Value = serde_json::from_slice(&body).unwrap();
                let id = v["taskId"].as_str().unwrap_or("").to_string();
                let n: usize = id.trim_start_matches('t').parse().unwrap_or(1);
                if n % 7 == 3 && refused.lock().unwrap().insert(id.clone()) {
                    let no = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nnope";
                    if s.write_all(no).await.is_err() {
                        return;
                    }
                    continue;
                }
                if n == 20 && refused.lock().unwrap().insert("slow".into()) {
                    // Never answered: the client times out and retries.
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    return;
                }
                if !id.is_empty() {
                    got.lock().unwrap().push(id);
                }
                let k = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (answer, close): (&[u8], bool) = match k % 4 {
                    0 => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
                    1 => (
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                        false,
                    ),
                    // Closed right after the answer, without `Connection: close`.
                    2 => (b"HTTP/1.1 204 No Content\r\n\r\n", true),
                    _ => (b"HTTP/1.0 200 OK\r\n\r\nbody until close", true),
                };
                if s.write_all(answer).await.is_err() || close {
                    return;
                }
            }
        });
    }
}

#[actix_web::test]
async fn callbacks_stay_in_order_whatever_the_receiver_answers() {
    let etcd = testkit::Etcd::start().unwrap();
    let cfg = EventsConfig {
        callback_timeout: Duration::from_millis(500),
        ..fast_config()
    };
    let s = Served::start(&etcd, cfg).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<String>>> = Default::default();
    let rcv = tokio::spawn(unruly_receiver(listener, got.clone()));
    s.bus
        .subscribe(
            &format!("http://127.0.0.1:{port}/callback?x=1"),
            "127.0.0.1",
        )
        .await
        .unwrap();
    let want: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
    for id in &want {
        s.bus
            .publish_value(event("status_update_event", json!({"taskId": id})));
    }
    testkit::eventually_async("every event delivered", WAIT, || async {
        (got.lock().unwrap().len() >= want.len()).then_some(())
    })
    .await;
    assert_eq!(*got.lock().unwrap(), want, "each event once, in order");
    let m = s.bus.metrics();
    // 9 refusals (t3, t10, ..., t59) and one timeout.
    assert!(m.callback_failures >= 10, "{m:?}");
    assert_eq!(m.callback_dropped, 0);
    rcv.abort();
    s.stop().await;
}
