//! Fuzzed input (issue 15.7): thousands of mutated YAML and JSON documents
//! (testkit::fuzz) to `POST /deploy`, with the real manager binary behind
//! the deployer. Every case gets an answer below 500; a refused document
//! changes no app on the manager (ids and versions); neither the deployer
//! (in this process) nor the manager (its log) panics. `MDO_FUZZ_SEED` and
//! `MDO_FUZZ_CASES` reproduce or lengthen a run; a failure prints the
//! seed, the case and the body.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Deployer, Manager};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::fuzz::{self, Case, Fuzzer};

const SEED_YAML: &str = "\
deploy:
  web:
    cmd: \"sleep 1000\"
    labels: [dev]
    ports: {api: 5000}
    environment: {MODE: fuzz}
    instances: 0
    cpus: 0.01
    mem: 16
  worker:
    cmd: sleep 1000
    labels: [dev, batch]
    instances: 0
    cpus: 0.01
    mem: 16
";

fn seed_json() -> Value {
    json!({"deploy": {
        "web": {"cmd": "sleep 1000", "labels": ["dev"], "ports": {"api": 5000},
                "environment": {"MODE": "fuzz"}, "instances": 0, "cpus": 0.01, "mem": 16},
        "worker": {"cmd": "sleep 1000", "labels": ["dev", "batch"], "instances": 0,
                   "cpus": 0.01, "mem": 16}
    }})
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

async fn settle(http: &reqwest::Client, base: &str) -> BTreeMap<String, Value> {
    testkit::eventually_async("no deployments", Duration::from_secs(60), || async {
        let v: Value = http
            .get(format!("{base}/v2/deployments"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v.as_array().is_some_and(Vec::is_empty).then_some(())
    })
    .await;
    fuzz::app_versions(http, base).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_documents_never_5xx_and_never_half_apply() {
    let mut run = fuzz::Run::new("deploy_fuzz", 600);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let http = run.http().clone();

    // The seed documents themselves are valid.
    for (body, ct) in [
        (SEED_YAML.as_bytes().to_vec(), "application/yaml"),
        (seed_json().to_string().into_bytes(), "application/json"),
    ] {
        let r = http
            .post(format!("{}/deploy", deployer.url))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .expect("seed deploy");
        let status = r.status().as_u16();
        assert!(status < 300, "{status} {}", r.text().await.unwrap());
    }
    let mut before = settle(&http, &manager.url).await;
    assert!(before.contains_key("/dev/web"), "{before:?}");

    let mut fuzzer = Fuzzer::new(run.seed());
    let seed_json = seed_json();
    for case in run.cases() {
        let (body, content_type) = match case % 4 {
            0 => (fuzzer.yaml_body(SEED_YAML), Some("application/yaml")),
            1 => (fuzzer.yaml_body(SEED_YAML), None),
            2 => (fuzzer.json_body(&seed_json), Some("application/json")),
            _ => (fuzzer.json_body(&seed_json), Some("application/yaml")),
        };
        let req =
            Case::new(Method::POST, &deployer.url, "/deploy", body).content_type(content_type);
        let sent = run.send(case, req).await;
        if sent.accepted() {
            let settling = std::time::Instant::now();
            before = settle(&http, &manager.url).await;
            if settling.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "deploy_fuzz: settled in {:?} after {}",
                    settling.elapsed(),
                    sent.what
                );
            }
        } else {
            let after = fuzz::app_versions(&http, &manager.url).await;
            sent.assert_apps_unchanged(&before, &after);
        }
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "a panic after {}",
            sent.what
        );
    }
    run.finish();

    fuzz::assert_no_panic("manager", &manager.log());
    let (status, _) = deployer.get("/metrics").await;
    assert_eq!(status, 200, "the deployer still serves");
}
