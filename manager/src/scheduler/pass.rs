//! One reconcile pass over every app, decided without side effects:
//! [`plan_pass`] reads the state and what the node offers and returns the
//! launches (with their ports, workload and runtime), the kills, why launches
//! wait (`/v2/queue`) and the deployments that are done. The reconcile loop
//! ([`crate::reconcile`]) applies the result.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use marathon::{App, TaskState};

use super::{converged, plan, Action, Actual, Desired};
use crate::bounds;
use crate::core::Core;
use crate::ports::{self, Allocation};
use crate::runtime::{workload, Workload};
use crate::state::{State, TaskRecord};

/// What the node offers a pass, and the facts of the outside world it needs.
pub struct Offer<'a> {
    pub cpus: f64,
    pub mem: f64,
    /// Constraint attributes of the node (`hostname` included).
    pub attributes: &'a BTreeMap<String, String>,
    /// The dynamic host port range.
    pub port_range: (u16, u16),
    /// Where the port search of this pass's first launch starts; each
    /// allocation attempt moves it by one (a freed port is not reused at once).
    pub port_cursor: u64,
    pub now: Instant,
    /// Whether the host lets us bind this port right now.
    pub can_bind: &'a dyn Fn(u16) -> bool,
    /// The name of the runtime that runs this workload, if one does.
    pub runtime_for: &'a dyn Fn(&Workload) -> Option<String>,
    /// Launches this pass may start at most (the rest are planned again by
    /// later passes, as launches end): one big scale-up then stages a
    /// bounded number of tasks at a time instead of thousands at once, each
    /// an event for every event stream.
    pub launch_budget: usize,
}

/// One task to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub app_id: String,
    pub alloc: Allocation,
    pub workload: Workload,
    pub runtime: String,
}

/// What a pass decided.
#[derive(Debug, Default, PartialEq)]
pub struct PassPlan {
    /// In app order.
    pub launches: Vec<Launch>,
    /// Task ids to kill, in app order.
    pub kills: Vec<String>,
    /// Per app planned: how many launches wait and why (`None`: nothing waits).
    pub waiting: BTreeMap<String, Option<(usize, String)>>,
    /// Deployments whose apps all converged.
    pub finished_deployments: Vec<String>,
    /// Port allocation attempts made (the cursor moves by this much).
    pub port_attempts: u64,
    /// Apps whose planning panicked (app id, panic message): nothing is
    /// decided for them this pass; the others go on.
    pub panicked: Vec<(String, String)>,
}

/// Why launches wait (shown in `/v2/queue`).
pub const NO_RESOURCES: &str = "insufficient resources on the node (cpus/mem)";
pub const NO_CONSTRAINTS: &str = "constraints not satisfied on this node";
pub const NO_RUNTIME: &str = "no runtime can run this app (Docker unavailable?)";

/// Resources taken by active tasks and the launches planned so far.
struct Used {
    cpus: f64,
    mem: f64,
    ports: BTreeSet<u16>,
}

/// What one app's share of a pass decided.
#[derive(Default)]
struct AppPlan {
    launches: Vec<Launch>,
    kills: Vec<String>,
    waiting: Option<(usize, String)>,
}

/// What the scheduler aims for; definitions loaded from etcd may carry
/// values beyond today's bounds, clamped here.
pub fn desired(app: &App) -> Desired {
    Desired {
        instances: bounds::instances(app),
        config_version: Core::config_version(app),
        minimum_health_capacity: bounds::capacity(
            app.upgrade_strategy.minimum_health_capacity,
            1.0,
        ),
        maximum_over_capacity: bounds::capacity(app.upgrade_strategy.maximum_over_capacity, 1.0),
        kill_selection: app.kill_selection,
    }
}

/// At most `budget` of `launches` (in app order), taken round-robin over the
/// apps (every app's first launch, then every app's second, ...), so a big
/// app does not hold the others back; kept in their order.
fn fair_share(launches: Vec<Launch>, budget: usize) -> Vec<Launch> {
    let mut nth: BTreeMap<String, usize> = BTreeMap::new();
    let mut order: Vec<(usize, usize)> = launches
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let n = nth.entry(l.app_id.clone()).or_insert(0);
            *n += 1;
            (*n, i)
        })
        .collect();
    order.sort_unstable();
    let keep: BTreeSet<usize> = order.into_iter().take(budget).map(|(_, i)| i).collect();
    launches
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, l)| l)
        .collect()
}

/// The app's active tasks that are not being killed, as the planner sees
/// them; `tasks`: the app's tasks ([`tasks_by_app`]).
pub fn actuals(s: &State, app_id: &str, tasks: &[&TaskRecord]) -> Vec<Actual> {
    tasks
        .iter()
        .filter(|t| t.is_active() && t.state != TaskState::Killing)
        .map(|t| Actual {
            task_id: t.id.clone(),
            config_version: t.config_version,
            ready: t.state == TaskState::Running
                && s.healthy(t) != Some(false)
                && (s
                    .apps
                    .get(app_id)
                    .is_none_or(|a| a.health_checks.is_empty())
                    || s.healthy(t) == Some(true)),
            staged_at: t.staged_at,
        })
        .collect()
}

/// One pass over every app (defined, or with active tasks), in app id order.
pub fn plan_pass(s: &State, offer: &Offer) -> PassPlan {
    let mut out = PassPlan::default();
    let by_app = s.tasks_by_app();
    let tasks_of = |app_id: &str| by_app.get(app_id).map_or(&[][..], Vec::as_slice);
    let mut app_ids: BTreeSet<&str> = s.apps.keys().map(String::as_str).collect();
    let active = || s.tasks.values().filter(|t| t.is_active());
    app_ids.extend(active().map(|t| t.app_id.as_str()));
    let mut used = Used {
        cpus: active().map(|t| t.cpus).sum(),
        mem: active().map(|t| t.mem).sum(),
        ports: active()
            .flat_map(|t| t.host_ports.iter().copied())
            .collect(),
    };
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    for app_id in app_ids {
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plan_app(
                s,
                offer,
                &mut used,
                &mut out.port_attempts,
                app_id,
                tasks_of(app_id),
            )
        }));
        match planned {
            Ok(p) => {
                if !p.launches.is_empty() || !p.kills.is_empty() {
                    changed.insert(app_id);
                }
                out.launches.extend(p.launches);
                out.kills.extend(p.kills);
                out.waiting.insert(app_id.to_string(), p.waiting);
            }
            Err(payload) => out.panicked.push((
                app_id.to_string(),
                crate::contain::message(payload.as_ref()).to_string(),
            )),
        }
    }
    if out.launches.len() > offer.launch_budget {
        out.launches = fair_share(std::mem::take(&mut out.launches), offer.launch_budget);
    }
    // Done: every app converged and none is draining (a task being killed)
    // or changed by this pass (a launch is not ready, a kill drains).
    // An app reached earlier ([`note_ready`]) counts as done even if a
    // task has died since.
    out.finished_deployments = s
        .deployments
        .values()
        .filter(|d| {
            let reached = s.reached.get(&d.id);
            d.affected_apps.iter().all(|app_id| {
                reached.is_some_and(|r| r.contains(app_id))
                    || (!changed.contains(app_id.as_str())
                        && at_target(s, app_id, tasks_of(app_id)))
            })
        })
        .map(|d| d.id.clone())
        .collect();
    out
}

/// Whether the app's tasks are what it asks for: converged, none draining.
fn at_target(s: &State, app_id: &str, tasks: &[&TaskRecord]) -> bool {
    !tasks.iter().any(|t| t.state == TaskState::Killing)
        && converged(
            s.apps.get(app_id).map(desired).as_ref(),
            &actuals(s, app_id, tasks),
        )
}

/// Called under the state lock when one of `app_id`'s tasks becomes ready
/// (TASK_RUNNING, or healthy): if the app is at its target now, the
/// deployments touching it remember so ([`State::reached`]), as Marathon
/// completes a deployment step on the status update that reaches the
/// target. Without this, a task that runs for milliseconds (a command that
/// fails at once) counts only if a pass happens to run in between, and its
/// deployment may never finish.
pub fn note_ready(s: &mut State, app_id: &str) {
    let ids = s.deployments_of(app_id);
    if ids.is_empty() {
        return;
    }
    let tasks: Vec<&TaskRecord> = s.tasks_of(app_id).collect();
    if !at_target(s, app_id, &tasks) {
        return;
    }
    for id in ids {
        s.reached.entry(id).or_default().insert(app_id.to_string());
    }
}

/// One app's share of a pass: its kills, and its launches within backoff,
/// resources, constraints, ports and runtimes.
fn plan_app(
    s: &State,
    offer: &Offer,
    used: &mut Used,
    attempts: &mut u64,
    app_id: &str,
    tasks: &[&TaskRecord],
) -> AppPlan {
    let app = s.apps.get(app_id);
    let mut out = AppPlan::default();
    let here = tasks.iter().filter(|t| t.is_active()).count();
    for action in plan(app.map(desired).as_ref(), &actuals(s, app_id, tasks)) {
        match action {
            Action::Kill(id) => out.kills.push(id),
            Action::Launch(n) => {
                let Some(app) = app else { continue };
                for i in 0..n {
                    match launch(s, offer, used, attempts, app, here + out.launches.len()) {
                        Ok(l) => out.launches.push(l),
                        Err(reason) => {
                            out.waiting = Some((n - i, reason));
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

/// One launch of `app`, or why it waits. `here` = the app's active tasks on
/// the node, planned launches included.
fn launch(
    s: &State,
    offer: &Offer,
    used: &mut Used,
    attempts: &mut u64,
    app: &App,
    here: usize,
) -> Result<Launch, String> {
    if let Some(b) = s.backoff.get(&app.id).filter(|b| b.next_launch > offer.now) {
        return Err(format!(
            "backoff: {:.1}s delay after failures",
            b.delay_secs
        ));
    }
    if used.cpus + app.cpus > offer.cpus + 1e-9 || used.mem + app.mem > offer.mem + 1e-9 {
        return Err(NO_RESOURCES.into());
    }
    if !crate::constraints::allows(&app.constraints, offer.attributes, here) {
        return Err(NO_CONSTRAINTS.into());
    }
    let start = port_start(offer.port_range, offer.port_cursor.wrapping_add(*attempts));
    *attempts += 1;
    let alloc = ports::allocate(app, &used.ports, offer.port_range, start, offer.can_bind)
        .map_err(|p| p.to_string())?;
    let wl = workload(app, &alloc);
    let runtime = (offer.runtime_for)(&wl).ok_or_else(|| NO_RUNTIME.to_string())?;
    used.cpus += app.cpus;
    used.mem += app.mem;
    used.ports.extend(alloc.host_ports.iter().copied());
    Ok(Launch {
        app_id: app.id.clone(),
        alloc,
        workload: wl,
        runtime,
    })
}

/// Where the dynamic port search starts for cursor position `n`.
pub fn port_start((lo, hi): (u16, u16), n: u64) -> u16 {
    let width = u64::from(hi - lo) + 1;
    lo + (n.wrapping_sub(u64::from(lo)) % width) as u16
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use marathon::{HealthCheckResult, Timestamp};
    use serde_json::json;

    use super::*;
    use crate::state::{Backoff, DeploymentRecord, TaskRecord};

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    /// A command app (version 1, config version 1, no ports unless given)
    /// from JSON fields.
    fn app(id: &str, fields: serde_json::Value) -> App {
        let mut v = json!({"id": id, "cmd": "sleep 100", "cpus": 0.1, "mem": 16,
            "version": "1970-01-01T00:00:00.001Z", "portDefinitions": []});
        for (k, x) in fields.as_object().unwrap() {
            v[k] = x.clone();
        }
        let mut a: App = serde_json::from_value(v).unwrap();
        crate::validation::normalise(&mut a);
        a
    }

    fn task(id: &str, app_id: &str, state: TaskState, staged: i64) -> TaskRecord {
        TaskRecord {
            staged_at: ts(staged),
            started_at: None,
            mem: 16.0,
            ..TaskRecord::test(id, app_id, state)
        }
    }

    fn running(id: &str, app_id: &str, staged: i64) -> TaskRecord {
        task(id, app_id, TaskState::Running, staged)
    }

    fn state(apps: Vec<App>, tasks: Vec<TaskRecord>) -> State {
        let mut s = State::default();
        for a in apps {
            s.apps.insert(a.id.clone(), a);
        }
        for t in tasks {
            s.tasks.insert(t.id.clone(), t);
        }
        s
    }

    /// The node of every case: 1 cpu, 1024 MiB, hostname `n1`, ports
    /// 31000-31009, port 31005 taken on the host, a command runtime only.
    fn with_offer<T>(s: &State, f: impl FnOnce(&PassPlan) -> T) -> T {
        with_budget(s, usize::MAX, f)
    }

    fn with_budget<T>(s: &State, launch_budget: usize, f: impl FnOnce(&PassPlan) -> T) -> T {
        let attributes: BTreeMap<String, String> =
            [("hostname".to_string(), "n1".to_string())].into();
        let can_bind = |p: u16| p != 31005;
        let runtime_for =
            |w: &Workload| matches!(w, Workload::Command { .. }).then(|| "command".to_string());
        let offer = Offer {
            cpus: 1.0,
            mem: 1024.0,
            attributes: &attributes,
            port_range: (31000, 31009),
            port_cursor: 31000,
            now: Instant::now(),
            can_bind: &can_bind,
            runtime_for: &runtime_for,
            launch_budget,
        };
        f(&plan_pass(s, &offer))
    }

    fn launched(p: &PassPlan) -> Vec<(String, Vec<u32>)> {
        p.launches
            .iter()
            .map(|l| (l.app_id.clone(), l.alloc.ports.clone()))
            .collect()
    }

    fn waits(p: &PassPlan, app_id: &str) -> Option<(usize, String)> {
        p.waiting.get(app_id).cloned().flatten()
    }

    fn l(app_id: &str, ports: &[u32]) -> (String, Vec<u32>) {
        (app_id.to_string(), ports.to_vec())
    }

    fn w(n: usize, why: &str) -> Option<(usize, String)> {
        Some((n, why.to_string()))
    }

    /// Name, state, launches (app, ports), kills, waiting of `/a`.
    type Case = (
        &'static str,
        State,
        Vec<(String, Vec<u32>)>,
        Vec<&'static str>,
        Option<(usize, String)>,
    );

    #[test]
    fn the_launch_budget_is_shared_round_robin_over_the_apps() {
        let s = state(
            vec![
                app("/a", json!({"instances": 4})),
                app("/b", json!({"instances": 1})),
                app("/c", json!({"instances": 3})),
            ],
            vec![],
        );
        let ids =
            |p: &PassPlan| -> Vec<String> { p.launches.iter().map(|l| l.app_id.clone()).collect() };
        // Within the budget: everything, in app order.
        with_budget(&s, 8, |p| {
            assert_eq!(ids(p), ["/a", "/a", "/a", "/a", "/b", "/c", "/c", "/c"]);
        });
        // 5 of 8: every app's first, then the second of /a and /c.
        with_budget(&s, 5, |p| {
            assert_eq!(ids(p), ["/a", "/a", "/b", "/c", "/c"]);
            assert!(p.finished_deployments.is_empty());
        });
        with_budget(&s, 2, |p| assert_eq!(ids(p), ["/a", "/b"]));
        with_budget(&s, 0, |p| assert!(p.launches.is_empty()));
    }

    #[test]
    fn table() {
        let mut backoff_ahead = state(vec![app("/a", json!({"instances": 1}))], vec![]);
        backoff_ahead.backoff.insert(
            "/a".into(),
            Backoff {
                failures: 2,
                next_launch: Instant::now() + Duration::from_secs(60),
                delay_secs: 2.3,
            },
        );
        let mut backoff_over = state(vec![app("/a", json!({"instances": 1}))], vec![]);
        backoff_over.backoff.insert(
            "/a".into(),
            Backoff {
                failures: 2,
                next_launch: Instant::now() - Duration::from_secs(1),
                delay_secs: 2.3,
            },
        );
        let b = app("/b", json!({"instances": 1}));
        let mut holder = running("b1", "/b", 1);
        holder.host_ports = vec![31000];
        let mut unhealthy = state(
            vec![app(
                "/a",
                json!({"instances": 1,
                "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}),
            )],
            vec![running("a1", "/a", 1)],
        );
        unhealthy.health.insert(
            "a1".into(),
            [(
                0,
                HealthCheckResult {
                    alive: false,
                    ..Default::default()
                },
            )]
            .into(),
        );
        let cases: Vec<Case> = vec![
            (
                "scale up: dynamic ports from the cursor, one per launch",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 2, "portDefinitions": [{"port": 0}]}),
                    )],
                    vec![],
                ),
                vec![l("/a", &[31000]), l("/a", &[31001])],
                vec![],
                None,
            ),
            (
                "steady: nothing to do",
                state(
                    vec![app("/a", json!({"instances": 1}))],
                    vec![running("a1", "/a", 1)],
                ),
                vec![],
                vec![],
                None,
            ),
            (
                "scale down: youngest first",
                state(
                    vec![app("/a", json!({"instances": 1}))],
                    vec![
                        running("a1", "/a", 1),
                        running("a2", "/a", 3),
                        running("a3", "/a", 2),
                    ],
                ),
                vec![],
                vec!["a2", "a3"],
                None,
            ),
            (
                "app gone: its tasks are killed",
                state(vec![], vec![running("a1", "/a", 1)]),
                vec![],
                vec!["a1"],
                None,
            ),
            (
                "resources: cpus run out, the rest waits",
                state(
                    vec![app("/a", json!({"instances": 4, "cpus": 0.4}))],
                    vec![],
                ),
                vec![l("/a", &[]), l("/a", &[])],
                vec![],
                w(2, NO_RESOURCES),
            ),
            (
                "resources: tasks of other apps count, also while being killed",
                state(
                    vec![app("/a", json!({"instances": 1, "mem": 1010}))],
                    vec![task("b1", "/b", TaskState::Killing, 1)],
                ),
                vec![],
                vec![],
                w(1, NO_RESOURCES),
            ),
            (
                "constraints: hostname UNIQUE allows one task on this node",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 3, "constraints": [["hostname", "UNIQUE"]]}),
                    )],
                    vec![],
                ),
                vec![l("/a", &[])],
                vec![],
                w(2, NO_CONSTRAINTS),
            ),
            (
                "constraints: a task already here counts",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 2, "constraints": [["hostname", "UNIQUE"]]}),
                    )],
                    vec![running("a1", "/a", 1)],
                ),
                vec![],
                vec![],
                w(1, NO_CONSTRAINTS),
            ),
            (
                "constraints: LIKE on another hostname never launches",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 1, "constraints": [["hostname", "LIKE", "n2"]]}),
                    )],
                    vec![],
                ),
                vec![],
                vec![],
                w(1, NO_CONSTRAINTS),
            ),
            (
                "ports: a fixed port held by another app's task waits",
                state(
                    vec![
                        app(
                            "/a",
                            json!({"instances": 1, "requirePorts": true,
                        "portDefinitions": [{"port": 31000}]}),
                        ),
                        b.clone(),
                    ],
                    vec![holder.clone()],
                ),
                vec![],
                vec![],
                w(1, "host port 31000 is already in use"),
            ),
            (
                "ports: a fixed port the host refuses waits",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 1, "requirePorts": true,
                        "portDefinitions": [{"port": 31005}]}),
                    )],
                    vec![],
                ),
                vec![],
                vec![],
                w(1, "host port 31005 is already in use"),
            ),
            (
                "ports: dynamic ports skip held and unbindable ones",
                state(
                    vec![
                        app(
                            "/a",
                            json!({"instances": 1,
                        "portDefinitions": [{"port": 0}, {"port": 0}, {"port": 0}, {"port": 0}, {"port": 0}]}),
                        ),
                        b.clone(),
                    ],
                    vec![holder.clone()],
                ),
                vec![l("/a", &[31001, 31002, 31003, 31004, 31006])],
                vec![],
                None,
            ),
            (
                "ports: the range runs out",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 2,
                        "portDefinitions": [{"port": 0}, {"port": 0}, {"port": 0}, {"port": 0}, {"port": 0}, {"port": 0}]}),
                    )],
                    vec![],
                ),
                vec![l("/a", &[31000, 31001, 31002, 31003, 31004, 31006])],
                vec![],
                w(1, "no free host port left in the range"),
            ),
            (
                "backoff: a delay not yet over holds every launch",
                backoff_ahead,
                vec![],
                vec![],
                w(1, "backoff: 2.3s delay after failures"),
            ),
            (
                "backoff: a delay that is over launches",
                backoff_over,
                vec![l("/a", &[])],
                vec![],
                None,
            ),
            (
                "runtime: a Docker app without a Docker runtime waits",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 1, "cmd": null,
                        "container": {"type": "DOCKER", "docker": {"image": "busybox"}}}),
                    )],
                    vec![],
                ),
                vec![],
                vec![],
                w(1, NO_RUNTIME),
            ),
            (
                "unhealthy: a failing task is not replaced by the planner (health kills it)",
                unhealthy,
                vec![],
                vec![],
                None,
            ),
            (
                "unhealthy: a task being killed is replaced at once",
                state(
                    vec![app("/a", json!({"instances": 1}))],
                    vec![task("a1", "/a", TaskState::Killing, 1)],
                ),
                vec![l("/a", &[])],
                vec![],
                None,
            ),
            (
                "rolling restart: new tasks start beside the old ones",
                state(
                    vec![app(
                        "/a",
                        json!({"instances": 1,
                        "versionInfo": {"lastScalingAt": "1970-01-01T00:00:00.002Z",
                            "lastConfigChangeAt": "1970-01-01T00:00:00.002Z"}}),
                    )],
                    vec![running("a1", "/a", 1)],
                ),
                vec![l("/a", &[])],
                vec![],
                None,
            ),
        ];
        for (name, s, want_launches, want_kills, want_waiting) in cases {
            with_offer(&s, |p| {
                assert_eq!(launched(p), want_launches, "{name}: launches");
                assert_eq!(p.kills, want_kills, "{name}: kills");
                assert_eq!(waits(p, "/a"), want_waiting, "{name}: waiting");
                assert!(p.panicked.is_empty(), "{name}");
            });
        }
    }

    #[test]
    fn apps_share_the_node_in_id_order() {
        let s = state(
            vec![
                app("/b", json!({"instances": 2, "cpus": 0.4})),
                app("/a", json!({"instances": 2, "cpus": 0.4})),
            ],
            vec![],
        );
        with_offer(&s, |p| {
            assert_eq!(launched(p), vec![l("/a", &[]), l("/a", &[])]);
            assert_eq!(waits(p, "/a"), None);
            assert_eq!(waits(p, "/b"), w(2, NO_RESOURCES));
            assert_eq!(p.launches[0].runtime, "command");
        });
    }

    #[test]
    fn port_cursor_moves_once_per_allocation_attempt() {
        let s = state(
            vec![app(
                "/a",
                json!({"instances": 3, "portDefinitions": [{"port": 0}]}),
            )],
            vec![],
        );
        with_offer(&s, |p| {
            assert_eq!(p.port_attempts, 3);
            assert_eq!(
                launched(p),
                vec![l("/a", &[31000]), l("/a", &[31001]), l("/a", &[31002])]
            );
        });
        assert_eq!(port_start((31000, 31009), 31000), 31000);
        assert_eq!(port_start((31000, 31009), 31012), 31002);
    }

    /// A deployment touching `apps`.
    fn deployment(id: &str, apps: &[&str]) -> DeploymentRecord {
        DeploymentRecord {
            id: id.into(),
            version: ts(1),
            affected_apps: apps.iter().map(|a| a.to_string()).collect(),
            steps: vec![],
            original: BTreeMap::new(),
        }
    }

    #[test]
    fn deployments_finish_when_their_apps_converged() {
        let mut s = state(
            vec![
                app("/done", json!({"instances": 1})),
                app("/launching", json!({"instances": 1})),
                app("/draining", json!({"instances": 1})),
            ],
            vec![
                running("d1", "/done", 1),
                running("r1", "/draining", 1),
                task("r2", "/draining", TaskState::Killing, 2),
            ],
        );
        for (id, app_id) in [
            ("1", "/done"),
            ("2", "/launching"),
            ("3", "/draining"),
            ("4", "/deleted"),
        ] {
            s.deployments.insert(id.into(), deployment(id, &[app_id]));
        }
        with_offer(&s, |p| {
            assert_eq!(p.finished_deployments, vec!["1", "4"]);
        });
        // A kill planned in this pass drains too.
        let mut s = state(
            vec![app("/a", json!({"instances": 1}))],
            vec![running("a1", "/a", 1), running("a2", "/a", 2)],
        );
        s.deployments.insert("5".into(), deployment("5", &["/a"]));
        with_offer(&s, |p| {
            assert_eq!(p.kills, vec!["a2"]);
            assert!(p.finished_deployments.is_empty());
        });
    }

    #[test]
    fn an_app_that_reached_its_target_counts_even_if_its_task_died_since() {
        let mut s = state(
            vec![
                app("/crash", json!({"instances": 1})),
                app("/two", json!({"instances": 2})),
                app("/slow", json!({"instances": 1})),
            ],
            vec![running("c1", "/crash", 1), running("t1", "/two", 1)],
        );
        s.deployments
            .insert("1".into(), deployment("1", &["/crash"]));
        s.deployments.insert("2".into(), deployment("2", &["/two"]));
        s.deployments
            .insert("3".into(), deployment("3", &["/crash", "/slow"]));
        // c1 became running: /crash is at its target; /two (1 of 2) is not.
        note_ready(&mut s, "/crash");
        note_ready(&mut s, "/two");
        note_ready(&mut s, "/slow");
        assert_eq!(
            s.reached
                .get("1")
                .map(|r| r.iter().cloned().collect::<Vec<_>>()),
            Some(vec!["/crash".to_string()])
        );
        assert!(!s.reached.contains_key("2"));
        // c1 dies before any pass: the pass relaunches, yet deployment 1 is done.
        s.tasks.remove("c1");
        with_offer(&s, |p| {
            assert_eq!(p.launches.len(), 3, "/crash, /two and /slow launch");
            assert_eq!(p.finished_deployments, vec!["1"]);
        });
        // Without the note, the same state finishes nothing.
        s.reached.clear();
        with_offer(&s, |p| assert!(p.finished_deployments.is_empty()));
        // A draining app is not at its target.
        let mut s = state(
            vec![app("/a", json!({"instances": 1}))],
            vec![
                running("a1", "/a", 1),
                task("a2", "/a", TaskState::Killing, 2),
            ],
        );
        s.deployments.insert("4".into(), deployment("4", &["/a"]));
        note_ready(&mut s, "/a");
        assert!(s.reached.is_empty());
    }
}
