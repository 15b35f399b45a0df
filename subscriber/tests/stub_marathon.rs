//! The real subscriber binary against a real etcd and a Marathon API stub
//! (`testkit::marathon_stub`) that lets each test stage events, missed events,
//! races and outages precisely.

mod support;

use std::time::Duration;

use registry::naming::labels_from_group;
use registry::{Instance, Port};
use serde_json::json;
use support::*;
use testkit::marathon_stub::{bridge_app, host_app, Stub};
use testkit::Etcd;

fn hand_record(container: &str, owner: &str) -> Instance {
    Instance {
        schema: 1,
        service: "web".into(),
        group: "dev".into(),
        labels: labels_from_group("dev"),
        container: container.into(),
        app_id: "/dev/web".into(),
        app_version: "x".into(),
        node: "n".into(),
        host: "10.9.9.9".into(),
        internal_address: None,
        ports: [("api".to_string(), Port::tcp(1, 2))].into_iter().collect(),
        state: "TASK_RUNNING".into(),
        healthy: None,
        started_at: String::new(),
        owner: owner.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_follow_task_events_with_named_ports() {
    let etcd = Etcd::start().unwrap();
    let stub = Stub::start().await;
    stub.add_app(bridge_app("/dev/web", &[("api", 5000), ("admin", 9000)]));
    stub.add_app(host_app("/cache", &["redis", ""]));
    let (sub, reg) = healthy_subscriber(&stub.url, &etcd, &[]).await;

    let t1 = stub.start_task("/dev/web", &[31001, 31002]);
    let t2 = stub.start_task("/dev/web", &[31003, 31004]);
    let c1 = stub.start_task("/cache", &[31500, 31501]);
    wait_containers(
        &reg,
        vec![t1.clone(), t2.clone(), c1.clone()],
        "three records",
    )
    .await;

    let recs = records(&reg).await;
    let r1 = recs.iter().find(|r| r.container == t1).unwrap();
    assert_eq!((r1.service.as_str(), r1.group.as_str()), ("web", "dev"));
    assert_eq!(r1.ports["api"], Port::tcp(31001, 5000));
    assert_eq!(r1.ports["admin"], Port::tcp(31002, 9000));
    assert_eq!(r1.host, "127.0.0.1");
    assert_eq!(r1.internal_address.as_deref(), Some("172.17.0.9"));
    assert_eq!(r1.owner, "default");
    assert_eq!(r1.healthy, None);
    let rc = recs.iter().find(|r| r.container == c1).unwrap();
    assert_eq!(
        (rc.service.as_str(), rc.group.as_str()),
        ("cache", "default")
    );
    assert_eq!(rc.ports["redis"], Port::tcp(31500, 31500));
    assert_eq!(rc.ports["port1"], Port::tcp(31501, 31501));
    assert_eq!(rc.internal_address, None);

    // Scale down: the killed task's record goes (at TASK_KILLING).
    stub.kill_task("/dev/web", &t2);
    wait_containers(&reg, vec![t1.clone(), c1.clone()], "t2 removed").await;

    // TASK_KILLING alone is enough.
    stub.emit_status(
        "/cache",
        &c1,
        "TASK_KILLING",
        &[],
        "2026-11-22T10:00:05.000Z",
    );
    wait_containers(&reg, vec![t1.clone()], "c1 removed at TASK_KILLING").await;

    // Metrics count what happened.
    let m = sub.metrics().await;
    assert!(
        m.contains("subscriber_events_total{type=\"status_update_event\"}"),
        "{m}"
    );
    assert!(m.contains("subscriber_records_removed_total 2"), "{m}");
    assert!(m.contains("subscriber_reconnects_total 1"), "{m}");
}

/// `/cleanup` does not read again the records the subscriber wrote or read
/// while their keys stay at those revisions; a record changed behind its
/// back (a new value at the same key: a new revision) is read and
/// corrected, whether the subscriber's last write of it was a resync's
/// (t1, t2) or an event's (t3); one written again as it was is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_corrects_records_changed_behind_its_back() {
    let (_etcd, stub, sub, reg, [t1, t2]) = registered_web_tasks([31001, 31002]).await;
    let t3 = stub.start_task("/dev/web", &[31003]);
    wait_containers(&reg, vec![t1.clone(), t2.clone(), t3.clone()], "t3 written").await;
    let s = sub.cleanup(false).await;
    assert_eq!(counts(&s), [0, 0, 0, 3], "{s}");
    let good = records(&reg).await;
    let find = |c: &str| good.iter().find(|r| r.container == c).unwrap().clone();

    let mut moved = find(&t1);
    moved.host = "10.6.6.6".into();
    reg.put(&moved).await.unwrap();
    let mut renumbered = find(&t3);
    renumbered.ports.insert("api".into(), Port::tcp(1, 5000));
    reg.put(&renumbered).await.unwrap();
    reg.put(&find(&t2)).await.unwrap();

    let s = sub.cleanup(false).await;
    assert_eq!(counts(&s), [0, 2, 0, 1], "{s}");
    // As the subscriber wrote them (a start time may come from the event
    // or from Marathon's task: milliseconds apart, both kept as they are).
    let comparable = |mut v: Vec<Instance>| {
        v.sort_by(|a, b| a.container.cmp(&b.container));
        for r in &mut v {
            assert!(!r.started_at.is_empty(), "{r:?}");
            r.started_at.clear();
        }
        v
    };
    assert_eq!(
        comparable(records(&reg).await),
        comparable(good.clone()),
        "every record as the subscriber wrote it"
    );
    let s = sub.cleanup(false).await;
    assert_eq!(counts(&s), [0, 0, 0, 3], "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_repairs_hand_edits_and_leaves_other_owners() {
    let (_etcd, _stub, sub, reg, [t1, t2]) = registered_web_tasks([31001, 31002]).await;

    // By hand: delete one, invent one, corrupt one, and add another owner's.
    let name = records(&reg)
        .await
        .into_iter()
        .find(|r| r.container == t1)
        .unwrap()
        .name()
        .unwrap();
    reg.delete(&name).await.unwrap();
    reg.put(&hand_record("ghost.instance-1._app.1", "default"))
        .await
        .unwrap();
    let mut wrong = records(&reg)
        .await
        .into_iter()
        .find(|r| r.container == t2)
        .unwrap();
    wrong.host = "10.6.6.6".into();
    reg.put(&wrong).await.unwrap();
    reg.put(&hand_record("theirs.instance-1._app.1", "other-cluster"))
        .await
        .unwrap();

    let dry = sub.cleanup(true).await;
    assert_eq!(counts(&dry), [1, 1, 1, 0], "{dry}");
    assert_eq!(containers(&reg).await.len(), 3, "dry run writes nothing");

    let s = sub.cleanup(false).await;
    assert_eq!(counts(&s), [1, 1, 1, 0], "{s}");
    assert!(s["took_ms"].is_u64());
    let mut want = vec![
        t1.clone(),
        t2.clone(),
        "theirs.instance-1._app.1".to_string(),
    ];
    want.sort();
    assert_eq!(containers(&reg).await, want);
    let recs = records(&reg).await;
    assert_eq!(
        recs.iter().find(|r| r.container == t2).unwrap().host,
        "127.0.0.1"
    );
    assert_eq!(
        recs.iter()
            .find(|r| r.container.starts_with("theirs"))
            .unwrap()
            .owner,
        "other-cluster"
    );

    let s = sub.cleanup(false).await;
    assert_eq!(counts(&s), [0, 0, 0, 2], "{s}");

    // Bad dry_run value: 400 with Marathon's error body.
    let r = reqwest::get(format!("{}/cleanup?dry_run=maybe", sub.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_never_resurrects_a_task_killed_while_it_ran() {
    let (_etcd, stub, sub, reg, [victim, keeper]) = registered_web_tasks([31001, 31002]).await;

    // The next resync fetches a list in which the victim still runs...
    let release = stub.hold_next_apps_list();
    let url = sub.url.clone();
    let cleanup = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/cleanup"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    stub.held_snapshot_taken.notified().await;
    // ...the victim is killed while the resync is computing...
    stub.kill_task("/dev/web", &victim);
    wait_containers(
        &reg,
        vec![keeper.clone()],
        "victim removed by its kill event",
    )
    .await;
    // ...and then the stale list arrives.
    release.notify_one();
    let s = cleanup.await.unwrap();
    assert_eq!(
        s["added"], 0,
        "the stale resync must not add the victim back: {s}"
    );
    assert_eq!(containers(&reg).await, vec![keeper.clone()]);
    // And it stays gone.
    let s = sub.cleanup(false).await;
    assert_eq!(s["added"], 0, "{s}");
    assert_eq!(containers(&reg).await, vec![keeper]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_events_and_manager_outage_are_repaired_on_reconnect() {
    let (etcd, stub) = web_stub().await;
    let t1 = stub.start_task("/dev/web", &[31001]);
    let (mut sub, reg) = healthy_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]).await;
    wait_containers(&reg, vec![t1.clone()], "t1").await;

    stub.set_down(true);
    testkit::eventually_async(
        "health reports the broken stream",
        Duration::from_secs(20),
        || async {
            let r = reqwest::get(format!("{}/health", sub.url)).await.ok()?;
            (r.status() == 503).then_some(())
        },
    )
    .await;
    // While the manager is away, things change without events reaching us.
    stub.forget_task("/dev/web", &t1);
    let t2 = stub.add_task_silently("/dev/web", &[31002]);
    stub.set_down(false);
    wait_containers(
        &reg,
        vec![t2.clone()],
        "resync after reconnect repaired the registry",
    )
    .await;
    sub.wait_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_during_churn_converges() {
    let (mut etcd, stub) = web_stub().await;
    let (sub, reg) = healthy_subscriber(&stub.url, &etcd, &["--resync-interval", "2s"]).await;
    let mut live: Vec<String> = (0..10)
        .map(|i| stub.start_task("/dev/web", &[31000 + i]))
        .collect();
    wait_containers(&reg, live.clone(), "initial tasks").await;

    etcd.stop();
    // ~10 s of churn while etcd is down: start and kill tasks.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut i = 100;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while std::time::Instant::now() < until {
        tick.tick().await;
        i += 1;
        live.push(stub.start_task("/dev/web", &[31000 + i]));
        if i % 2 == 0 {
            let victim = live.remove(0);
            stub.kill_task("/dev/web", &victim);
        }
    }
    etcd.restart().unwrap();
    let reg = registry(&etcd).await;
    wait_containers(&reg, live.clone(), "converged after etcd returned").await;
    let m = sub.metrics().await;
    assert!(m.contains("subscriber_errors_total{kind=\"etcd\"}"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_tasks_change_then_restart_converges() {
    let (etcd, stub) = web_stub().await;
    let port = testkit::free_port().unwrap();
    let (mut sub, reg) = healthy_on(port, &stub.url, &etcd, &["--resync-interval", "1h"]).await;
    let mut live: Vec<String> = (0..20)
        .map(|i| stub.start_task("/dev/web", &[31000 + i]))
        .collect();
    wait_containers(&reg, live.clone(), "initial tasks").await;
    // Kill -9 in the middle of a burst of changes.
    for i in 0..20u32 {
        live.push(stub.start_task("/dev/web", &[32000 + i]));
        if i == 10 {
            sub.kill9();
        }
        let victim = live.remove(0);
        stub.kill_task("/dev/web", &victim);
    }
    // More changes while it is down.
    for i in 0..5u32 {
        live.push(stub.start_task("/dev/web", &[33000 + i]));
        let victim = live.remove(0);
        stub.kill_task("/dev/web", &victim);
    }
    let mut sub = spawn_on(port, &stub.url, &etcd, &["--resync-interval", "1h"]);
    sub.wait_healthy().await;
    wait_containers(&reg, live.clone(), "converged after restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_mode_end_to_end_with_unsubscribe_on_sigterm() {
    let (etcd, stub) = web_stub().await;
    let (mut sub, callback) = callback_subscriber(&stub.url, &etcd, &[]).await;
    assert_eq!(stub.callbacks(), vec![callback.clone()]);
    assert_eq!(
        stub.stream_clients(),
        0,
        "callback mode does not read the stream"
    );
    let reg = registry(&etcd).await;

    let t1 = stub.start_task("/dev/web", &[31001]);
    let t2 = stub.start_task("/dev/web", &[31002]);
    wait_containers(&reg, vec![t1.clone(), t2.clone()], "records from callbacks").await;
    stub.kill_task("/dev/web", &t1);
    wait_containers(&reg, vec![t2.clone()], "kill by callback").await;

    // A malformed body: 400 with Marathon's error shape, counted, no crash.
    let r = reqwest::Client::new()
        .post(&callback)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Invalid JSON");
    let r = reqwest::Client::new()
        .post(&callback)
        .body(json!({"eventType": "status_update_event"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let m = sub.metrics().await;
    assert!(
        m.contains("subscriber_errors_total{kind=\"malformed_event\"} 2"),
        "{m}"
    );

    let status = sub.sigterm_and_exit();
    assert!(
        status.success(),
        "graceful exit: {status}\n{}",
        sub.log_text()
    );
    assert!(stub.callbacks().is_empty(), "unsubscribed on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_health_metrics_and_auth() {
    let (etcd, stub) = web_stub().await;
    let t1 = stub.start_task("/dev/web", &[31001]);
    let (sub, reg) = healthy_subscriber(&stub.url, &etcd, &["--auth-token", "s3cret"]).await;
    wait_containers(&reg, vec![t1.clone()], "t1").await;
    let http = reqwest::Client::new();

    let r = http.get(format!("{}/info", sub.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        daemon::http::WWW_AUTHENTICATE,
        "a 401 names the scheme"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Invalid username or password.");
    assert_eq!(
        http.get(format!("{}/ping", sub.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let info = || http.get(format!("{}/info", sub.url)).bearer_auth("s3cret");
    let html = testkit::http::text(info()).await;
    assert!(html.contains("<table>"), "{html}");
    assert!(html.contains(&t1));
    assert!(html.contains("api=127.0.0.1:31001"), "{html}");
    let j = testkit::http::json(info().header("Accept", "application/json")).await;
    assert_eq!(j["instances"][0]["container"], t1.as_str());
    assert_eq!(j["instances"][0]["ports"]["api"]["external"], 31001);

    let health = http
        .get(format!("{}/health", sub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let m = testkit::http::text(
        http.get(format!("{}/metrics", sub.url))
            .bearer_auth("s3cret"),
    )
    .await;
    assert!(m.contains("subscriber_resyncs_total"), "{m}");
    assert!(m.contains("subscriber_stream_connected 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_with_invalid_names_get_no_record_and_never_fail_a_batch() {
    let etcd = Etcd::start().unwrap();
    let stub = Stub::start().await;
    let mut bad = bridge_app("/dev/bad", &[("api", 5000)]);
    bad["labels"] = json!({"SERVICE_NAME": "Bad_Name"});
    stub.add_app(bad);
    stub.add_app(bridge_app("/dev/web", &[("api", 5000)]));
    // The bad app's tasks sit between valid ones, and there are more
    // records than fit in one 128-op transaction.
    let mut good = Vec::new();
    let mut bad_tasks = Vec::new();
    for i in 0..150u32 {
        good.push(stub.add_task_silently("/dev/web", &[20000 + i]));
        if i % 50 == 0 {
            bad_tasks.push(stub.add_task_silently("/dev/bad", &[30000 + i]));
        }
    }
    let (sub, reg) = healthy_subscriber(&stub.url, &etcd, &["--resync-interval", "1h"]).await;
    wait_containers(
        &reg,
        good.clone(),
        "the start-up resync wrote every valid record and none of the bad app's",
    )
    .await;

    // /cleanup: the same (nothing to change), and the bad app still skipped.
    let s = sub.cleanup(false).await;
    assert_eq!(counts(&s), [0, 0, 0, good.len() as u64], "{s}");

    // Events: the bad app's task gets no record; the valid one in the same
    // stretch of events does.
    let b = stub.start_task("/dev/bad", &[31000]);
    let g = stub.start_task("/dev/web", &[31001]);
    good.push(g);
    wait_containers(&reg, good.clone(), "the valid task's event wrote it").await;
    assert!(!containers(&reg).await.contains(&b));
    assert!(bad_tasks.iter().all(|t| !good.contains(t)));

    let m = sub.metrics().await;
    let invalid = m
        .lines()
        .find_map(|l| l.strip_prefix("subscriber_errors_total{kind=\"invalid_name\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // One per resync for the app (start-up + /cleanup), one for the event.
    assert!(invalid >= 3, "invalid_name errors counted: {m}");
    assert!(!m.contains("subscriber_errors_total{kind=\"etcd\"}"), "{m}");
    let log = sub.log_text();
    assert!(log.contains("Bad_Name"), "the skip is logged: {log}");
}
