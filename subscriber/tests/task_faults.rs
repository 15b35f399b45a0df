//! Faults of tasks and of the subscriber itself never leave the registry
//! wrong (issue 14, items 5 and 6): a task out of reach comes back with its
//! next TASK_RUNNING; a dead task's record goes even when this subscriber
//! process never wrote it, and never when another owner holds its key.
//! The real subscriber binary, a real etcd, the Marathon stub.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use testkit::marathon_stub::Stub;

const TS: &str = "2026-11-22T10:00:05.000Z";

fn apps_requests(stub: &Stub) -> u64 {
    stub.apps_requests.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_out_of_reach_comes_back_with_its_next_running() {
    let (_etcd, stub, sub, reg, [t1, t2]) = registered_web_tasks([31001, 31002]).await;
    let fetches = apps_requests(&stub);

    // An agent partition: t1 is unreachable, then reachable again.
    stub.emit_status("/dev/web", &t1, "TASK_UNREACHABLE", &[], TS);
    wait_containers(&reg, vec![t2.clone()], "t1 removed while unreachable").await;
    stub.emit_status("/dev/web", &t1, "TASK_RUNNING", &[31001], TS);
    wait_containers(
        &reg,
        vec![t1.clone(), t2.clone()],
        "t1 back at its TASK_RUNNING event",
    )
    .await;
    assert_eq!(
        apps_requests(&stub),
        fetches,
        "the record came back from the event, not from a resync"
    );
    let r1 = records(&reg)
        .await
        .into_iter()
        .find(|r| r.container == t1)
        .unwrap();
    assert_eq!(r1.ports["api"].external, 31001);

    // The same with TASK_UNKNOWN and TASK_LOST, each time the TASK_RUNNING
    // event is missed: the resync, which lists the task running, restores it.
    for away in ["TASK_UNKNOWN", "TASK_LOST"] {
        stub.emit_status("/dev/web", &t2, away, &[], TS);
        wait_containers(&reg, vec![t1.clone()], away).await;
        let s = sub.cleanup(false).await;
        assert_eq!(s["added"], 1, "{away}: {s}");
        assert_eq!(containers(&reg).await, {
            let mut v = vec![t1.clone(), t2.clone()];
            v.sort();
            v
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_during_the_first_fetch_removes_an_earlier_process_record() {
    let (etcd, stub) = web_stub().await;
    let victim = stub.start_task("/dev/web", &[31001]);
    let keeper = stub.start_task("/dev/web", &[31002]);
    let reg = registry(&etcd).await;
    {
        // A previous subscriber process wrote both records, then stopped.
        let mut first = spawn_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]);
        first.wait_healthy().await;
        wait_containers(
            &reg,
            vec![victim.clone(), keeper.clone()],
            "written by the first process",
        )
        .await;
        first.process.sigterm();
        testkit::eventually("the first process exits", Duration::from_secs(20), || {
            first.process.exited()
        });
    }

    // The new process's start-up resync stays stalled in /v2/apps for the
    // whole check: no resync can remove anything meanwhile.
    let release = stub.hold_next_apps_list();
    let fetches = apps_requests(&stub);
    let sub = spawn_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]);
    tokio::time::timeout(Duration::from_secs(30), stub.held_snapshot_taken.notified())
        .await
        .expect("the start-up resync asks for /v2/apps");
    let metrics_url = format!("{}/metrics", sub.url);
    testkit::eventually_async(
        "the new process reads the event stream",
        Duration::from_secs(30),
        || {
            let url = metrics_url.clone();
            async move {
                let m = reqwest::get(&url).await.ok()?.text().await.ok()?;
                m.contains("subscriber_stream_connected 1").then_some(())
            }
        },
    )
    .await;

    stub.kill_task("/dev/web", &victim);
    wait_containers(
        &reg,
        vec![keeper.clone()],
        "the victim's record removed by its kill event",
    )
    .await;
    assert_eq!(
        apps_requests(&stub),
        fetches + 1,
        "only the stalled start-up fetch was made: no resync removed it"
    );

    release.notify_one();
    let s = sub.cleanup(false).await;
    assert_eq!(
        (s["added"].as_u64(), s["removed"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(containers(&reg).await, vec![keeper]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_leaves_another_owners_record_at_its_key() {
    let (etcd, stub) = web_stub().await;
    let (_sub, reg) = healthy_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]).await;
    let t1 = stub.start_task("/dev/web", &[31001]);
    wait_containers(&reg, vec![t1.clone()], "t1 registered").await;

    // Another cluster's subscriber takes the key over.
    let mut theirs = records(&reg).await.pop().unwrap();
    theirs.owner = "other-cluster".into();
    theirs.host = "10.7.7.7".into();
    reg.put(&theirs).await.unwrap();

    stub.kill_task("/dev/web", &t1);
    // Events are handled in order: once t2 is registered, the kill was.
    let t2 = stub.start_task("/dev/web", &[31002]);
    wait_containers(&reg, vec![t1.clone(), t2.clone()], "t2 registered, t1 kept").await;
    let kept = records(&reg)
        .await
        .into_iter()
        .find(|r| r.container == t1)
        .unwrap();
    assert_eq!(kept, theirs, "the other owner's record is untouched");
}
