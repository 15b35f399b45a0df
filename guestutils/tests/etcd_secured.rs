//! Issue 15: guestutils reading peers from a secured etcd with the
//! credentials a task gets in its environment: `ETCD_CA/ETCD_CERT/ETCD_KEY`
//! on an etcd that requires a client certificate, `ETCD_USER/ETCD_PASSWORD`
//! (a user that may only read `/services/`) on an etcd with authentication.
//! Each time the instance put there is listed; an anonymous client is
//! refused by that etcd (checked by `testkit::SecuredEtcd`).

use guestutils::{AsyncGuestUtils, Environment, GuestUtils};
use registry::{Instance, Registry};
use testkit::records::{self, ports};
use testkit::SecuredEtcd;

/// With `ingestor.a` registered by an admin client, lists it through the
/// async API and the blocking one, given only the environment a task gets.
async fn lists_the_peer(etcd: SecuredEtcd) {
    let peer = Instance {
        host: "10.0.0.7".into(),
        ports: ports(&[("api", 31007, 5000)]),
        ..records::instance("ingestor", "default", "ingestor.a")
    };
    let admin = Registry::connect(&etcd.admin()).await.unwrap();
    admin.put(&peer).await.unwrap();
    let env: Environment = etcd.env().into_iter().collect();

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
        let g = GuestUtils::new(env).unwrap();
        g.block_on(g.get_node_list("ingestor", &["api"], 1, &none))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(nodes, vec!["10.0.0.7:31007"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_peers_over_tls_with_a_client_certificate() {
    lists_the_peer(SecuredEtcd::client_cert()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_peers_as_a_read_only_user() {
    lists_the_peer(SecuredEtcd::user("guest", "g-s3cret", "read")).await;
}
