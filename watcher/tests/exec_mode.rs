//! The real watcher binary in exec mode against a real etcd, records
//! written through `registry`, callbacks observed through the file the
//! command appends to.

mod common;

use common::*;
use nix::sys::signal::Signal;
use registry::Op;

fn call(service: &str, delta: i64, added: &[&str], removed: &[&str], nodes: &[&str]) -> Call {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    Call {
        service: service.into(),
        delta,
        added: v(added),
        removed: v(removed),
        nodes: v(nodes),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_fires_once_with_added_removed_and_nodes() {
    let (etcd, reg, dir, file) = exec_fixture().await;
    put(&reg, "ingestor", "default", "a", 31001).await;
    let w = Watcher::exec(&etcd, dir.path(), "ingestor", &exec_recorder(&file), &[]);

    // Not changes: a rewrite with identical content, a rewrite where only
    // health changed, another service.
    put(&reg, "ingestor", "default", "a", 31001).await;
    let mut unhealthy = instance("ingestor", "default", "a", 31001);
    unhealthy.healthy = Some(false);
    reg.put(&unhealthy).await.unwrap();
    put(&reg, "other", "default", "x", 31999).await;

    // +2 instances, not debounced: two callbacks with delta 1 each.
    put(&reg, "ingestor", "default", "b", 31002).await;
    put(&reg, "ingestor", "default", "c", 31003).await;
    // -1
    del(&reg, "ingestor", "default", "a").await;
    // One transaction writing two records is one change.
    reg.apply(vec![
        Op::put(instance("ingestor", "default", "d", 31004)),
        Op::put(instance("ingestor", "default", "e", 31005)),
    ])
    .await
    .unwrap();
    // A moved instance: reported removed (old record) and added (new one).
    let mut moved = instance("ingestor", "default", "b", 31002);
    moved.host = "10.0.0.6".into();
    reg.put(&moved).await.unwrap();

    let calls = wait_calls(&file, 5);
    assert_eq!(
        calls,
        vec![
            call("ingestor", 1, &["b"], &[], &["a", "b"]),
            call("ingestor", 1, &["c"], &[], &["a", "b", "c"]),
            call("ingestor", -1, &[], &["a"], &["b", "c"]),
            call("ingestor", 2, &["d", "e"], &[], &["b", "c", "d", "e"]),
            call("ingestor", 0, &["b"], &["b"], &["b", "c", "d", "e"]),
        ],
        "log:\n{}",
        w.log()
    );
    // The records are the registry's, in full.
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["added"][0]["host"], "10.0.0.6");
    assert_eq!(last["removed"][0]["host"], "10.0.0.5");
    assert_eq!(last["nodes"][0]["ports"]["api"]["external"], 31002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounced_burst_is_one_net_change() {
    let (etcd, reg, dir, file) = exec_fixture().await;
    let recorder = exec_recorder(&file);
    let w = Watcher::exec(
        &etcd,
        dir.path(),
        "ingestor",
        &recorder,
        &["--debounce", "4s"],
    );

    // The first change fires at once ...
    put(&reg, "ingestor", "default", "a", 31001).await;
    let first = wait_calls(&file, 1);
    assert_eq!(first, vec![call("ingestor", 1, &["a"], &[], &["a"])]);
    // ... what follows within the window is one net change: +2 instances
    // (a third one came and went).
    put(&reg, "ingestor", "default", "b", 31002).await;
    put(&reg, "ingestor", "default", "x", 31009).await;
    put(&reg, "ingestor", "default", "c", 31003).await;
    del(&reg, "ingestor", "default", "x").await;
    let calls = wait_calls(&file, 2);
    assert_eq!(
        calls[1],
        call("ingestor", 2, &["b", "c"], &[], &["a", "b", "c"])
    );

    // Nothing else was reported in between: the next change is the third call.
    del(&reg, "ingestor", "default", "a").await;
    let calls = wait_calls(&file, 3);
    assert_eq!(calls.len(), 3, "log:\n{}", w.log());
    assert_eq!(calls[2], call("ingestor", -1, &[], &["a"], &["b", "c"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_compaction_while_disconnected_report_the_net_change() {
    let (mut etcd, reg, dir, file) = exec_fixture().await;
    put(&reg, "ingestor", "default", "a", 31001).await;
    put(&reg, "ingestor", "default", "b", 31002).await;
    let mut w = Watcher::exec(&etcd, dir.path(), "ingestor", &exec_recorder(&file), &[]);

    // A restart without changes: no callback (the next one is g's).
    etcd.restart().unwrap();
    put(&reg, "ingestor", "default", "g", 31007).await;
    let calls = wait_calls(&file, 1);
    assert_eq!(
        calls,
        vec![call("ingestor", 1, &["g"], &[], &["a", "b", "g"])]
    );

    // Freeze the watcher, restart etcd under it, change things and compact
    // the history it would need to resume.
    w.signal(Signal::SIGSTOP);
    etcd.restart().unwrap();
    del(&reg, "ingestor", "default", "a").await;
    put(&reg, "ingestor", "default", "c", 31003).await;
    put(&reg, "ingestor", "default", "d", 31004).await;
    put(&reg, "ingestor", "default", "e", 31005).await;
    del(&reg, "ingestor", "default", "e").await;
    let revision = reg
        .put(&instance("ingestor", "default", "g", 31007))
        .await
        .unwrap();
    reg.client().compact(revision, None).await.unwrap();
    w.signal(Signal::SIGCONT);

    let calls = wait_calls(&file, 2);
    assert_eq!(
        calls[1],
        call("ingestor", 1, &["c", "d"], &["a"], &["b", "c", "d", "g"]),
        "log:\n{}",
        w.log()
    );
    assert!(
        w.log().contains("compacted"),
        "the re-list path ran; log:\n{}",
        w.log()
    );

    // Nothing spurious afterwards either.
    put(&reg, "ingestor", "default", "h", 31008).await;
    let calls = wait_calls(&file, 3);
    assert_eq!(calls.len(), 3, "log:\n{}", w.log());
    assert_eq!(
        calls[2],
        call("ingestor", 1, &["h"], &[], &["b", "c", "d", "g", "h"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_filter_from_the_watches_variable() {
    let (etcd, reg, dir, file) = exec_fixture().await;
    put(&reg, "ingestor", "default", "a", 31001).await;
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &["--exec", &exec_recorder(&file)],
        &[("WATCHES", "ingestor.testing")],
    );
    w.wait_watching("ingestor.testing");

    put(&reg, "ingestor", "dev", "b", 31002).await;
    put(&reg, "ingestor", "testing", "c", 31003).await;
    put(&reg, "ingestor", "prod.testing", "d", 31004).await;
    del(&reg, "ingestor", "dev", "b").await;
    del(&reg, "ingestor", "testing", "c").await;
    let calls = wait_calls(&file, 3);
    assert_eq!(
        calls,
        vec![
            call("ingestor.testing", 1, &["c"], &[], &["c"]),
            call("ingestor.testing", 1, &["d"], &[], &["c", "d"]),
            call("ingestor.testing", -1, &[], &["c"], &["d"]),
        ],
        "log:\n{}",
        w.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_is_logged_and_the_watcher_goes_on() {
    let (etcd, reg, dir, file) = exec_fixture().await;
    let hook = format!(
        "{}; [ \"$WATCH_DELTA\" = 1 ] && exit 3; exit 0",
        exec_recorder(&file)
    );
    let mut w = Watcher::exec(&etcd, dir.path(), "ingestor,proxy", &hook, &[]);

    put(&reg, "ingestor", "default", "a", 31001).await;
    wait_calls(&file, 1);
    testkit::eventually("the failure is logged", DEADLINE, || {
        w.log().contains("exit status: 3").then_some(())
    });
    put(&reg, "proxy", "default", "p", 31100).await;
    del(&reg, "ingestor", "default", "a").await;
    let calls = wait_calls(&file, 3);
    assert_eq!(calls[1], call("proxy", 1, &["p"], &[], &["p"]));
    assert_eq!(calls[2], call("ingestor", -1, &[], &["a"], &[]));
    assert!(
        w.guard.child().try_wait().unwrap().is_none(),
        "still running"
    );
}
