//! The event bus over real HTTP (actix on port 0) and a real etcd: exact SSE
//! bytes (chunked, kept alive for HTTP/1.1; close-delimited for HTTP/1.0),
//! filters, attach/detach, slow consumers, how streams end. Callbacks are in
//! `event_callbacks.rs`.

mod events_harness;

use std::time::Duration;

use events_harness::*;
use manager::events::EventsConfig;
use serde_json::{json, Value};

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
