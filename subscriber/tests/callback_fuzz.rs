//! Fuzzed input (issue 15.7): thousands of mutated Marathon events
//! (testkit::fuzz) to the real subscriber binary's `POST /callback`
//! (callback mode, a real etcd, the Marathon stub). Every delivery gets an
//! answer below 500; the subscriber keeps its real record, keeps taking
//! real events, and its log has no panic. `MDO_FUZZ_SEED` and
//! `MDO_FUZZ_CASES` reproduce or lengthen a run; a failure prints the seed,
//! the case and the body.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use testkit::fuzz::{self, Fuzzer};
use testkit::marathon_stub::{bridge_app, Stub};
use testkit::Etcd;

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
    let seed = fuzz::seed();
    let cases = fuzz::cases(2_000);
    eprintln!("callback_fuzz: MDO_FUZZ_SEED={seed} MDO_FUZZ_CASES={cases}");

    let etcd = Etcd::start().unwrap();
    let stub = Stub::start().await;
    stub.add_app(bridge_app("/dev/web", &[("api", 5000)]));
    let t1 = stub.start_task("/dev/web", &[31001]);
    let port = testkit::free_port().unwrap();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let mut sub = spawn_on(
        port,
        &stub.url,
        &etcd,
        &[
            "--mode",
            "callback",
            "--callback-url",
            &callback,
            "--resync-interval",
            "1h",
        ],
    );
    sub.wait_healthy().await;
    let reg = registry(&etcd).await;
    wait_containers(&reg, vec![t1.clone()], "t1 registered").await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let seeds = seeds();
    let mut fuzzer = Fuzzer::new(seed);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for case in 0..cases {
        let body = fuzzer.json_body(&seeds[case % seeds.len()]);
        let what = || {
            format!(
                "MDO_FUZZ_SEED={seed} case {case}: POST /callback with {}",
                fuzz::preview(&body)
            )
        };
        let resp = http
            .post(&callback)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("no answer ({e}) to {}", what()));
        let status = resp.status().as_u16();
        let answer = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("answer cut ({e}) to {}", what()));
        *statuses.entry(status).or_default() += 1;
        assert!(
            status < 500,
            "{status} {} to {}",
            String::from_utf8_lossy(&answer),
            what()
        );
        if let Ok(Some(exit)) = sub.child.child().try_wait() {
            panic!("subscriber exited ({exit}) after {}", what());
        }
    }
    eprintln!("callback_fuzz: {cases} cases, statuses {statuses:?}");

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
    let log = sub.log_text();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
}
