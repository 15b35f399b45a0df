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
use serde_json::{json, Value};
use testkit::fuzz::{self, Fuzzer};

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
    apps(http, base).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_documents_never_5xx_and_never_half_apply() {
    let seed = fuzz::seed();
    let cases = fuzz::cases(600);
    eprintln!("deploy_fuzz: MDO_FUZZ_SEED={seed} MDO_FUZZ_CASES={cases}");
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let manager = Manager::start();
    let deployer = Deployer::start(&manager.url);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

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

    let mut fuzzer = Fuzzer::new(seed);
    let seed_json = seed_json();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for case in 0..cases {
        let (body, content_type) = match case % 4 {
            0 => (fuzzer.yaml_body(SEED_YAML), Some("application/yaml")),
            1 => (fuzzer.yaml_body(SEED_YAML), None),
            2 => (fuzzer.json_body(&seed_json), Some("application/json")),
            _ => (fuzzer.json_body(&seed_json), Some("application/yaml")),
        };
        let what = || {
            format!(
                "MDO_FUZZ_SEED={seed} case {case}: POST /deploy ({content_type:?}) with {}",
                fuzz::preview(&body)
            )
        };
        let mut req = http
            .post(format!("{}/deploy", deployer.url))
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let resp = req
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
        if (200..300).contains(&status) {
            before = settle(&http, &manager.url).await;
        } else {
            let after = apps(&http, &manager.url).await;
            assert_eq!(
                after,
                before,
                "refused with {status} ({}) yet apps changed: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)]),
                what()
            );
        }
        assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic after {}", what());
    }
    eprintln!("deploy_fuzz: {cases} cases, statuses {statuses:?}");

    let log = manager.log();
    assert!(
        !log.contains("panicked"),
        "a panic in the manager's log:\n{log}"
    );
    let (status, _) = deployer.get("/metrics").await;
    assert_eq!(status, 200, "the deployer still serves");
}
