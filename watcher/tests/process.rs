//! The watcher as a process: exit codes, signals, the child application,
//! bad flags, and an etcd that is not there yet at start.

mod common;

use common::*;
use nix::sys::signal::Signal;
use testkit::{eventually, Etcd};

#[test]
fn sigterm_and_sigint_exit_zero() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut w = Watcher::exec(&etcd, dir.path(), "ingestor", "true", &[]);
        w.signal(signal);
        assert_eq!(w.wait_exit(), Some(0), "{signal}; log:\n{}", w.log());
        assert!(w.log().contains("stopping"));
    }
}

#[test]
fn child_gets_forwarded_signals_and_its_exit_code_is_ours() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("signals");
    let ready = dir.path().join("ready");
    let app = format!(
        "trap 'echo HUP >> {s}' HUP; trap 'echo TERM >> {s}; exit 7' TERM; touch {r}; while :; do sleep 0.05; done",
        s = seen.display(),
        r = ready.display()
    );
    let mut w = Watcher::exec(
        &etcd,
        dir.path(),
        "ingestor",
        "true",
        &["--", "sh", "-c", &app],
    );
    eventually("the child runs", DEADLINE, || ready.exists().then_some(()));

    // SIGHUP goes to the child; the child (and the watcher) keep running.
    w.signal(Signal::SIGHUP);
    eventually("the child saw HUP", DEADLINE, || {
        std::fs::read_to_string(&seen)
            .ok()
            .filter(|s| s.contains("HUP"))
            .map(|_| ())
    });
    assert!(w.guard.child().try_wait().unwrap().is_none());

    // SIGTERM goes to the child, which exits 7: so does the watcher.
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(), Some(7), "log:\n{}", w.log());
    assert!(std::fs::read_to_string(&seen).unwrap().contains("TERM"));
}

#[test]
fn the_watcher_stops_when_the_child_exits() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Without watches: a plain supervisor.
    let mut w = Watcher::start(&etcd, dir.path(), &["--", "sh", "-c", "exit 3"], &[]);
    assert_eq!(w.wait_exit(), Some(3), "log:\n{}", w.log());
    // Killed by a signal: 128 + signal, as a shell reports it.
    let killed = exec_args("ingestor", "true", &["--", "sh", "-c", "kill -KILL $$"]);
    let mut w = Watcher::start(&etcd, dir.path(), &killed, &[]);
    assert_eq!(w.wait_exit(), Some(137), "log:\n{}", w.log());
    // A command that does not exist: 127.
    let mut w = Watcher::start(&etcd, dir.path(), &["--", "/nonexistent/app"], &[]);
    assert_eq!(w.wait_exit(), Some(127), "log:\n{}", w.log());
}

#[test]
fn log_format_json_writes_json_lines() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &["--", "sh", "-c", "exit 0"],
        &[("LOG_FORMAT", "json")],
    );
    assert_eq!(w.wait_exit(), Some(0), "log:\n{}", w.log());
    let log = w.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the watcher logged nothing");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string(), "a level in {line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("watcher starting")),
        "log:\n{log}"
    );
}

#[test]
fn bad_flags_print_one_line_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[
        &["--bogus"],
        &["--watch", "Bad_Name", "--exec", "true"],
        &["--watch", "a.b.c", "--exec", "true"],
        &["--watch", "a", "--exec", "true", "--debounce", "soon"],
        &["--watch", "a", "--exec", "true", "--methods", "x.py"],
        &["--watch", "a"],
        &["--exec", "true"],
        &[
            "--watch",
            "a",
            "--exec",
            "true",
            "--etcd-endpoints",
            "ftp://x",
        ],
        &["--watch", "a", "--exec", "true", "--log-format", "xml"],
    ];
    for args in cases {
        config_error(dir.path(), args);
    }
    let help = help();
    for flag in [
        "--watch",
        "WATCHES",
        "--methods",
        "--exec",
        "--debounce",
        "--splay",
        "ETCD_ENDPOINTS",
        "REGISTRY_PREFIX",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_at_start_is_waited_for_and_not_a_change() {
    let mut etcd = Etcd::start().unwrap();
    {
        let reg = registry(&etcd).await;
        put(&reg, "ingestor", "default", "a", 31001).await;
    }
    etcd.stop();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    // The compatibility variables instead of ETCD_ENDPOINTS.
    let port = etcd.client_port().to_string();
    let recorder = exec_recorder(&file);
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &exec_args("ingestor", &recorder, &["--splay", "50ms"]),
        &[
            ("ETCD_ENDPOINTS", ""),
            ("ETCD_HOST_ADDRESS", "127.0.0.1"),
            ("ETCD_PORT", &port),
        ],
    );
    eventually("the watcher reports etcd unreachable", DEADLINE, || {
        w.log().contains("retrying").then_some(())
    });
    etcd.restart().unwrap();
    w.wait_watching("ingestor");
    let reg = registry(&etcd).await;
    put(&reg, "ingestor", "default", "b", 31002).await;
    let calls = wait_calls(&file, 1);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].delta, calls[0].added.clone()),
        (1, vec!["b".to_string()])
    );
    assert_eq!(calls[0].nodes, vec!["a", "b"]);
}
