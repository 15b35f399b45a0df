//! The workload, the churn and the faults, each one step the suite and the
//! soak share: a fault is injected, healed, and the invariant awaited; the
//! outcome says what was done, what a user saw and how long until the
//! invariant held again.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::docker_proxy::Mode;
use testkit::fuzz::Rng;

use super::check::{observe, Checker, EtcdReaders};
use super::stack::{Delivery, Stack};
use crate::setup::ManagerApi;

/// Command apps: `(id, instances, kill grace)`. `/faults/slow` ignores
/// SIGTERM, so each of its kills stays in flight for its 2 s grace.
pub const COMMAND_APPS: [(&str, u64); 3] =
    [("/faults/c1", 2), ("/faults/c2", 2), ("/faults/slow", 2)];
/// The Docker app.
pub const DOCKER_APP: (&str, u64) = ("/faults/d1", 2);

fn command_app(id: &str, instances: u64) -> Value {
    let slow = id.ends_with("/slow");
    json!({
        "id": id, "instances": instances, "cpus": 0.01, "mem": 16,
        "cmd": if slow { "trap '' TERM; exec sleep 100000" } else { "exec sleep 100000" },
        "portDefinitions": [{"port": 0, "name": "api"}],
        "taskKillGracePeriodSeconds": if slow { 2 } else { 1 },
    })
}

fn docker_app(id: &str, instances: u64) -> Value {
    json!({
        "id": id, "instances": instances, "cpus": 0.01, "mem": 16,
        "cmd": "exec sleep 100000",
        "container": {"type": "DOCKER", "docker": {"image": testkit::images::busybox()}},
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "name": "api"}],
        "taskKillGracePeriodSeconds": 1,
    })
}

/// Creates the workload's apps.
pub async fn deploy(stack: &Stack) -> Result<()> {
    let mut apps: Vec<Value> = COMMAND_APPS
        .iter()
        .map(|(id, n)| command_app(id, *n))
        .collect();
    apps.push(docker_app(DOCKER_APP.0, DOCKER_APP.1));
    for app in apps {
        let (s, v) = stack.api(Method::POST, "/v2/apps", Some(&app)).await?;
        if s != 201 {
            bail!("POST /v2/apps {}: {s} {v}", app["id"]);
        }
    }
    Ok(())
}

/// Ids of an app's tasks in `state`.
async fn tasks_in(stack: &Stack, app: &str, state: &str) -> Result<Vec<Value>> {
    let (s, v) = stack
        .api(Method::GET, &format!("/v2/apps{app}/tasks"), None)
        .await?;
    if s != 200 {
        bail!("GET /v2/apps{app}/tasks: {s} {v}");
    }
    Ok(v["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["state"] == state)
        .collect())
}

async fn scale(stack: &Stack, app: &str, n: u64) -> Result<u16> {
    Ok(scale_answer(stack, app, n).await?.0)
}

async fn scale_answer(stack: &Stack, app: &str, n: u64) -> Result<(u16, Value)> {
    stack
        .api(
            Method::PUT,
            &format!("/v2/apps{app}?force=true"),
            Some(&json!({"instances": n})),
        )
        .await
}

async fn instances(stack: &Stack, app: &str) -> Result<u64> {
    let (s, v) = stack
        .api(Method::GET, &format!("/v2/apps{app}"), None)
        .await?;
    if s != 200 {
        bail!("GET /v2/apps{app}: {s} {v}");
    }
    v["app"]["instances"].as_u64().context("instances")
}

async fn kill_task(stack: &Stack, app: &str, task: &str, scale: bool) -> Result<u16> {
    let (s, _) = stack
        .api(
            Method::DELETE,
            &format!("/v2/apps{app}/tasks/{task}?scale={scale}&force=true"),
            None,
        )
        .await?;
    Ok(s)
}

fn all_apps() -> Vec<&'static str> {
    let mut v: Vec<&str> = COMMAND_APPS.iter().map(|(id, _)| *id).collect();
    v.push(DOCKER_APP.0);
    v
}

/// One random change a user makes, always a real one: scale an app to
/// another count (1 to 3 instances, the Docker app 1 to 2) or kill one of
/// its running tasks (replaced). Returns what was done and the answer.
pub async fn churn(stack: &Stack, rng: &mut Rng) -> Result<String> {
    let apps = all_apps();
    let app = *rng.pick(&apps);
    if rng.chance(50) {
        let max: u64 = if app == DOCKER_APP.0 { 2 } else { 3 };
        let now = instances(stack, app).await?;
        let others: Vec<u64> = (1..=max).filter(|&n| n != now).collect();
        let n = *rng.pick(&others);
        let (s, v) = scale_answer(stack, app, n).await?;
        if s >= 300 {
            return Ok(format!("scale {app} {now} -> {n}: HTTP {s} {v}"));
        }
        return Ok(format!("scale {app} {now} -> {n}: HTTP {s}"));
    }
    let running = tasks_in(stack, app, "TASK_RUNNING").await?;
    if running.is_empty() {
        return Ok(format!("kill a task of {app}: none running"));
    }
    let t = rng.pick(&running)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let s = kill_task(stack, app, &t, false).await?;
    Ok(format!("kill task {t}: HTTP {s}"))
}

/// The faults of issue 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the manager right after a change, then a restart.
    ManagerKill,
    /// kill -9 of the subscriber; a change while it is down; a restart.
    SubscriberKill,
    /// kill -9 of the etcd leader right after a change; the member comes
    /// back once the stack converged without it.
    EtcdLeaderKill,
    /// Every etcd member down for the given time; a task process crashes
    /// meanwhile.
    EtcdAllDown(Duration),
    /// The Docker engine not answering (`Refuse` or `Stall`) while the
    /// manager restarts; a container dies meanwhile.
    DockerDownAtStart(Mode),
    /// A kill request while a container create is delayed by the engine.
    KillDuringSlowLaunch,
    /// Kill requests (2 s grace) then, while they are in flight, a kill -9
    /// and restart of the subscriber.
    SubscriberRestartKillsInFlight,
    /// TASK_UNREACHABLE then TASK_RUNNING of a running task, delivered to
    /// the subscriber's `/callback` as Marathon would.
    UnreachableThenRunning,
}

impl Fault {
    pub fn name(&self) -> String {
        match self {
            Fault::ManagerKill => "manager kill -9".into(),
            Fault::SubscriberKill => "subscriber kill -9".into(),
            Fault::EtcdLeaderKill => "etcd leader kill -9".into(),
            Fault::EtcdAllDown(d) => format!("all etcd members down {} s", d.as_secs()),
            Fault::DockerDownAtStart(m) => format!("docker engine {m:?} at manager start"),
            Fault::KillDuringSlowLaunch => "kill during a slow container create".into(),
            Fault::SubscriberRestartKillsInFlight => {
                "subscriber restart with kills in flight".into()
            }
            Fault::UnreachableThenRunning => "TASK_UNREACHABLE -> TASK_RUNNING".into(),
        }
    }
}

/// What one fault did and how the stack came back.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub fault: Fault,
    /// What was done and what a user saw meanwhile.
    pub notes: Vec<String>,
    /// From the moment the fault was healed (the process restarted, etcd
    /// back, the engine answering, the event posted) until the invariant
    /// held; `None` when it did not within the deadline.
    pub converge: Option<Duration>,
    /// From the fault's first action until the invariant held.
    pub total: Option<Duration>,
}

/// Injects `fault`, heals it and waits (up to `deadline`) for the
/// invariant. Errors are failures of the harness itself (a request that
/// could not be sent); invariant violations go to `checker`.
pub async fn inject(
    stack: &mut Stack,
    reg: &EtcdReaders,
    checker: &mut Checker,
    rng: &mut Rng,
    fault: Fault,
    deadline: Duration,
) -> Result<Outcome> {
    let label = fault.name();
    let mut notes = Vec::new();
    let start = Instant::now();
    let healed: Instant = match fault {
        Fault::ManagerKill => {
            notes.push(churn(stack, rng).await?);
            stack.kill_manager();
            let t = Instant::now();
            stack.start_manager().await?;
            notes.push(format!(
                "manager answering {} ms after the restart",
                t.elapsed().as_millis()
            ));
            t
        }
        Fault::SubscriberKill => {
            stack.kill_subscriber();
            notes.push(churn(stack, rng).await?);
            notes.push(churn(stack, rng).await?);
            let t = Instant::now();
            stack.start_subscriber().await?;
            t
        }
        Fault::EtcdLeaderKill => {
            let leader = stack.etcd.leader().context("no etcd leader")?;
            notes.push(churn(stack, rng).await?);
            stack.etcd.stop_member(leader);
            notes.push(format!("member-{} (leader) killed", leader + 1));
            let t = Instant::now();
            let c = checker
                .converge(stack, reg, &label, t, deadline)
                .await
                .map(|c| c.took);
            stack.etcd.restart_member(leader)?;
            stack.etcd.wait_all_healthy(Duration::from_secs(60))?;
            writes_accepted(stack, reg, checker, &label, &mut notes, deadline).await?;
            return Ok(Outcome {
                fault,
                notes,
                converge: c,
                total: c.map(|_| start.elapsed()),
            });
        }
        Fault::EtcdAllDown(down) => {
            for i in 0..stack.etcd.len() {
                stack.etcd.stop_member(i);
            }
            let outage = Instant::now();
            // A task crashes while etcd is away: the manager must record
            // it and replace it, the subscriber remove its record.
            if let Some(t) = manager::runtime::command::live_tasks(&stack.data_dir())
                .into_iter()
                .find(|t| t.app_id == COMMAND_APPS[0].0)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(t.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                notes.push(format!(
                    "task {} crashed (SIGKILL) during the outage",
                    t.task_id
                ));
            }
            let s = scale(stack, COMMAND_APPS[1].0, 3).await;
            notes.push(format!(
                "scale {} to 3 during the outage: {}",
                COMMAND_APPS[1].0,
                match s {
                    Ok(code) => format!("HTTP {code}"),
                    Err(e) => format!("{e:#}"),
                }
            ));
            let (s, _) = stack
                .api(Method::GET, "/v2/tasks", None)
                .await
                .unwrap_or((0, Value::Null));
            notes.push(format!("GET /v2/tasks during the outage: HTTP {s}"));
            let left = down.saturating_sub(outage.elapsed());
            tokio::time::sleep(left).await;
            for i in 0..stack.etcd.len() {
                stack.etcd.restart_member(i)?;
            }
            stack.etcd.wait_all_healthy(Duration::from_secs(60))?;
            notes.push(format!(
                "etcd healthy again {} ms after the restart",
                outage.elapsed().saturating_sub(down).as_millis()
            ));
            Instant::now()
        }
        Fault::DockerDownAtStart(mode) => {
            stack.kill_manager();
            stack.proxy.set_mode(mode);
            // The manager is down: a container dies, seen by nobody yet.
            if let Some(c) = first_container(stack.manager_id(), DOCKER_APP.0).await? {
                let out = tokio::process::Command::new("docker")
                    .args(["kill", &c])
                    .output()
                    .await?;
                notes.push(format!(
                    "container {} of {} killed while the manager was down ({})",
                    &c[..12.min(c.len())],
                    DOCKER_APP.0,
                    out.status
                ));
            }
            stack.start_manager().await?;
            let unresolved = wait_unresolved(stack, Duration::from_secs(30)).await;
            notes.push(format!(
                "manager up with the engine {mode:?}: tasks_unresolved {unresolved}"
            ));
            stack.proxy.set_mode(Mode::Pass);
            Instant::now()
        }
        Fault::KillDuringSlowLaunch => {
            let before = stack.proxy.seen("POST", "/containers/create");
            stack
                .proxy
                .delay("POST", "/containers/create", Duration::from_secs(3));
            let running = tasks_in(stack, DOCKER_APP.0, "TASK_RUNNING").await?.len() as u64;
            let s = scale(stack, DOCKER_APP.0, running + 1).await?;
            notes.push(format!("scale {} to {} ({s})", DOCKER_APP.0, running + 1));
            let t0 = Instant::now();
            while stack.proxy.seen("POST", "/containers/create") <= before {
                if t0.elapsed() > Duration::from_secs(30) {
                    bail!("no container create reached the proxy");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let (_, v) = stack.api(Method::GET, "/v2/tasks", None).await?;
            let launching: Vec<String> = v["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["appId"] == DOCKER_APP.0 && t["state"] != "TASK_RUNNING")
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect();
            stack.proxy.clear_rules();
            for id in &launching {
                let s = kill_task(stack, DOCKER_APP.0, id, true).await?;
                notes.push(format!("kill {id} while its create is delayed: HTTP {s}"));
            }
            Instant::now()
        }
        Fault::SubscriberRestartKillsInFlight => {
            let app = COMMAND_APPS[2].0;
            for t in tasks_in(stack, app, "TASK_RUNNING").await? {
                let id = t["id"].as_str().unwrap_or_default();
                let s = kill_task(stack, app, id, false).await?;
                notes.push(format!("kill {id} (2 s grace): HTTP {s}"));
            }
            stack.kill_subscriber();
            let t = Instant::now();
            stack.start_subscriber().await?;
            let killing = tasks_in(stack, app, "TASK_KILLING").await?.len();
            notes.push(format!(
                "subscriber back with {killing} kills still in flight"
            ));
            t
        }
        Fault::UnreachableThenRunning => {
            if stack.delivery() != Delivery::Callback {
                bail!("TASK_UNREACHABLE is injected through /callback: start the stack with Delivery::Callback");
            }
            let app = COMMAND_APPS[0].0;
            let task = tasks_in(stack, app, "TASK_RUNNING")
                .await?
                .into_iter()
                .next()
                .context("no running task to make unreachable")?;
            let id = task["id"].as_str().unwrap_or_default().to_string();
            let s = stack
                .post_event(&status_event(&task, "TASK_UNREACHABLE"))
                .await?;
            notes.push(format!("TASK_UNREACHABLE of {id} posted: HTTP {s}"));
            let t = Instant::now();
            while record_of(reg, &id).await? {
                if t.elapsed() > deadline {
                    checker.violations.push(format!(
                        "{label}: the record of {id} stayed while unreachable"
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            notes.push(format!(
                "record removed {} ms after TASK_UNREACHABLE",
                t.elapsed().as_millis()
            ));
            let s = stack
                .post_event(&status_event(&task, "TASK_RUNNING"))
                .await?;
            let t = Instant::now();
            while !record_of(reg, &id).await? {
                if t.elapsed() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            notes.push(format!(
                "TASK_RUNNING posted (HTTP {s}): record back after {} ms",
                t.elapsed().as_millis()
            ));
            t
        }
    };
    let converge = checker
        .converge(stack, reg, &label, healed, deadline)
        .await
        .map(|c| c.took);
    let total = converge.map(|_| start.elapsed());
    if matches!(fault, Fault::EtcdAllDown(_)) {
        writes_accepted(stack, reg, checker, &label, &mut notes, deadline).await?;
    }
    Ok(Outcome {
        fault,
        notes,
        converge,
        total,
    })
}

/// After an etcd fault: the manager takes changes again (a scale answered
/// 2xx), and the stack converges on the change. A violation when it does
/// not within `deadline`.
async fn writes_accepted(
    stack: &Stack,
    reg: &EtcdReaders,
    checker: &mut Checker,
    label: &str,
    notes: &mut Vec<String>,
    deadline: Duration,
) -> Result<()> {
    let app = COMMAND_APPS[1].0;
    let t = Instant::now();
    let mut last = (0, Value::Null);
    loop {
        let n = if instances(stack, app).await? == 2 {
            3
        } else {
            2
        };
        last = scale_answer(stack, app, n).await.unwrap_or(last);
        if (200..300).contains(&last.0) {
            notes.push(format!(
                "a change (scale {app} to {n}) accepted {} ms after the fault ended",
                t.elapsed().as_millis()
            ));
            break;
        }
        if t.elapsed() > deadline {
            checker.violations.push(format!(
                "{label}: the manager still refuses changes after {deadline:?}: HTTP {} {}",
                last.0, last.1
            ));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let since = Instant::now();
    checker
        .converge(
            stack,
            reg,
            &format!("{label} (change after)"),
            since,
            deadline,
        )
        .await;
    Ok(())
}

/// A Marathon `status_update_event` for a task as `/v2/tasks` shows it.
fn status_event(task: &Value, status: &str) -> Value {
    let ports = if status == "TASK_RUNNING" {
        task["ports"].clone()
    } else {
        json!([])
    };
    json!({
        "eventType": "status_update_event",
        "timestamp": chrono_now(),
        "slaveId": task["slaveId"],
        "taskId": task["id"],
        "taskStatus": status,
        "message": "",
        "appId": task["appId"],
        "host": task["host"],
        "ipAddresses": task["ipAddresses"],
        "ports": ports,
        "version": task["version"],
    })
}

/// Now as Marathon writes timestamps (UTC, milliseconds).
fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

async fn record_of(reg: &EtcdReaders, task: &str) -> Result<bool> {
    Ok(reg.list_records().await?.find_container(task).is_some())
}

async fn first_container(manager_id: &str, app: &str) -> Result<Option<String>> {
    use manager::runtime::docker::{LABEL_APP_ID, LABEL_MANAGER};
    let out = tokio::process::Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter"])
        .arg(format!("label={LABEL_MANAGER}={manager_id}"))
        .arg("--filter")
        .arg(format!("label={LABEL_APP_ID}={app}"))
        .output()
        .await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string))
}

/// Waits until the manager reports unresolved tasks (it could not ask the
/// engine); returns the count (0 when it never did within `within`).
async fn wait_unresolved(stack: &Stack, within: Duration) -> f64 {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Ok((200, v)) = stack.api(Method::GET, "/metrics", None).await {
            let n = v["gauges"]["marathon.tasks.unresolved.gauge"]["value"]
                .as_f64()
                .unwrap_or(0.0);
            if n > 0.0 {
                return n;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    0.0
}

/// Waits for the workload to run everywhere (after [`deploy`]).
pub async fn settle(
    stack: &Stack,
    reg: &EtcdReaders,
    checker: &mut Checker,
    deadline: Duration,
) -> Option<Duration> {
    checker
        .converge(stack, reg, "initial deploy", Instant::now(), deadline)
        .await
        .map(|c| c.took)
}

/// The current observation's problems (for messages).
pub async fn problems_now(stack: &Stack, reg: &EtcdReaders) -> Vec<String> {
    match observe(stack, reg).await {
        Ok(o) => o.problems(),
        Err(e) => vec![format!("{e:#}")],
    }
}
