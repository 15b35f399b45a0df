//! The real watcher binary calling `service_change` from watch_methods.py in
//! its embedded interpreter, against a real etcd.

mod common;

use common::*;
use nix::sys::signal::Signal;
use testkit::Etcd;

/// Writes `watch_methods.py` into `dir` with a recorder helper and `body`.
fn methods(dir: &std::path::Path, body: &str) {
    let helper = r#"import json, os

def record(**fields):
    with open(os.environ["CALLS_FILE"], "a") as f:
        f.write(json.dumps(fields) + "\n")
"#;
    std::fs::write(dir.join("watch_methods.py"), format!("{helper}\n{body}")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_parameters_get_added_removed_and_nodes_debounced() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    put(&reg, "ingestor", "default", "a", 31001).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    methods(
        dir.path(),
        r#"
def service_change(service, delta, added, removed, nodes):
    assert isinstance(delta, int) and isinstance(added, list) and isinstance(nodes[0], dict)
    record(service=service, delta=delta, added=added, removed=removed, nodes=nodes)
"#,
    );
    // Default --methods is ./watch_methods.py in the working directory.
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &["--watch", "ingestor", "--debounce", "4s"],
        &[("CALLS_FILE", file.to_str().unwrap())],
    );
    w.wait_watching("ingestor");
    assert!(
        w.log().contains("added=true removed=true nodes=true"),
        "{}",
        w.log()
    );

    put(&reg, "ingestor", "default", "b", 31002).await;
    let calls = wait_calls(&file, 1);
    assert_eq!(
        (calls[0].delta, calls[0].added.clone()),
        (1, vec!["b".to_string()])
    );
    // +2 within the window: one callback with delta 2.
    put(&reg, "ingestor", "default", "c", 31003).await;
    put(&reg, "ingestor", "default", "d", 31004).await;
    let calls = wait_calls(&file, 2);
    assert_eq!(calls[1].delta, 2, "log:\n{}", w.log());
    assert_eq!(calls[1].added, vec!["c", "d"]);
    assert!(calls[1].removed.is_empty());
    assert_eq!(calls[1].nodes, vec!["a", "b", "c", "d"]);

    // SIGTERM ends it cleanly.
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_signature_and_a_raising_callback() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    let methods_dir = dir.path().join("hooks");
    std::fs::create_dir(&methods_dir).unwrap();
    // A neighbour module, importable because the file's folder is on sys.path.
    std::fs::write(methods_dir.join("helper_mod.py"), "FACTOR = 1\n").unwrap();
    methods(
        &methods_dir,
        r#"
import helper_mod

def service_change(service, delta):
    record(service=service, delta=delta * helper_mod.FACTOR)
    if delta < 0:
        raise RuntimeError("boom on purpose")
"#,
    );
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &[
            "--watch",
            "ingestor",
            "--methods",
            methods_dir.join("watch_methods.py").to_str().unwrap(),
        ],
        &[("CALLS_FILE", file.to_str().unwrap())],
    );
    w.wait_watching("ingestor");
    assert!(
        w.log().contains("added=false removed=false nodes=false"),
        "{}",
        w.log()
    );

    put(&reg, "ingestor", "default", "a", 31001).await;
    put(&reg, "ingestor", "default", "b", 31002).await;
    del(&reg, "ingestor", "default", "a").await;
    wait_calls(&file, 3);
    testkit::eventually("the traceback is logged", DEADLINE, || {
        let log = w.log();
        (log.contains("Traceback") && log.contains("RuntimeError: boom on purpose")).then_some(())
    });
    // The watcher goes on.
    put(&reg, "ingestor", "default", "c", 31003).await;
    let calls = wait_calls(&file, 4);
    let deltas: Vec<i64> = calls.iter().map(|c| c.delta).collect();
    assert_eq!(deltas, vec![1, 1, -1, 1], "log:\n{}", w.log());
    assert!(calls
        .iter()
        .all(|c| c.service == "ingestor" && c.added.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kwargs_receive_everything() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.jsonl");
    methods(
        dir.path(),
        r#"
def service_change(service, delta, **kwargs):
    record(service=service, delta=delta, keys=sorted(kwargs), **kwargs)
"#,
    );
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &["--watch", "ingestor.dev"],
        &[("CALLS_FILE", file.to_str().unwrap())],
    );
    w.wait_watching("ingestor.dev");
    put(&reg, "ingestor", "default", "a", 31001).await;
    put(&reg, "ingestor", "dev", "b", 31002).await;
    let calls = wait_calls(&file, 1);
    assert_eq!(calls[0].service, "ingestor.dev");
    assert_eq!(calls[0].added, vec!["b"]);
    assert_eq!(calls[0].nodes, vec!["b"]);
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        line["keys"],
        serde_json::json!(["added", "nodes", "removed"])
    );
}

#[test]
fn a_broken_methods_file_exits_64_with_the_error() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("watch_methods.py"), "def nope(:\n").unwrap();
    let mut w = Watcher::start(&etcd, dir.path(), &["--watch", "ingestor"], &[]);
    assert_eq!(w.wait_exit(), Some(64));
    assert!(w.log().contains("SyntaxError"), "{}", w.log());

    std::fs::write(
        dir.path().join("watch_methods.py"),
        "def other(s, d): pass\n",
    )
    .unwrap();
    let mut w = Watcher::start(&etcd, dir.path(), &["--watch", "ingestor"], &[]);
    assert_eq!(w.wait_exit(), Some(64));
    assert!(
        w.log().contains("no function service_change"),
        "{}",
        w.log()
    );
}

/// The interpreter starts without `site` (memory): the site-packages folders
/// must still be on sys.path, with the folders their `.pth` files list, but
/// the `.pth` import lines only run with `--python-site`. Uses the user site
/// (PYTHONUSERBASE) so the test writes nothing outside its temporary folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_packages_without_running_site() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("userbase");
    let user_base = ("PYTHONUSERBASE", base.to_str().unwrap());

    // Where the embedded interpreter looks for the user site with this
    // PYTHONUSERBASE (it depends on its version): a probe that reports it
    // and stops the watcher at load.
    let probe = dir.path().join("usersite.txt");
    std::fs::write(
        dir.path().join("watch_methods.py"),
        format!(
            "import site\nopen({:?}, 'w').write(site.getusersitepackages())\nraise RuntimeError('probe done')\n",
            probe.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut w = Watcher::start(&etcd, dir.path(), &["--watch", "ingestor"], &[user_base]);
    assert_eq!(w.wait_exit(), Some(64), "{}", w.log());
    let user_site = std::path::PathBuf::from(std::fs::read_to_string(&probe).unwrap());
    assert!(user_site.starts_with(&base), "{}", user_site.display());

    // A module in the user site, a folder listed by a .pth there, and a .pth
    // import line that leaves a mark when it runs.
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(&user_site).unwrap();
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(user_site.join("userpkg_probe.py"), "VALUE = 'user'\n").unwrap();
    std::fs::write(extra.join("extra_probe.py"), "VALUE = 'extra'\n").unwrap();
    let mark = dir.path().join("pth-import-ran");
    std::fs::write(
        user_site.join("probe.pth"),
        format!(
            "# a comment\n{}\nimport os; open(os.environ['PTH_MARK'], 'w').write('ran')\n",
            extra.display()
        ),
    )
    .unwrap();
    let file = dir.path().join("calls.jsonl");
    methods(
        dir.path(),
        r#"
import userpkg_probe, extra_probe

def service_change(service, delta):
    record(service=service, delta=delta, added=[{"container": userpkg_probe.VALUE + "," + extra_probe.VALUE}])
"#,
    );
    let envs = [
        user_base,
        ("CALLS_FILE", file.to_str().unwrap()),
        ("PTH_MARK", mark.to_str().unwrap()),
    ];

    // Default: imports work, the .pth import line did not run.
    let mut w = Watcher::start(&etcd, dir.path(), &["--watch", "ingestor"], &envs);
    w.wait_watching("ingestor");
    put(&reg, "ingestor", "default", "a", 31001).await;
    let calls = wait_calls(&file, 1);
    assert_eq!(calls[0].added, vec!["user,extra"], "{}", w.log());
    assert!(
        !mark.exists(),
        "the .pth import line ran without --python-site"
    );
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(), Some(0));

    // --python-site: Python's own site run, which executes it.
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &["--watch", "ingestor", "--python-site"],
        &envs,
    );
    w.wait_watching("ingestor");
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), "ran");
    put(&reg, "ingestor", "default", "b", 31002).await;
    let calls = wait_calls(&file, 2);
    assert_eq!(calls[1].added, vec!["user,extra"], "{}", w.log());
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(), Some(0));
}
