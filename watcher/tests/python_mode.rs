//! The real watcher binary calling `service_change` from watch_methods.py in
//! its embedded interpreter, against a real etcd.

mod common;

use common::*;
use nix::sys::signal::Signal;
use testkit::Etcd;

/// Writes `watch_methods.py` into `dir` with a recorder helper and `body`.
fn methods(dir: &std::path::Path, body: &str) {
    let helper = r#"import json, os

def record(**fields):
    with open(os.environ["CALLS_FILE"], "a") as f:
        f.write(json.dumps(fields) + "\n")
"#;
    std::fs::write(dir.join("watch_methods.py"), format!("{helper}\n{body}")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_parameters_get_added_removed_and_nodes_debounced() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    reg.put(&instance("ingestor", "default", "a", 31001))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    methods(
        dir.path(),
        r#"
def service_change(service, delta, added, removed, nodes):
    assert isinstance(delta, int) and isinstance(added, list) and isinstance(nodes[0], dict)
    record(service=service, delta=delta, added=added, removed=removed, nodes=nodes)
"#,
    );
    // Default --methods is ./watch_methods.py in the working directory.
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &["--watch", "ingestor", "--debounce", "4s"],
        &[("CALLS_FILE", file.to_str().unwrap())],
    );
    w.wait_watching("ingestor");
    assert!(
        w.log().contains("added=true removed=true nodes=true"),
        "{}",
        w.log()
    );

    reg.put(&instance("ingestor", "default", "b", 31002))
        .await
        .unwrap();
    let calls = wait_calls(&file, 1);
    assert_eq!(
        (calls[0].delta, calls[0].added.clone()),
        (1, vec!["b".to_string()])
    );
    // +2 within the window: one callback with delta 2.
    reg.put(&instance("ingestor", "default", "c", 31003))
        .await
        .unwrap();
    reg.put(&instance("ingestor", "default", "d", 31004))
        .await
        .unwrap();
    let calls = wait_calls(&file, 2);
    assert_eq!(calls[1].delta, 2, "log:\n{}", w.log());
    assert_eq!(calls[1].added, vec!["c", "d"]);
    assert!(calls[1].removed.is_empty());
    assert_eq!(calls[1].nodes, vec!["a", "b", "c", "d"]);

    // SIGTERM ends it cleanly.
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_signature_and_a_raising_callback() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    let methods_dir = dir.path().join("hooks");
    std::fs::create_dir(&methods_dir).unwrap();
    // A neighbour module, importable because the file's folder is on sys.path.
    std::fs::write(methods_dir.join("helper_mod.py"), "FACTOR = 1\n").unwrap();
    methods(
        &methods_dir,
        r#"
import helper_mod

def service_change(service, delta):
    record(service=service, delta=delta * helper_mod.FACTOR)
    if delta < 0:
        raise RuntimeError("boom on purpose")
"#,
    );
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &[
            "--watch",
            "ingestor",
            "--methods",
            methods_dir.join("watch_methods.py").to_str().unwrap(),
        ],
        &[("CALLS_FILE", file.to_str().unwrap())],
    );
    w.wait_watching("ingestor");
    assert!(
        w.log().contains("added=false removed=false nodes=false"),
        "{}",
        w.log()
    );

    reg.put(&instance("ingestor", "default", "a", 31001))
        .await
        .unwrap();
    reg.put(&instance("ingestor", "default", "b", 31002))
        .await
        .unwrap();
    reg.delete(&name("ingestor", "default", "a")).await.unwrap();
    wait_calls(&file, 3);
    testkit::eventually("the traceback is logged", DEADLINE, || {
        let log = w.log();
        (log.contains("Traceback") && log.contains("RuntimeError: boom on purpose")).then_some(())
    });
    // The watcher goes on.
    reg.put(&instance("ingestor", "default", "c", 31003))
        .await
        .unwrap();
    let calls = wait_calls(&file, 4);
    let deltas: Vec<i64> = calls.iter().map(|c| c.delta).collect();
    assert_eq!(deltas, vec![1, 1, -1, 1], "log:\n{}", w.log());
    assert!(calls
        .iter()
        .all(|c| c.service == "ingestor" && c.added.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kwargs_receive_everything() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    methods(
        dir.path(),
        r#"
def service_change(service, delta, **kwargs):
    record(service=service, delta=delta, keys=sorted(kwargs), **kwargs)
"#,
    );
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &["--watch", "ingestor.dev"],
        &[("CALLS_FILE", file.to_str().unwrap())],
    );
    w.wait_watching("ingestor.dev");
    reg.put(&instance("ingestor", "default", "a", 31001))
        .await
        .unwrap();
    reg.put(&instance("ingestor", "dev", "b", 31002))
        .await
        .unwrap();
    let calls = wait_calls(&file, 1);
    assert_eq!(calls[0].service, "ingestor.dev");
    assert_eq!(calls[0].added, vec!["b"]);
    assert_eq!(calls[0].nodes, vec!["b"]);
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        line["keys"],
        serde_json::json!(["added", "nodes", "removed"])
    );
}

#[test]
fn a_broken_methods_file_exits_64_with_the_error() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("watch_methods.py"), "def nope(:\n").unwrap();
    let mut w = Watcher::start(&etcd, dir.path(), &["--watch", "ingestor"], &[]);
    assert_eq!(w.wait_exit(), Some(64));
    assert!(w.log().contains("SyntaxError"), "{}", w.log());

    std::fs::write(
        dir.path().join("watch_methods.py"),
        "def other(s, d): pass\n",
    )
    .unwrap();
    let mut w = Watcher::start(&etcd, dir.path(), &["--watch", "ingestor"], &[]);
    assert_eq!(w.wait_exit(), Some(64));
    assert!(
        w.log().contains("no function service_change"),
        "{}",
        w.log()
    );
}
