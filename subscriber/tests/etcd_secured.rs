//! Issue 15: the real subscriber binary against a secured etcd, fed by the
//! Marathon API stub (`testkit::marathon_stub`): once with TLS and a client
//! certificate (`--etcd-ca/--etcd-cert/--etcd-key`, https endpoint), once
//! with user/password authentication (`--etcd-user`, the password in
//! `ETCD_PASSWORD`) as a user whose role covers only `/services/`. Each
//! time a started task's record must appear, read back with a client that
//! has the same credentials; an anonymous client is refused by that etcd.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use registry::{Registry, Settings};
use support::wait_containers;
use testkit::etcd::LimitedUser;
use testkit::marathon_stub::{host_app, Stub};
use testkit::{ChildGuard, Etcd, EtcdTls};

const DEADLINE: Duration = Duration::from_secs(30);

/// The subscriber binary on a free port against `endpoint`, with `args`
/// and `envs` (the etcd credentials); its log in `dir/subscriber.log`.
/// Returns once /health answers 200.
async fn start_subscriber(
    marathon_url: &str,
    endpoint: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    dir: &Path,
) -> (ChildGuard, PathBuf) {
    let port = testkit::free_port().unwrap();
    let log = dir.join("subscriber.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_subscriber"));
    for var in [
        "ETCD_USER",
        "ETCD_PASSWORD",
        "ETCD_CA",
        "ETCD_CERT",
        "ETCD_KEY",
        "ETCD_ENDPOINTS",
        "ETCD_HOST_ADDRESS",
        "ETCD_PORT",
        "MDO_AUTH_TOKEN",
        "MARATHON_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--marathon-url", marathon_url])
        .args(["--etcd-endpoints", endpoint])
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "subscriber=debug,info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("the subscriber binary starts");
    let mut guard = ChildGuard::new(child);
    let url = format!("http://127.0.0.1:{port}/health");
    testkit::eventually_async("the subscriber is healthy", DEADLINE, || {
        let exited = guard.child().try_wait().ok().flatten();
        let url = url.clone();
        let log = log.clone();
        async move {
            if let Some(status) = exited {
                panic!(
                    "the subscriber exited early ({status}); log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            reqwest::get(url)
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;
    (guard, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_records_over_tls_with_a_client_certificate() {
    let etcd = EtcdTls::start_secured();
    let (ca, cert, key) = etcd.client_files();
    let endpoint = etcd.endpoint();

    let stub = Stub::start().await;
    stub.add_app(host_app("/web", &["api"]));
    let dir = tempfile::tempdir().unwrap();
    let (_sub, log) = start_subscriber(
        &stub.url,
        &endpoint,
        &["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key],
        &[],
        dir.path(),
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
        std::fs::read_to_string(log).unwrap_or_default()
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
    let dir = tempfile::tempdir().unwrap();
    let (_sub, log) = start_subscriber(
        &stub.url,
        &ep,
        &["--etcd-user", "subscriber"],
        &[("ETCD_PASSWORD", "sub-s3cret")],
        dir.path(),
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
    let text = std::fs::read_to_string(log).unwrap();
    assert!(!text.contains("sub-s3cret"), "the password was logged");
}
