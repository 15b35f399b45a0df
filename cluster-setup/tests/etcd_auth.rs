//! Least privilege by default: `cluster-setup up` (command tasks only, no
//! Docker needed) turns etcd authentication on with one user per part, and
//! every part works with its own rights and no more: the manager in its
//! state prefix, the subscriber in the registry, the tasks read-only in the
//! registry. Passwords stay in 0600 files and in no log or output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{eventually, free_port};

const USERS: [&str; 4] = ["root", "mdo-manager", "mdo-subscriber", "mdo-guest"];

struct Stack {
    state: tempfile::TempDir,
    etcd: u16,
    peer: u16,
    manager: u16,
    deployer: u16,
    subscriber: u16,
    up: bool,
}

impl Stack {
    fn new() -> Stack {
        Stack {
            state: tempfile::Builder::new()
                .prefix("mdo-auth-")
                .tempdir()
                .unwrap(),
            etcd: free_port().unwrap(),
            peer: free_port().unwrap(),
            manager: free_port().unwrap(),
            deployer: free_port().unwrap(),
            subscriber: free_port().unwrap(),
            up: false,
        }
    }

    fn cluster_setup(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("cluster-setup"))
            .args(args)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(["--etcd-port", &self.etcd.to_string()])
            .args(["--etcd-peer-port", &self.peer.to_string()])
            .args(["--manager-port", &self.manager.to_string()])
            .args(["--deployer-port", &self.deployer.to_string()])
            .args(["--subscriber-port", &self.subscriber.to_string()])
            .arg("--bin-dir")
            .arg(bin_dir())
            .current_dir(testkit::workspace_root())
            .output()
            .expect("cluster-setup runs")
    }

    fn up(&mut self, extra: &[&str]) -> String {
        let mut args = vec!["up", "--docker", "off"];
        args.extend_from_slice(extra);
        let out = self.cluster_setup(&args);
        self.up = true;
        assert!(
            out.status.success(),
            "up failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn password_file(&self, user: &str) -> PathBuf {
        self.state
            .path()
            .join("etcd-auth")
            .join(format!("{user}.password"))
    }

    fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.password_file(user))
            .unwrap()
            .trim()
            .to_string()
    }

    fn etcdctl(&self, user: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_USER")
            .args(["--endpoints", &format!("http://127.0.0.1:{}", self.etcd)])
            .args(args);
        if let Some(user) = user {
            cmd.env("ETCDCTL_USER", format!("{user}:{}", self.password(user)));
        }
        cmd.output().expect("etcdctl runs")
    }

    fn refused(&self, user: Option<&str>, args: &[&str]) -> bool {
        let out = self.etcdctl(user, args);
        let err = String::from_utf8_lossy(&out.stderr);
        !out.status.success()
            && (err.contains("permission denied") || err.contains("user name is empty"))
    }

    fn allowed(&self, user: Option<&str>, args: &[&str]) -> bool {
        self.etcdctl(user, args).status.success()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.up {
            let out = self.cluster_setup(&["down"]);
            eprintln!("down (cleanup): {}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cluster-setup"))
        .parent()
        .expect("binary has a folder")
        .to_path_buf()
}

fn require_binaries() {
    for b in ["manager", "subscriber", "deployer", "watcher"] {
        assert!(
            bin_dir().join(b).is_file(),
            "{b} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)"
        );
    }
}

fn post_json(url: &str, body: &Value) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("manager answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    })
}

#[test]
fn up_turns_etcd_auth_on_with_one_user_per_part() {
    require_binaries();
    let mut stack = Stack::new();
    let out = stack.up(&[]);
    assert!(out.contains("authentication on"), "{out}");

    // Passwords: one per user, 0600 in a 0700 folder, printed nowhere.
    let dir = stack.state.path().join("etcd-auth");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for user in USERS {
        let mode = std::fs::metadata(stack.password_file(user))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{user}");
        assert!(
            !out.contains(&stack.password(user)),
            "{user}'s password printed by up"
        );
    }

    // Anonymous requests are refused, reads and writes.
    assert!(stack.refused(None, &["put", "/services/x", "y"]));
    assert!(stack.refused(None, &["get", "--prefix", "/services/"]));
    assert!(stack.refused(None, &["get", "--prefix", "/mdo/manager/"]));

    // Each part in its own prefix only.
    assert!(stack.allowed(Some("mdo-manager"), &["get", "--prefix", "/mdo/manager/"]));
    assert!(stack.refused(Some("mdo-manager"), &["get", "--prefix", "/services/"]));
    assert!(stack.refused(Some("mdo-manager"), &["put", "/services/x", "y"]));
    assert!(stack.allowed(Some("mdo-subscriber"), &["get", "--prefix", "/services/"]));
    assert!(stack.refused(
        Some("mdo-subscriber"),
        &["get", "--prefix", "/mdo/manager/"]
    ));
    assert!(stack.refused(Some("mdo-subscriber"), &["put", "/mdo/manager/apps/x", "y"]));
    assert!(stack.allowed(Some("mdo-guest"), &["get", "--prefix", "/services/"]));
    for key in [
        "/services/web/default/containers/forged",
        "/mdo/manager/apps/x",
        "/other",
    ] {
        assert!(
            stack.refused(Some("mdo-guest"), &["put", key, "y"]),
            "guest wrote {key}"
        );
    }

    // The parts work with their own users: an app is stored by the manager,
    // its task runs with the guest user in its environment, and the
    // subscriber writes its record.
    let seen = stack.state.path().join("task-env");
    let app = json!({
        "id": "/auth/web",
        "cmd": format!(
            "printf '%s\\n%s\\n' \"$ETCD_USER\" \"$ETCD_PASSWORD\" > {}.tmp && mv {0}.tmp {0} && exec sleep 600",
            seen.display()
        ),
        "cpus": 0.01,
        "mem": 8,
        "instances": 1
    });
    let (status, body) = post_json(&format!("http://127.0.0.1:{}/v2/apps", stack.manager), &app);
    assert_eq!(status, 201, "{body}");
    let env = eventually("the task wrote its env", Duration::from_secs(60), || {
        std::fs::read_to_string(&seen).ok()
    });
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(
        lines,
        vec!["mdo-guest", stack.password("mdo-guest").as_str()]
    );
    eventually("the task's record in etcd", Duration::from_secs(60), || {
        let out = stack.etcdctl(
            Some("mdo-guest"),
            &["get", "--prefix", "/services/web/auth/"],
        );
        String::from_utf8_lossy(&out.stdout)
            .contains("\"service\"")
            .then_some(())
    });

    // `status` says how to read the registry, without a password.
    let status = stack.cluster_setup(&["status"]);
    let status_out = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "{status_out}");
    assert!(status_out.contains("etcd auth  on"), "{status_out}");
    assert!(status_out.contains("mdo-guest.password"), "{status_out}");

    // A second `up` finds everything running and authentication already on.
    let again = stack.up(&[]);
    assert!(!again.contains("authentication on"), "{again}");

    // No password in any output or log.
    let mut texts = vec![out, again, status_out];
    for entry in std::fs::read_dir(stack.state.path().join("logs")).unwrap() {
        texts.push(std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    for user in USERS {
        let p = stack.password(user);
        assert!(
            texts.iter().all(|t| !t.contains(&p)),
            "{user}'s password in an output or log"
        );
    }
}

#[test]
fn no_etcd_auth_leaves_etcd_open() {
    require_binaries();
    let mut stack = Stack::new();
    let out = stack.up(&["--no-etcd-auth"]);
    assert!(!out.contains("authentication on"), "{out}");
    assert!(!stack.state.path().join("etcd-auth").exists());
    assert!(stack.allowed(None, &["put", "/services/x", "y"]));
    let status = stack.cluster_setup(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("etcd auth  off"));
}
