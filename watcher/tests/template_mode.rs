//! Template mode of the real watcher binary against a real etcd: files
//! rendered from the records written through `registry`, observed through
//! their bytes, inodes and modification times, and the lines their COMMAND
//! appends to a counter file.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use registry::Port;
use testkit::{eventually, Etcd};

/// An HAProxy-like backend list: only addresses, no health.
const BACKENDS: &str = "\
backend ingestors
{%- for r in services[\"ingestor\"] %}
    server {{ r.container }} {{ r.host }}:{{ r.ports.api.external }}
{%- endfor %}
# proxies: {% for r in service(\"proxy\") %}{{ r.container }} {% endfor %}
";

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `path` holds exactly `expected`.
fn wait_content(path: &Path, expected: &str, w: &Watcher) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while read(path) != expected {
        if std::time::Instant::now() > deadline {
            panic!(
                "{} holds {:?}, not {expected:?}; log:\n{}",
                path.display(),
                read(path),
                w.log()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn lines(path: &Path) -> usize {
    read(path).lines().count()
}

fn backends(servers: &[(&str, u16)], proxies: &str) -> String {
    let mut out = String::from("backend ingestors");
    for (name, port) in servers {
        out.push_str(&format!("\n    server {name} 10.0.0.5:{port}"));
    }
    out.push_str(&format!("\n# proxies: {proxies}\n"));
    out
}

/// `lb.j2` ([`BACKENDS`]) in a test's dir, rendered to `lb.cfg`, its
/// command appending a line to `reloads`.
struct Lb {
    src: PathBuf,
    dest: PathBuf,
    counter: PathBuf,
}

impl Lb {
    fn new(dir: &Path) -> Lb {
        Lb {
            src: write(&dir.join("lb.j2"), BACKENDS),
            dest: dir.join("lb.cfg"),
            counter: dir.join("reloads"),
        }
    }

    /// The `--template` value.
    fn template(&self) -> String {
        format!(
            "{}:{}:echo reload >> {}",
            self.src.display(),
            self.dest.display(),
            self.counter.display()
        )
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_at_start_then_rewrites_atomically_only_when_the_output_changes() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    put(&reg, "ingestor", "default", "a", 31001).await;
    put(&reg, "ingestor", "default", "b", 31002).await;
    put(&reg, "proxy", "default", "p", 31100).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write(&dir.path().join("haproxy.cfg.j2"), BACKENDS);
    // Health is in this second template only: its rewrite tells that a pass
    // over both templates ran.
    let health_src = write(
        &dir.path().join("health.j2"),
        "{% for r in services.ingestor %}{{ r.container }}={{ r.healthy }}\n{% endfor %}",
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("haproxy.cfg");
    let health = out.join("health.txt");
    let counter = dir.path().join("reloads");
    let mut w = Watcher::start(
        &etcd,
        dir.path(),
        &[
            "--watch",
            "ingestor,proxy",
            "--template",
            &format!(
                "{}:{}:echo \"reload $WATCH_TEMPLATE_DEST\" >> {}",
                src.display(),
                dest.display(),
                counter.display()
            ),
            "--template",
            &format!("{}:{}", health_src.display(), health.display()),
        ],
        &[],
    );

    // (1) The first render, and its command (no child here).
    wait_content(&dest, &backends(&[("a", 31001), ("b", 31002)], "p "), &w);
    wait_content(&health, "a=True\nb=True\n", &w);
    eventually("the first reload", DEADLINE, || {
        (lines(&counter) == 1).then_some(())
    });
    assert_eq!(read(&counter), format!("reload {}\n", dest.display()));

    // (2) Changes that do not change the output: an identical record, a
    // health flip (not in this template), a service that is not watched.
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = std::fs::metadata(&dest).unwrap();
    put(&reg, "ingestor", "default", "a", 31001).await;
    put(&reg, "other", "default", "x", 31999).await;
    let mut unhealthy = instance("ingestor", "default", "a", 31001);
    unhealthy.healthy = Some(false);
    reg.put(&unhealthy).await.unwrap();
    wait_content(&health, "a=False\nb=True\n", &w);
    let after = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec()),
        "not rewritten"
    );
    assert_eq!(lines(&counter), 1, "no reload; log:\n{}", w.log());

    // (3) + (4) Real changes, while a reader checks that it only ever sees
    // complete files.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let stop = stop.clone();
        let dest = dest.clone();
        move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&dest).expect("DEST always exists");
                assert!(
                    text.starts_with("backend ingestors\n") && text.ends_with(" \n"),
                    "partial file: {text:?}"
                );
                reads += 1;
            }
            reads
        }
    });
    let mut servers = vec![("a", 31001), ("b", 31002)];
    let mut inode = before.ino();
    let extra: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    for (i, name) in extra.iter().enumerate() {
        let port = 32000 + i as u16;
        put(&reg, "ingestor", "default", name, port).await;
        servers.push((name, port));
        wait_content(&dest, &backends(&servers, "p "), &w);
        let meta = std::fs::metadata(&dest).unwrap();
        assert_ne!(meta.ino(), inode, "replaced by a rename");
        assert_eq!(meta.mode() & 0o7777, 0o640, "DEST's mode is kept");
        inode = meta.ino();
        eventually("one reload per change", DEADLINE, || {
            (lines(&counter) == i + 2).then_some(())
        });
    }
    del(&reg, "ingestor", "default", "b").await;
    servers.remove(1);
    wait_content(&dest, &backends(&servers, "p "), &w);
    del(&reg, "proxy", "default", "p").await;
    wait_content(&dest, &backends(&servers, ""), &w);
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only complete files");
    assert!(reads > 0);
    eventually("a reload per change", DEADLINE, || {
        (lines(&counter) == extra.len() + 3).then_some(())
    });
    // No temporary file left beside DEST.
    assert_eq!(names_in(&out), vec!["haproxy.cfg", "health.txt"]);
    assert!(
        w.guard.child().try_wait().unwrap().is_none(),
        "still running"
    );
    assert_eq!(lines(&counter), extra.len() + 3, "log:\n{}", w.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_error_keeps_the_last_good_file_and_says_why() {
    let (etcd, reg, dir, _) = exec_fixture().await;
    put(&reg, "ingestor", "default", "a", 31001).await;
    let lb = Lb::new(dir.path());
    let template = lb.template();
    let Lb { src, dest, counter } = lb;
    let args = ["--watch", "ingestor,proxy", "--template", &template];
    let mut w = Watcher::start(&etcd, dir.path(), &args, &[]);
    let good = backends(&[("a", 31001)], "");
    wait_content(&dest, &good, &w);
    eventually("the first reload", DEADLINE, || {
        (lines(&counter) == 1).then_some(())
    });
    let before = std::fs::metadata(&dest).unwrap();

    // An instance without an `api` port: `r.ports.api.external` (line 3)
    // cannot be rendered.
    let mut odd = instance("ingestor", "default", "b", 31002);
    odd.ports = [("web".to_string(), Port::tcp(31002, 80))].into();
    reg.put(&odd).await.unwrap();
    let line = eventually("the render error in the log", DEADLINE, || {
        w.log()
            .lines()
            .find(|l| l.contains("template ") && l.contains(" failed"))
            .map(str::to_string)
    });
    assert!(
        line.contains(&src.display().to_string())
            && line.contains(&format!("keeping {}", dest.display()))
            && line.contains("line 3: undefined value"),
        "{line}"
    );
    assert_eq!(read(&dest), good);
    assert_eq!(std::fs::metadata(&dest).unwrap().ino(), before.ino());
    assert_eq!(lines(&counter), 1);

    // The watcher goes on: the next good state is rendered.
    put(&reg, "ingestor", "default", "c", 31003).await;
    del(&reg, "ingestor", "default", "b").await;
    wait_content(&dest, &backends(&[("a", 31001), ("c", 31003)], ""), &w);
    eventually("the second reload", DEADLINE, || {
        (lines(&counter) == 2).then_some(())
    });
    assert_eq!(
        names_in(dir.path()),
        vec!["lb.cfg", "lb.j2", "reloads", "watcher.log"],
        "no temporary file left"
    );
    assert!(
        w.guard.child().try_wait().unwrap().is_none(),
        "still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_starts_after_the_first_render() {
    let (mut etcd, reg, dir, _) = exec_fixture().await;
    put(&reg, "ingestor", "default", "a", 31001).await;
    put(&reg, "proxy", "default", "p", 31100).await;
    let lb = Lb::new(dir.path());
    let (dest, counter) = (&lb.dest, &lb.counter);
    let copy = dir.path().join("copy");
    // etcd is down at first: the watcher cannot render, so the child must wait.
    etcd.stop();
    let child = format!("cat {} > {}; exit 7", dest.display(), copy.display());
    let template = lb.template();
    let args = [
        "--watch",
        "ingestor,proxy",
        "--template",
        &template,
        "--",
        "sh",
        "-c",
        &child,
    ];
    let mut w = Watcher::start(&etcd, dir.path(), &args, &[]);
    eventually("the watcher retries etcd", DEADLINE, || {
        w.log().contains("retrying").then_some(())
    });
    assert!(
        w.guard.child().try_wait().unwrap().is_none() && !copy.exists() && !dest.exists(),
        "the child did not start before the first render; log:\n{}",
        w.log()
    );
    etcd.restart().unwrap();
    assert_eq!(w.wait_exit(), Some(7), "log:\n{}", w.log());
    assert_eq!(read(&copy), backends(&[("a", 31001)], "p "));
    // The child reads the fresh file: no reload for the first render.
    assert!(!counter.exists(), "log:\n{}", w.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_from_the_environment_beside_an_exec_hook_and_debounced() {
    let etcd = Etcd::start().unwrap();
    let reg = registry(&etcd).await;
    put(&reg, "ingestor", "testing", "a", 31001).await;
    put(&reg, "ingestor", "default", "z", 31009).await;
    let dir = tempfile::tempdir().unwrap();
    let one = write(
        &dir.path().join("one.j2"),
        "{% for r in services[\"ingestor.testing\"] %}{{ r.container }} {{ r.labels | join(\",\") }}\n{% endfor %}",
    );
    let two = write(
        &dir.path().join("two.j2"),
        "{{ service(\"ingestor.testing\") | map(attribute=\"container\") | join(\" \") }}\n",
    );
    let (one_out, two_out) = (dir.path().join("one.out"), dir.path().join("two.out"));
    let counter = dir.path().join("reloads");
    let calls = dir.path().join("calls.jsonl");
    let templates = format!(
        "{}:{}\n  {}:{}:echo two: $(cat {}) >> {}\n",
        one.display(),
        one_out.display(),
        two.display(),
        two_out.display(),
        two_out.display(),
        counter.display()
    );
    let w = Watcher::start(
        &etcd,
        dir.path(),
        &["--exec", &exec_recorder(&calls), "--debounce", "3s"],
        &[
            ("WATCHES", "ingestor.testing"),
            ("WATCH_TEMPLATES", &templates),
        ],
    );
    wait_content(&one_out, "a testing\n", &w);
    wait_content(&two_out, "a\n", &w);
    eventually("the first reload", DEADLINE, || {
        (lines(&counter) == 1).then_some(())
    });

    // The first change renders at once; the burst that follows within the
    // window is one net render (one reload) when it closes.
    put(&reg, "ingestor", "testing", "b", 31002).await;
    wait_content(&two_out, "a b\n", &w);
    put(&reg, "ingestor", "prod.testing", "c", 31003).await;
    put(&reg, "ingestor", "testing", "d", 31004).await;
    del(&reg, "ingestor", "testing", "a").await;
    wait_content(&two_out, "b c d\n", &w);
    wait_content(&one_out, "b testing\nc prod,testing\nd testing\n", &w);
    let reloads = eventually("the reloads", DEADLINE, || {
        (lines(&counter) == 3).then(|| read(&counter))
    });
    assert_eq!(reloads, "two: a\ntwo: a b\ntwo: b c d\n");
    // The exec hook ran too, on the same changes.
    let calls = wait_calls(&calls, 2);
    assert_eq!(calls[0].nodes, vec!["a", "b"]);
    assert_eq!(calls[1].nodes, vec!["b", "c", "d"]);
}

#[test]
fn bad_templates_print_one_line_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("ok.j2"), "{{ 1 }}\n");
    write(
        &dir.path().join("broken.j2"),
        "backend x\n{% for r in services.ingestor %}\n  server {{ r.host }}\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (&["--watch", "a", "--template", "ok.j2"], "SRC:DEST"),
        (&["--watch", "a", "--template", ":out"], "SRC"),
        (&["--watch", "a", "--template", "ok.j2:"], "DEST"),
        (
            &["--watch", "a", "--template", "missing.j2:out"],
            "cannot read the template missing.j2",
        ),
        (
            &["--watch", "a", "--template", "broken.j2:out"],
            "invalid template broken.j2: line 3: syntax error",
        ),
        (
            &["--template", "ok.j2:out", "--", "true"],
            "needs a service to watch",
        ),
        (
            &[
                "--watch",
                "a",
                "--template",
                "ok.j2:out",
                "--template",
                "ok.j2:out:x",
            ],
            "two templates write out",
        ),
    ];
    for (args, expected) in cases {
        let line = config_error(dir.path(), args);
        assert!(line.contains(expected), "{args:?}: {line}");
        assert!(!dir.path().join("out").exists());
    }
    let help = help();
    assert!(
        help.contains("--template <SRC:DEST[:COMMAND]>") && help.contains("WATCH_TEMPLATES"),
        "{help}"
    );
}
