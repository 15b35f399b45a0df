//! Issue 15: the real watcher binary (exec mode) against a secured etcd,
//! its credentials given the way a container gets them, in the environment:
//! `ETCD_CA/ETCD_CERT/ETCD_KEY` on an etcd that requires a client
//! certificate, `ETCD_USER/ETCD_PASSWORD` on an etcd with authentication as
//! a user that may only read `/services/`. Each time, the baseline is read
//! and a record put into the watched service runs the hook with the new
//! instance; an anonymous client is refused by that etcd (checked by
//! `testkit::SecuredEtcd`).

mod common;

use common::*;
use registry::Registry;
use testkit::SecuredEtcd;

/// With `a` already registered (by an admin client), the watcher, given
/// only the environment's credentials, reads it as its baseline; putting `b`
/// runs the hook once, with `b` added and both as the nodes.
async fn hook_sees_new_instance(etcd: SecuredEtcd) {
    let admin = Registry::connect(&etcd.admin()).await.unwrap();
    put(&admin, "ingestor", "default", "a", 31001).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    let recorder = exec_recorder(&file);
    let env = etcd.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut w = Watcher::start_at(
        &etcd.endpoint(),
        dir.path(),
        &["--watch", "ingestor", "--exec", recorder.as_str()],
        &env,
    );
    w.wait_watching("ingestor");
    put(&admin, "ingestor", "default", "b", 31002).await;
    let calls = wait_calls(&file, 1);
    assert_eq!(
        calls,
        vec![Call {
            service: "ingestor".into(),
            delta: 1,
            added: vec!["b".into()],
            removed: vec![],
            nodes: vec!["a".into(), "b".into()],
        }],
        "log:\n{}",
        w.log()
    );
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&file).unwrap().trim()).unwrap();
    assert_eq!(line["added"][0]["ports"]["api"]["external"], 31002);
    if let Some(password) = etcd.password() {
        assert!(!w.log().contains(password), "the password was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_runs_over_tls_with_a_client_certificate_from_the_environment() {
    hook_sees_new_instance(SecuredEtcd::client_cert()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_runs_as_a_read_only_user_from_the_environment() {
    hook_sees_new_instance(SecuredEtcd::user("watcher", "w-s3cret", "read")).await;
}
