//! No forged events (issue 15.3), with the real subscriber binary, a real
//! etcd and the Marathon stub: in SSE mode there is no `POST /callback` at
//! all (404), whatever the token; in callback mode with `--auth-token` the
//! subscriber registers its callback URL with `?token=...`, deliveries that
//! carry it are taken, anything else gets 401 and changes nothing.

mod support;

use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "s3cret-T0ken";

fn killed(task: &str) -> Value {
    json!({"eventType": "status_update_event", "taskStatus": "TASK_KILLED",
           "appId": "/dev/web", "taskId": task, "slaveId": "s", "host": "127.0.0.1",
           "ports": [31001], "version": "2024-01-01T00:00:00.000Z",
           "timestamp": "2030-01-01T00:00:00.000Z"})
}

async fn post(url: &str, bearer: Option<&str>, body: &Value) -> u16 {
    let mut rb = reqwest::Client::new().post(url).json(body);
    if let Some(t) = bearer {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_mode_has_no_callback_route() {
    let (etcd, stub) = web_stub().await;
    let t1 = stub.start_task("/dev/web", &[31001]);
    // Records only from events: no periodic resync to mend them.
    let mut open = spawn_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]);
    let mut guarded = spawn_subscriber(
        &stub.url,
        &etcd,
        &["--auth-token", TOKEN, "--resync-interval", "1h"],
    );
    open.wait_healthy().await;
    guarded.wait_healthy().await;
    let reg = registry(&etcd).await;
    wait_containers(&reg, vec![t1.clone()], "t1 registered").await;

    // A forged TASK_KILLED for a live task, every way it could be sent.
    let forged = killed(&t1);
    assert_eq!(
        post(&format!("{}/callback", open.url), None, &forged).await,
        404
    );
    let cb = format!("{}/callback", guarded.url);
    assert_eq!(post(&cb, None, &forged).await, 401);
    assert_eq!(post(&cb, Some(TOKEN), &forged).await, 404);
    assert_eq!(
        post(&format!("{cb}?token={TOKEN}"), None, &forged).await,
        404
    );

    // Events are handled in order: once a later real event shows, a
    // forged one taken before it would have shown too.
    let t2 = stub.start_task("/dev/web", &[31002]);
    wait_containers(&reg, vec![t1.clone(), t2.clone()], "t1 kept, t2 added").await;
    for sub in [&open, &guarded] {
        let m = sub.metrics().await;
        assert!(!m.contains("malformed_event"), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_mode_with_a_token_takes_only_deliveries_that_carry_it() {
    let (etcd, stub) = web_stub().await;
    let (mut sub, callback) = callback_subscriber(
        &stub.url,
        &etcd,
        &["--auth-token", TOKEN, "--resync-interval", "1h"],
    )
    .await;
    // Marathon cannot add headers to callbacks: the token is in the URL.
    assert_eq!(stub.callbacks(), vec![format!("{callback}?token={TOKEN}")]);
    let reg = registry(&etcd).await;

    // The stub posts to the registered URL, as Marathon does.
    let t1 = stub.start_task("/dev/web", &[31001]);
    let t2 = stub.start_task("/dev/web", &[31002]);
    wait_containers(&reg, vec![t1.clone(), t2.clone()], "records from callbacks").await;

    // Forged kills: no token, a wrong one, the token in another parameter.
    let forged = killed(&t1);
    for url in [
        callback.clone(),
        format!("{callback}?token=wrong"),
        format!("{callback}?x={TOKEN}"),
        format!("{callback}?token={TOKEN}x"),
    ] {
        assert_eq!(post(&url, None, &forged).await, 401, "{url}");
    }
    assert_eq!(post(&callback, Some("wrong"), &forged).await, 401);
    // The token opens nothing else through the query.
    let r = reqwest::get(format!("{}/info?token={TOKEN}", sub.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    stub.kill_task("/dev/web", &t2);
    wait_containers(
        &reg,
        vec![t1.clone()],
        "t1 kept, t2 killed by a real delivery",
    )
    .await;

    sub.process.sigterm();
    let status = testkit::eventually(
        "subscriber exits on SIGTERM",
        std::time::Duration::from_secs(20),
        || sub.process.exited(),
    );
    assert!(status.success(), "{status}\n{}", sub.log_text());
    assert!(stub.callbacks().is_empty(), "unsubscribed with the token");
    let log = sub.log_text();
    assert!(log.contains("token=redacted"), "{log}");
    assert!(!log.contains(TOKEN), "the token was logged:\n{log}");
}
