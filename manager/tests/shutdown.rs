//! SIGTERM against the real manager binary on a real etcd: open `/v2/events`
//! streams and task log follows end and the process exits 0, the whole shutdown is bounded by
//! `--shutdown-timeout` / `MANAGER_SHUTDOWN_TIMEOUT`, and tasks keep running
//! for the next manager to adopt.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{pids_of_task, BinManager, TaskCleanup, DEADLINE};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the tests wait for the process to exit after SIGTERM. The
/// assertion is that it exits at all (before the fix it stayed up while a
/// stream was open); the bound under test is far below this.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);

/// How a raw connection's reading ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Open,
    /// The server closed the connection (read returned 0).
    Eof,
    Error(String),
}

/// A raw HTTP/1.1 client that keeps reading in the background.
struct RawClient {
    bytes: Arc<Mutex<Vec<u8>>>,
    end: Arc<Mutex<End>>,
    _reader: tokio::task::JoinHandle<()>,
}

impl RawClient {
    async fn send(port: u16, request: &str) -> RawClient {
        let mut sock = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the manager");
        sock.write_all(request.as_bytes()).await.expect("write");
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let end = Arc::new(Mutex::new(End::Open));
        let (sink, ended) = (bytes.clone(), end.clone());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let result = loop {
                match sock.read(&mut buf).await {
                    Ok(0) => break End::Eof,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) => break End::Error(e.to_string()),
                }
            };
            *ended.lock().unwrap() = result;
        });
        RawClient {
            bytes,
            end,
            _reader: reader,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    fn end(&self) -> End {
        self.end.lock().unwrap().clone()
    }
}

fn sigterm(m: &BinManager) {
    m.process.sigterm();
}

/// Waits (at most [`EXIT_DEADLINE`]) for the manager process to exit.
async fn exit_status(m: &mut BinManager) -> std::process::ExitStatus {
    testkit::eventually_async("the manager exits after SIGTERM", EXIT_DEADLINE, || {
        let status = m.process.child().try_wait().expect("try_wait");
        async move { status }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_event_streams_exits_zero_and_leaves_tasks_for_adoption() {
    let etcd = testkit::Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());
    let mut m = BinManager::start(&etcd, &data, &["--docker", "off"], &[]).await;

    let (s, _) = m
        .post(
            "/v2/apps",
            &json!({"id": "/stay", "cmd": "exec sleep 1000", "cpus": 0.01, "mem": 8, "instances": 1}),
        )
        .await;
    assert_eq!(s, 201);
    let task_id = m.wait_running("/stay", 1, false).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!pids_of_task(&task_id).is_empty(), "task process runs");

    // A client on the event stream, reading, as marathon-lb or the
    // subscriber would be.
    let sse = RawClient::send(
        m.port(),
        "GET /v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await;
    testkit::eventually_async("the stream is attached", DEADLINE, || async {
        sse.text()
            .contains("event: event_stream_attached\r\n")
            .then_some(())
    })
    .await;
    assert!(
        sse.text().starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        sse.text()
    );
    // ...and one following the task's output (also never ends by itself).
    let logs = RawClient::send(
        m.port(),
        &format!("GET /v2/tasks/{task_id}/logs?follow=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    )
    .await;
    testkit::eventually_async("the log follow answers", DEADLINE, || async {
        logs.text().starts_with("HTTP/1.1 200 OK\r\n").then_some(())
    })
    .await;

    sigterm(&m);
    let status = exit_status(&mut m).await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let end = testkit::eventually_async("the event stream ends", DEADLINE, || async {
        Some(sse.end()).filter(|e| *e != End::Open)
    })
    .await;
    assert_eq!(end, End::Eof, "the stream ends with the connection");
    assert!(
        sse.text().ends_with("\r\n0\r\n\r\n"),
        "the event stream ends with its last chunk: {:?}",
        sse.text()
    );
    let end = testkit::eventually_async("the log follow ends", DEADLINE, || async {
        Some(logs.end()).filter(|e| *e != End::Open)
    })
    .await;
    assert_eq!(end, End::Eof, "the log follow ends");
    assert!(
        logs.text().ends_with("\r\n0\r\n\r\n"),
        "a complete chunked body: {:?}",
        logs.text()
    );

    // The task was left running, and the next manager adopts it.
    assert!(
        !pids_of_task(&task_id).is_empty(),
        "the task outlives the manager"
    );
    let next = BinManager::start(&etcd, &data, &["--docker", "off"], &[]).await;
    let tasks = next.wait_running("/stay", 1, false).await;
    assert_eq!(tasks[0]["id"], task_id.as_str(), "the same task, adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_shutdown_timeout() {
    let etcd = testkit::Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _cleanup = TaskCleanup(data.clone());
    let mut m = BinManager::start(
        &etcd,
        &data,
        &["--docker", "off"],
        &[("MANAGER_SHUTDOWN_TIMEOUT", "1")],
    )
    .await;

    // A request whose body never completes keeps its connection busy: a
    // graceful stop alone would wait for it (actix's own default: 30 s).
    let stalled = RawClient::send(
        m.port(),
        "POST /v2/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\":",
    )
    .await;
    // ...and an event stream whose client reads.
    let sse = RawClient::send(
        m.port(),
        "GET /v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await;
    testkit::eventually_async("the stream is attached", DEADLINE, || async {
        sse.text().contains("event_stream_attached").then_some(())
    })
    .await;

    sigterm(&m);
    let status = exit_status(&mut m).await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert_eq!(stalled.text(), "", "the stalled request got no answer");
}

#[test]
fn shutdown_timeout_out_of_range_is_a_usage_error() {
    for bad in ["0", "301", "soon"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_manager"))
            .args(["--shutdown-timeout", bad])
            .output()
            .expect("run the manager");
        assert_eq!(out.status.code(), Some(64), "--shutdown-timeout {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.starts_with("manager: invalid value") && err.contains("--shutdown-timeout"),
            "{err}"
        );
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_manager"))
        .arg("--help")
        .output()
        .expect("run the manager");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--shutdown-timeout") && help.contains("MANAGER_SHUTDOWN_TIMEOUT"),
        "{help}"
    );
}
