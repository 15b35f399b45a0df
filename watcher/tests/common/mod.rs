//! Shared helpers: a real etcd, records written through `registry`, the real
//! watcher binary with its log captured, and callbacks observed through the
//! file they append to.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use registry::{Instance, InstanceName, Registry, Settings};
use tempfile::TempDir;
use testkit::{eventually, records, ChildGuard, Etcd};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A healthy instance record with port `api` `port` -> 5000.
pub fn instance(service: &str, group: &str, container: &str, port: u16) -> Instance {
    Instance {
        ports: records::ports(&[("api", port, 5000)]),
        healthy: Some(true),
        ..records::instance(service, group, container)
    }
}

/// Writes the record [`instance`] builds.
pub async fn put(reg: &Registry, service: &str, group: &str, container: &str, port: u16) {
    reg.put(&instance(service, group, container, port))
        .await
        .expect("put a record");
}

/// Deletes the record of one instance.
pub async fn del(reg: &Registry, service: &str, group: &str, container: &str) {
    reg.delete(&name(service, group, container))
        .await
        .expect("delete a record");
}

pub fn name(service: &str, group: &str, container: &str) -> InstanceName {
    InstanceName::new(service, group, container).unwrap()
}

pub async fn registry(etcd: &Etcd) -> Registry {
    Registry::connect(&Settings::new([etcd.endpoint()]))
        .await
        .expect("connect to the test etcd")
}

/// One test's etcd, a registry client on it, a temp dir, and in it the
/// path of the file exec hooks record their calls in (`calls.jsonl`, not
/// created).
pub async fn exec_fixture() -> (Etcd, Registry, TempDir, PathBuf) {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    (etcd, reg, dir, file)
}

/// Exec mode's arguments: `--watch <watch> --exec <hook>`, then `more`.
pub fn exec_args<'a>(watch: &'a str, hook: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--watch", watch, "--exec", hook];
    args.extend_from_slice(more);
    args
}

/// Runs the watcher with `args` in `dir`, with none of its variables set
/// and an etcd that is not there, and checks that it refuses its
/// configuration: exit 64, one line starting with `watcher: `. That line.
pub fn config_error(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_watcher"))
        .args(args)
        .current_dir(dir)
        .env_remove("WATCHES")
        .env_remove("WATCH_TEMPLATES")
        .env("ETCD_ENDPOINTS", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line, got {stderr}"
    );
    assert!(stderr.starts_with("watcher: "), "{args:?}: {stderr}");
    stderr
}

/// What `watcher --help` prints (it exits 0).
pub fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_watcher"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One callback invocation, as the test hooks record it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub service: String,
    pub delta: i64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub nodes: Vec<String>,
}

fn containers(json: &serde_json::Value) -> Vec<String> {
    json.as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["container"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The calls recorded so far: one JSON object per line with service, delta
/// and (when given) the added / removed / nodes record lists.
pub fn calls(file: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad call line {l:?}: {e}"));
            Call {
                service: v["service"].as_str().unwrap().to_string(),
                delta: v["delta"].as_i64().unwrap(),
                added: containers(&v["added"]),
                removed: containers(&v["removed"]),
                nodes: containers(&v["nodes"]),
            }
        })
        .collect()
}

/// Waits until at least `n` calls were recorded and returns them all.
pub fn wait_calls(file: &Path, n: usize) -> Vec<Call> {
    eventually(
        &format!("{n} callback(s) in {}", file.display()),
        DEADLINE,
        || {
            let c = calls(file);
            (c.len() >= n).then_some(c)
        },
    )
}

/// An exec hook that appends one JSON line per call to `file`.
pub fn exec_recorder(file: &Path) -> String {
    format!(
        r#"printf '{{"service":"%s","delta":%s,"added":%s,"removed":%s,"nodes":%s}}\n' "$WATCH_SERVICE" "$WATCH_DELTA" "$WATCH_ADDED" "$WATCH_REMOVED" "$WATCH_NODES" >> '{}'"#,
        file.display()
    )
}

/// A running watcher binary; killed on drop.
pub struct Watcher {
    pub guard: ChildGuard,
    pub log: PathBuf,
}

impl Watcher {
    /// Starts `watcher ARGS` against `etcd` with a clean environment for the
    /// variables it reads; stderr (the log) goes to `dir/watcher.log`.
    pub fn start(etcd: &Etcd, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Watcher {
        Watcher::start_at(&etcd.endpoint(), dir, args, envs)
    }

    /// Starts exec mode ([`exec_args`]) and waits until every service in
    /// `watch` (comma separated) has its baseline.
    pub fn exec(etcd: &Etcd, dir: &Path, watch: &str, hook: &str, more: &[&str]) -> Watcher {
        let mut w = Watcher::start(etcd, dir, &exec_args(watch, hook, more), &[]);
        for service in watch.split(',') {
            w.wait_watching(service);
        }
        w
    }

    /// [`Watcher::start`] against any endpoint, with only `envs` for the
    /// variables the watcher reads (etcd credentials and TLS among them).
    pub fn start_at(endpoint: &str, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Watcher {
        let log = dir.join("watcher.log");
        let stderr = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_watcher"));
        for var in [
            "WATCHES",
            "WATCH_METHODS",
            "WATCH_EXEC",
            "WATCH_TEMPLATES",
            "WATCH_DEBOUNCE",
            "WATCH_SPLAY",
            "WATCH_HOOK_TIMEOUT",
            "WATCH_PYTHON_SITE",
            "ETCD_HOST_ADDRESS",
            "ETCD_PORT",
            "REGISTRY_PREFIX",
            "ETCD_USER",
            "ETCD_PASSWORD",
            "ETCD_CA",
            "ETCD_CACERT",
            "ETCD_CERT",
            "ETCD_KEY",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("ETCD_ENDPOINTS", endpoint)
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let guard = ChildGuard::new(cmd.spawn().expect("start the watcher"));
        Watcher { guard, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the watch `watch` has its baseline (logged "watching").
    pub fn wait_watching(&mut self, watch: &str) {
        let needle = format!("watch={watch} ");
        eventually(&format!("watcher watching {watch}"), DEADLINE, || {
            if let Some(status) = self.guard.child().try_wait().unwrap() {
                panic!("the watcher exited early ({status}); log:\n{}", self.log());
            }
            let log = self.log();
            log.lines()
                .any(|l| l.contains(" watching") && l.contains(&needle))
                .then_some(())
        });
    }

    pub fn signal(&mut self, signal: Signal) {
        kill(Pid::from_raw(self.guard.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let child = self.guard.child();
        eventually("the watcher exits", DEADLINE, || child.try_wait().unwrap()).code()
    }
}
