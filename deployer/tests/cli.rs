//! The `deployer` binary: render, apply, status, remove, and exit codes.

mod common;

use std::process::{Command, Output};

use common::{binary, example, settled, Manager};
use serde_json::Value;

fn deployer(args: &[&str], marathon: &str) -> Output {
    Command::new(binary("deployer"))
        .args(args)
        .env("MARATHON_URL", marathon)
        .env_remove("ETCD_ENDPOINTS")
        .env_remove("MARATHON_HOST")
        .output()
        .expect("running deployer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn examples_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn render_prints_app_json_and_touches_nothing() {
    let closed = format!("http://127.0.0.1:{}", testkit::free_port().unwrap());
    let file = examples_dir().join("ingestor.yaml");
    let out = deployer(
        &[
            "render",
            file.to_str().unwrap(),
            "--container-etcd-endpoints",
            "http://172.17.0.1:2379",
        ],
        &closed,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let apps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(apps[0]["id"], "/dev/ingestor");
    assert_eq!(apps[0]["instances"], 4);
    assert_eq!(apps[0]["container"]["portMappings"][0]["name"], "api");
    assert_eq!(apps[0]["env"]["ETCD_ENDPOINTS"], "http://172.17.0.1:2379");
}

#[test]
fn bad_input_exits_64_with_one_line() {
    let closed = format!("http://127.0.0.1:{}", testkit::free_port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "deploy:\n  web:\n    cmd: x\n    instances: -2\n").unwrap();
    for args in [
        vec!["apply", bad.to_str().unwrap()],
        vec!["render", bad.to_str().unwrap()],
        vec!["apply", "/does/not/exist.yaml"],
        vec!["remove", "Bad_Name"],
        vec!["--marathon-url", "ftp://x", "status"],
    ] {
        let out = deployer(&args, &closed);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
    }
    let out = deployer(&["render", bad.to_str().unwrap()], &closed);
    assert!(
        text(&out.stderr).contains("/deploy/web/instances"),
        "{}",
        text(&out.stderr)
    );
    // unreachable manager: 69
    let file = examples_dir().join("ingestor-cmd.yaml");
    let out = deployer(&["apply", file.to_str().unwrap()], &closed);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unreachable"));
}

#[test]
fn help_documents_flags_and_env() {
    let out = deployer(&["serve", "--help"], "http://127.0.0.1:1");
    let help = text(&out.stdout);
    for needle in [
        "--listen",
        "DEPLOYER_LISTEN",
        "--marathon-url",
        "MARATHON_URL",
        "--auth-token",
        "MDO_AUTH_TOKEN",
        "ETCD_ENDPOINTS",
        "MARATHON_TOKEN",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_status_remove_against_the_manager() {
    let manager = Manager::start();
    let url = manager.url.clone();
    let file = examples_dir().join("ingestor-cmd.yaml");
    let path = file.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || deployer(&["apply", &path, "--wait", "--wait-timeout", "60"], &url)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        manager.log()
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("created")
            && stdout.contains("/dev/ingestor")
            && stdout.contains("running=4"),
        "{stdout}"
    );
    let ids = settled(&url, "/dev/ingestor", 4).await;

    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || deployer(&["status"], &u))
        .await
        .unwrap();
    let table = text(&out.stdout);
    assert!(out.status.success());
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(
        table.contains("ingestor") && table.contains("4/4") && table.contains("api="),
        "{table}"
    );

    // apply again: unchanged, same tasks
    let path = file.to_str().unwrap().to_string();
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || deployer(&["apply", &path], &u))
        .await
        .unwrap();
    assert!(
        text(&out.stdout).contains("unchanged"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(settled(&url, "/dev/ingestor", 4).await, ids);

    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        deployer(&["remove", "ingestor", "--labels", "dev"], &u)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed"),
        "{}",
        text(&out.stdout)
    );
    testkit::eventually_async("the app is gone", common::MANAGER_TIMEOUT, || async {
        common::app(&url, "/dev/ingestor")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let _ = example("ingestor.yaml");
}

#[test]
fn serve_stops_gracefully_on_sigterm() {
    let port = testkit::free_port().unwrap();
    let child = Command::new(binary("deployer"))
        .args([
            "--marathon-url",
            "http://127.0.0.1:1",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = testkit::ChildGuard::new(child);
    testkit::eventually(
        "deployer listens",
        std::time::Duration::from_secs(20),
        || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        },
    );
    let status = Command::new("kill")
        .args(["-TERM", &guard.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = guard.take();
    let exit = testkit::eventually("deployer exits", std::time::Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    assert!(exit.success(), "{exit:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("signal received"), "{log}");
}

#[test]
fn bad_serve_config_exits_64() {
    let out = deployer(
        &["serve", "--listen", "not-an-address"],
        "http://127.0.0.1:1",
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("--listen"),
        "{}",
        text(&out.stderr)
    );
}
