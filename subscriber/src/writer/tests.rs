use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::model::NetworkMode;
use crate::record::tests::{app, task};
use crate::record_store::{Instance, MemStore};
use crate::source::SourceError;

#[derive(Default)]
struct FakeMarathon {
    apps: Mutex<HashMap<String, AppSpec>>,
    /// With `Some(k)`, each `app` call holds (for 10 s at most) until `k`
    /// calls have been in flight at the same time.
    gate: Option<usize>,
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
    gate_open: tokio::sync::Notify,
    /// `app` calls so far.
    calls: std::sync::atomic::AtomicUsize,
}

impl AppSource for FakeMarathon {
    async fn app(&self, id: &str) -> Result<AppSpec, SourceError> {
        self.calls.fetch_add(1, Relaxed);
        if let Some(k) = self.gate {
            let now = self.in_flight.fetch_add(1, Relaxed) + 1;
            let most = self.most_in_flight.fetch_max(now, Relaxed).max(now);
            if most >= k {
                self.gate_open.notify_waiters();
            } else {
                let opened = self.gate_open.notified();
                if self.most_in_flight.load(Relaxed) < k {
                    let _ = tokio::time::timeout(Duration::from_secs(10), opened).await;
                }
            }
            self.in_flight.fetch_sub(1, Relaxed);
        }
        self.apps
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| SourceError::NotFound(id.into()))
    }

    async fn apps_with_tasks(&self) -> Result<Vec<(AppSpec, Vec<TaskInfo>)>, SourceError> {
        Ok(vec![])
    }
}

struct Harness {
    store: MemStore,
    ch: Channels,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    join: tokio::task::JoinHandle<()>,
}

fn web() -> AppSpec {
    let mut a = app("/dev/web", NetworkMode::Bridge, &[(Some("api"), Some(80))]);
    a.version = "v1".into();
    a
}

fn start(require_healthy: bool, capacity: usize) -> Harness {
    let fake = FakeMarathon::default();
    let mut w = web();
    fake.apps.lock().unwrap().insert(w.id.clone(), w.clone());
    w.id = "/dev/checked".into();
    w.has_health_checks = true;
    fake.apps.lock().unwrap().insert(w.id.clone(), w);
    start_with(Arc::new(fake), require_healthy, capacity)
}

fn start_with(fake: Arc<FakeMarathon>, require_healthy: bool, capacity: usize) -> Harness {
    let store = MemStore::default();
    let metrics = Arc::new(Metrics::default());
    let (writer, ch) = Writer::new(
        store.clone(),
        fake,
        WriterConfig {
            owner: "me".into(),
            require_healthy,
            tombstone_ttl: Duration::from_secs(600),
        },
        metrics.clone(),
        capacity,
    );
    let cancel = CancellationToken::new();
    let join = tokio::spawn(writer.run(cancel.clone()));
    Harness {
        store,
        ch,
        cancel,
        metrics,
        join,
    }
}

fn running(id: &str, app_id: &str, port: u32) -> TaskEvent {
    let mut t = task(id, app_id, &[port]);
    t.app_version = Some("v1".into());
    TaskEvent::Status(t)
}

fn state(id: &str, app_id: &str, s: &str) -> TaskEvent {
    let mut t = task(id, app_id, &[]);
    t.state = s.into();
    TaskEvent::Status(t)
}

impl Harness {
    async fn resync(
        &self,
        apps: Vec<(AppSpec, Vec<TaskInfo>)>,
        epoch: u64,
        dry_run: bool,
    ) -> Summary {
        let (reply, rx) = oneshot::channel();
        self.ch
            .tx
            .send(Msg::Resync(ResyncRequest {
                apps,
                fetch_epoch: epoch,
                dry_run,
                reply,
            }))
            .await
            .unwrap();
        let s = rx.await.unwrap().unwrap();
        self.ch.clock.end_fetch();
        s
    }

    async fn wait_for(&self, want: &[&str]) {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        testkit::eventually_async("records", Duration::from_secs(5), || async {
            (self.store.containers() == want).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.join.await.unwrap();
    }
}

#[tokio::test]
async fn running_writes_and_killing_removes() {
    let h = start(false, 1000);
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.ch.sink.push(running("t2", "/dev/web", 31002));
    h.wait_for(&["t1", "t2"]).await;
    let r = h.store.get("t1").unwrap();
    assert_eq!(r.ports["api"].external, 31001);
    assert_eq!(r.ports["api"].exposed, 80);
    assert_eq!(r.owner, "me");
    h.ch.sink.push(state("t1", "/dev/web", "TASK_KILLING"));
    h.wait_for(&["t2"]).await;
    h.ch.sink.push(state("t2", "/dev/web", "TASK_FAILED"));
    h.wait_for(&[]).await;
    // A late TASK_RUNNING for a killed task never brings it back.
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.ch.sink.push(running("t3", "/dev/web", 31003));
    h.wait_for(&["t3"]).await;
    h.stop().await;
}

#[tokio::test]
async fn resync_never_resurrects_a_task_killed_during_the_fetch() {
    let h = start(false, 1000);
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.wait_for(&["t1"]).await;
    // The fetch begins and sees t1 running...
    let epoch = h.ch.clock.begin_fetch();
    let stale = vec![(web(), vec![task("t1", "/dev/web", &[31001])])];
    // ...t1 is killed while the resync computes...
    h.ch.sink.push(state("t1", "/dev/web", "TASK_KILLING"));
    h.wait_for(&[]).await;
    // ...and the stale resync result arrives afterwards.
    let s = h.resync(stale.clone(), epoch, false).await;
    assert_eq!(s.added, 0);
    assert!(h.store.containers().is_empty());
    // Even a later resync with the same stale view (tombstone) keeps it out.
    let epoch = h.ch.clock.begin_fetch();
    h.resync(stale, epoch, false).await;
    assert!(h.store.containers().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn resync_keeps_a_task_started_during_the_fetch() {
    let h = start(false, 1000);
    let epoch = h.ch.clock.begin_fetch();
    // Fetch saw nothing; t9 starts meanwhile.
    h.ch.sink.push(running("t9", "/dev/web", 31009));
    h.wait_for(&["t9"]).await;
    let s = h.resync(vec![(web(), vec![])], epoch, false).await;
    assert_eq!(s.removed, 0);
    assert_eq!(h.store.containers(), vec!["t9"]);
    h.stop().await;
}

/// The snapshot is read while Marathon answers (`Msg::Prefetch`), so it may
/// predate the writes of events applied meanwhile: those containers are
/// protected, and the writer keeps its own view of them, so a later kill
/// still removes the record.
#[tokio::test]
async fn prefetched_snapshot_older_than_an_event_write() {
    let h = start(false, 1000);
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.wait_for(&["t1"]).await;
    let epoch = h.ch.clock.begin_fetch();
    // The read happens now (t1 only)...
    h.store.freeze_next_snapshot();
    h.ch.tx.send(Msg::Prefetch(epoch)).await.unwrap();
    // ...t2 starts and is written after it...
    h.ch.sink.push(running("t2", "/dev/web", 31002));
    h.wait_for(&["t1", "t2"]).await;
    // ...and the fetch, begun before t2, did not see it.
    let fetched = vec![(web(), vec![task("t1", "/dev/web", &[31001])])];
    let s = h.resync(fetched, epoch, false).await;
    assert_eq!((s.added, s.removed), (0, 0), "t2 is protected: {s:?}");
    assert_eq!(h.store.containers(), vec!["t1", "t2"]);
    // The snapshot did not hold t2; the writer still knows it wrote it.
    h.ch.sink.push(state("t2", "/dev/web", "TASK_KILLED"));
    h.wait_for(&["t1"]).await;
    // A prefetch for another fetch is never used: this resync reads afresh.
    h.store.freeze_next_snapshot();
    h.ch.tx.send(Msg::Prefetch(epoch + 1000)).await.unwrap();
    testkit::eventually_async("the prefetch read", Duration::from_secs(5), || async {
        h.store.inner.lock().unwrap().frozen.is_none().then_some(())
    })
    .await;
    h.store.insert({
        let mut ghost =
            crate::record::record_from_task(&web(), &task("ghost", "/dev/web", &[9]), "me", "n")
                .unwrap();
        ghost.host = "h".into();
        ghost
    });
    let epoch = h.ch.clock.begin_fetch();
    let fetched = vec![(web(), vec![task("t1", "/dev/web", &[31001])])];
    let s = h.resync(fetched, epoch, false).await;
    assert_eq!(
        (s.removed, s.unchanged),
        (1, 1),
        "the ghost was seen and removed"
    );
    assert_eq!(h.store.containers(), vec!["t1"]);
    h.stop().await;
}

/// App definitions fetched for events are cached, and the cache is rebuilt
/// at every resync from what Marathon has: deleted apps do not pile up.
/// New tasks of many apps queued together (a deployment scaling many
/// apps): their definitions are fetched at the same time, not one round
/// trip after another, and every record is written.
#[tokio::test]
async fn a_batch_of_new_apps_fetches_their_definitions_at_once() {
    let mut fake = FakeMarathon {
        gate: Some(4),
        ..FakeMarathon::default()
    };
    let ids: Vec<String> = (0..20).map(|i| format!("/dev/app{i:02}")).collect();
    for id in &ids {
        let mut a = web();
        a.id = id.clone();
        fake.apps.get_mut().unwrap().insert(id.clone(), a);
    }
    let fake = Arc::new(fake);
    // The test's runtime has one thread: every event is queued before the
    // writer first runs, so they form one batch.
    let h = start_with(fake.clone(), false, 1000);
    let mut want = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let task = format!("t{i:02}");
        h.ch.sink.push(running(&task, id, 31000 + i as u32));
        want.push(task);
    }
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    h.wait_for(&want).await;
    assert!(
        fake.most_in_flight.load(Relaxed) >= 4,
        "definitions were fetched one at a time (at most {} in flight)",
        fake.most_in_flight.load(Relaxed)
    );
    h.stop().await;
}

/// A task's app version is fetched when the task is staged, so its
/// `TASK_RUNNING` is written without a round trip to Marathon of its own.
#[tokio::test]
async fn a_staged_tasks_app_definition_is_fetched_before_it_runs() {
    let fake = FakeMarathon::default();
    fake.apps.lock().unwrap().insert(web().id.clone(), web());
    let fake = Arc::new(fake);
    let h = start_with(fake.clone(), false, 1000);
    let mut staged = task("t1", "/dev/web", &[31001]);
    staged.app_version = Some("v1".into());
    staged.state = "TASK_STAGING".into();
    h.ch.sink.push(TaskEvent::Status(staged));
    testkit::eventually_async(
        "the definition fetched at staging",
        Duration::from_secs(5),
        || async { (fake.calls.load(Relaxed) == 1).then_some(()) },
    )
    .await;
    assert!(
        h.store.containers().is_empty(),
        "a staged task has no record"
    );
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.wait_for(&["t1"]).await;
    assert_eq!(
        fake.calls.load(Relaxed),
        1,
        "TASK_RUNNING fetched the definition again"
    );
    h.stop().await;
}

#[tokio::test]
async fn app_definition_cache_is_rebuilt_at_resync() {
    let h = start(false, 1000);
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.ch.sink.push(running("c1", "/dev/checked", 31002));
    h.wait_for(&["c1", "t1"]).await;
    assert_eq!(h.metrics.apps_cached.get(), 2);
    // /dev/checked was deleted; /dev/web runs t1 (launched at v1) at v2.
    let mut web_v2 = web();
    web_v2.version = "v2".into();
    let mut t1 = task("t1", "/dev/web", &[31001]);
    t1.app_version = Some("v1".into());
    let epoch = h.ch.clock.begin_fetch();
    h.resync(vec![(web_v2, vec![t1])], epoch, false).await;
    assert_eq!(
        h.metrics.apps_cached.get(),
        2,
        "/dev/web by v2 and by its task's v1; /dev/checked gone"
    );
    assert_eq!(h.store.containers(), vec!["t1"]);
    h.stop().await;
}

#[tokio::test]
async fn resync_repairs_and_leaves_other_owners_alone() {
    let h = start(false, 1000);
    let a = web();
    let t1 = task("t1", "/dev/web", &[31001]);
    let foreign =
        crate::record::record_from_task(&a, &task("f1", "/dev/web", &[1]), "other", "n").unwrap();
    h.store.insert(foreign.clone());
    let invented =
        crate::record::record_from_task(&a, &task("ghost", "/dev/web", &[2]), "me", "n").unwrap();
    h.store.insert(invented);
    let mut wrong =
        crate::record::record_from_task(&a, &task("t2", "/dev/web", &[3]), "me", "n").unwrap();
    wrong.host = "wrong".into();
    h.store.insert(wrong);
    let apps = vec![(a.clone(), vec![t1, task("t2", "/dev/web", &[3])])];
    let epoch = h.ch.clock.begin_fetch();
    let dry = h.resync(apps.clone(), epoch, true).await;
    assert_eq!((dry.added, dry.updated, dry.removed), (1, 1, 1));
    assert_eq!(
        h.store.containers(),
        vec!["f1", "ghost", "t2"],
        "dry run writes nothing"
    );
    let epoch = h.ch.clock.begin_fetch();
    let s = h.resync(apps.clone(), epoch, false).await;
    assert_eq!((s.added, s.updated, s.removed, s.unchanged), (1, 1, 1, 0));
    assert_eq!(h.store.containers(), vec!["f1", "t1", "t2"]);
    assert_eq!(h.store.get("t2").unwrap().host, "10.0.0.5");
    assert_eq!(h.store.get("f1").unwrap().owner, "other");
    let epoch = h.ch.clock.begin_fetch();
    let s = h.resync(apps, epoch, false).await;
    assert_eq!((s.added, s.updated, s.removed, s.unchanged), (0, 0, 0, 2));
    assert!(h.metrics.last_sync_age().is_some());
    h.stop().await;
}

#[tokio::test]
async fn etcd_outage_keeps_events_in_order_and_converges() {
    let h = start(false, 1000);
    h.store.set_fail(true);
    for i in 0..50 {
        h.ch.sink
            .push(running(&format!("t{i:02}"), "/dev/web", 31000 + i));
    }
    for i in 0..25 {
        h.ch.sink
            .push(state(&format!("t{i:02}"), "/dev/web", "TASK_KILLED"));
    }
    testkit::eventually_async("etcd errors counted", Duration::from_secs(5), || async {
        (h.metrics.errors_of(kind::ETCD) >= 2).then_some(())
    })
    .await;
    h.store.set_fail(false);
    let want: Vec<String> = (25..50).map(|i| format!("t{i:02}")).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    h.wait_for(&want).await;
    h.stop().await;
}

#[tokio::test]
async fn overflow_schedules_a_resync() {
    let h = start(false, 4);
    h.store.set_fail(true);
    for i in 0..20 {
        h.ch.sink
            .push(running(&format!("t{i:02}"), "/dev/web", 31000 + i));
    }
    assert!(h.metrics.events_dropped.get() > 0);
    let notified = h.ch.resync.clone();
    let wait = notified.notified();
    h.store.set_fail(false);
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("a resync is scheduled after the overflow");
    h.stop().await;
}

#[tokio::test]
async fn health_events_and_require_healthy() {
    let h = start(true, 1000);
    h.ch.sink.push(running("c1", "/dev/checked", 31001));
    h.ch.sink.push(running("w1", "/dev/web", 31002));
    h.wait_for(&["w1"]).await;
    h.ch.sink.push(TaskEvent::Health {
        app_id: Some("/dev/checked".into()),
        id: "c1".into(),
        healthy: Some(true),
    });
    h.wait_for(&["c1", "w1"]).await;
    assert_eq!(h.store.get("c1").unwrap().healthy, Some(true));
    h.ch.sink.push(TaskEvent::Health {
        app_id: None,
        id: "c1".into(),
        healthy: Some(false),
    });
    h.wait_for(&["w1"]).await;
    h.stop().await;
}

/// A task out of reach (agent partition) loses its record but is not
/// tombstoned: its next TASK_RUNNING writes it again at once, and so does a
/// resync that lists it running again.
#[tokio::test]
async fn unreachable_unknown_lost_are_not_final() {
    let h = start(false, 1000);
    for away in ["TASK_UNREACHABLE", "TASK_UNKNOWN", "TASK_LOST"] {
        h.ch.sink.push(running("t1", "/dev/web", 31001));
        h.wait_for(&["t1"]).await;
        h.ch.sink.push(state("t1", "/dev/web", away));
        h.wait_for(&[]).await;
        h.ch.sink.push(running("t1", "/dev/web", 31001));
        h.wait_for(&["t1"]).await;
        // Away again, and this time the TASK_RUNNING event is missed: the
        // resync that lists the task running brings the record back.
        h.ch.sink.push(state("t1", "/dev/web", away));
        h.wait_for(&[]).await;
        let epoch = h.ch.clock.begin_fetch();
        let s = h
            .resync(
                vec![(web(), vec![task("t1", "/dev/web", &[31001])])],
                epoch,
                false,
            )
            .await;
        assert_eq!(s.added, 1, "{away}: {s:?}");
        assert_eq!(h.store.containers(), vec!["t1"], "{away}");
        h.ch.sink.push(state("t1", "/dev/web", away));
        h.wait_for(&[]).await;
    }
    // A final state still is final.
    h.ch.sink.push(running("t2", "/dev/web", 31002));
    h.wait_for(&["t2"]).await;
    h.ch.sink.push(state("t2", "/dev/web", "TASK_GONE"));
    h.wait_for(&[]).await;
    h.ch.sink.push(running("t2", "/dev/web", 31002));
    h.ch.sink.push(running("t3", "/dev/web", 31003));
    h.wait_for(&["t3"]).await;
    h.stop().await;
}

fn stored(container: &str, app: &AppSpec, owner: &str) -> Instance {
    crate::record::record_from_task(app, &task(container, &app.id, &[7]), owner, "n").unwrap()
}

/// Records written by an earlier process (this one never wrote nor read
/// them: no resync yet) go with their task's death, found by their key,
/// whether the app still exists or not; and even while a resync's fetch
/// is under way (the resync would leave them alone: protected).
#[tokio::test]
async fn death_removes_a_record_this_process_never_wrote() {
    let h = start(false, 1000);
    let mut gone_app = web();
    gone_app.id = "/dev/gone".into();
    h.store.insert(stored("t1", &web(), "me"));
    h.store.insert(stored("t2", &gone_app, "me"));
    h.store.insert(stored("t3", &web(), "me"));
    h.store.insert(stored("t4", &web(), "me"));
    let _epoch = h.ch.clock.begin_fetch();
    h.ch.sink.push(state("t1", "/dev/web", "TASK_KILLED"));
    h.wait_for(&["t2", "t3", "t4"]).await;
    h.ch.sink.push(state("t2", "/dev/gone", "TASK_FAILED"));
    h.wait_for(&["t3", "t4"]).await;
    h.ch.sink.push(state("t3", "/dev/web", "TASK_UNREACHABLE"));
    h.wait_for(&["t4"]).await;
    h.ch.clock.end_fetch();
    h.stop().await;
}

/// A dead task's key that holds another owner's record keeps it, even when
/// this process wrote the key before.
#[tokio::test]
async fn death_leaves_another_owners_record() {
    let h = start(false, 1000);
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.wait_for(&["t1"]).await;
    h.store.insert(stored("t1", &web(), "other"));
    h.store.insert(stored("t5", &web(), "other"));
    h.ch.sink.push(state("t1", "/dev/web", "TASK_KILLED"));
    h.ch.sink.push(state("t5", "/dev/web", "TASK_KILLED"));
    // Events are applied in order: once t2 is there, the kills were handled.
    h.ch.sink.push(running("t2", "/dev/web", 31002));
    h.wait_for(&["t1", "t2", "t5"]).await;
    assert_eq!(h.store.get("t1").unwrap().owner, "other");
    assert_eq!(h.store.get("t5").unwrap().owner, "other");
    h.stop().await;
}

#[test]
fn coalesce_keeps_last_per_key() {
    let a = web();
    let r1 = crate::record::record_from_task(&a, &task("t1", "/dev/web", &[1]), "me", "n").unwrap();
    let r2 = crate::record::record_from_task(&a, &task("t2", "/dev/web", &[2]), "me", "n").unwrap();
    let put = |r: &Instance| Change::Put(r.clone());
    let del = |r: &Instance| Change::Delete(RecordId::of(r));
    let out = coalesce(vec![put(&r1), put(&r2), del(&r1)]);
    assert_eq!(out, vec![put(&r2), del(&r1)]);
}

/// A resync with nothing to change reads no record's value: it lists the
/// keys with their revisions and compares the tasks with the records the
/// writer wrote or read at those revisions. A record rewritten behind its
/// back (a new revision) is read and corrected; one rewritten as it was is
/// read and left alone.
#[tokio::test]
async fn resync_reads_only_the_values_it_does_not_know() {
    let h = start(false, 1000);
    let tasks: Vec<TaskInfo> = (1..=3)
        .map(|i| {
            let mut t = task(&format!("t{i}"), "/dev/web", &[31000 + i]);
            t.app_version = Some("v1".into());
            t
        })
        .collect();
    let apps = || vec![(web(), tasks.clone())];
    let values_read = || h.store.inner.lock().unwrap().values_read;
    let epoch = h.ch.clock.begin_fetch();
    assert_eq!(h.resync(apps(), epoch, false).await.added, 3);
    let before = values_read();
    let epoch = h.ch.clock.begin_fetch();
    let s = h.resync(apps(), epoch, false).await;
    assert_eq!((s.updated, s.unchanged), (0, 3), "{s:?}");
    assert_eq!(values_read(), before, "nothing to change: no value read");
    // Behind the writer's back: t2 moved to another host, t3 written again
    // as it was.
    let mut moved = h.store.get("t2").unwrap();
    moved.host = "10.6.6.6".into();
    h.store.insert(moved);
    h.store.insert(h.store.get("t3").unwrap());
    let epoch = h.ch.clock.begin_fetch();
    let s = h.resync(apps(), epoch, false).await;
    assert_eq!((s.updated, s.unchanged), (1, 2), "{s:?}");
    assert_eq!(values_read(), before + 2, "the two rewritten keys only");
    assert_eq!(h.store.get("t2").unwrap().host, tasks[1].host);
    // Known again (t2 as put, t3 as read): nothing read.
    let epoch = h.ch.clock.begin_fetch();
    let s = h.resync(apps(), epoch, false).await;
    assert_eq!((s.updated, s.unchanged), (0, 3), "{s:?}");
    assert_eq!(values_read(), before + 2);
    h.stop().await;
}

/// A resync reuses its view of a record only while etcd holds it at the
/// revision it was read at: a record changed behind the writer's back in a
/// way the resync leaves alone (another start time) is read again, so the
/// next event of that task writes it back.
#[tokio::test]
async fn resync_reads_again_a_record_changed_behind_its_back() {
    let h = start(false, 1000);
    let mut t1 = task("t1", "/dev/web", &[31001]);
    t1.app_version = Some("v1".into());
    let apps = || vec![(web(), vec![t1.clone()])];
    let epoch = h.ch.clock.begin_fetch();
    assert_eq!(h.resync(apps(), epoch, false).await.added, 1);
    // Read back (its revision known) by a resync that changes nothing.
    let epoch = h.ch.clock.begin_fetch();
    assert_eq!(h.resync(apps(), epoch, false).await.unchanged, 1);
    // Changed behind the writer's back; a resync leaves start times alone.
    let mut changed = h.store.get("t1").unwrap();
    changed.started_at = "2026-11-22T11:11:11.000Z".into();
    h.store.insert(changed);
    let epoch = h.ch.clock.begin_fetch();
    assert_eq!(h.resync(apps(), epoch, false).await.unchanged, 1);
    // The next TASK_RUNNING of t1 writes the record as Marathon has it.
    h.ch.sink.push(TaskEvent::Status(t1.clone()));
    testkit::eventually_async("t1 written back", Duration::from_secs(5), || async {
        (h.store.get("t1").map(|r| r.started_at) == t1.started_at).then_some(())
    })
    .await;
    h.stop().await;
}

/// The etcd store, counting its reads: which deletes needed one.
#[derive(Clone)]
struct CountingEtcd {
    inner: crate::record_store::EtcdStore,
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store for CountingEtcd {
    async fn snapshot(&self) -> Result<Vec<Existing>, StoreError> {
        self.inner.snapshot().await
    }

    async fn keys(&self) -> Result<Vec<crate::record_store::StoredKey>, StoreError> {
        self.inner.keys().await
    }

    async fn read_many(&self, ids: &[RecordId]) -> Result<Vec<Existing>, StoreError> {
        self.inner.read_many(ids).await
    }

    async fn read(&self, ids: &[RecordId]) -> Result<Vec<Existing>, StoreError> {
        self.reads.fetch_add(1, Relaxed);
        self.inner.read(ids).await
    }

    async fn apply(&self, actions: Vec<Action>) -> Result<Applied, StoreError> {
        self.inner.apply(actions).await
    }
}

/// A writer on a real etcd.
struct EtcdHarness {
    _etcd: testkit::etcd::Etcd,
    registry: registry::Registry,
    store: CountingEtcd,
    ch: Channels,
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl EtcdHarness {
    async fn start() -> EtcdHarness {
        let etcd = testkit::etcd::Etcd::start().expect("etcd");
        let registry = registry::Registry::connect(&registry::Settings::new([etcd.endpoint()]))
            .await
            .expect("registry");
        let store = CountingEtcd {
            inner: crate::record_store::EtcdStore {
                registry: registry.clone(),
            },
            reads: Arc::default(),
        };
        let fake = FakeMarathon::default();
        fake.apps.lock().unwrap().insert(web().id, web());
        let (writer, ch) = Writer::new(
            store.clone(),
            Arc::new(fake),
            WriterConfig {
                owner: "me".into(),
                require_healthy: false,
                tombstone_ttl: Duration::from_secs(600),
            },
            Arc::new(Metrics::default()),
            1000,
        );
        let cancel = CancellationToken::new();
        let join = tokio::spawn(writer.run(cancel.clone()));
        EtcdHarness {
            _etcd: etcd,
            registry,
            store,
            ch,
            cancel,
            join,
        }
    }

    /// The record at `container`'s key (app /dev/web), once `present` says so.
    async fn wait_record(&self, container: &str, present: bool) -> Option<Instance> {
        let id = RecordId::of(&stored(container, &web(), "me"));
        testkit::eventually_async("record", Duration::from_secs(10), || async {
            let got = self.registry.get(&id).await.ok()?;
            (got.is_some() == present).then_some(got.map(|e| e.instance))
        })
        .await
    }

    fn reads(&self) -> usize {
        self.store.reads.load(Relaxed)
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.join.await.unwrap();
    }
}

#[tokio::test]
async fn etcd_a_death_deletes_our_own_record_in_one_transaction() {
    let h = EtcdHarness::start().await;
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.wait_record("t1", true).await;
    h.ch.sink.push(state("t1", "/dev/web", "TASK_KILLED"));
    h.wait_record("t1", false).await;
    assert_eq!(
        h.reads(),
        0,
        "the delete read nothing: it knew its put's revision"
    );
    h.stop().await;
}

#[tokio::test]
async fn etcd_a_record_rewritten_since_our_put_is_deleted_only_after_a_read() {
    let h = EtcdHarness::start().await;
    // Another owner took the key since our put: it stays.
    h.ch.sink.push(running("t1", "/dev/web", 31001));
    h.wait_record("t1", true).await;
    h.registry
        .put(&stored("t1", &web(), "other"))
        .await
        .expect("put");
    h.ch.sink.push(state("t1", "/dev/web", "TASK_KILLED"));
    // Events are applied in order: once t2 is there, t1's death was handled.
    h.ch.sink.push(running("t2", "/dev/web", 31002));
    h.wait_record("t2", true).await;
    let t1 = h.wait_record("t1", true).await.expect("t1");
    assert_eq!(t1.owner, "other", "another owner's record is left alone");
    assert_eq!(
        h.reads(),
        1,
        "the stale revision sent the delete the read way"
    );

    // Our own record rewritten since (e.g. by a restarted subscriber): it
    // goes, at the revision read.
    let mut rewritten = stored("t2", &web(), "me");
    rewritten.host = "elsewhere".into();
    h.registry.put(&rewritten).await.expect("put");
    h.ch.sink.push(state("t2", "/dev/web", "TASK_FAILED"));
    h.wait_record("t2", false).await;
    assert_eq!(h.reads(), 2);
    h.stop().await;
}
