use std::time::Duration;

#[test]
fn etcd_starts_answers_and_restarts_with_its_data() {
    let mut etcd = testkit::Etcd::start().expect("etcd starts");
    let put = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "put", "/k", "v"])
        .output()
        .expect("etcdctl runs");
    assert!(put.status.success(), "{put:?}");
    etcd.restart().expect("restarts");
    let value = testkit::eventually(
        "value readable after restart",
        Duration::from_secs(10),
        || {
            let out = std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &etcd.endpoint(),
                    "get",
                    "/k",
                    "--print-value-only",
                ])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        },
    );
    assert_eq!(value, "v");
}
