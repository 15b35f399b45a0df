//! Fuzzed input (issue 15.7) against the real manager binary and a real
//! etcd: thousands of mutated bodies (testkit::fuzz) to `POST /v2/apps`,
//! `PUT /v2/apps/{id}`, `PUT /v2/apps` (lists) and `/v2/groups`. Every case
//! gets an answer below 500; a refused body changes no app (ids and
//! versions); at the end every app there was created by a 2xx and the log
//! has no panic. `MDO_FUZZ_SEED` and `MDO_FUZZ_CASES` reproduce or lengthen
//! a run; a failure prints the seed, the case and the body.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use testkit::fuzz::{self, Fuzzer};
use testkit::{ChildGuard, Etcd};

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

async fn apps(http: &reqwest::Client, base: &str) -> BTreeMap<String, Value> {
    let v: Value = http
        .get(format!("{base}/v2/apps"))
        .send()
        .await
        .expect("GET /v2/apps")
        .json()
        .await
        .expect("apps JSON");
    v["apps"]
        .as_array()
        .expect("apps list")
        .iter()
        .map(|a| (a["id"].as_str().unwrap().to_string(), a["version"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_app_bodies_never_5xx_and_never_half_apply() {
    let seed = fuzz::seed();
    let cases = fuzz::cases(2_000);
    eprintln!("api_fuzz: MDO_FUZZ_SEED={seed} MDO_FUZZ_CASES={cases}");

    let etcd = Etcd::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log_path = dir.path().join("manager.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let port = testkit::free_port().expect("port");
    let mut manager = ChildGuard::new(
        Command::new(env!("CARGO_BIN_EXE_manager"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--etcd-endpoints",
                &etcd.endpoint(),
                "--node-name",
                "node-1",
                "--node-cpus",
                "8",
                "--node-mem",
                "8192",
                "--drain-delay",
                "0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("manager binary starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client");
    testkit::eventually_async("manager answers /ping", DEADLINE, || async {
        http.get(format!("{base}/ping"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;

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

    let mut fuzzer = Fuzzer::new(seed);
    let mut before = apps(&http, &base).await;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let started = std::time::Instant::now();
    for case in 0..cases {
        if case % 500 == 0 {
            eprintln!("api_fuzz: case {case} at {:?}", started.elapsed());
        }
        let case_started = std::time::Instant::now();
        let t = target(case);
        let body = fuzzer.json_body(&t.seed_doc);
        let what = || {
            format!(
                "MDO_FUZZ_SEED={seed} case {case}: {} {} with {}",
                t.method,
                t.path,
                fuzz::preview(&body)
            )
        };
        let resp = http
            .request(t.method.clone(), format!("{base}{}", t.path))
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
        let after = apps(&http, &base).await;
        if (200..300).contains(&status) {
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
                let now = apps(&http, &base).await;
                new.iter().all(|id| !now.contains_key(id)).then_some(now)
            })
            .await;
        } else {
            assert_eq!(
                after,
                before,
                "refused with {status} ({}) yet apps changed: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)]),
                what()
            );
        }
        if case_started.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "api_fuzz: slow case ({:?}, status {status}): {}",
                case_started.elapsed(),
                what()
            );
        }
        if let Ok(Some(exit)) = manager.child().try_wait() {
            panic!("manager exited ({exit}) after {}", what());
        }
    }
    eprintln!("api_fuzz: {cases} cases, statuses {statuses:?}");

    for id in apps(&http, &base).await.keys() {
        assert!(accepted.contains(id), "{id} was never accepted");
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!text.contains("panicked"), "a panic in the log:\n{text}");
    common::kill_tasks_under(&data);
}
