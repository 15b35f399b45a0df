//! Issue 15: the real watcher binary (exec mode) against a secured etcd,
//! its credentials given the way a container gets them, in the environment:
//! `ETCD_CA/ETCD_CERT/ETCD_KEY` on an etcd that requires a client
//! certificate, `ETCD_USER/ETCD_PASSWORD` on an etcd with authentication as
//! a user that may only read `/services/`. Each time, the baseline is read
//! and a record put into the watched service runs the hook with the new
//! instance; an anonymous client is refused by that etcd.

mod common;

use std::path::Path;

use common::*;
use registry::{Registry, Settings};
use testkit::etcd::{LimitedUser, ROOT_PASSWORD};
use testkit::{Etcd, EtcdTls};

/// With `a` already registered, the watcher (started by `start`) reads it
/// as its baseline; putting `b` through `reg` runs the hook once, with `b`
/// added and both as the nodes.
async fn hook_sees_new_instance(reg: &Registry, start: impl FnOnce(&Path, &[&str]) -> Watcher) {
    put(reg, "ingestor", "default", "a", 31001).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    let recorder = exec_recorder(&file);
    let mut w = start(
        dir.path(),
        &["--watch", "ingestor", "--exec", recorder.as_str()],
    );
    w.wait_watching("ingestor");
    put(reg, "ingestor", "default", "b", 31002).await;
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
    assert!(!w.log().contains("w-s3cret"), "the password was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_runs_over_tls_with_a_client_certificate_from_the_environment() {
    let etcd = EtcdTls::start_secured();
    let (ca, cert, key) = etcd.client_files();
    let endpoint = etcd.endpoint();
    let mut settings = Settings::new([endpoint.clone()]);
    settings.tls = Some(registry::Tls {
        ca: Some(etcd.ca()),
        cert: Some(etcd.client_cert()),
        key: Some(etcd.client_key()),
    });
    let reg = Registry::connect(&settings).await.unwrap();
    let (ca, cert, key) = (ca.as_str(), cert.as_str(), key.as_str());
    hook_sees_new_instance(&reg, |dir, args| {
        Watcher::start_at(
            &endpoint,
            dir,
            args,
            &[("ETCD_CA", ca), ("ETCD_CERT", cert), ("ETCD_KEY", key)],
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_runs_as_a_read_only_user_from_the_environment() {
    let etcd = Etcd::start_with_user(&LimitedUser::services(
        "mdo-watcher",
        "watcher",
        "w-s3cret",
        "read",
    ));
    let ep = etcd.endpoint();
    let anonymous = Settings::new([ep.clone()]);
    let root = Registry::connect(&anonymous.with_auth("root", ROOT_PASSWORD))
        .await
        .unwrap();
    hook_sees_new_instance(&root, |dir, args| {
        Watcher::start_at(
            &ep,
            dir,
            args,
            &[("ETCD_USER", "watcher"), ("ETCD_PASSWORD", "w-s3cret")],
        )
    })
    .await;
}
