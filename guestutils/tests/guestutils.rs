//! guestutils against a real etcd, records written through `registry`.

use std::time::Duration;

use guestutils::{AsyncGuestUtils, Environment, Error, GuestUtils};
use registry::{Instance, Op, Registry, Settings};
use testkit::{records, Etcd};

/// A record of `container` (internal address `172.17.0.<len(container)>`).
fn instance(
    service: &str,
    labels: &[&str],
    container: &str,
    host: &str,
    ports: &[(&str, u16, u16)],
) -> Instance {
    let group = registry::naming::group_from_labels(labels);
    Instance {
        host: host.into(),
        internal_address: Some(format!("172.17.0.{}", container.len())),
        ports: records::ports(ports),
        ..records::instance(service, &group, container)
    }
}

async fn write(etcd: &Etcd, prefix: &str, instances: Vec<Instance>) -> Registry {
    let settings = Settings::new([etcd.endpoint()])
        .with_prefix(prefix)
        .unwrap();
    let reg = Registry::connect(&settings).await.unwrap();
    reg.apply(instances.into_iter().map(Op::put).collect())
        .await
        .unwrap();
    reg
}

/// Three ingestors (two in `dev`, one in `prod`) and one db.
fn fleet() -> Vec<Instance> {
    vec![
        instance(
            "ingestor",
            &["dev"],
            "ingestor.b",
            "10.0.0.2",
            &[("api", 31002, 5000), ("ssh", 32002, 22)],
        ),
        instance(
            "ingestor",
            &["dev", "eu"],
            "ingestor.a",
            "10.0.0.1",
            &[("api", 31001, 5000), ("ssh", 32001, 22)],
        ),
        instance(
            "ingestor",
            &["prod"],
            "ingestor.c",
            "10.0.0.3",
            &[("api", 31003, 5000)],
        ),
        instance("db", &[], "db.1", "10.0.0.9", &[("pg", 35432, 5432)]),
    ]
}

fn env(etcd: &Etcd, extra: &[(&str, &str)]) -> Environment {
    let mut vars: Vec<(String, String)> = vec![("ETCD_ENDPOINTS".into(), etcd.endpoint())];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars.into_iter().collect()
}

#[tokio::test]
async fn node_list_ports_labels_order_and_minimum() {
    let etcd = Etcd::start().unwrap();
    write(&etcd, "/services", fleet()).await;
    let g = AsyncGuestUtils::new(env(&etcd, &[]));
    let none: [&str; 0] = [];

    assert_eq!(
        g.get_node_list("ingestor", &none, 1, &none).await.unwrap(),
        vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        "sorted by container name"
    );
    assert_eq!(
        g.get_node_list("ingestor", &["api", "ssh"], 1, &none)
            .await
            .unwrap(),
        vec!["10.0.0.1:31001:32001", "10.0.0.2:31002:32002"]
    );
    assert_eq!(
        g.get_node_list("ingestor", &["api"], 1, &["dev"])
            .await
            .unwrap(),
        vec!["10.0.0.1:31001", "10.0.0.2:31002"]
    );
    assert_eq!(
        g.get_node_list("ingestor", &["api"], 1, &["dev", "eu"])
            .await
            .unwrap(),
        vec!["10.0.0.1:31001"]
    );
    assert_eq!(
        g.get_node_list("db", &["pg"], 1, &none).await.unwrap(),
        vec!["10.0.0.9:35432"]
    );
    assert!(g
        .get_node_list("nobody", &none, 0, &none)
        .await
        .unwrap()
        .is_empty());

    match g.get_node_list("ingestor", &["api"], 3, &["dev"]).await {
        Err(Error::NotEnoughNodes {
            service,
            minimum,
            found,
        }) => {
            assert_eq!((service.as_str(), minimum, found), ("ingestor", 3, 2));
        }
        other => panic!("expected NotEnoughNodes, got {other:?}"),
    }
    assert!(matches!(
        g.get_node_list("nobody", &none, 1, &none).await,
        Err(Error::NotEnoughNodes { found: 0, .. })
    ));
}

#[tokio::test]
async fn reads_are_live() {
    let etcd = Etcd::start().unwrap();
    let reg = write(&etcd, "/services", fleet()).await;
    let g = AsyncGuestUtils::new(env(&etcd, &[]));
    let none: [&str; 0] = [];
    assert_eq!(
        g.get_node_list("db", &none, 1, &none).await.unwrap().len(),
        1
    );
    reg.put(&instance("db", &[], "db.2", "10.0.0.8", &[("pg", 1, 5432)]))
        .await
        .unwrap();
    assert_eq!(
        g.get_node_list("db", &["pg"], 2, &none).await.unwrap(),
        vec!["10.0.0.9:35432", "10.0.0.8:1"]
    );
    reg.delete(&registry::InstanceName::new("db", "default", "db.1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        g.get_node_list("db", &none, 1, &none).await.unwrap(),
        vec!["10.0.0.8"]
    );
}

#[tokio::test]
async fn own_identity_from_the_environment_contract() {
    let etcd = Etcd::start().unwrap();
    let g = AsyncGuestUtils::new(env(
        &etcd,
        &[
            ("SERVICE_NAME", "ingestor"),
            ("SERVICE_GROUP", "dev.eu"),
            ("CONTAINER_NAME", "ingestor.a"),
            ("CONTAINER_HOST_ADDRESS", "10.0.0.1"),
            ("MESOS_TASK_ID", "ignored"),
            ("HOST", "ignored"),
            ("MARATHON_APP_ID", "/ignored/ignored"),
        ],
    ));
    assert_eq!(g.get_service_name().unwrap(), "ingestor");
    assert_eq!(g.get_environment_name().unwrap(), "dev.eu");
    assert_eq!(g.get_container_name().unwrap(), "ingestor.a");
    assert_eq!(g.get_container_host_address().unwrap(), "10.0.0.1");
}

#[tokio::test]
async fn real_marathon_fallbacks() {
    let etcd = Etcd::start().unwrap();
    write(&etcd, "/services", fleet()).await;
    // Only what a real Marathon gives a task, etcd from the compat pair.
    let vars = [
        ("MESOS_TASK_ID", "ingestor.b"),
        ("HOST", "10.0.0.2"),
        ("MARATHON_APP_ID", "/dev/ingestor"),
        ("ETCD_HOST_ADDRESS", "127.0.0.1"),
        ("ETCD_PORT", &etcd.client_port().to_string()),
    ];
    let e: Environment = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let g = AsyncGuestUtils::new(e);
    assert_eq!(g.get_container_name().unwrap(), "ingestor.b");
    assert_eq!(g.get_container_host_address().unwrap(), "10.0.0.2");
    assert_eq!(g.get_service_name().unwrap(), "ingestor");
    assert_eq!(g.get_environment_name().unwrap(), "dev");
    // Reaching etcd through ETCD_HOST_ADDRESS:ETCD_PORT.
    assert_eq!(g.get_port("api", None).await.unwrap(), 5000);
    assert_eq!(g.get_port("SSH", None).await.unwrap(), 22);
    assert_eq!(
        g.get_container_internal_address().await.unwrap(),
        "172.17.0.10"
    );

    // The label fallback for the service name.
    let e: Environment = [
        ("MARATHON_APP_LABEL_SERVICE_NAME", "db"),
        ("MARATHON_APP_ID", "/x/y"),
    ]
    .into_iter()
    .collect();
    assert_eq!(AsyncGuestUtils::new(e).get_service_name().unwrap(), "db");

    // Nothing set: a clear error, not a guess.
    let g = AsyncGuestUtils::new(Environment::default());
    for r in [
        g.get_container_name(),
        g.get_container_host_address(),
        g.get_service_name(),
        g.get_environment_name(),
    ] {
        assert!(matches!(r, Err(Error::MissingEnv { .. })), "{r:?}");
    }
}

#[tokio::test]
async fn get_port_record_then_env_then_default() {
    let etcd = Etcd::start().unwrap();
    write(&etcd, "/services", fleet()).await;
    let registered = AsyncGuestUtils::new(env(
        &etcd,
        &[
            ("SERVICE_NAME", "ingestor"),
            ("CONTAINER_NAME", "ingestor.c"),
            ("PORT_API", "31003"),
        ],
    ));
    // The record's exposed port wins over Marathon's host port variable.
    assert_eq!(registered.get_port("api", None).await.unwrap(), 5000);
    assert_eq!(registered.get_port("ssh", Some(2222)).await.unwrap(), 2222);
    assert!(matches!(
        registered.get_port("ssh", None).await,
        Err(Error::UnknownPort { .. })
    ));

    // Not registered (yet): PORT_<NAME>, then the default.
    let unregistered = AsyncGuestUtils::new(env(
        &etcd,
        &[
            ("SERVICE_NAME", "ingestor"),
            ("CONTAINER_NAME", "ingestor.new"),
            ("PORT_HTTP", "8080"),
        ],
    ));
    assert_eq!(unregistered.get_port("http", None).await.unwrap(), 8080);
    assert_eq!(unregistered.get_port("other", Some(7)).await.unwrap(), 7);
    assert!(unregistered.get_port("other", None).await.is_err());
}

#[tokio::test]
async fn internal_address_record_then_env() {
    let etcd = Etcd::start().unwrap();
    let mut no_addr = instance("web", &[], "web.1", "10.0.0.1", &[]);
    no_addr.internal_address = None;
    write(
        &etcd,
        "/services",
        vec![no_addr, instance("web", &[], "web.22", "10.0.0.2", &[])],
    )
    .await;
    let g = |container: &str, extra: Option<&str>| {
        let mut vars = vec![("SERVICE_NAME", "web"), ("CONTAINER_NAME", container)];
        if let Some(a) = extra {
            vars.push(("CONTAINER_INTERNAL_ADDRESS", a));
        }
        AsyncGuestUtils::new(env(&etcd, &vars))
    };
    assert_eq!(
        g("web.22", Some("192.168.0.1"))
            .get_container_internal_address()
            .await
            .unwrap(),
        "172.17.0.6"
    );
    assert_eq!(
        g("web.1", Some("192.168.0.1"))
            .get_container_internal_address()
            .await
            .unwrap(),
        "192.168.0.1"
    );
    assert!(matches!(
        g("web.1", None).get_container_internal_address().await,
        Err(Error::NoInternalAddress { .. })
    ));
}

#[tokio::test]
async fn specific_host_and_ports() {
    let etcd = Etcd::start().unwrap();
    write(&etcd, "/services", fleet()).await;
    let g = AsyncGuestUtils::new(env(&etcd, &[]));
    assert_eq!(
        g.get_specific_host("ingestor", "ingestor.c").await.unwrap(),
        "10.0.0.3"
    );
    assert_eq!(
        g.get_specific_port("ingestor", "ingestor.a", "ssh", None)
            .await
            .unwrap(),
        32001
    );
    assert_eq!(
        g.get_specific_exposed_port("ingestor", "ingestor.a", "ssh", None)
            .await
            .unwrap(),
        22
    );
    assert_eq!(
        g.get_specific_port("ingestor", "ingestor.c", "ssh", Some(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        g.get_specific_exposed_port("ingestor", "ingestor.c", "ssh", Some(2))
            .await
            .unwrap(),
        2
    );
    assert!(matches!(
        g.get_specific_port("ingestor", "ingestor.c", "ssh", None)
            .await,
        Err(Error::UnknownPort { .. })
    ));
    assert!(matches!(
        g.get_specific_host("ingestor", "nope").await,
        Err(Error::UnknownContainer { .. })
    ));
    assert!(matches!(
        g.get_specific_port("db", "ingestor.a", "api", Some(1))
            .await,
        Err(Error::UnknownContainer { .. })
    ));
}

#[tokio::test]
async fn wait_for_nodes_returns_when_enough_are_registered() {
    let etcd = Etcd::start().unwrap();
    let reg = write(
        &etcd,
        "/services",
        vec![instance("web", &[], "w1", "10.0.0.1", &[])],
    )
    .await;
    let g = AsyncGuestUtils::new(env(&etcd, &[]));

    // Already enough: immediate.
    assert_eq!(
        g.wait_for_nodes("web", 1, Duration::from_secs(5))
            .await
            .unwrap(),
        vec!["10.0.0.1"]
    );

    // Not enough yet: a writer adds two more while we wait.
    let writer = {
        let reg = reg.clone();
        tokio::spawn(async move {
            for (c, h) in [("w2", "10.0.0.2"), ("w3", "10.0.0.3")] {
                reg.put(&instance("web", &[], c, h, &[])).await.unwrap();
            }
        })
    };
    let nodes = g
        .wait_for_nodes("web", 3, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(nodes, vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    writer.await.unwrap();

    // Never enough: a timeout error that says how many were found.
    match g.wait_for_nodes("web", 5, Duration::from_millis(300)).await {
        Err(Error::Timeout {
            minimum: 5,
            found: 3,
            ..
        }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn registry_prefix_from_the_environment() {
    let etcd = Etcd::start().unwrap();
    write(&etcd, "/mdo/prod", fleet()).await;
    let none: [&str; 0] = [];
    let g = AsyncGuestUtils::new(env(&etcd, &[("REGISTRY_PREFIX", "/mdo/prod")]));
    assert_eq!(
        g.get_node_list("db", &none, 1, &none).await.unwrap(),
        vec!["10.0.0.9"]
    );
    let default_prefix = AsyncGuestUtils::new(env(&etcd, &[]));
    assert!(default_prefix
        .get_node_list("db", &none, 1, &none)
        .await
        .is_err());
}

#[test]
fn blocking_api() {
    let etcd = Etcd::start().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(write(&etcd, "/services", fleet()));
    let g = GuestUtils::new(env(
        &etcd,
        &[
            ("SERVICE_NAME", "ingestor"),
            ("CONTAINER_NAME", "ingestor.a"),
            ("SERVICE_GROUP", "dev.eu"),
        ],
    ))
    .unwrap();
    let none: [&str; 0] = [];
    assert_eq!(
        g.block_on(g.get_node_list("ingestor", &["api"], 2, &["dev"]))
            .unwrap(),
        vec!["10.0.0.1:31001", "10.0.0.2:31002"]
    );
    assert_eq!(g.block_on(g.get_port("api", None)).unwrap(), 5000);
    // Environment-only lookups need no runtime.
    assert_eq!(g.get_environment_name().unwrap(), "dev.eu");
    assert_eq!(
        g.block_on(g.get_specific_host("db", "db.1")).unwrap(),
        "10.0.0.9"
    );
    assert_eq!(
        g.block_on(g.get_specific_port("db", "db.1", "pg", None))
            .unwrap(),
        35432
    );
    assert_eq!(
        g.block_on(g.get_specific_exposed_port("db", "db.1", "pg", None))
            .unwrap(),
        5432
    );
    assert_eq!(
        g.block_on(g.get_container_internal_address()).unwrap(),
        "172.17.0.10"
    );
    assert_eq!(
        g.block_on(g.wait_for_nodes("db", 1, Duration::from_secs(5)))
            .unwrap(),
        vec!["10.0.0.9"]
    );
    assert!(g.block_on(g.get_node_list("db", &none, 2, &none)).is_err());
}

#[tokio::test]
async fn etcd_unreachable_is_an_error_not_a_hang() {
    let port = testkit::free_port().unwrap();
    let mut s = Settings::new([format!("http://127.0.0.1:{port}")]);
    s.request_timeout = Duration::from_secs(2);
    s.connect_timeout = Duration::from_secs(1);
    let reg = Registry::connect(&s).await.unwrap();
    let g = AsyncGuestUtils::with_registry(Environment::default(), reg);
    let none: [&str; 0] = [];
    assert!(matches!(
        g.get_node_list("web", &none, 0, &none).await,
        Err(Error::Registry(_))
    ));
}
