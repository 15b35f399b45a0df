//! Fuzzed input (issue 15.7): thousands of mutated Marathon events
//! (testkit::fuzz) to the real subscriber binary's `POST /callback`
//! (callback mode, a real etcd, the Marathon stub). Every delivery gets an
//! answer below 500; the subscriber keeps its real record, keeps taking
//! real events, and its log has no panic. `MDO_FUZZ_SEED` and
//! `MDO_FUZZ_CASES` reproduce or lengthen a run; a failure prints the seed,
//! the case and the body.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::*;
use testkit::fuzz::{self, Case, Fuzzer};

fn seeds() -> Vec<Value> {
    vec![
        json!({"eventType": "status_update_event", "timestamp": "2030-01-01T00:00:00.000Z",
               "slaveId": "node-1", "taskId": "dev_web.fuzz", "taskStatus": "TASK_RUNNING",
               "message": "", "appId": "/dev/web", "host": "127.0.0.1",
               "ipAddresses": [{"ipAddress": "172.17.0.9", "protocol": "IPv4"}],
               "ports": [31999], "version": "2024-01-01T00:00:00.000Z"}),
        json!({"eventType": "status_update_event", "timestamp": "2030-01-01T00:00:00.000Z",
               "slaveId": "node-1", "taskId": "dev_web.fuzz", "taskStatus": "TASK_KILLED",
               "appId": "/dev/web", "host": "127.0.0.1", "ports": [31999],
               "version": "2024-01-01T00:00:00.000Z"}),
        json!({"eventType": "health_status_changed_event", "appId": "/dev/web",
               "taskId": "dev_web.fuzz", "instanceId": "dev_web.marathon-fuzz",
               "version": "2024-01-01T00:00:00.000Z", "alive": true,
               "timestamp": "2030-01-01T00:00:00.000Z"}),
        json!({"eventType": "api_post_event", "clientIp": "127.0.0.1", "uri": "/v2/apps/dev/web",
               "appDefinition": {"id": "/dev/web", "instances": 1},
               "timestamp": "2030-01-01T00:00:00.000Z"}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_events_never_5xx_and_change_no_real_record() {
    let mut run = fuzz::Run::new("callback_fuzz", 2_000);
    let http = run.http().clone();

    let (etcd, stub) = web_stub().await;
    let t1 = stub.start_task("/dev/web", &[31001]);
    let (mut sub, _callback) =
        callback_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]).await;
    let reg = registry(&etcd).await;
    wait_containers(&reg, vec![t1.clone()], "t1 registered").await;

    let seeds = seeds();
    let mut fuzzer = Fuzzer::new(run.seed());
    for case in run.cases() {
        let body = fuzzer.json_body(&seeds[case % seeds.len()]);
        let sent = run
            .send(case, Case::new(Method::POST, &sub.url, "/callback", body))
            .await;
        if let Some(exit) = sub.process.exited() {
            panic!("subscriber exited ({exit}) after {}", sent.what);
        }
    }
    run.finish();

    // Real events still flow. Mutated events that are still well-formed
    // are events like any other (a TASK_RUNNING for `dev_web.fuzz` adds its
    // record), so the registry may hold more than Marathon's truth here; the
    // real record is kept, and a /cleanup brings it back to exactly the truth.
    let t2 = stub.start_task("/dev/web", &[31002]);
    testkit::eventually_async("t1 kept, t2 added", Duration::from_secs(30), || async {
        let now = containers(&reg).await;
        (now.contains(&t1) && now.contains(&t2)).then_some(())
    })
    .await;
    sub.cleanup(false).await;
    wait_containers(
        &reg,
        vec![t1.clone(), t2.clone()],
        "exactly t1 and t2 after /cleanup",
    )
    .await;
    let r = http
        .get(format!("{}/health", sub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    fuzz::assert_no_panic("subscriber", &sub.log_text());
}
