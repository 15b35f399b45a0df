//! Integration tests against a real etcd (one per test).

use std::time::Duration;

use futures::StreamExt;
use registry::{
    Error, Expect, InstanceName, Op, Outcome, Registry, Scope, Settings, WatchEvent, WatchStream,
};
use testkit::records::instance;
use testkit::Etcd;

const T: Duration = Duration::from_secs(15);

async fn connect(etcd: &Etcd) -> Registry {
    Registry::connect(&Settings::new([etcd.endpoint()]))
        .await
        .expect("connect")
}

async fn raw_get(reg: &Registry, key: &str) -> Option<Vec<u8>> {
    let mut c = reg.client();
    let resp = c.get(key, None).await.unwrap();
    resp.kvs().first().map(|kv| kv.value().to_vec())
}

async fn raw_count(reg: &Registry) -> usize {
    let mut c = reg.client();
    let resp = c
        .get(
            "/",
            Some(registry::etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    resp.kvs().len()
}

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    loop {
        match tokio::time::timeout(T, stream.next()).await {
            Ok(Some(Ok(ev))) => return ev,
            Ok(Some(Err(e))) => eprintln!("watch error (recovering): {e}"),
            Ok(None) => panic!("watch ended"),
            Err(_) => panic!("no watch event within {T:?}"),
        }
    }
}

#[tokio::test]
async fn put_get_and_list_by_service_and_group() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let a = instance("web", "dev", "t1");
    let b = instance("web", "hello.ponies", "t2");
    let c = instance("db", "default", "t3");
    let d = instance("webapp", "dev", "t4");
    let report = reg
        .apply(vec![
            Op::put(a.clone()),
            Op::put(b.clone()),
            Op::put(c.clone()),
            Op::put(d.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Applied; 4]);

    // The exact key and JSON of DESIGN.md.
    let stored = raw_get(&reg, "/services/web/dev/containers/t1")
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(json["service"], "web");
    assert_eq!(json["ports"]["api"]["external"], 31001);
    assert!(json.as_object().unwrap().contains_key("healthy"));
    assert_eq!(json["healthy"], serde_json::Value::Null);

    let got = reg.get(&a.name().unwrap()).await.unwrap().unwrap();
    assert_eq!(got.instance, a);
    assert_eq!(got.key, "/services/web/dev/containers/t1");
    assert!(got.mod_revision > 0);
    // Each op's transaction revision is its record's mod revision (the
    // subscriber deletes its own records at it).
    assert_eq!(report.revisions.len(), 4);
    assert_eq!(report.revisions[0], got.mod_revision);

    let web = reg.list_service("web").await.unwrap();
    let containers: Vec<_> = web.instances().map(|i| i.container.as_str()).collect();
    assert_eq!(containers, vec!["t1", "t2"], "webapp must not match web");
    assert!(web.revision >= report.revision);

    let dev = reg.list_group("web", "dev").await.unwrap();
    assert_eq!(dev.entries.len(), 1);
    assert_eq!(dev.entries[0].instance, a);

    let all = reg.list_all().await.unwrap();
    assert_eq!(all.entries.len(), 4);
    assert!(all.invalid.is_empty());

    assert!(reg.delete(&a.name().unwrap()).await.unwrap());
    assert!(!reg.delete(&a.name().unwrap()).await.unwrap());
    assert!(reg.get(&a.name().unwrap()).await.unwrap().is_none());
}

#[tokio::test]
async fn invalid_records_are_reported_not_fatal() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    reg.put(&instance("web", "dev", "good")).await.unwrap();
    let mut c = reg.client();
    c.put("/services/web/dev/containers/bad", "not json", None)
        .await
        .unwrap();
    c.put("/services/web/dev/other", "{}", None).await.unwrap();
    // A record whose names disagree with its key.
    let mut wrong = instance("web", "dev", "x");
    wrong.container = "y".into();
    c.put("/services/web/dev/containers/x", wrong.to_json(), None)
        .await
        .unwrap();
    let snap = reg.list_service("web").await.unwrap();
    assert_eq!(snap.entries.len(), 1);
    assert_eq!(snap.entries[0].instance.container, "good");
    let mut bad: Vec<_> = snap.invalid.iter().map(|i| i.key.as_str()).collect();
    bad.sort();
    assert_eq!(
        bad,
        vec![
            "/services/web/dev/containers/bad",
            "/services/web/dev/containers/x",
            "/services/web/dev/other"
        ]
    );
}

/// A keys-only listing gives every key in scope with the mod revision a
/// full read gives (names for valid instance keys, none for others); many
/// records read by name come back as a full read has them (more than one
/// transaction of gets), absent ones left out, bad values reported.
#[tokio::test]
async fn keys_listed_without_values_and_many_records_read_by_name() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let ops: Vec<Op> = (0..300)
        .map(|i| Op::put(instance("bulk", "default", &format!("task-{i:03}"))))
        .collect();
    reg.apply(ops).await.unwrap();
    let mut c = reg.client();
    c.put("/services/bulk/default/containers/bad", "not json", None)
        .await
        .unwrap();
    c.put("/services/bulk/default/other", "{}", None)
        .await
        .unwrap();
    // Rewritten: a later mod revision than the others.
    let mut moved = instance("bulk", "default", "task-007");
    moved.host = "elsewhere".into();
    reg.put(&moved).await.unwrap();

    let full = reg.list(&Scope::All).await.unwrap();
    let (revision, keys) = reg.list_keys(&Scope::All).await.unwrap();
    assert!(revision >= full.revision);
    assert_eq!(keys.len(), 302);
    let valid: Vec<(String, Option<InstanceName>, i64)> = full
        .entries
        .iter()
        .map(|e| (e.key.clone(), Some(e.name.clone()), e.mod_revision))
        .collect();
    let listed: Vec<(String, Option<InstanceName>, i64)> = keys
        .iter()
        .filter(|k| k.name.is_some() && !k.key.ends_with("/bad"))
        .map(|k| (k.key.clone(), k.name.clone(), k.mod_revision))
        .collect();
    assert_eq!(listed, valid);
    let other = keys.iter().find(|k| k.key.ends_with("/other")).unwrap();
    assert_eq!(other.name, None);
    let moved_rev = keys
        .iter()
        .find(|k| k.key.ends_with("/task-007"))
        .unwrap()
        .mod_revision;
    assert!(moved_rev > keys[0].mod_revision);

    let mut names: Vec<InstanceName> = full.entries.iter().map(|e| e.name.clone()).collect();
    names.push(InstanceName::new("bulk", "default", "absent").unwrap());
    names.push(InstanceName::new("bulk", "default", "bad").unwrap());
    let many = reg.get_many(&names).await.unwrap();
    assert_eq!(many.entries, full.entries);
    assert_eq!(many.invalid.len(), 1);
    assert!(many.invalid[0].key.ends_with("/bad"));
    assert_eq!(
        many.entries
            .iter()
            .find(|e| e.name.container == "task-007")
            .unwrap()
            .instance
            .host,
        "elsewhere"
    );
}

#[tokio::test]
async fn writes_are_chunked_into_transactions_of_128() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let ops: Vec<Op> = (0..300)
        .map(|i| Op::Put {
            instance: instance("bulk", "default", &format!("task-{i:03}")),
            expect: Expect::Absent,
        })
        .collect();
    let report = reg.apply(ops).await.unwrap();
    assert_eq!(report.transactions, 3);
    assert_eq!(report.count(Outcome::Applied), 300);
    assert_eq!(reg.list_service("bulk").await.unwrap().entries.len(), 300);

    // Again with Absent: every compare fails, nothing changes.
    let before = reg.list_service("bulk").await.unwrap();
    let ops: Vec<Op> = (0..300)
        .map(|i| {
            let mut i = instance("bulk", "default", &format!("task-{i:03}"));
            i.host = "changed".into();
            Op::Put {
                instance: i,
                expect: Expect::Absent,
            }
        })
        .collect();
    let report = reg.apply(ops).await.unwrap();
    assert_eq!(report.count(Outcome::CompareFailed), 300);
    let after = reg.list_service("bulk").await.unwrap();
    assert_eq!(before.entries, after.entries);

    // Unconditional deletes, 300 of them, unconditional.
    let ops: Vec<Op> = after
        .entries
        .iter()
        .map(|e| Op::delete(e.name.clone()))
        .collect();
    let report = reg.apply(ops).await.unwrap();
    assert_eq!(report.count(Outcome::Applied), 300);
    assert_eq!(report.transactions, 3);
    assert_eq!(raw_count(&reg).await, 0);
}

#[tokio::test]
async fn a_repeated_key_starts_a_new_transaction_and_order_is_kept() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let a = instance("web", "dev", "t1");
    let mut a2 = a.clone();
    a2.host = "10.0.0.9".into();
    let report = reg
        .apply(vec![
            Op::put(a.clone()),
            Op::delete(a.name().unwrap()),
            Op::put(a2.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(report.transactions, 3);
    assert_eq!(report.outcomes, vec![Outcome::Applied; 3]);
    let got = reg.get(&a.name().unwrap()).await.unwrap().unwrap();
    assert_eq!(got.instance.host, "10.0.0.9");
}

#[tokio::test]
async fn a_failed_compare_changes_only_nothing_for_that_op() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let a = instance("web", "dev", "t1");
    let b = instance("web", "dev", "t2");
    reg.apply(vec![Op::put(a.clone()), Op::put(b.clone())])
        .await
        .unwrap();
    let snap = reg.list_group("web", "dev").await.unwrap();
    let rev_a = snap.find_container("t1").unwrap().mod_revision;
    let rev_b = snap.find_container("t2").unwrap().mod_revision;

    // Someone rewrites t1 after our read.
    let mut a_other = a.clone();
    a_other.host = "someone-else".into();
    reg.put(&a_other).await.unwrap();

    let mut a_mine = a.clone();
    a_mine.host = "mine".into();
    let mut b_mine = b.clone();
    b_mine.host = "mine".into();
    let report = reg
        .apply(vec![
            Op::Put {
                instance: a_mine,
                expect: Expect::ModRevision(rev_a),
            },
            Op::Put {
                instance: b_mine,
                expect: Expect::ModRevision(rev_b),
            },
            Op::Delete {
                name: InstanceName::new("web", "dev", "t3").unwrap(),
                expect: Expect::Present,
            },
            Op::Delete {
                name: InstanceName::new("web", "dev", "t4").unwrap(),
                expect: Expect::Any,
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        report.outcomes,
        vec![
            Outcome::CompareFailed,
            Outcome::Applied,
            Outcome::CompareFailed,
            Outcome::NotFound
        ]
    );
    let snap = reg.list_group("web", "dev").await.unwrap();
    assert_eq!(
        snap.find_container("t1").unwrap().instance.host,
        "someone-else"
    );
    assert_eq!(snap.find_container("t2").unwrap().instance.host, "mine");

    // A stale delete loses too.
    let report = reg
        .apply(vec![Op::Delete {
            name: a.name().unwrap(),
            expect: Expect::ModRevision(rev_a),
        }])
        .await
        .unwrap();
    assert_eq!(report.outcomes, vec![Outcome::CompareFailed]);
    assert!(reg.get(&a.name().unwrap()).await.unwrap().is_some());
}

#[tokio::test]
async fn bad_names_are_rejected_and_nothing_is_written() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let good = instance("web", "dev", "t1");
    for bad in [
        instance("Web", "dev", "t2"),
        instance("in.gestor", "dev", "t2"),
        instance("web", "Dev", "t2"),
        instance("web", "dev", ".."),
        instance("web", "dev", "a/b"),
    ] {
        let err = reg
            .apply(vec![Op::put(good.clone()), Op::put(bad.clone())])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    }
    assert_eq!(raw_count(&reg).await, 0, "nothing may be written");
    assert!(Settings::new([etcd.endpoint()])
        .with_prefix("/a/../b")
        .is_err());
}

#[tokio::test]
async fn watch_sees_puts_and_deletes_in_scope() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let seed = instance("web", "dev", "t0");
    reg.put(&seed).await.unwrap();

    let mut stream = reg.watch(Scope::service("web"), None);
    let WatchEvent::Relisted(snap) = next_event(&mut stream).await else {
        panic!("first event must be Relisted");
    };
    assert_eq!(snap.entries.len(), 1);
    assert_eq!(snap.entries[0].instance, seed);

    let a = instance("web", "dev", "t1");
    reg.put(&instance("webapp", "dev", "x")).await.unwrap(); // out of scope
    let rev = reg.put(&a).await.unwrap();
    assert_eq!(
        next_event(&mut stream).await,
        WatchEvent::Put(a.clone(), rev)
    );
    reg.delete(&a.name().unwrap()).await.unwrap();
    match next_event(&mut stream).await {
        WatchEvent::Delete(name, r) => {
            assert_eq!(name, a.name().unwrap());
            assert!(r > rev);
        }
        other => panic!("expected a delete, got {other:?}"),
    }

    // A watch from a revision replays history from there.
    let mut replay = reg.watch(Scope::group("web", "dev"), Some(rev));
    assert_eq!(
        next_event(&mut replay).await,
        WatchEvent::Put(a.clone(), rev)
    );
    assert!(matches!(
        next_event(&mut replay).await,
        WatchEvent::Delete(..)
    ));
}

#[tokio::test]
async fn watch_after_compaction_relists() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let first = reg.put(&instance("web", "dev", "t1")).await.unwrap();
    reg.put(&instance("web", "dev", "t2")).await.unwrap();
    let last = reg
        .delete(&InstanceName::new("web", "dev", "t1").unwrap())
        .await;
    assert!(last.unwrap());
    let rev = reg.put(&instance("web", "dev", "t3")).await.unwrap();
    reg.client().compact(rev, None).await.unwrap();

    // Resuming from before the compaction cannot replay: it re-lists.
    let mut stream = reg.watch(Scope::service("web"), Some(first));
    let WatchEvent::Relisted(snap) = next_event(&mut stream).await else {
        panic!("expected Relisted after compaction");
    };
    let names: Vec<_> = snap.instances().map(|i| i.container.as_str()).collect();
    assert_eq!(names, vec!["t2", "t3"]);
    assert!(snap.revision >= rev);

    // And goes on from the snapshot.
    let t4 = instance("web", "dev", "t4");
    let r4 = reg.put(&t4).await.unwrap();
    assert_eq!(next_event(&mut stream).await, WatchEvent::Put(t4, r4));
}

#[tokio::test]
async fn watch_resumes_after_etcd_restart_without_losing_events() {
    let mut etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    let mut stream = reg.watch(Scope::All, None);
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Relisted(_)
    ));
    let a = instance("web", "dev", "t1");
    let ra = reg.put(&a).await.unwrap();
    assert_eq!(next_event(&mut stream).await, WatchEvent::Put(a, ra));

    etcd.stop();
    // Let the stream notice the outage.
    let err = tokio::time::timeout(T, stream.next())
        .await
        .unwrap()
        .unwrap();
    assert!(err.is_err(), "expected an error item while etcd is down");
    etcd.restart().unwrap();

    let b = instance("web", "dev", "t2");
    let rb = testkit::eventually_async("put after restart", T, || {
        let reg = reg.clone();
        let b = b.clone();
        async move { reg.put(&b).await.ok() }
    })
    .await;
    // The next good event is the put of t2: nothing replayed, nothing lost.
    assert_eq!(next_event(&mut stream).await, WatchEvent::Put(b, rb));
}

fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    testkit::etcd::etcdctl(endpoint, args).unwrap()
}

#[tokio::test]
async fn auth_with_user_and_password() {
    let etcd = Etcd::start().unwrap();
    let ep = etcd.endpoint();
    etcdctl(&ep, &["user", "add", "root:rootpw"]);
    etcdctl(&ep, &["auth", "enable"]);

    // Without credentials: refused.
    let anonymous = connect(&etcd).await;
    assert!(anonymous.list_all().await.is_err());
    // Wrong password: refused at connect.
    let wrong = Registry::connect(&Settings::new([ep.clone()]).with_auth("root", "nope")).await;
    assert!(wrong.is_err());

    let settings = Settings::from_parts(
        Some(&ep),
        None,
        Some("root"),
        Some("rootpw"),
        None,
        None,
        None,
    )
    .unwrap();
    assert!(!format!("{settings:?}").contains("rootpw"));
    let reg = Registry::connect(&settings).await.unwrap();
    let a = instance("web", "dev", "t1");
    reg.put(&a).await.unwrap();
    let out = etcdctl(
        &ep,
        &[
            "--user",
            "root:rootpw",
            "get",
            "/services/web/dev/containers/t1",
            "--print-value-only",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["container"], "t1");
    assert_eq!(
        reg.list_service("web").await.unwrap().entries[0].instance,
        a
    );

    let mut stream = reg.watch(Scope::service("web"), None);
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Relisted(s) if s.entries.len() == 1)
    );
    let b = instance("web", "dev", "t2");
    let rb = reg.put(&b).await.unwrap();
    assert_eq!(next_event(&mut stream).await, WatchEvent::Put(b, rb));
}

#[tokio::test]
async fn custom_prefix_is_used_for_every_key() {
    let etcd = Etcd::start().unwrap();
    let settings = Settings::new([etcd.endpoint()])
        .with_prefix("/mdo/prod/")
        .unwrap();
    let reg = Registry::connect(&settings).await.unwrap();
    reg.put(&instance("web", "dev", "t1")).await.unwrap();
    assert!(raw_get(&reg, "/mdo/prod/web/dev/containers/t1")
        .await
        .is_some());
    assert_eq!(reg.list_all().await.unwrap().entries.len(), 1);
}

#[tokio::test]
async fn watch_relists_when_etcd_comes_back_empty() {
    let mut etcd = Etcd::start().unwrap();
    let reg = connect(&etcd).await;
    for i in 0..5 {
        reg.put(&instance("web", "dev", &format!("t{i}")))
            .await
            .unwrap();
    }
    let mut stream = reg.watch(Scope::service("web"), None);
    let WatchEvent::Relisted(snap) = next_event(&mut stream).await else {
        panic!("first event must be Relisted");
    };
    assert_eq!(snap.entries.len(), 5);

    // etcd loses its data (a new member at revision 1).
    etcd.stop();
    std::fs::remove_dir_all(etcd.data_dir()).unwrap();
    let err = tokio::time::timeout(T, stream.next())
        .await
        .unwrap()
        .unwrap();
    assert!(err.is_err());
    etcd.restart().unwrap();
    let fresh = instance("web", "dev", "new");
    testkit::eventually_async("put after restart", T, || {
        let reg = reg.clone();
        let f = fresh.clone();
        async move { reg.put(&f).await.ok() }
    })
    .await;
    // The watch cannot resume at revision 7 of a store now at 2: it re-lists
    // (before or after the new put lands), and the state it leads to is the
    // new store's.
    let mut state: Vec<String> = snap.instances().map(|i| i.container.clone()).collect();
    let mut relisted = false;
    while !(relisted && state == ["new"]) {
        match next_event(&mut stream).await {
            WatchEvent::Relisted(s) => {
                relisted = true;
                state = s.instances().map(|i| i.container.clone()).collect();
            }
            WatchEvent::Put(i, _) => {
                assert!(relisted, "a put before the re-list: {i:?}");
                state.push(i.container);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
