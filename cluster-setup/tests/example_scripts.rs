//! The example image's shell scripts, run on the host with a stand-in for
//! the process they drive.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{eventually, ChildGuard};

fn script(name: &str) -> PathBuf {
    testkit::workspace_root()
        .join("example-image/app")
        .join(name)
}

/// HAProxy reads its configuration before it writes its pid file: a render
/// that lands in between must still reload it once the pid file appears
/// (the lb once kept a configuration without every ingestor for good).
#[test]
fn lb_reload_waits_for_the_pid_file_and_signals_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("haproxy.pid");
    let reloaded = dir.path().join("reloaded");
    // Stands for HAProxy's master: records that SIGUSR2 arrived.
    let mut master = ChildGuard::new(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap 'echo yes > {}' USR2; while :; do sleep 0.05; done",
                reloaded.display()
            ))
            .spawn()
            .unwrap(),
    );
    let mut reload = ChildGuard::new(
        Command::new("sh")
            .arg(script("lb-reload.sh"))
            .env("HAPROXY_PIDFILE", &pidfile)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The pid file appears once the script waits for it.
    let mut stderr = BufReader::new(reload.child().stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains("waiting for HAProxy's pid file"),
        "lb-reload.sh did not wait for the pid file: {line:?}"
    );
    std::fs::write(&pidfile, format!("{}\n", master.id())).unwrap();
    let status = eventually("lb-reload.sh ends", Duration::from_secs(20), || {
        reload.child().try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
    eventually("HAProxy got SIGUSR2", Duration::from_secs(10), || {
        reloaded.exists().then_some(())
    });
    master.kill();
}

/// Without HAProxy at all the script gives up with a clear message and a
/// failure status (the watcher logs it and goes on).
#[test]
fn lb_reload_gives_up_when_haproxy_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg(script("lb-reload.sh"))
        .env("HAPROXY_PIDFILE", dir.path().join("none.pid"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HAProxy is not running"), "{stderr}");
}

/// A SIGUSR2 that lands while HAProxy's master is still finishing the
/// previous reload is lost: the script signals again until a new worker
/// appears (the lb once kept 2 of 3 ingestors this way).
#[test]
fn lb_reload_signals_again_when_a_reload_is_lost() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("haproxy.pid");
    let count = dir.path().join("usr2");
    // Stands for HAProxy's master with one worker: it loses the first
    // SIGUSR2 and forks a new worker on the second. `wait` keeps it from
    // forking anything else that could pass for a worker.
    let master = ChildGuard::new(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "n=0; trap 'n=$((n+1)); echo $n > {c}; if [ $n -ge 2 ]; then sleep 1000 & fi' USR2; \
                 sleep 1000 & while :; do wait; done",
                c = count.display()
            ))
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let pgid = master.id();
    std::fs::write(&pidfile, format!("{pgid}\n")).unwrap();
    eventually(
        "the stand-in's first worker",
        Duration::from_secs(10),
        || {
            let children =
                std::fs::read_to_string(format!("/proc/{pgid}/task/{pgid}/children")).ok()?;
            (!children.trim().is_empty()).then_some(())
        },
    );
    let out = Command::new("sh")
        .arg(script("lb-reload.sh"))
        .env("HAPROXY_PIDFILE", &pidfile)
        .output()
        .unwrap();
    let signals = std::fs::read_to_string(&count).unwrap_or_default();
    // The stand-in's whole group (its workers too).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    drop(master);
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(signals.trim(), "2", "SIGUSR2s the stand-in got");
}
