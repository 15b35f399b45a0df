//! The real watcher binary in exec mode against a real etcd: a callback
//! past --hook-timeout is killed with its whole process group, and the
//! changes that queue up behind a slow callback are coalesced into one net
//! change (the latest state), not delivered one stale change after another.

mod common;

use common::*;
use testkit::eventually;

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_behind_a_slow_callback_are_coalesced() {
    let (etcd, reg, dir, file) = exec_fixture().await;
    let release = dir.path().join("release");
    let slow_once = dir.path().join("slow-once");
    // The first call records itself, then stays busy until the test
    // releases it (and at least past the watcher's slow-callback bound).
    let hook = format!(
        "{record}; if [ ! -e '{once}' ]; then touch '{once}'; sleep 1.2; while [ ! -e '{release}' ]; do sleep 0.05; done; fi",
        record = exec_recorder(&file),
        once = slow_once.display(),
        release = release.display(),
    );
    let w = Watcher::exec(&etcd, dir.path(), "ingestor", &hook, &[]);
    put(&reg, "ingestor", "default", "a", 31001).await;
    wait_calls(&file, 1);

    // Four changes while the callback is busy.
    put(&reg, "ingestor", "default", "b", 31002).await;
    put(&reg, "ingestor", "default", "c", 31003).await;
    put(&reg, "ingestor", "default", "d", 31004).await;
    del(&reg, "ingestor", "default", "b").await;
    eventually("the watcher saw the four changes", DEADLINE, || {
        (w.log().matches("instances changed").count() >= 5).then_some(())
    });
    std::fs::write(&release, b"").unwrap();

    // One call with the net change, then (a sentinel change) the next one:
    // nothing stale in between.
    wait_calls(&file, 2);
    put(&reg, "ingestor", "default", "e", 31005).await;
    let calls = wait_calls(&file, 3);
    assert_eq!(
        calls.len(),
        3,
        "{:?}",
        calls.iter().map(|c| c.delta).collect::<Vec<_>>()
    );
    let net = &calls[1];
    assert_eq!(names(&net.added), vec!["c", "d"]);
    assert!(net.removed.is_empty(), "{:?}", net.removed);
    assert_eq!(names(&net.nodes), vec!["a", "c", "d"]);
    assert_eq!(net.delta, 2);
    assert_eq!(names(&calls[2].added), vec!["e"]);
    assert!(w.log().contains("coalesced"), "{}", w.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_past_the_timeout_is_killed_with_its_group() {
    let (etcd, reg, dir, file) = exec_fixture().await;
    let pid_file = dir.path().join("sleeper.pid");
    // The first call leaves a long sleep in the background and waits for it.
    let hook = format!(
        "{record}; if [ ! -e '{pid}' ]; then sleep 300 & echo $! > '{pid}'; wait; fi",
        record = exec_recorder(&file),
        pid = pid_file.display(),
    );
    let timeout = ["--hook-timeout", "500ms"];
    let w = Watcher::exec(&etcd, dir.path(), "ingestor", &hook, &timeout);
    put(&reg, "ingestor", "default", "a", 31001).await;
    wait_calls(&file, 1);
    eventually("the timeout logged", DEADLINE, || {
        w.log().contains("--hook-timeout").then_some(())
    });
    let pid: i32 = eventually("the sleeper's pid", DEADLINE, || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    // The grandchild went with the group (a zombie waiting for its reaper
    // counts as gone).
    eventually("the sleeper killed", DEADLINE, || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        stat.map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
            .then_some(())
    });
    // The watcher goes on.
    put(&reg, "ingestor", "default", "b", 31002).await;
    let calls = wait_calls(&file, 2);
    assert_eq!(names(&calls[1].added), vec!["b"]);
}
