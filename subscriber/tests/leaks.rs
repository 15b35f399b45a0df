//! Issue 15.6: no password from the Marathon URL in the subscriber's log or
//! errors, and `/cleanup` answers 503 in bounded time while etcd is down.
//! Real subscriber binary, real etcd, the Marathon stub.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;
use testkit::marathon_stub::Stub;
use testkit::Etcd;

const SECRET: &str = "s3cret-pw-915";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marathon_password_never_reaches_the_log() {
    let etcd = Etcd::start().unwrap();
    let stub = Stub::start().await;
    let with_password = stub
        .url
        .replacen("http://", &format!("http://mdo-user:{SECRET}@"), 1);
    let mut sub = spawn_subscriber(&with_password, &etcd, &[]);
    sub.wait_healthy().await;
    sub.cleanup(false).await;
    let log = sub.log_text();
    assert!(log.contains("subscriber listening"), "{log}");
    assert!(!log.contains(SECRET), "password in the log:\n{log}");
    assert!(!log.contains("mdo-user"), "user info in the log:\n{log}");

    // A refused URL: one line, exit 64, still no password.
    let out = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .args(["--marathon-url", &format!("ftp://mdo-user:{SECRET}@h:1")])
        .args(["--etcd-endpoints", &etcd.endpoint()])
        .env_remove("MDO_AUTH_TOKEN")
        .env_remove("MARATHON_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_answers_503_while_etcd_is_down() {
    cleanup_answers_503_when(|etcd| etcd.stop()).await;
}

/// A frozen etcd (SIGSTOP) accepts connections and never answers: without a
/// bound, `/cleanup` would wait forever (a stopped one refuses at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_answers_503_while_etcd_is_frozen() {
    cleanup_answers_503_when(|etcd| etcd.pause()).await;
}

async fn cleanup_answers_503_when(fault: impl FnOnce(&mut Etcd)) {
    let mut etcd = Etcd::start().unwrap();
    let stub = Stub::start().await;
    let mut sub = spawn_subscriber(&stub.url, &etcd, &[]);
    sub.wait_healthy().await;
    sub.cleanup(false).await;

    fault(&mut etcd);
    // The client gives up long after the subscriber's own bound: an answer
    // at all (not a client timeout) is what is tested.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    for dry_run in [false, true] {
        let r = http
            .post(format!("{}/cleanup?dry_run={dry_run}", sub.url))
            .send()
            .await
            .expect("/cleanup answers while etcd is down");
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap_or("").contains("etcd"),
            "{body}"
        );
    }
}
