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
    // A delivery is counted once its answer is read, which may come a
    // moment after the receiver has the event (CI once read 87 of 100).
    testkit::eventually_async("every delivery counted", WAIT, || async {
        (s.bus.metrics().callback_deliveries >= 100).then_some(())
    })
    .await;
    let m = s.bus.metrics();
    assert_eq!(m.callback_dropped, 0, "{m:?}");
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

/// The next request read from `s` (the manager always sends
/// Content-Length): its body, `None` when the connection ended.
async fn next_request(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some(body);
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Position of an event in publication order: the subscribe_event is 0,
/// task `t{i}` is i + 1.
fn position(body: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(body).unwrap();
    match v["taskId"].as_str() {
        Some(id) => id.trim_start_matches('t').parse::<usize>().unwrap() + 1,
        None => {
            assert_eq!(v["eventType"], "subscribe_event");
            0
        }
    }
}

/// Checks what a receiver saw, (position, answered 2xx) for every request
/// read in reading order, against the delivery contract for `n` events:
/// runs of consecutive events, each run starting at the first event or
/// again no later than the first event of the previous run not answered
/// 2xx (go-back-N: repeats, never a gap), every event answered 2xx at least
/// once, and a receiver that keeps only the next event it expects gets them
/// all, once, in publication order.
fn assert_go_back_n(seen: &[(usize, bool)], n: usize) {
    assert_eq!(seen.first().map(|s| s.0), Some(0), "{seen:?}");
    let mut run_start = 0;
    for i in 1..=seen.len() {
        if i < seen.len() && seen[i].0 == seen[i - 1].0 + 1 {
            continue;
        }
        let run = &seen[run_start..i];
        let first_unanswered = run
            .iter()
            .find(|s| !s.1)
            .map_or(run[run.len() - 1].0 + 1, |s| s.0);
        if i < seen.len() {
            assert!(
                seen[i].0 <= first_unanswered,
                "request {i} skipped ahead to {} past {first_unanswered}: {seen:?}",
                seen[i].0
            );
        }
        run_start = i;
    }
    for p in 0..n {
        assert!(
            seen.contains(&(p, true)),
            "event {p} never accepted: {seen:?}"
        );
    }
    let mut kept = Vec::new();
    for &(p, ok) in seen {
        if ok && p == kept.len() {
            kept.push(p);
        }
    }
    assert_eq!(kept, (0..n).collect::<Vec<_>>(), "{seen:?}");
}

/// A hand-written HTTP receiver that varies what a real one may do: some
/// POSTs answered 500 (without keeping the event), chunked and unframed
/// (HTTP/1.0, body until close) answers, connections closed right after an
/// answer without saying so, and a timeout. Records every request read as
/// (connection number, position, answered 2xx), and counts the connections whose first answer
/// other than 2xx was a 500 or none at all while kept open (a failure the
/// manager certainly saw: it reads responses in order).
async fn unruly_receiver(
    listener: tokio::net::TcpListener,
    seen: Arc<Mutex<Vec<(usize, usize, bool)>>>,
    visible_failures: Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let refused = Arc::new(Mutex::new(std::collections::HashSet::<usize>::new()));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut conns = 0;
    while let Ok((mut s, _)) = listener.accept().await {
        let no = conns;
        conns += 1;
        let (seen, refused, answered, visible) = (
            seen.clone(),
            refused.clone(),
            answered.clone(),
            visible_failures.clone(),
        );
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut all_ok = true;
            while let Some(body) = next_request(&mut s, &mut buf).await {
                let p = position(&body);
                let n = p.saturating_sub(1);
                if p > 0 && n % 7 == 3 && refused.lock().unwrap().insert(p) {
                    seen.lock().unwrap().push((no, p, false));
                    if std::mem::take(&mut all_ok) {
                        visible.fetch_add(1, SeqCst);
                    }
                    let no = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nnope";
                    if s.write_all(no).await.is_err() {
                        return;
                    }
                    continue;
                }
                if n == 20 && refused.lock().unwrap().insert(usize::MAX) {
                    // Never answered: the client times out and sends again.
                    seen.lock().unwrap().push((no, p, false));
                    if all_ok {
                        visible.fetch_add(1, SeqCst);
                    }
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    return;
                }
                seen.lock().unwrap().push((no, p, true));
                let k = answered.fetch_add(1, SeqCst);
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
    let seen: Arc<Mutex<Vec<(usize, usize, bool)>>> = Default::default();
    let visible: Arc<std::sync::atomic::AtomicUsize> = Default::default();
    let rcv = tokio::spawn(unruly_receiver(listener, seen.clone(), visible.clone()));
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
    // The subscribe_event and 60 task events, each acknowledged once.
    testkit::eventually_async("every event delivered", WAIT, || async {
        (s.bus.metrics().callback_deliveries == 61).then_some(())
    })
    .await;
    // The manager opens one connection after the other: by connection,
    // the requests come in the order it sent them.
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|s| s.0);
    let seen: Vec<(usize, bool)> = seen.into_iter().map(|(_, p, ok)| (p, ok)).collect();
    assert_go_back_n(&seen, 61);
    let m = s.bus.metrics();
    let visible = visible.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        visible >= 1 && m.callback_failures >= visible as u64,
        "{visible}: {m:?}"
    );
    assert_eq!(m.callback_dropped, 0);
    rcv.abort();
    s.stop().await;
}

/// What [`holding_receiver`] does on its first connection once it has read
/// [`HELD`] requests without answering any.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Answers them all 200, then each request as it comes.
    AllOk,
    /// Answers them 200 except the fourth (500), then each request 200.
    RefuseFourth,
    /// Answers the first four 200 and drops the connection.
    DropAfterFour,
}

const HELD: usize = 8;
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

/// A receiver that answers nothing on its first connection until it has
/// read [`HELD`] requests (a sender that waits for each answer never gets
/// there), then follows `script`; later connections get 200 for each
/// request. Records (connection number, position) of every request read.
async fn holding_receiver(
    listener: tokio::net::TcpListener,
    script: Script,
    seen: Arc<Mutex<Vec<(usize, usize)>>>,
) {
    let mut conns = 0;
    while let Ok((mut s, _)) = listener.accept().await {
        let (no, seen) = (conns, seen.clone());
        conns += 1;
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut held = if no == 0 { HELD } else { 0 };
            while let Some(body) = next_request(&mut s, &mut buf).await {
                seen.lock().unwrap().push((no, position(&body)));
                if held == 0 {
                    if s.write_all(OK).await.is_err() {
                        return;
                    }
                    continue;
                }
                held -= 1;
                if held > 0 {
                    continue;
                }
                let mut answers = vec![OK; HELD];
                match script {
                    Script::AllOk => {}
                    Script::RefuseFourth => {
                        answers[3] = b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n";
                    }
                    Script::DropAfterFour => answers.truncate(4),
                }
                if s.write_all(&answers.concat()).await.is_err() || script == Script::DropAfterFour
                {
                    return;
                }
            }
        });
    }
}

/// A bus delivering to a [`holding_receiver`] following `script`: the
/// subscribe_event and 60 task events published at once, the run over once
/// all 61 are acknowledged. (requests read per connection, failures).
async fn pipelined_run(script: Script) -> (Vec<Vec<usize>>, u64) {
    let etcd = testkit::Etcd::start().unwrap();
    let s = Served::start(&etcd, fast_config()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<(usize, usize)>>> = Default::default();
    let rcv = tokio::spawn(holding_receiver(listener, script, seen.clone()));
    s.bus
        .subscribe(&format!("http://127.0.0.1:{port}/callback"), "127.0.0.1")
        .await
        .unwrap();
    for i in 0..60 {
        s.bus.publish_value(event(
            "status_update_event",
            json!({"taskId": format!("t{i}")}),
        ));
    }
    testkit::eventually_async("61 events acknowledged", WAIT, || async {
        (s.bus.metrics().callback_deliveries >= 61).then_some(())
    })
    .await;
    let m = s.bus.metrics();
    assert_eq!(m.callback_deliveries, 61, "each event counted once: {m:?}");
    assert_eq!(m.callback_dropped, 0);
    let mut per_conn: Vec<Vec<usize>> = Vec::new();
    for &(no, p) in seen.lock().unwrap().iter() {
        if per_conn.len() <= no {
            per_conn.resize(no + 1, Vec::new());
        }
        per_conn[no].push(p);
    }
    rcv.abort();
    s.stop().await;
    (per_conn, m.callback_failures)
}

#[actix_web::test]
async fn pipelined_callbacks_arrive_once_in_publication_order() {
    let (conns, failures) = pipelined_run(Script::AllOk).await;
    // One connection; HELD requests were in flight before the first answer.
    assert_eq!(conns, vec![(0..61).collect::<Vec<_>>()]);
    assert_eq!(failures, 0);
}

#[actix_web::test]
async fn a_refused_event_in_the_window_is_sent_again_with_all_after_it() {
    let (conns, failures) = pipelined_run(Script::RefuseFourth).await;
    assert_eq!(conns.len(), 2, "{conns:?}");
    // The first connection: in order, at least the held ones (the receiver
    // may read more before the manager closes it).
    assert!(conns[0].len() >= HELD, "{conns:?}");
    assert_eq!(conns[0], (0..conns[0].len()).collect::<Vec<_>>());
    // Then again from the refused fourth event (position 3), all of them.
    assert_eq!(conns[1], (3..61).collect::<Vec<_>>());
    assert_eq!(failures, 1);
}

#[actix_web::test]
async fn a_connection_dropped_mid_window_resumes_at_the_first_unanswered_event() {
    let (conns, _) = pipelined_run(Script::DropAfterFour).await;
    assert_eq!(conns.len(), 2, "{conns:?}");
    assert!(conns[0].len() >= HELD, "{conns:?}");
    assert_eq!(conns[0], (0..conns[0].len()).collect::<Vec<_>>());
    // Four answered: the new connection starts no later than the fifth
    // event and carries every event from there, in order.
    let from = conns[1][0];
    assert!(from <= 4, "{conns:?}");
    assert_eq!(conns[1], (from..61).collect::<Vec<_>>());
}
