//! Issue 15: the real watcher binary (exec mode) against a secured etcd,
//! its credentials given the way a container gets them, in the environment:
//! `ETCD_CA/ETCD_CERT/ETCD_KEY` on an etcd that requires a client
//! certificate, `ETCD_USER/ETCD_PASSWORD` on an etcd with authentication as
//! a user that may only read `/services/`. Each time, the baseline is read
//! and a record put into the watched service runs the hook with the new
//! instance; an anonymous client is refused by that etcd.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use registry::{Registry, Settings};
use testkit::{Etcd, EtcdTls};

/// True when etcd refuses `settings` (at connect or at the first read).
async fn refused(settings: &Settings) -> bool {
    match Registry::connect(settings).await {
        Ok(reg) => reg.list_all().await.is_err(),
        Err(_) => true,
    }
}

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
    let etcd = EtcdTls::start().unwrap();
    let (ca, cert, key) = (etcd.ca(), etcd.client_cert(), etcd.client_key());
    let endpoint = etcd.endpoint();
    let mut settings = Settings::from_parts(
        Some(&endpoint),
        None,
        None,
        None,
        Some(ca.clone()),
        Some(cert.clone()),
        Some(key.clone()),
    )
    .unwrap();
    settings.request_timeout = Duration::from_secs(2);
    let mut no_cert = settings.clone();
    no_cert.tls = Some(registry::Tls {
        ca: Some(ca.clone()),
        cert: None,
        key: None,
    });
    assert!(
        refused(&no_cert).await,
        "a client without a certificate must be refused"
    );
    let reg = Registry::connect(&settings).await.unwrap();
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
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
    let etcd = Etcd::start().unwrap();
    let ep = etcd.endpoint();
    testkit::etcd::enable_auth(
        &ep,
        "rootpw",
        &testkit::etcd::LimitedUser {
            role: "mdo-watcher",
            user: "watcher",
            password: "w-s3cret",
            permission: "read",
            prefix: "/services/",
        },
    );

    let mut anonymous = Settings::new([ep.clone()]);
    anonymous.request_timeout = Duration::from_secs(2);
    assert!(
        refused(&anonymous).await,
        "an anonymous client must be refused"
    );
    let root = Registry::connect(&anonymous.with_auth("root", "rootpw"))
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
