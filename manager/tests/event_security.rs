//! Event subscriptions are not a way into the network (issue 15.4), with a
//! real etcd: refused callback URLs (scheme, link-local and metadata
//! addresses, the manager's own etcd) get 422 with the reason unless
//! `--callback-allow` names them; the subscription cap; redirects are not
//! followed; long response bodies are not read whole; and deliveries check
//! the addresses they connect to (stored subscriptions and host names).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestManager;
use manager::events::{CallbackPolicy, EventBus, EventMetrics, EventsConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);
const PREFIX: &str = "/mdo/test-event-security";

fn sub_path(url: &str) -> String {
    let q: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    format!("/v2/eventSubscriptions?callbackUrl={q}")
}

async fn subscribed(m: &TestManager) -> Vec<String> {
    let (s, v) = m.get("/v2/eventSubscriptions").await;
    assert_eq!(s, 200, "{v}");
    v["callbackUrls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

/// The refused URLs of the issue, each with a word its reason must hold.
fn refused_urls(etcd_endpoint: &str) -> Vec<(String, &'static str)> {
    vec![
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "metadata",
        ),
        ("http://[fe80::1]:8080/cb".to_string(), "link-local"),
        (format!("{etcd_endpoint}/v3/kv/put"), "etcd"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callback_urls_get_422_with_the_reason_unless_allowed() {
    let m = TestManager::start().await;
    let etcd = m.etcd.endpoint();
    let mut cases = refused_urls(&etcd);
    cases.push(("ftp://127.0.0.1/cb".to_string(), "only http and https"));
    for (url, why) in &cases {
        let (s, body) = m.post(&sub_path(url), &Value::Null).await;
        assert_eq!(s, 422, "{url}: {body}");
        assert_eq!(body["message"], "Object is not valid", "{body}");
        assert_eq!(body["details"][0]["path"], "/callbackUrl", "{body}");
        let reason = body["details"][0]["errors"][0].as_str().unwrap();
        assert!(reason.contains(why), "{url}: {reason}");
    }
    // Nothing changed: no subscription, nothing in etcd.
    assert!(subscribed(&m).await.is_empty());
    assert!(m.etcd_keys("/subscriptions/").await.is_empty());
    let (etcd_handle, dir) = m.stop().await;

    // Allowed by --callback-allow (CIDRs and an address).
    let m = TestManager::start_on(etcd_handle, dir, |c| {
        c.callback_allow = vec![
            "169.254.0.0/16".into(),
            "fe80::/10".into(),
            "127.0.0.1".into(),
        ]
    })
    .await;
    let allowed: Vec<String> = refused_urls(&etcd).into_iter().map(|(u, _)| u).collect();
    for url in &allowed {
        let (s, body) = m.post(&sub_path(url), &Value::Null).await;
        assert_eq!(s, 200, "{url}: {body}");
    }
    assert_eq!(subscribed(&m).await, allowed);
    assert_eq!(m.etcd_keys("/subscriptions/").await.len(), 3);
    let (s, body) = m.post(&sub_path("ftp://127.0.0.1/cb"), &Value::Null).await;
    assert_eq!(s, 422, "never another scheme: {body}");
    // Unsubscribing needs no allowance.
    for url in &allowed {
        let (s, body) = m.delete(&sub_path(url)).await;
        assert_eq!(s, 200, "{url}: {body}");
    }
    assert!(subscribed(&m).await.is_empty());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_event_subscriptions_exist() {
    let m = TestManager::start_with(|c| c.max_event_subscriptions = 3).await;
    let url = |i: u16| format!("http://127.0.0.1:{}/cb", 9 + i);
    for i in 0..3 {
        let (s, body) = m.post(&sub_path(&url(i)), &Value::Null).await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, body) = m.post(&sub_path(&url(3)), &Value::Null).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["details"][0]["path"], "/callbackUrl");
    let reason = body["details"][0]["errors"][0].as_str().unwrap();
    assert!(reason.contains("at most 3"), "{reason}");
    assert_eq!(subscribed(&m).await.len(), 3, "nothing added");
    assert_eq!(m.etcd_keys("/subscriptions/").await.len(), 3);
    // Subscribing an existing URL again is no new subscription.
    let (s, body) = m.post(&sub_path(&url(0)), &Value::Null).await;
    assert_eq!(s, 200, "{body}");
    // One gone, one more fits.
    let (s, _) = m.delete(&sub_path(&url(1))).await;
    assert_eq!(s, 200);
    let (s, body) = m.post(&sub_path(&url(3)), &Value::Null).await;
    assert_eq!(s, 200, "{body}");
    m.stop().await;
}

/// A raw HTTP server answering every request with `answer`, counting the
/// requests and keeping their bodies; the connection stays open after the
/// answer (nothing more is sent on it).
struct RawServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    async fn start(answer: Vec<u8>) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let bodies: Arc<Mutex<Vec<Value>>> = Default::default();
        let (r, b) = (requests.clone(), bodies.clone());
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (r, b, answer) = (r.clone(), b.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        }
                        let body = buf[end + 4..end + 4 + len].to_vec();
                        buf.drain(..end + 4 + len);
                        r.fetch_add(1, Ordering::SeqCst);
                        b.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RawServer {
            port,
            requests,
            bodies,
            task,
        }
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn task_ids(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| v["taskId"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn event(i: usize) -> Value {
    json!({"eventType": "status_update_event", "taskId": format!("t{i}"),
           "timestamp": "2024-01-01T00:00:00.000Z"})
}

async fn bus(etcd: &testkit::Etcd, cfg: EventsConfig) -> EventBus {
    let client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    EventBus::new(client, PREFIX.to_string(), cfg)
        .await
        .unwrap()
}

fn fast(cfg: EventsConfig) -> EventsConfig {
    EventsConfig {
        callback_backoff: Duration::from_millis(20),
        callback_backoff_max: Duration::from_millis(100),
        ..cfg
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let etcd = testkit::Etcd::start().unwrap();
    let target = RawServer::start(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
    let answer = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{}/elsewhere\r\nContent-Length: 0\r\n\r\n",
        target.port
    );
    let plain = RawServer::start(answer.clone().into_bytes()).await;
    let with_credentials = RawServer::start(answer.into_bytes()).await;
    let bus = bus(&etcd, fast(EventsConfig::default())).await;
    // Plain http (the manager's own client) and a URL with credentials
    // (reqwest), each redirected to `target`.
    for url in [
        format!("http://127.0.0.1:{}/cb", plain.port),
        format!("http://u:p@127.0.0.1:{}/cb", with_credentials.port),
    ] {
        bus.subscribe(&url, "127.0.0.1").await.unwrap();
    }
    // A redirect is a failed delivery: the same event comes again. Once the
    // second attempt arrived, a followed redirect would have reached `target`.
    testkit::eventually_async("redirected deliveries retried", WAIT, || async {
        let followed = target.count() > 0;
        (followed || (plain.count() >= 3 && with_credentials.count() >= 3)).then_some(())
    })
    .await;
    assert_eq!(target.count(), 0, "the redirect target saw a request");
    assert_eq!(bus.metrics().callback_deliveries, 0);
    assert!(bus.metrics().callback_failures >= 4);
    bus.shutdown().await;
}

/// Two receivers answering 200 with a body of 1 GB announced, 200 KiB of
/// it sent, then silence on an open connection (reading it whole would wait
/// for the timeout): one plain `http` (the manager's own client, up to
/// `pipeline` POSTs in flight), one with credentials (reqwest). Three events
/// published; returns once the bus has counted `deliveries`.
async fn long_bodies(pipeline: usize, deliveries: u64) -> (RawServer, RawServer, EventMetrics) {
    let etcd = testkit::Etcd::start().unwrap();
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'x', 200 * 1024));
    let plain = RawServer::start(answer.clone()).await;
    let with_credentials = RawServer::start(answer).await;
    let cfg = EventsConfig {
        callback_timeout: Duration::from_secs(120),
        callback_pipeline: pipeline,
        ..fast(EventsConfig::default())
    };
    let bus = bus(&etcd, cfg).await;
    for url in [
        format!("http://127.0.0.1:{}/cb", plain.port),
        format!("http://u:p@127.0.0.1:{}/cb", with_credentials.port),
    ] {
        bus.subscribe(&url, "127.0.0.1").await.unwrap();
    }
    for i in 0..3 {
        bus.publish_value(event(i));
    }
    testkit::eventually_async("every event delivered", WAIT, || async {
        (bus.metrics().callback_deliveries >= deliveries).then_some(())
    })
    .await;
    let m = bus.metrics();
    bus.shutdown().await;
    (plain, with_credentials, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_response_bodies_are_not_read_whole() {
    // One POST at a time: each event exactly once.
    // 2 subscribe_events + 3 to the first URL, 1 + 3 to the second.
    let (plain, with_credentials, m) = long_bodies(1, 9).await;
    assert_eq!(plain.task_ids(), ["t0", "t1", "t2"]);
    assert_eq!(with_credentials.task_ids(), ["t0", "t1", "t2"]);
    assert_eq!(m.callback_failures, 0);
    assert_eq!(m.callback_deliveries, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_response_bodies_end_a_pipelined_connection_and_the_rest_goes_again() {
    let (plain, with_credentials, m) = long_bodies(32, 9).await;
    assert_eq!(with_credentials.task_ids(), ["t0", "t1", "t2"]);
    // The connection is dropped after each long answer; the receiver may
    // have read (and kept) the requests behind it, which then come again:
    // repeats, in order, never a gap, and each event acknowledged once.
    let ids: Vec<usize> = plain
        .task_ids()
        .iter()
        .map(|id| id[1..].parse().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&0), "{ids:?}");
    assert_eq!(ids.last(), Some(&2), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[1] <= w[0] + 1), "{ids:?}");
    assert_eq!(m.callback_failures, 0);
    assert_eq!(m.callback_deliveries, 9, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_check_the_addresses_they_connect_to() {
    let etcd = testkit::Etcd::start().unwrap();
    let receiver = RawServer::start(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
    // The receiver stands for the manager's etcd: its address is refused.
    // Subscriptions planted in etcd skip the registration check; a host
    // name is checked only once resolved.
    let port = receiver.port;
    let planted = [
        format!("http://127.0.0.1:{port}/literal"),
        format!("http://localhost:{port}/name"),
        format!("http://u:p@localhost:{port}/name-through-reqwest"),
        format!("http://u:p@127.0.0.1:{port}/literal-through-reqwest"),
    ];
    let keys = registry::ManagerKeys::new(PREFIX).unwrap();
    let mut kv = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    for (i, url) in planted.iter().enumerate() {
        let record = json!({"callbackUrl": url, "subscribedAt": i});
        kv.put(keys.subscription(url), record.to_string(), None)
            .await
            .unwrap();
    }
    let refusing = CallbackPolicy::new(&[], &[format!("http://127.0.0.1:{port}")]).unwrap();
    let cfg = EventsConfig {
        callback_policy: refusing,
        ..fast(EventsConfig::default())
    };
    let b = bus(&etcd, cfg).await;
    assert_eq!(b.callback_urls().len(), 4);
    b.publish_value(event(0));
    testkit::eventually_async("each delivery refused a few times", WAIT, || async {
        (receiver.count() > 0 || b.metrics().callback_failures >= 12).then_some(())
    })
    .await;
    assert_eq!(receiver.count(), 0, "a refused address got a request");
    assert_eq!(b.metrics().callback_deliveries, 0);
    b.shutdown().await;

    // Allowed by name or by address, the same subscriptions deliver.
    let allowing = CallbackPolicy::new(
        &["localhost".into(), "127.0.0.1/32".into()],
        &[format!("http://127.0.0.1:{port}")],
    )
    .unwrap();
    let cfg = EventsConfig {
        callback_policy: allowing,
        ..fast(EventsConfig::default())
    };
    let b = bus(&etcd, cfg).await;
    b.publish_value(event(1));
    testkit::eventually_async("delivered once allowed", WAIT, || async {
        (receiver.task_ids().len() == 4).then_some(())
    })
    .await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_consumers_never_see_a_callback_token() {
    let etcd = testkit::Etcd::start().unwrap();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
    let watcher = RawServer::start(ok.clone()).await;
    let subscriber = RawServer::start(ok).await;
    let bus = bus(&etcd, fast(EventsConfig::default())).await;
    bus.subscribe(
        &format!("http://127.0.0.1:{}/cb", watcher.port),
        "127.0.0.1",
    )
    .await
    .unwrap();
    let with_token = format!(
        "http://127.0.0.1:{}/callback?token=s3cret-x",
        subscriber.port
    );
    let answer = bus.subscribe(&with_token, "127.0.0.1").await.unwrap();
    // The caller's own answer and the list keep the URL it registered.
    assert_eq!(answer["callbackUrl"], with_token.as_str());
    assert!(bus.callback_urls().contains(&with_token));
    let shown = format!(
        "http://127.0.0.1:{}/callback?token=redacted",
        subscriber.port
    );
    testkit::eventually_async("both saw the second subscribe_event", WAIT, || async {
        (watcher.count() >= 2 && subscriber.count() >= 1).then_some(())
    })
    .await;
    for r in [&watcher, &subscriber] {
        let bodies = r.bodies.lock().unwrap().clone();
        let urls: Vec<&str> = bodies
            .iter()
            .filter_map(|b| b["callbackUrl"].as_str())
            .collect();
        assert!(urls.contains(&shown.as_str()), "{urls:?}");
        assert!(!format!("{bodies:?}").contains("s3cret"), "{bodies:?}");
    }
    bus.shutdown().await;
}
