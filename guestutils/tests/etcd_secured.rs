//! Issue 15: guestutils reading peers from a secured etcd with the
//! credentials a task gets in its environment: `ETCD_CA/ETCD_CERT/ETCD_KEY`
//! on an etcd that requires a client certificate, `ETCD_USER/ETCD_PASSWORD`
//! (a user that may only read `/services/`) on an etcd with authentication.
//! Each time the instance put there is listed; an anonymous client is
//! refused by that etcd.

use guestutils::{AsyncGuestUtils, Environment, GuestUtils};
use registry::{Instance, Port, Registry, Settings};
use testkit::etcd::{LimitedUser, ROOT_PASSWORD};
use testkit::{Etcd, EtcdTls};

fn instance(container: &str, host: &str, port: u16) -> Instance {
    Instance {
        schema: 1,
        service: "ingestor".into(),
        group: "default".into(),
        labels: vec![],
        container: container.into(),
        app_id: "/ingestor".into(),
        app_version: "2026-11-22T10:00:00.000Z".into(),
        node: "node-1".into(),
        host: host.into(),
        internal_address: Some("172.17.0.4".into()),
        ports: [("api".to_string(), Port::tcp(port, 5000))].into(),
        state: "TASK_RUNNING".into(),
        healthy: None,
        started_at: "2026-11-22T10:00:01.000Z".into(),
        owner: "default".into(),
    }
}

fn env(vars: &[(&str, &str)]) -> Environment {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Lists the peer through the async API and the blocking one.
async fn lists_the_peer(env: Environment) {
    let none: [&str; 0] = [];
    let g = AsyncGuestUtils::new(env.clone());
    assert_eq!(
        g.get_node_list("ingestor", &["api"], 1, &none)
            .await
            .unwrap(),
        vec!["10.0.0.7:31007"]
    );
    assert_eq!(
        g.get_specific_port("ingestor", "ingestor.a", "api", None)
            .await
            .unwrap(),
        31007
    );
    let nodes = tokio::task::spawn_blocking(move || {
        GuestUtils::new(env)
            .unwrap()
            .get_node_list("ingestor", &["api"], 1, &none)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(nodes, vec!["10.0.0.7:31007"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_peers_over_tls_with_a_client_certificate() {
    let etcd = EtcdTls::start_secured();
    let (ca, cert, key) = etcd.client_files();
    let endpoint = etcd.endpoint();
    let mut settings = Settings::new([endpoint.clone()]);
    settings.tls = Some(registry::Tls {
        ca: Some(etcd.ca()),
        cert: Some(etcd.client_cert()),
        key: Some(etcd.client_key()),
    });
    Registry::connect(&settings)
        .await
        .unwrap()
        .put(&instance("ingestor.a", "10.0.0.7", 31007))
        .await
        .unwrap();

    lists_the_peer(env(&[
        ("ETCD_ENDPOINTS", &endpoint),
        ("ETCD_CA", &ca),
        ("ETCD_CERT", &cert),
        ("ETCD_KEY", &key),
    ]))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_peers_as_a_read_only_user() {
    let etcd = Etcd::start_with_user(&LimitedUser::services(
        "mdo-guest",
        "guest",
        "g-s3cret",
        "read",
    ));
    let ep = etcd.endpoint();
    let anonymous = Settings::new([ep.clone()]);
    Registry::connect(&anonymous.with_auth("root", ROOT_PASSWORD))
        .await
        .unwrap()
        .put(&instance("ingestor.a", "10.0.0.7", 31007))
        .await
        .unwrap();

    lists_the_peer(env(&[
        ("ETCD_ENDPOINTS", &ep),
        ("ETCD_USER", "guest"),
        ("ETCD_PASSWORD", "g-s3cret"),
    ]))
    .await;
}
