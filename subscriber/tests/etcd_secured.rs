//! Issue 15: the real subscriber binary against a secured etcd, fed by the
//! Marathon API stub (`testkit::marathon_stub`): once with TLS and a client
//! certificate (`--etcd-ca/--etcd-cert/--etcd-key`, https endpoint), once
//! with user/password authentication (`--etcd-user`, the password in
//! `ETCD_PASSWORD`) as a user whose role covers only `/services/`. Each
//! time a started task's record must appear, read back with a client that
//! has the same credentials; an anonymous client is refused by that etcd.

mod support;

use registry::{Registry, Settings};
use support::wait_containers;
use testkit::etcd::LimitedUser;
use testkit::marathon_stub::{host_app, Stub};
use testkit::subscriber::{SubscriberCmd, SubscriberProcess};
use testkit::{Etcd, EtcdTls};

/// The subscriber binary on a free port against `endpoint`, with `args`
/// and `envs` (the etcd credentials; none comes from the test's own
/// environment). Returns once /health answers 200.
async fn start_subscriber(
    marathon_url: &str,
    endpoint: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> SubscriberProcess {
    let cmd = [
        "ETCD_USER",
        "ETCD_PASSWORD",
        "ETCD_CA",
        "ETCD_CERT",
        "ETCD_KEY",
        "ETCD_ENDPOINTS",
        "ETCD_HOST_ADDRESS",
        "ETCD_PORT",
    ]
    .into_iter()
    .fold(
        SubscriberCmd::new(env!("CARGO_BIN_EXE_subscriber"), marathon_url, endpoint),
        SubscriberCmd::env_remove,
    );
    envs.iter()
        .fold(cmd.args(args), |cmd, (k, v)| cmd.env(k, v))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_records_over_tls_with_a_client_certificate() {
    let etcd = EtcdTls::start_secured();
    let (ca, cert, key) = etcd.client_files();
    let endpoint = etcd.endpoint();

    let stub = Stub::start().await;
    stub.add_app(host_app("/web", &["api"]));
    let sub = start_subscriber(
        &stub.url,
        &endpoint,
        &["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key],
        &[],
    )
    .await;

    let reg = Registry::connect(&etcd.client_settings()).await.unwrap();
    let task = stub.start_task("/web", &[31001]);
    wait_containers(&reg, vec![task.clone()], "the task's record over TLS").await;
    let keys = etcd
        .etcdctl(&["get", "/services/", "--prefix", "--keys-only"])
        .unwrap();
    assert!(
        keys.contains(&format!("/services/web/default/containers/{task}")),
        "{keys}\nlog:\n{}",
        sub.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_records_as_a_user_limited_to_services() {
    let etcd = Etcd::start_with_user(&LimitedUser::services(
        "mdo-subscriber",
        "subscriber",
        "sub-s3cret",
        "readwrite",
    ));
    let ep = etcd.endpoint();
    let root = Registry::connect(&etcd.root_settings()).await.unwrap();

    let stub = Stub::start().await;
    stub.add_app(host_app("/web", &["api"]));
    let sub = start_subscriber(
        &stub.url,
        &ep,
        &["--etcd-user", "subscriber"],
        &[("ETCD_PASSWORD", "sub-s3cret")],
    )
    .await;

    let task = stub.start_task("/web", &[31001]);
    wait_containers(&root, vec![task.clone()], "the task's record, as root").await;
    let record = root
        .get(&registry::InstanceName::new("web", "default", &task).unwrap())
        .await
        .unwrap()
        .expect("the record is there")
        .instance;
    assert_eq!(record.ports["api"].external, 31001);
    // The subscriber's own credentials read it back too.
    let own = Registry::connect(&Settings::new([ep]).with_auth("subscriber", "sub-s3cret"))
        .await
        .unwrap();
    wait_containers(&own, vec![task], "the task's record, as the subscriber").await;
    let text = sub.log_text();
    assert!(!text.contains("sub-s3cret"), "the password was logged");
}
