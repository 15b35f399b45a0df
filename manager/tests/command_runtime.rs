//! The command runtime with real processes: environment, exit statuses, kills
//! (trapped SIGTERM, grace -> SIGKILL, whole process group), bounded logs,
//! recovery after the runtime is dropped (a dead manager), orphans, and
//! processes that are not ours.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use manager::runtime::command::{CommandConfig, CommandRuntime};
use manager::runtime::{
    ExecCheck, Exit, KnownTask, LaunchSpec, Runtime, RuntimeError, RuntimeEvent, Workload,
};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(20);

/// A temp data dir; on drop, every task process recorded in it is killed.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let p = std::env::temp_dir().join(format!("mdo-cmd-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(dirs) = std::fs::read_dir(self.0.join("tasks")) {
            for d in dirs.flatten() {
                let Ok(text) = std::fs::read_to_string(d.path().join("task.json")) else {
                    continue;
                };
                let m: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                for (pid_key, start_key, group) in [
                    ("pid", "task_start", true),
                    ("shim_pid", "shim_start", false),
                ] {
                    let pid = m[pid_key].as_i64().unwrap_or(0) as i32;
                    if pid > 0 && start_time(pid) == m[start_key].as_u64() {
                        let target = nix::unistd::Pid::from_raw(pid);
                        if group {
                            let _ =
                                nix::sys::signal::killpg(target, nix::sys::signal::Signal::SIGKILL);
                        } else {
                            let _ =
                                nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
                        }
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Exists and is not a zombie.
fn alive(pid: i32) -> bool {
    matches!(stat_fields(pid), Some(f) if f[0] != "Z" && f[0] != "X")
}

fn config(dir: &Path) -> CommandConfig {
    let mut cfg = CommandConfig::new(dir.to_path_buf());
    cfg.shim = Some(PathBuf::from(env!("CARGO_BIN_EXE_mdo-task-shim")));
    cfg.base_env = BTreeMap::from([
        (
            "PATH".to_string(),
            "/usr/local/bin:/usr/bin:/bin".to_string(),
        ),
        ("HOME".to_string(), "/nonexistent-home".to_string()),
    ]);
    cfg
}

fn runtime(cfg: CommandConfig) -> (CommandRuntime, UnboundedReceiver<RuntimeEvent>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (CommandRuntime::with_config(cfg, tx).unwrap(), rx)
}

fn spec(task_id: &str, workload: Workload, env: &[(&str, &str)]) -> LaunchSpec {
    LaunchSpec {
        task_id: task_id.to_string(),
        app_id: "/test".into(),
        app_version: "2026-11-22T04:00:00.000Z".into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cpus: 0.1,
        mem_mib: 16.0,
        kill_grace: Duration::from_secs(3),
        workload,
    }
}

fn sh(cmd: &str) -> Workload {
    Workload::Command {
        cmd: Some(cmd.to_string()),
        args: Vec::new(),
    }
}

async fn next_exit(rx: &mut UnboundedReceiver<RuntimeEvent>, task_id: &str) -> Exit {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no exit event for {task_id}"))
            .expect("event channel open");
        if let RuntimeEvent::Exited { task_id: id, exit } = ev {
            if id == task_id {
                return exit;
            }
        }
    }
}

/// The next `n` exits, by task id (they may come in any order).
async fn collect_exits(
    rx: &mut UnboundedReceiver<RuntimeEvent>,
    n: usize,
) -> BTreeMap<String, Exit> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut exits = BTreeMap::new();
    while exits.len() < n {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {exits:?} exited"))
            .expect("event channel open");
        if let RuntimeEvent::Exited { task_id, exit } = ev {
            exits.insert(task_id, exit);
        }
    }
    exits
}

/// Bytes of a task's output files on disk (`output.log` and its rotation).
fn output_on_disk(rt: &CommandRuntime, task_id: &str) -> u64 {
    std::fs::read_dir(rt.task_dir(task_id))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("output.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

async fn wait_for_output(rt: &CommandRuntime, task_id: &str, needle: &str) {
    testkit::eventually_async(&format!("{task_id} prints {needle:?}"), WAIT, || async {
        let out = rt.logs(task_id, None).await.ok()?;
        String::from_utf8_lossy(&out).contains(needle).then_some(())
    })
    .await;
}

async fn read_pid(path: &Path) -> i32 {
    testkit::eventually_async(&format!("{} written", path.display()), WAIT, || async {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .await
}

async fn wait_dead(pid: i32, what: &str) {
    testkit::eventually_async(what, WAIT, || async { (!alive(pid)).then_some(()) }).await;
}

#[tokio::test]
async fn task_sees_exactly_its_environment_and_output_is_logged() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let workload = Workload::Command {
        cmd: None,
        args: vec!["env".into()],
    };
    let started = rt
        .launch(&spec(
            "env-task",
            workload,
            &[
                ("FOO", "bar baz"),
                ("MARATHON_APP_ID", "/test"),
                ("HOME", "/task-home"),
            ],
        ))
        .await
        .unwrap();
    assert!(started.handle.parse::<i32>().unwrap() > 0);
    assert!(started.ip_addresses.is_empty());
    assert_eq!(next_exit(&mut rx, "env-task").await, Exit::Finished);
    let out = String::from_utf8(rt.logs("env-task", None).await.unwrap()).unwrap();
    let env: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let want = BTreeMap::from([
        ("FOO", "bar baz"),
        ("HOME", "/task-home"),
        ("MARATHON_APP_ID", "/test"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ]);
    // Nothing of the test process's environment (CARGO_*, RUST_*...) leaks in.
    assert_eq!(env, want);
}

#[tokio::test]
async fn default_base_environment_is_path_home_lang_only() {
    let env = manager::runtime::command::inherited_base_env();
    assert!(env.contains_key("PATH"));
    assert!(
        env.keys()
            .all(|k| ["PATH", "HOME", "LANG"].contains(&k.as_str())),
        "{env:?}"
    );
}

#[tokio::test]
async fn exit_statuses_become_finished_or_failed_with_the_status() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let cases = [
        ("ok", sh("echo done; exit 0"), Exit::Finished),
        (
            "three",
            sh("exit 3"),
            Exit::Failed {
                message: "Command exited with status 3".into(),
            },
        ),
        (
            "signal",
            sh("kill -9 $$"),
            Exit::Failed {
                message: "Command killed by signal 9 (SIGKILL)".into(),
            },
        ),
        (
            "args",
            Workload::Command {
                cmd: None,
                args: vec!["sh".into(), "-c".into(), "exit $0".into(), "4".into()],
            },
            Exit::Failed {
                message: "Command exited with status 4".into(),
            },
        ),
    ];
    for (id, workload, _) in &cases {
        rt.launch(&spec(id, workload.clone(), &[])).await.unwrap();
    }
    let exits = collect_exits(&mut rx, cases.len()).await;
    for (id, _, want) in cases {
        assert_eq!(exits[id], want, "{id}");
    }
    // A missing program fails the launch itself.
    let missing = Workload::Command {
        cmd: None,
        args: vec!["/no/such/program".into()],
    };
    match rt.launch(&spec("missing", missing, &[])).await {
        Err(RuntimeError::Launch(msg)) => assert!(msg.contains("/no/such/program"), "{msg}"),
        other => panic!("expected a launch error, got {other:?}"),
    }
    let neither = Workload::Command {
        cmd: None,
        args: Vec::new(),
    };
    assert!(matches!(
        rt.launch(&spec("neither", neither, &[])).await,
        Err(RuntimeError::Launch(_))
    ));
    assert!(matches!(
        rt.launch(&spec("bad/id", sh("true"), &[])).await,
        Err(RuntimeError::Launch(_))
    ));
}

#[tokio::test]
async fn kill_lets_a_trapping_task_exit_cleanly() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let started = rt
        .launch(&spec(
            "trap",
            sh("trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.05; done"),
            &[],
        ))
        .await
        .unwrap();
    let pid: i32 = started.handle.parse().unwrap();
    wait_for_output(&rt, "trap", "ready").await;
    rt.kill("trap", Duration::from_secs(30)).await.unwrap();
    assert_eq!(next_exit(&mut rx, "trap").await, Exit::Killed);
    assert!(!alive(pid));
    let out = String::from_utf8(rt.logs("trap", None).await.unwrap()).unwrap();
    assert!(out.contains("got TERM"), "{out}");
    // Killing again is harmless; an unknown task is an error.
    rt.kill("trap", Duration::from_secs(1)).await.unwrap();
    assert!(matches!(
        rt.kill("nope", Duration::ZERO).await,
        Err(RuntimeError::UnknownTask(_))
    ));
}

#[tokio::test]
async fn kill_escalates_to_sigkill_after_the_grace_period_and_reaches_grandchildren() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let gc_file = dir.path().join("grandchild.pid");
    let cmd = format!(
        "trap '' TERM; (sleep 1000 & echo $! > {}; wait) & echo ready; while true; do sleep 0.05; done",
        gc_file.display()
    );
    let started = rt.launch(&spec("stubborn", sh(&cmd), &[])).await.unwrap();
    let pid: i32 = started.handle.parse().unwrap();
    let grandchild = read_pid(&gc_file).await;
    wait_for_output(&rt, "stubborn", "ready").await;
    assert!(alive(grandchild));
    rt.kill("stubborn", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(next_exit(&mut rx, "stubborn").await, Exit::Killed);
    assert!(
        !alive(pid),
        "the task ignored SIGTERM and must have been SIGKILLed"
    );
    wait_dead(grandchild, "grandchild gone").await;
}

#[tokio::test]
async fn processes_left_behind_by_an_ended_task_are_killed() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let bg_file = dir.path().join("bg.pid");
    let cmd = format!("sleep 1000 & echo $! > {}; exit 0", bg_file.display());
    rt.launch(&spec("leaver", sh(&cmd), &[])).await.unwrap();
    let bg = read_pid(&bg_file).await;
    assert_eq!(next_exit(&mut rx, "leaver").await, Exit::Finished);
    wait_dead(bg, "background process killed").await;
}

#[tokio::test]
async fn logs_are_bounded_and_tail_returns_the_last_lines() {
    let dir = Scratch::new();
    let mut cfg = config(dir.path());
    cfg.log_limit_bytes = 64 * 1024;
    let (rt, mut rx) = runtime(cfg);
    // ~330 KB of output, on stdout and stderr.
    let cmd = "i=0; while [ $i -lt 5000 ]; do echo \"line $i ..........................................\"; \
               [ $((i % 1000)) -eq 0 ] && echo \"err $i\" >&2; i=$((i+1)); done";
    rt.launch(&spec("chatty", sh(cmd), &[])).await.unwrap();
    assert_eq!(next_exit(&mut rx, "chatty").await, Exit::Finished);
    let all = rt.logs("chatty", None).await.unwrap();
    assert!(all.len() <= 64 * 1024, "{} bytes", all.len());
    let text = String::from_utf8(all).unwrap();
    assert!(
        text.starts_with("line "),
        "cut at a line boundary: {:?}",
        &text[..40]
    );
    assert!(text.ends_with("line 4999 ..........................................\n"));
    let on_disk = output_on_disk(&rt, "chatty");
    assert!(on_disk <= 2 * 64 * 1024, "{on_disk} bytes on disk");
    let tail = rt.logs("chatty", Some(2)).await.unwrap();
    assert_eq!(
        String::from_utf8(tail).unwrap(),
        "line 4998 ..........................................\nline 4999 ..........................................\n"
    );
    // stderr is captured too (interleaved).
    rt.launch(&spec(
        "stderr",
        sh("echo out; echo err >&2; echo out2"),
        &[],
    ))
    .await
    .unwrap();
    assert_eq!(next_exit(&mut rx, "stderr").await, Exit::Finished);
    assert_eq!(rt.logs("stderr", None).await.unwrap(), b"out\nerr\nout2\n");
    assert!(matches!(
        rt.logs("nope", None).await,
        Err(RuntimeError::UnknownTask(_))
    ));
}

fn known(id: &str) -> KnownTask {
    KnownTask {
        task_id: id.into(),
        app_id: "/test".into(),
        handle: String::new(),
        workload_is_docker: false,
    }
}

#[tokio::test]
async fn recover_adopts_running_tasks_reports_ended_ones_and_removes_orphans() {
    let dir = Scratch::new();
    let stop = |name: &str| dir.path().join(format!("{name}.stop"));
    let until = |name: &str, code: i32| {
        format!(
            "echo up; until [ -f {} ]; do sleep 0.05; done; exit {code}",
            stop(name).display()
        )
    };
    // A process this runtime never started, in its own group like a task.
    let mut hand = testkit::ChildGuard::new(
        std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let hand_pid = hand.id() as i32;

    let (pids, tasks_dir) = {
        let (rt1, _rx1) = runtime(config(dir.path()));
        let mut pids = BTreeMap::new();
        for (id, code) in [
            ("adopt-me", 7),
            ("kill-me", 0),
            ("ends-while-down", 5),
            ("orphan", 0),
        ] {
            let started = rt1
                .launch(&spec(id, sh(&until(id, code)), &[("X", "1")]))
                .await
                .unwrap();
            pids.insert(id, started.handle.parse::<i32>().unwrap());
            wait_for_output(&rt1, id, "up").await;
        }
        (pids, dir.path().join("tasks"))
        // rt1 dropped here: the manager "dies"; its tasks keep running.
    };
    assert!(pids.values().all(|&p| alive(p)));
    // A stale marker naming the hand-started process with another start time
    // (a recycled pid) must never lead to a kill.
    let fake = tasks_dir.join("stale");
    std::fs::create_dir_all(&fake).unwrap();
    let bogus = serde_json::json!({"shim_pid": hand_pid, "shim_start": 1, "pid": hand_pid, "task_start": 1});
    std::fs::write(fake.join("task.json"), bogus.to_string()).unwrap();

    std::fs::write(stop("ends-while-down"), "").unwrap();
    testkit::eventually_async("exit recorded while no runtime runs", WAIT, || async {
        tasks_dir
            .join("ends-while-down/exit.json")
            .exists()
            .then_some(())
    })
    .await;

    let (rt2, mut rx2) = runtime(config(dir.path()));
    let known_tasks = [
        known("adopt-me"),
        known("kill-me"),
        known("ends-while-down"),
        known("never-existed"),
    ];
    let mut rec = rt2.recover(&known_tasks).await.unwrap();
    rec.adopted.sort();
    assert_eq!(
        rec.adopted,
        vec!["adopt-me".to_string(), "kill-me".to_string()]
    );
    rec.gone.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(rec.gone.len(), 2, "{:?}", rec.gone);
    assert_eq!(
        rec.gone[0],
        (
            "ends-while-down".into(),
            Exit::Failed {
                message: "Command exited with status 5".into()
            }
        )
    );
    assert_eq!(rec.gone[1].0, "never-existed");
    assert!(matches!(rec.gone[1].1, Exit::Lost { .. }));
    assert_eq!(rec.orphans_removed, vec!["orphan".to_string()]);
    assert!(!alive(pids["orphan"]));
    assert!(!tasks_dir.join("orphan").exists());
    assert!(
        alive(hand_pid),
        "a process we did not start is never touched"
    );
    assert!(hand.child().try_wait().unwrap().is_none());

    // Adopted tasks run on as the same processes, and stay under control.
    assert!(alive(pids["adopt-me"]) && alive(pids["kill-me"]));
    assert!(rt2
        .exec_check("adopt-me", "test \"$X\" = 1", WAIT)
        .await
        .unwrap());
    std::fs::write(stop("adopt-me"), "").unwrap();
    assert_eq!(
        next_exit(&mut rx2, "adopt-me").await,
        Exit::Failed {
            message: "Command exited with status 7".into()
        }
    );
    rt2.kill("kill-me", Duration::from_secs(5)).await.unwrap();
    assert_eq!(next_exit(&mut rx2, "kill-me").await, Exit::Killed);
    assert!(!alive(pids["kill-me"]));
    assert!(String::from_utf8(rt2.logs("adopt-me", None).await.unwrap())
        .unwrap()
        .contains("up"));
    hand.kill();
}

#[tokio::test]
async fn exec_check_runs_with_the_task_environment_and_times_out() {
    let dir = Scratch::new();
    let (rt, _rx) = runtime(config(dir.path()));
    rt.launch(&spec(
        "checked",
        sh("while true; do sleep 0.05; done"),
        &[("FOO", "bar")],
    ))
    .await
    .unwrap();
    assert!(rt
        .exec_check("checked", "test \"$FOO\" = bar", WAIT)
        .await
        .unwrap());
    assert!(!rt
        .exec_check("checked", "test \"$FOO\" = other", WAIT)
        .await
        .unwrap());
    assert!(!rt
        .exec_check("checked", "sleep 30", Duration::from_millis(200))
        .await
        .unwrap());
    assert!(matches!(
        rt.exec_check("nope", "true", WAIT).await,
        Err(RuntimeError::UnknownTask(_))
    ));
    let res = rt.node_resources().await.unwrap();
    assert!(res.cpus >= 1.0 && res.mem_mib > 0.0, "{res:?}");
    rt.kill("checked", Duration::from_secs(1)).await.unwrap();
}

/// Plays a manager process for `tasks_survive_a_manager_killed_with_sigkill`:
/// launches one task, says so, then waits to be killed. Does nothing unless
/// the parent test sets `MDO_CMD_HELPER_DIR`.
#[tokio::test]
#[ignore = "helper process for tasks_survive_a_manager_killed_with_sigkill"]
async fn helper_manager_process() {
    let Some(dir) = std::env::var_os("MDO_CMD_HELPER_DIR") else {
        return;
    };
    let (rt, _rx) = runtime(config(Path::new(&dir)));
    let started = rt
        .launch(&spec(
            "survivor",
            sh("echo alive; while true; do sleep 0.05; done"),
            &[],
        ))
        .await
        .unwrap();
    println!("launched {}", started.handle);
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn tasks_survive_a_manager_killed_with_sigkill_and_are_adopted() {
    use std::io::BufRead;
    let dir = Scratch::new();
    let mut manager = testkit::ChildGuard::new(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_manager_process",
                "--ignored",
                "--nocapture",
            ])
            .env("MDO_CMD_HELPER_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = manager.child().stdout.take().unwrap();
    let pid: i32 = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("launched ").map(|p| p.parse().unwrap()))
            .expect("the helper launched a task")
    })
    .await
    .unwrap();
    // kill -9 the "manager": the task must live on.
    manager.kill();
    assert!(alive(pid));

    let (rt, mut rx) = runtime(config(dir.path()));
    let rec = rt.recover(&[known("survivor")]).await.unwrap();
    assert_eq!(rec.adopted, vec!["survivor".to_string()]);
    assert!(
        rec.gone.is_empty() && rec.orphans_removed.is_empty(),
        "{rec:?}"
    );
    assert!(alive(pid), "adopted, not restarted");
    wait_for_output(&rt, "survivor", "alive").await;
    rt.kill("survivor", Duration::from_secs(5)).await.unwrap();
    assert_eq!(next_exit(&mut rx, "survivor").await, Exit::Killed);
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_task_whose_directory_is_removed_is_stopped() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let started = rt
        .launch(&spec("wiped", sh("while true; do sleep 0.05; done"), &[]))
        .await
        .unwrap();
    let pid: i32 = started.handle.parse().unwrap();
    let task_dir = rt.task_dir("wiped");
    testkit::eventually_async("task directory removed", WAIT, || async {
        std::fs::remove_dir_all(&task_dir).ok()
    })
    .await;
    let exit = next_exit(&mut rx, "wiped").await;
    assert!(matches!(exit, Exit::Lost { .. }), "{exit:?}");
    wait_dead(pid, "task of a wiped directory stopped").await;
}

/// The parent of `pid` (field 4 of /proc/<pid>/stat).
fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

fn shim_of(rt: &CommandRuntime, task_id: &str) -> i32 {
    let text = std::fs::read_to_string(rt.task_dir(task_id).join("task.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["shim_pid"].as_i64().unwrap() as i32
}

#[tokio::test]
async fn shims_outlive_their_spawner_and_ended_shims_are_reaped() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let first = rt
        .launch(&spec("first", sh("while true; do sleep 0.05; done"), &[]))
        .await
        .unwrap();
    let task: i32 = first.handle.parse().unwrap();
    let shim = shim_of(&rt, "first");
    // One spawner forks the shims: `mdo-task-shim -`, the shim's parent.
    let spawner = parent_of(shim).unwrap();
    let cmdline = std::fs::read(format!("/proc/{spawner}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    assert!(
        args[0].ends_with(b"mdo-task-shim") && args[1] == b"-",
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let second = rt
        .launch(&spec("second", sh("echo two; exit 0"), &[]))
        .await
        .unwrap();
    assert_eq!(
        next_exit(&mut rx, "second").await,
        Exit::Finished,
        "{second:?}"
    );
    // Its shim ended: the spawner reaps it, no zombie is left.
    let second_shim = shim_of(&rt, "second");
    testkit::eventually_async("the ended shim reaped", WAIT, || async {
        (!Path::new(&format!("/proc/{second_shim}")).exists()).then_some(())
    })
    .await;

    // The spawner dies: the task and its shim live on, still watched.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spawner),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_dead(spawner, "the spawner killed").await;
    assert!(alive(task) && alive(shim));
    // The next launch starts another spawner.
    let third = rt
        .launch(&spec("third", sh("while true; do sleep 0.05; done"), &[]))
        .await
        .unwrap();
    assert_ne!(parent_of(shim_of(&rt, "third")), Some(spawner), "{third:?}");
    rt.kill("first", Duration::from_secs(5)).await.unwrap();
    assert_eq!(next_exit(&mut rx, "first").await, Exit::Killed);
    assert!(!alive(task));
    rt.kill("third", Duration::from_secs(5)).await.unwrap();
    assert_eq!(next_exit(&mut rx, "third").await, Exit::Killed);
}

/// Children of `pid` that still run (not zombies).
fn live_children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .filter(|&c| alive(c))
        .collect()
}

/// A launch given up (its start timeout passed while its request waited at
/// the spawner) must not leave its task running with no owner when the
/// spawner gets to it later.
#[tokio::test]
async fn a_launch_given_up_leaves_no_task_behind() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dir = Scratch::new();
    let mut cfg = config(dir.path());
    cfg.start_timeout = Duration::from_secs(2);
    let (rt, mut rx) = runtime(cfg);
    let loop_cmd = "while true; do sleep 0.05; done";
    rt.launch(&spec("first", sh(loop_cmd), &[])).await.unwrap();
    let spawner = parent_of(shim_of(&rt, "first")).unwrap();

    // The spawner is held: the next launch waits past its timeout.
    kill(Pid::from_raw(spawner), Signal::SIGSTOP).unwrap();
    let pid_file = dir.path().join("late.pid");
    let cmd = format!("echo $$ > {}; exec sleep 1000", pid_file.display());
    let err = rt.launch(&spec("late", sh(&cmd), &[])).await;
    kill(Pid::from_raw(spawner), Signal::SIGCONT).unwrap();
    let err = err.expect_err("the held spawner cannot answer in time");
    assert!(err.to_string().contains("did not start within"), "{err}");

    // Requests are served in order: once this one runs, the given-up
    // request's shim was forked before it.
    rt.launch(&spec("barrier", sh(loop_cmd), &[]))
        .await
        .unwrap();
    let shims = [shim_of(&rt, "first"), shim_of(&rt, "barrier")];
    testkit::eventually_async(
        "the spawner's only shims are those of running tasks",
        WAIT,
        || async {
            let mut live = live_children(spawner);
            live.sort();
            let mut want = shims.to_vec();
            want.sort();
            (live == want).then_some(())
        },
    )
    .await;
    assert!(
        !pid_file.exists(),
        "the given-up task ran: {:?}",
        std::fs::read_to_string(&pid_file)
    );
    for id in ["first", "barrier"] {
        rt.kill(id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(next_exit(&mut rx, id).await, Exit::Killed);
    }
}

/// The task directories under `dir/tasks`, by name.
fn task_dirs(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir.join("tasks"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn only_the_newest_ended_task_directories_are_kept() {
    let dir = Scratch::new();
    let mut cfg = config(dir.path());
    cfg.keep_finished = 2;
    {
        let (rt, mut rx) = runtime(cfg.clone());
        rt.launch(&spec("running", sh("exec sleep 1000"), &[]))
            .await
            .unwrap();
        for i in 1..=4 {
            let id = format!("ended-{i}");
            rt.launch(&spec(&id, sh(&format!("echo bye {i}")), &[]))
                .await
                .unwrap();
            assert_eq!(next_exit(&mut rx, &id).await, Exit::Finished);
        }
        // The two oldest go (off the async threads, so polled); the running
        // task's directory is never touched.
        testkit::eventually_async("two ended directories removed", WAIT, || async {
            (task_dirs(dir.path()) == ["ended-3", "ended-4", "running"].map(String::from).into())
                .then_some(())
        })
        .await;
        assert_eq!(rt.logs("ended-4", None).await.unwrap(), b"bye 4\n");
        assert!(matches!(
            rt.logs("ended-1", None).await,
            Err(RuntimeError::UnknownTask(_))
        ));
        rt.kill("running", Duration::from_secs(1)).await.unwrap();
        assert_eq!(next_exit(&mut rx, "running").await, Exit::Killed);
        // Its end makes three ended: the oldest goes. Waited for, as a
        // restarted manager never runs beside the old one's removals (a
        // directory half removed by the old runtime, its mtime just
        // touched, would look like the newest end to the new one: seen
        // once in CI).
        testkit::eventually_async("ended-3 removed", WAIT, || async {
            (task_dirs(dir.path()) == ["ended-4", "running"].map(String::from).into()).then_some(())
        })
        .await;
    }
    // A new runtime (a restarted manager) with a smaller budget: its
    // recovery finds the two ended directories and keeps the newest.
    cfg.keep_finished = 1;
    let (rt, _rx) = runtime(cfg);
    rt.recover(&[]).await.unwrap();
    testkit::eventually_async("only the newest ended directory kept", WAIT, || async {
        (task_dirs(dir.path()) == ["running"].map(String::from).into()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_task_starts_with_no_signal_blocked() {
    // The shim reads its own signals from a signalfd (so blocks them); the
    // task must not inherit that, or SIGTERM would never reach it.
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    rt.launch(&spec(
        "mask",
        sh("exec grep -E '^Sig(Blk|Ign):' /proc/self/status"),
        &[],
    ))
    .await
    .unwrap();
    assert_eq!(next_exit(&mut rx, "mask").await, Exit::Finished);
    let out = String::from_utf8(rt.logs("mask", None).await.unwrap()).unwrap();
    assert!(out.contains("SigBlk:\t0000000000000000\n"), "{out}");
}

#[tokio::test]
async fn a_task_flooding_its_output_is_still_killed_and_its_log_stays_bounded() {
    let dir = Scratch::new();
    let mut cfg = config(dir.path());
    cfg.log_limit_bytes = 256 * 1024;
    let (rt, mut rx) = runtime(cfg);
    rt.launch(&spec("flood", sh("exec yes flooding"), &[]))
        .await
        .unwrap();
    wait_for_output(&rt, "flood", "flooding").await;
    // The shim copies output as fast as it comes; the kill (SIGTERM, which
    // `yes` does not trap) must still be served.
    rt.kill("flood", Duration::from_secs(1)).await.unwrap();
    assert_eq!(next_exit(&mut rx, "flood").await, Exit::Killed);
    let on_disk = output_on_disk(&rt, "flood");
    assert!(on_disk <= 2 * 256 * 1024, "{on_disk} bytes on disk");
}

/// A launch leaves exactly the task's sandbox and one `task.json` (the
/// marker with the spec the shim ran: the spec comes with the launch
/// request, nothing else is written for a quiet task), and that file is
/// what a later runtime adopts the task from.
#[tokio::test]
async fn a_launch_writes_one_task_file_that_adoption_reads() {
    let dir = Scratch::new();
    let quiet = spec("quiet", sh("exec sleep 1000"), &[("ONLY", "me")]);
    let pid = {
        let (rt, _rx) = runtime(config(dir.path()));
        let started = rt.launch(&quiet).await.unwrap();
        let task_dir = rt.task_dir("quiet");
        let names: std::collections::BTreeSet<String> = std::fs::read_dir(&task_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["sandbox", "task.json"].map(String::from).into(),
            "the files of a running quiet task"
        );
        let text = std::fs::read_to_string(task_dir.join("task.json")).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let pid: i32 = started.handle.parse().unwrap();
        assert_eq!(file["pid"], pid, "{file}");
        assert_eq!(start_time(pid), file["task_start"].as_u64(), "{file}");
        assert_eq!(file["spec"]["task_id"], "quiet", "{file}");
        assert_eq!(file["spec"]["env"]["ONLY"], "me", "{file}");
        pid
        // The runtime is dropped: the task runs on.
    };
    let (rt, mut rx) = runtime(config(dir.path()));
    let rec = rt.recover(&[known("quiet")]).await.unwrap();
    assert_eq!(rec.adopted, vec!["quiet".to_string()], "{rec:?}");
    assert!(alive(pid));
    // Adopted from the file: its environment (for checks) and its kill.
    let check = ExecCheck {
        task_id: "quiet",
        command: "test \"$ONLY\" = me",
        timeout: Duration::from_secs(10),
    };
    assert!(
        rt.run_check(&check).await.unwrap(),
        "the check sees the task's env"
    );
    rt.kill("quiet", Duration::from_secs(1)).await.unwrap();
    assert_eq!(next_exit(&mut rx, "quiet").await, Exit::Killed);
    wait_dead(pid, "adopted task killed").await;
}

/// A kill with the task's own grace period writes no `kill` file (the shim
/// falls back to its spec's): the grace still holds (SIGTERM, then SIGKILL
/// once it is over); a kill with another grace writes it, and that one holds.
#[tokio::test]
async fn a_kill_with_the_tasks_own_grace_writes_no_kill_file() {
    let dir = Scratch::new();
    let (rt, mut rx) = runtime(config(dir.path()));
    let stubborn = "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.05; done";
    for (id, own, given) in [("own", 400, 400), ("other", 60_000, 400)] {
        let mut s = spec(id, sh(stubborn), &[]);
        s.kill_grace = Duration::from_millis(own);
        let pid: i32 = rt.launch(&s).await.unwrap().handle.parse().unwrap();
        wait_for_output(&rt, id, "ready").await;
        rt.kill(id, Duration::from_millis(given)).await.unwrap();
        assert_eq!(next_exit(&mut rx, id).await, Exit::Killed);
        assert!(!alive(pid), "{id}: SIGKILLed after the grace");
        let out = String::from_utf8(rt.logs(id, None).await.unwrap()).unwrap();
        assert!(out.contains("got TERM"), "{id}: SIGTERM first: {out}");
        let kill_file = rt.task_dir(id).join("kill");
        assert_eq!(kill_file.exists(), own != given, "{id}: the kill file");
    }
}

/// The nice value of a process (field 19 of its stat).
fn nice_of(pid: i32) -> i32 {
    stat_fields(pid).expect("process")[16].parse().unwrap()
}

#[tokio::test]
async fn a_task_gets_the_cpu_weight_its_cpus_ask_for() {
    let dir = Scratch::new();
    let (rt, _rx) = runtime(config(dir.path()));
    let own = nice_of(std::process::id() as i32);
    // Where the kernel has scheduler autogroups, the task's session gets the
    // weight too (one line: `/autogroup-<n> nice <n>`).
    let autogroups = Path::new("/proc/self/autogroup").exists();
    // cpus 0.1: a tenth of a CPU's weight, nice 10; a whole CPU: the
    // manager's own (nothing changed, nothing inherited changed).
    for (id, cpus, want) in [("tenth", 0.1, 10.max(own)), ("whole", 1.0, own)] {
        let leader_file = dir.path().join(format!("{id}.leader"));
        let child_file = dir.path().join(format!("{id}.child"));
        let mut s = spec(
            id,
            sh(&format!(
                "echo $$ > {}; sleep 100 & echo $! > {}; wait",
                leader_file.display(),
                child_file.display()
            )),
            &[],
        );
        s.cpus = cpus;
        rt.launch(&s).await.unwrap();
        let leader = read_pid(&leader_file).await;
        let child = read_pid(&child_file).await;
        assert_eq!(nice_of(leader), want, "{id}: the task's leader");
        assert_eq!(
            nice_of(child),
            want,
            "{id}: a process the task started later"
        );
        if autogroups {
            let session_nice = if cpus < 1.0 { 10 } else { 0 };
            testkit::eventually_async(
                &format!("{id}: the session's autogroup at nice {session_nice}"),
                WAIT,
                || async {
                    let line = std::fs::read_to_string(format!("/proc/{leader}/autogroup")).ok()?;
                    line.trim()
                        .ends_with(&format!(" nice {session_nice}"))
                        .then_some(())
                },
            )
            .await;
        }
    }
}

#[tokio::test]
async fn directories_made_ahead_are_what_launches_use_and_are_made_again() {
    use std::os::unix::fs::MetadataExt;
    let dir = Scratch::new();
    let mut cfg = config(dir.path());
    cfg.spare_ahead = 3;
    let (rt, _rx) = runtime(cfg);
    testkit::eventually_async("three directories made ahead", WAIT, || async {
        (rt.spare_dirs() == 3).then_some(())
    })
    .await;
    // The records' temp files waiting in them, by inode.
    let mut made = std::collections::HashSet::new();
    for folder in std::fs::read_dir(dir.path().join("spare")).unwrap() {
        for spare in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            let tmp = spare.unwrap().path().join("task.json.tmp");
            made.insert(std::fs::metadata(&tmp).unwrap().ino());
        }
    }
    assert_eq!(made.len(), 3);

    let leader = dir.path().join("a.pid");
    rt.launch(&spec(
        "a",
        sh(&format!(
            "ls -A > ../../../a.ls; echo $$ > {}; exec sleep 100",
            leader.display()
        )),
        &[],
    ))
    .await
    .unwrap();
    read_pid(&leader).await;
    let record = rt.task_dir("a").join("task.json");
    assert!(
        made.contains(&std::fs::metadata(&record).unwrap().ino()),
        "task.json written through a temp file made ahead"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.ls")).unwrap(),
        "",
        "an empty sandbox"
    );
    testkit::eventually_async("the one used made again", WAIT, || async {
        (rt.spare_dirs() == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_ended_tasks_directory_is_reused_empty_by_a_later_launch() {
    use std::os::unix::fs::MetadataExt;
    let dir = Scratch::new();
    let mut cfg = config(dir.path());
    cfg.keep_finished = 0;
    cfg.spare_ahead = 0;
    let (rt, mut rx) = runtime(cfg);
    rt.launch(&spec(
        "first",
        sh("echo secret > left-behind; mkdir -p a/b; echo output; chmod 777 ."),
        &[],
    ))
    .await
    .unwrap();
    let first = rt.task_dir("first");
    let inode = std::fs::metadata(&first).unwrap().ino();
    assert_eq!(next_exit(&mut rx, "first").await, Exit::Finished);
    testkit::eventually_async("the ended directory emptied for reuse", WAIT, || async {
        (rt.spare_dirs() == 1).then_some(())
    })
    .await;
    assert!(!first.exists(), "no longer a task directory");

    let listing = dir.path().join("second.ls");
    let leader = dir.path().join("second.pid");
    rt.launch(&spec(
        "second",
        sh(&format!(
            "ls -A > {}; echo $$ > {}; exec sleep 100",
            listing.display(),
            leader.display()
        )),
        &[],
    ))
    .await
    .unwrap();
    read_pid(&leader).await;
    let second = rt.task_dir("second");
    assert_eq!(
        std::fs::metadata(&second).unwrap().ino(),
        inode,
        "the first task's directory, renamed"
    );
    assert_eq!(rt.spare_dirs(), 0);
    assert_eq!(
        std::fs::read_to_string(&listing).unwrap(),
        "",
        "the sandbox holds nothing of the first task"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(second.join("sandbox"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let task: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.join("task.json")).unwrap()).unwrap();
    assert_eq!(task["spec"]["task_id"], "second");
    let names: std::collections::BTreeSet<String> = std::fs::read_dir(&second)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.contains("output.log") && !names.contains("exit.json"),
        "nothing of the first task's output or end: {names:?}"
    );
    rt.kill("second", Duration::from_secs(3)).await.unwrap();
    assert_eq!(next_exit(&mut rx, "second").await, Exit::Killed);
}
