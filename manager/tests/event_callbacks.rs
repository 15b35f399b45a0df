//! Callback delivery of the event bus over real HTTP and a real etcd:
//! order, retries, persistence across a new bus, full queues, unruly
//! receivers; one publication order for every consumer.

mod events_harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use events_harness::*;
use manager::events::EventsConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Received = Arc<Mutex<Vec<Value>>>;

/// Starts a receiver on `port` (the manager already delivers there) and
/// waits until it has `n` task events.
async fn receiver_of(port: u16, n: usize, what: &str) -> (actix_web::dev::ServerHandle, Received) {
    let got: Received = Default::default();
    let handle = receiver(port, got.clone()).await;
    testkit::eventually_async(what, WAIT, || async {
        (task_ids(&got).len() == n).then_some(())
    })
    .await;
    (handle, got)
}

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
    let (late, dead_got) = receiver_of(dead_port, 50, "late receiver caught up").await;
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
    let list = testkit::http::json(http.get(s.url("/v2/eventSubscriptions"))).await;
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
    let list = testkit::http::json(http.get(s2.url("/v2/eventSubscriptions"))).await;
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
    let (rcv, got) = receiver_of(port, 3, "the newest 3 delivered").await;
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
