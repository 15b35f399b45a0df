//! Raw state access (the manager's keys) against a real etcd: paged prefix
//! reads, one bounded transaction, chunked idempotent writes, create-once.

use registry::etcd_client::{Client, GetOptions};
use registry::{Error, KvOp, ManagerKeys, Registry, Settings};
use testkit::Etcd;

async fn connect(etcd: &Etcd, prefix: &str) -> Registry {
    Registry::connect(
        &Settings::new([etcd.endpoint()])
            .with_prefix(prefix)
            .unwrap(),
    )
    .await
    .expect("connect")
}

/// Every key under `prefix` as etcd has it (one plain read, for checking).
async fn raw_keys(etcd: &Etcd, prefix: &str) -> Vec<String> {
    let mut c = Client::connect([etcd.endpoint()], None).await.unwrap();
    let resp = c
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

#[tokio::test]
async fn a_prefix_is_read_in_pages_sorted_and_complete() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd, "/m").await;
    let keys = ManagerKeys::new("/m").unwrap();
    // 1,050 tasks: more than ten pages of 100.
    let mut ops = Vec::new();
    for i in 0..1050 {
        let id = format!("t{i:05}");
        ops.push(KvOp::put(
            keys.task(&id).unwrap(),
            format!("v{i}").into_bytes(),
        ));
    }
    // Neighbours that share the text of the prefix but are not under it.
    ops.push(KvOp::put("/m/tasks0", b"no".to_vec()));
    ops.push(KvOp::put("/m/task", b"no".to_vec()));
    ops.push(KvOp::put(keys.app("/web").unwrap(), b"app".to_vec()));
    reg.txn_chunked(&ops).await.unwrap();

    let (revision, got) = reg.range_prefix(&keys.tasks_prefix(), 100).await.unwrap();
    assert!(revision > 0);
    assert_eq!(got.len(), 1050);
    for (i, kv) in got.iter().enumerate() {
        assert_eq!(kv.key, format!("/m/tasks/t{i:05}"));
        assert_eq!(kv.value, format!("v{i}").into_bytes());
        assert!(kv.mod_revision > 0 && kv.mod_revision <= revision);
    }
    // A page of one, and a page larger than everything: the same answer.
    let (_, one) = reg.range_prefix(&keys.tasks_prefix(), 1).await.unwrap();
    assert_eq!(one, got);
    let (_, all) = reg.range_prefix(&keys.tasks_prefix(), 5000).await.unwrap();
    assert_eq!(all, got);
    assert_eq!(reg.count_prefix(&keys.tasks_prefix()).await.unwrap(), 1050);
    // An empty folder.
    let (_, none) = reg
        .range_prefix(&keys.deployments_prefix(), 100)
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn more_than_etcds_reply_limit_loads_in_pages() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd, "/m").await;
    let keys = ManagerKeys::new("/m").unwrap();
    // 100 versions of 60 KB: 6 MB, over a gRPC client's 4 MiB default.
    let big = vec![b'x'; 60 * 1024];
    let ops: Vec<KvOp> = (0..100)
        .map(|i| {
            let v = format!("2026-01-01T00:00:{:02}.{:03}Z", i / 10, i % 10);
            KvOp::put(keys.version("/web", &v).unwrap(), big.clone())
        })
        .collect();
    reg.txn_chunked(&ops).await.unwrap();
    let (_, got) = reg.range_prefix(&keys.versions_prefix(), 10).await.unwrap();
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|kv| kv.value == big));

    // The same 6 MB as ONE transaction: etcd refuses its size, nothing written.
    let again: Vec<KvOp> = (0..100)
        .map(|i| KvOp::put(keys.task(&format!("t{i}")).unwrap(), big.clone()))
        .collect();
    match reg.txn(&again).await {
        Err(Error::RequestTooLarge { bytes }) => assert!(bytes > 6_000_000, "{bytes}"),
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    assert_eq!(reg.count_prefix(&keys.tasks_prefix()).await.unwrap(), 0);
}

#[tokio::test]
async fn one_transaction_is_all_or_nothing_and_bounded() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd, "/m").await;
    assert_eq!(reg.max_txn_ops(), 128);
    let keys = ManagerKeys::new("/m").unwrap();

    // 128 ops: one transaction.
    let ops: Vec<KvOp> = (0..128)
        .map(|i| KvOp::put(keys.task(&format!("a{i}")).unwrap(), b"1".to_vec()))
        .collect();
    let rev = reg.txn(&ops).await.unwrap();
    assert!(rev > 0);
    let keys_now = raw_keys(&etcd, "/m/").await;
    assert_eq!(keys_now.len(), 128);

    // 129 ops: refused before anything is sent.
    let mut too_many: Vec<KvOp> = (0..128)
        .map(|i| KvOp::put(keys.task(&format!("b{i}")).unwrap(), b"1".to_vec()))
        .collect();
    too_many.push(KvOp::DeletePrefix(keys.tasks_prefix()));
    match reg.txn(&too_many).await {
        Err(Error::TooManyOps { ops: 129, max: 128 }) => {}
        other => panic!("expected TooManyOps, got {other:?}"),
    }
    let err = Error::TooManyOps { ops: 129, max: 128 }.to_string();
    assert!(err.contains("129") && err.contains("128"), "{err}");
    assert_eq!(raw_keys(&etcd, "/m/").await, keys_now);

    // etcd refusing a transaction (one key twice) writes none of it.
    let dup = vec![
        KvOp::put(keys.task("c1").unwrap(), b"1".to_vec()),
        KvOp::put(keys.task("c1").unwrap(), b"2".to_vec()),
    ];
    assert!(reg.txn(&dup).await.is_err());
    assert_eq!(raw_keys(&etcd, "/m/").await, keys_now);

    // Deletes and a prefix delete in one transaction with a put.
    let mixed = vec![
        KvOp::Delete(keys.task("a0").unwrap()),
        KvOp::DeletePrefix(keys.task("a1").unwrap()), // a1, a10..a19, a100..a127
        KvOp::put(keys.app("/web").unwrap(), b"{}".to_vec()),
    ];
    reg.txn(&mixed).await.unwrap();
    let left = raw_keys(&etcd, "/m/tasks/").await;
    assert_eq!(left.len(), 128 - 1 - 1 - 10 - 28);
    assert!(reg.get_key("/m/apps/web").await.unwrap().is_some());
    assert!(reg.get_key("/m/tasks/a1").await.unwrap().is_none());
}

#[tokio::test]
async fn keys_outside_the_prefix_are_refused() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd, "/m").await;
    for key in ["/other/x", "/mx/y", "/m", "m/x", ""] {
        assert!(
            matches!(
                reg.txn(&[KvOp::put(key, b"1".to_vec())]).await,
                Err(Error::OutsidePrefix { .. })
            ),
            "{key:?}"
        );
        assert!(reg.get_key(key).await.is_err(), "{key:?}");
        assert!(reg.range_prefix(key, 10).await.is_err(), "{key:?}");
    }
    assert!(raw_keys(&etcd, "").await.is_empty());
    // Chunked writes check every key before the first chunk is sent.
    let mut ops: Vec<KvOp> = (0..300)
        .map(|i| KvOp::put(format!("/m/tasks/t{i}"), b"1".to_vec()))
        .collect();
    ops.push(KvOp::put("/elsewhere", b"1".to_vec()));
    assert!(reg.txn_chunked(&ops).await.is_err());
    assert!(raw_keys(&etcd, "").await.is_empty());
}

#[tokio::test]
async fn chunked_writes_apply_everything_in_order() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd, "/m").await;
    let mut ops: Vec<KvOp> = (0..300)
        .map(|i| KvOp::put(format!("/m/tasks/t{i:03}"), b"1".to_vec()))
        .collect();
    ops.push(KvOp::DeletePrefix("/m/tasks/t1".into()));
    reg.txn_chunked(&ops).await.unwrap();
    assert_eq!(raw_keys(&etcd, "/m/tasks/").await.len(), 200);
}

#[tokio::test]
async fn create_or_get_keeps_the_first_value() {
    let etcd = Etcd::start().unwrap();
    let reg = connect(&etcd, "/m").await;
    let key = ManagerKeys::new("/m").unwrap().manager_id();
    assert_eq!(reg.create_or_get(&key, b"first").await.unwrap(), b"first");
    assert_eq!(reg.create_or_get(&key, b"second").await.unwrap(), b"first");
    assert_eq!(reg.get_key(&key).await.unwrap().unwrap().value, b"first");
}
