//! Fuzzed input (issue 15.7) against the real manager binary and a real
//! etcd: thousands of mutated bodies (testkit::fuzz) to `POST /v2/apps`,
//! `PUT /v2/apps/{id}`, `PUT /v2/apps` (lists) and `/v2/groups`. Every case
//! gets an answer below 500; a refused body changes no app (ids and
//! versions); at the end every app there was created by a 2xx and the log
//! has no panic. `MDO_FUZZ_SEED` and `MDO_FUZZ_CASES` reproduce or lengthen
//! a run; a failure prints the seed, the case and the body.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use testkit::fuzz::{self, Case, Fuzzer};
use testkit::manager::{ManagerCmd, TaskCleanup};
use testkit::Etcd;

const DEADLINE: Duration = Duration::from_secs(30);

fn app(id: &str) -> Value {
    json!({
        "id": id,
        "cmd": "sleep 1000",
        "instances": 0,
        "cpus": 0.01,
        "mem": 16,
        "env": {"MODE": "fuzz"},
        "labels": {"team": "qa"},
        "portDefinitions": [{"port": 0, "name": "http", "protocol": "tcp"}],
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                          "intervalSeconds": 10, "maxConsecutiveFailures": 3}],
        "constraints": [["hostname", "UNIQUE"]],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
        "backoffSeconds": 1
    })
}

struct Target {
    method: Method,
    path: String,
    seed_doc: Value,
}

fn target(case: usize) -> Target {
    let id = format!("/fz/c{case}");
    match case % 6 {
        0 | 1 => Target {
            method: Method::POST,
            path: "/v2/apps".into(),
            seed_doc: app(&id),
        },
        2 => Target {
            method: Method::PUT,
            path: format!("/v2/apps{id}"),
            seed_doc: app(&id),
        },
        3 | 4 => Target {
            method: Method::PUT,
            path: "/v2/apps".into(),
            seed_doc: json!([app(&format!("{id}/a")), app(&format!("{id}/b"))]),
        },
        _ => Target {
            method: if case % 12 == 5 {
                Method::POST
            } else {
                Method::PUT
            },
            path: "/v2/groups".into(),
            seed_doc: json!({"id": id, "apps": [app(&format!("{id}/a"))]}),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_app_bodies_never_5xx_and_never_half_apply() {
    let mut run = fuzz::Run::new("api_fuzz", 2_000);
    let etcd = Etcd::start().expect("etcd");
    let mut manager = ManagerCmd::new(env!("CARGO_BIN_EXE_manager"))
        .etcd(&etcd.endpoint())
        .env("RUST_LOG", "warn")
        .start();
    let _cleanup = TaskCleanup(manager.data_dir().to_path_buf());
    let base = manager.url().to_string();
    let http = run.http().clone();

    // The seed documents themselves are valid.
    let t = target(0);
    let r = http
        .post(format!("{base}{}", t.path))
        .json(&app("/fz/valid"))
        .send()
        .await
        .expect("seed app");
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let mut accepted: BTreeSet<String> = BTreeSet::from(["/fz/valid".to_string()]);

    let mut fuzzer = Fuzzer::new(run.seed());
    let mut before = fuzz::app_versions(&http, &base).await;
    for case in run.cases() {
        let t = target(case);
        let body = fuzzer.json_body(&t.seed_doc);
        let sent = run
            .send(case, Case::new(t.method, &base, &t.path, body))
            .await;
        let after = fuzz::app_versions(&http, &base).await;
        if sent.accepted() {
            let new: Vec<String> = after
                .keys()
                .filter(|id| !before.contains_key(*id))
                .cloned()
                .collect();
            for id in &new {
                accepted.insert(id.clone());
                let r = http
                    .delete(format!("{base}/v2/apps{id}?force=true"))
                    .send()
                    .await
                    .expect("DELETE");
                assert!(r.status().is_success(), "deleting {id}: {}", r.status());
            }
            before = testkit::eventually_async("accepted apps deleted", DEADLINE, || async {
                let now = fuzz::app_versions(&http, &base).await;
                new.iter().all(|id| !now.contains_key(id)).then_some(now)
            })
            .await;
        } else {
            sent.assert_apps_unchanged(&before, &after);
        }
        if let Some(exit) = manager.exited() {
            panic!("manager exited ({exit}) after {}", sent.what);
        }
    }
    run.finish();

    for id in fuzz::app_versions(&http, &base).await.keys() {
        assert!(accepted.contains(id), "{id} was never accepted");
    }
    fuzz::assert_no_panic("manager", &manager.log_text());
}
