//! The manager as marathon-lb sees it (real binary, real etcd): the calls
//! and fields `marathon_lb.py` / `utils.py` read, in the shape real Marathon
//! gives them (reference/marathon-api.md §3 and §8.2).
//!
//! - `GET /v2/apps?embed=apps.tasks`: per app `id`, `labels`, `portDefinitions`
//!   (service ports), `healthChecks`, `tasks`; per task `id`, `host`,
//!   `state`, `ports` (host ports, one per port definition), `ipAddresses`,
//!   `healthCheckResults[].alive`. Every task, wherever embedded
//!   (`/v2/apps`, `/v2/apps/{id}`, `/v2/apps/{group}/*`, `/v2/apps/{id}/tasks`),
//!   carries `servicePorts` = the app's service ports (issue 12: what
//!   marathon-lb and current clients expect; Marathon 1.4 sent `[]` there).
//! - `GET /v2/tasks`: `servicePorts` filled from the app (marathon-python's
//!   `list_endpoints` zips them with `ports`).
//! - `GET /v2/events?plan-format=light&event_type=...` with marathon-lb's
//!   headers: plain (not gzip) SSE, `data: ` lines of one-line JSON, as an
//!   ordinary HTTP/1.1 keep-alive chunked response (issue 12; Marathon 1.4's
//!   Jetty servlet sent `Connection: close`).

mod common;

use std::sync::{Arc, Mutex};

use common::{BinManager, TaskCleanup, DEADLINE};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What marathon-lb sends on every API call.
async fn lb_get(m: &BinManager, path: &str) -> Value {
    let resp = m
        .http
        .get(format!("{}{path}", m.base))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.expect("JSON body")
}

/// Decodes a chunked body (panics on bad chunk framing); a trailing partial
/// chunk is left out.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let line = std::str::from_utf8(&raw[..eol]).expect("chunk size line");
        let size = usize::from_str_radix(line, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        let data = &raw[eol + 2..];
        if size == 0 || data.len() < size + 2 {
            break;
        }
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk data ends with CRLF");
        out.extend_from_slice(&data[..size]);
        raw = &data[size + 2..];
    }
    out
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("array expected: {v}"))
        .iter()
        .map(|p| p.as_u64().unwrap_or_else(|| panic!("number expected: {p}")))
        .collect()
}

/// The task fields marathon-lb reads, for a host-networking app with
/// `n_ports` port definitions and health checks.
fn assert_lb_task(task: &Value, n_ports: usize) {
    assert_eq!(task["state"], "TASK_RUNNING", "{task}");
    assert!(task["id"].as_str().is_some_and(|s| !s.is_empty()), "{task}");
    assert!(
        task["host"].as_str().is_some_and(|s| !s.is_empty()),
        "{task}"
    );
    let ports = u64s(&task["ports"]);
    assert_eq!(ports.len(), n_ports, "one host port per definition: {task}");
    assert!(ports.iter().all(|p| (31000..=32000).contains(p)), "{task}");
    let ips = task["ipAddresses"].as_array().expect("ipAddresses");
    assert!(!ips.is_empty(), "{task}");
    for ip in ips {
        assert!(
            ip["ipAddress"]
                .as_str()
                .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()),
            "{task}"
        );
        assert_eq!(ip["protocol"], "IPv4", "{task}");
    }
    let results = task["healthCheckResults"]
        .as_array()
        .expect("healthCheckResults");
    assert!(!results.is_empty(), "{task}");
    assert!(results.iter().all(|r| r["alive"] == true), "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_lb_reads_apps_tasks_and_events() {
    let etcd = testkit::Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());
    let m = BinManager::start(&etcd, &data, &["--docker", "off"], &[]).await;

    // marathon-lb's event stream, opened first: its exact query and headers.
    let mut sse = TcpStream::connect(("127.0.0.1", m.port()))
        .await
        .expect("connect");
    sse.write_all(
        b"GET /v2/events?plan-format=light&event_type=api_post_event&event_type=health_status_changed_event&event_type=status_update_event HTTP/1.1\r\n\
          Host: 127.0.0.1\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .await
    .expect("write");
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = sse.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let _abort = AbortOnDrop(reader);

    let (s, _) = m
        .post(
            "/v2/apps",
            &json!({
                "id": "/lb/web",
                "cmd": "exec sleep 1000",
                "cpus": 0.01, "mem": 8, "instances": 2,
                "labels": {"HAPROXY_GROUP": "external"},
                "portDefinitions": [
                    {"port": 0, "name": "http", "protocol": "tcp"},
                    {"port": 0, "name": "admin", "protocol": "tcp"}
                ],
                "healthChecks": [{
                    "protocol": "COMMAND", "command": {"value": "true"},
                    "intervalSeconds": 1, "gracePeriodSeconds": 30,
                    "timeoutSeconds": 5, "maxConsecutiveFailures": 3
                }]
            }),
        )
        .await;
    assert_eq!(s, 201);
    m.wait_running("/lb/web", 2, true).await;

    // Full refresh: GET /v2/apps?embed=apps.tasks.
    let listing = lb_get(&m, "/v2/apps?embed=apps.tasks").await;
    let app = listing["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .find(|a| a["id"] == "/lb/web")
        .expect("the app is listed")
        .clone();
    assert_eq!(app["labels"]["HAPROXY_GROUP"], "external");
    assert_eq!(app["healthChecks"][0]["protocol"], "COMMAND");
    let service_ports: Vec<u64> = app["portDefinitions"]
        .as_array()
        .expect("portDefinitions")
        .iter()
        .map(|p| p["port"].as_u64().expect("assigned service port"))
        .collect();
    assert_eq!(service_ports.len(), 2);
    assert!(
        service_ports.iter().all(|p| (10000..=20000).contains(p)),
        "{service_ports:?}"
    );
    assert_ne!(service_ports[0], service_ports[1]);
    let embedded = app["tasks"].as_array().expect("embedded tasks").clone();
    assert_eq!(embedded.len(), 2);
    for task in &embedded {
        assert_lb_task(task, 2);
        assert_eq!(task["appId"], "/lb/web");
        assert_eq!(u64s(&task["servicePorts"]), service_ports, "{task}");
    }

    // The single-app refresh, with Marathon's always-embedded tasks, and the
    // other places tasks are embedded: each carries the app's service ports.
    let single = lb_get(&m, "/v2/apps/lb/web").await;
    assert_eq!(single["app"]["tasks"].as_array().map(Vec::len), Some(2));
    for task in single["app"]["tasks"].as_array().unwrap() {
        assert_lb_task(task, 2);
        assert_eq!(u64s(&task["servicePorts"]), service_ports, "{task}");
    }
    let group = lb_get(&m, "/v2/apps/lb/*?embed=group.apps.tasks").await;
    let app_tasks = lb_get(&m, "/v2/apps/lb/web/tasks").await;
    let with_embed = lb_get(&m, "/v2/apps/lb/web?embed=app.tasks").await;
    for (path, tasks) in [
        ("/v2/apps/lb/*", &group["*"][0]["tasks"]),
        ("/v2/apps/lb/web/tasks", &app_tasks["tasks"]),
        (
            "/v2/apps/lb/web?embed=app.tasks",
            &with_embed["app"]["tasks"],
        ),
    ] {
        let tasks = tasks
            .as_array()
            .unwrap_or_else(|| panic!("{path}: tasks expected"));
        assert_eq!(tasks.len(), 2, "{path}");
        for task in tasks {
            assert_lb_task(task, 2);
            assert_eq!(u64s(&task["servicePorts"]), service_ports, "{path}: {task}");
        }
    }

    // GET /v2/tasks: the same tasks, servicePorts from the app.
    let tasks = lb_get(&m, "/v2/tasks").await;
    let mine: Vec<&Value> = tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["appId"] == "/lb/web")
        .collect();
    assert_eq!(mine.len(), 2);
    for task in mine {
        assert_lb_task(task, 2);
        assert_eq!(u64s(&task["servicePorts"]), service_ports, "{task}");
        let twin = embedded
            .iter()
            .find(|e| e["id"] == task["id"])
            .expect("listed in the app too");
        assert_eq!(twin["ports"], task["ports"]);
        assert_eq!(twin["host"], task["host"]);
    }

    // The stream: plain text/event-stream (no gzip although asked), the
    // filtered events as `data: <one-line JSON>` lines (what marathon-lb
    // keeps), status updates of the launches among them.
    let (head, body) =
        testkit::eventually_async("status updates on the stream", DEADLINE, || async {
            let text = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
            let (head, raw_body) = text.split_once("\r\n\r\n")?;
            let head = format!("{}\r\n", head.to_ascii_lowercase());
            // Complete chunks only (the framing is asserted below).
            let body = if head.contains("\r\ntransfer-encoding: chunked\r\n") {
                String::from_utf8(dechunk(raw_body.as_bytes())).expect("UTF-8 body")
            } else {
                raw_body.to_string()
            };
            let ups = body.matches("event: status_update_event\r\n").count();
            (ups >= 2 * 3 && body.contains("event: api_post_event\r\n")).then_some((head, body))
        })
        .await;
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/event-stream;charset=utf-8\r\n"),
        "{head}"
    );
    assert!(!head.contains("gzip"), "{head}");
    // An ordinary HTTP/1.1 keep-alive streaming response: chunked, and no
    // `Connection: close`.
    assert!(!head.contains("\r\nconnection: close"), "{head}");
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert!(!head.contains("\r\ncontent-length:"), "{head}");
    assert!(
        body.trim_start_matches("\r\n").starts_with("event: "),
        "the body is SSE frames (and heartbeats) once dechunked: {body:?}"
    );
    let data: Vec<Value> = body
        .split("\r\n")
        .filter(|l| l.starts_with("data: "))
        .map(|l| serde_json::from_str(&l[6..]).expect("one-line JSON"))
        .collect();
    let types: Vec<&str> = data
        .iter()
        .filter_map(|e| e["eventType"].as_str())
        .collect();
    assert!(
        types.iter().all(|t| [
            "api_post_event",
            "health_status_changed_event",
            "status_update_event"
        ]
        .contains(t)),
        "only the requested types: {types:?}"
    );
    let post = data
        .iter()
        .find(|e| e["eventType"] == "api_post_event")
        .expect("api_post_event");
    assert_eq!(post["appDefinition"]["id"], "/lb/web");
    let running: Vec<&Value> = data
        .iter()
        .filter(|e| e["eventType"] == "status_update_event" && e["taskStatus"] == "TASK_RUNNING")
        .collect();
    assert_eq!(running.len(), 2, "{types:?}");
    for e in running {
        assert_eq!(e["appId"], "/lb/web");
        assert_eq!(u64s(&e["ports"]).len(), 2, "{e}");
    }
}
