//! The manager's in-memory state (mirrored in etcd by [`crate::state_store`]):
//! apps with their versions, tasks with their runtime handles, deployments,
//! backoff and the last failure of each app.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use marathon::{
    App, DeploymentStep, HealthCheckResult, IpAddress, Task, TaskFailure, TaskState, Timestamp,
};
use serde::{Deserialize, Serialize};

/// A task as the manager persists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub id: String,
    pub app_id: String,
    pub state: TaskState,
    pub host: String,
    pub node: String,
    pub staged_at: Timestamp,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// The app version the task was launched with.
    pub version: Timestamp,
    /// The app's `lastConfigChangeAt` at launch: other values are "old".
    pub config_version: Timestamp,
    /// Effective ports by index.
    pub ports: Vec<u32>,
    /// Host ports reserved on the node.
    pub host_ports: Vec<u16>,
    pub cpus: f64,
    pub mem: f64,
    /// Runtime name ("command" / "docker") and its opaque handle.
    pub runtime: String,
    #[serde(default)]
    pub handle: String,
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    #[serde(default)]
    pub is_docker: bool,
    /// Kill grace, seconds.
    pub kill_grace: u64,
}

impl TaskRecord {
    /// Active = not terminal (KILLING counts: it still holds resources).
    pub fn is_active(&self) -> bool {
        !self.state.is_terminal()
    }

    /// What unit tests start from: a command task on host `h`, node `n`,
    /// staged, started and versioned at 1 ms, 0.1 CPUs, 8 MB, no ports.
    #[cfg(test)]
    pub(crate) fn test(id: &str, app_id: &str, state: TaskState) -> TaskRecord {
        let t = Timestamp::from_millis(1).unwrap();
        TaskRecord {
            id: id.into(),
            app_id: app_id.into(),
            state,
            host: "h".into(),
            node: "n".into(),
            staged_at: t,
            started_at: Some(t),
            version: t,
            config_version: t,
            ports: vec![],
            host_ports: vec![],
            cpus: 0.1,
            mem: 8.0,
            runtime: "command".into(),
            handle: String::new(),
            ip_addresses: vec![],
            is_docker: false,
            kill_grace: 3,
        }
    }
}

/// A deployment as the manager persists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    pub id: String,
    pub version: Timestamp,
    pub affected_apps: Vec<String>,
    pub steps: Vec<DeploymentStep>,
    /// The apps before the change (None = did not exist), for rollback.
    pub original: BTreeMap<String, Option<App>>,
}

impl DeploymentRecord {
    pub fn to_marathon(&self) -> marathon::Deployment {
        let current_actions = self
            .steps
            .first()
            .map(|s| s.actions.clone())
            .unwrap_or_default();
        let current_actions = current_actions
            .into_iter()
            .map(|mut a| {
                a.readiness_check_results = Some(Vec::new());
                a
            })
            .collect();
        marathon::Deployment {
            id: self.id.clone(),
            version: self.version,
            affected_apps: self.affected_apps.clone(),
            affected_pods: Vec::new(),
            steps: self.steps.clone(),
            current_actions,
            current_step: 1,
            total_steps: self.steps.len() as u32,
        }
    }
}

/// Relaunch delay of an app after failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub failures: u32,
    pub next_launch: Instant,
    pub delay_secs: f64,
}

/// Why an app cannot launch what it needs right now (shown in /v2/queue).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub app_id: String,
    pub count: usize,
    pub reason: String,
    pub since: Timestamp,
}

/// Key in [`State::health`] of the Docker HEALTHCHECK verdict (listed after
/// the Marathon-level checks in `healthCheckResults`).
pub const DOCKER_HEALTH: usize = usize::MAX;

#[derive(Debug, Default)]
pub struct State {
    pub apps: BTreeMap<String, App>,
    pub versions: BTreeMap<String, BTreeMap<Timestamp, App>>,
    pub tasks: BTreeMap<String, TaskRecord>,
    pub deployments: BTreeMap<String, DeploymentRecord>,
    pub backoff: HashMap<String, Backoff>,
    pub last_failure: HashMap<String, TaskFailure>,
    /// Health results per task, by check index ([`DOCKER_HEALTH`] = the
    /// image's own HEALTHCHECK).
    pub health: HashMap<String, BTreeMap<usize, HealthCheckResult>>,
    pub queue: BTreeMap<String, Waiting>,
    /// Tasks from etcd whose runtime has not answered for them yet (recovery
    /// failed or skipped them): kept in their last state, never replaced,
    /// never health-checked, until the runtime adopts them or says they are gone.
    pub unresolved: BTreeSet<String>,
    /// Tasks whose launch is in flight (image pull, container create...): a
    /// kill meanwhile is carried out by the launch when it completes.
    pub launching: BTreeSet<String>,
    /// Exits the runtime reported while the task's launch was still in
    /// flight (a command that fails at once can end before its spawner's
    /// answer is read): the launch reports TASK_RUNNING first, then this
    /// exit, in the order Mesos sends them.
    pub early_exits: HashMap<String, crate::runtime::Exit>,
    /// Tasks whose record in etcd may differ from memory: the task writer
    /// ([`crate::task_writer`]) writes their current state (or deletes the
    /// key of a task that ended), again after a failure, until etcd holds
    /// what memory holds, so that a restarted manager loads the tasks that
    /// really run.
    pub unsaved: BTreeSet<String>,
    /// Generation of the task writer's last flush: the next one, which
    /// takes [`Self::unsaved`] under this lock, is this plus one.
    pub write_gen: u64,
    /// Deployment id -> its apps seen at their target (every task of the
    /// new config running, and healthy if checked) at the moment one of
    /// their tasks became ready ([`crate::scheduler::pass::note_ready`]).
    /// Marathon's deployment step completes on the status update that
    /// reaches the target: a task that dies right after still counts, even
    /// if no reconcile pass saw it running. Memory only: after a restart the
    /// passes decide alone.
    pub reached: BTreeMap<String, BTreeSet<String>>,
}

impl State {
    /// The launch of `task_id` is over: no longer in flight; the exit the
    /// runtime reported meanwhile, if any ([`Self::early_exits`]).
    pub fn end_launch(&mut self, task_id: &str) -> Option<crate::runtime::Exit> {
        self.launching.remove(task_id);
        self.early_exits.remove(task_id)
    }

    /// One app's tasks. This walks every task: a view over many apps takes
    /// [`Self::tasks_by_app`] once instead.
    pub fn tasks_of<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        self.tasks.values().filter(move |t| t.app_id == app_id)
    }

    /// Every task by its app id, in task id order, gathered in one walk:
    /// looking each app's tasks up in all the tasks would make a view of
    /// all apps (a reconcile pass, `GET /v2/apps?embed=apps.tasks`) cost
    /// apps x tasks.
    pub fn tasks_by_app(&self) -> HashMap<&str, Vec<&TaskRecord>> {
        let mut by_app: HashMap<&str, Vec<&TaskRecord>> = HashMap::new();
        for t in self.tasks.values() {
            by_app.entry(t.app_id.as_str()).or_default().push(t);
        }
        by_app
    }

    /// Deployments touching this app.
    pub fn deployments_of(&self, app_id: &str) -> Vec<String> {
        self.deployments
            .values()
            .filter(|d| d.affected_apps.iter().any(|a| a == app_id))
            .map(|d| d.id.clone())
            .collect()
    }

    /// Whether this task passes its app's health checks and its image's own
    /// Docker HEALTHCHECK (None = no verdict: no checks, or none reported yet).
    pub fn healthy(&self, task: &TaskRecord) -> Option<bool> {
        let app = self.apps.get(&task.app_id)?;
        let results = self.health.get(&task.id)?;
        if app.health_checks.is_empty() {
            return results.get(&DOCKER_HEALTH).map(|r| r.alive);
        }
        if results.values().any(|r| !r.alive) {
            return Some(false);
        }
        let marathon = results.keys().filter(|i| **i != DOCKER_HEALTH).count();
        if marathon == 0 {
            return None;
        }
        Some(marathon >= app.health_checks.len())
    }

    /// The Marathon view of a task, with its app's service ports wherever it
    /// appears (`/v2/tasks`, tasks embedded in `/v2/apps` answers,
    /// `/v2/apps/{id}/tasks`, kill answers). Issue 12: parity with what marathon-lb and current
    /// clients expect; Marathon 1.4 filled them in `/v2/tasks` only.
    pub fn task_json(&self, t: &TaskRecord) -> Task {
        let service_ports = self
            .apps
            .get(&t.app_id)
            .map(App::service_ports)
            .unwrap_or_default();
        let ips = if t.ip_addresses.is_empty() {
            vec![t.host.clone()]
        } else {
            t.ip_addresses.clone()
        };
        Task {
            id: t.id.clone(),
            app_id: t.app_id.clone(),
            host: t.host.clone(),
            slave_id: Some(t.node.clone()),
            state: t.state.clone(),
            staged_at: Some(t.staged_at),
            started_at: t.started_at,
            version: Some(t.version),
            ports: t.ports.clone(),
            service_ports,
            ip_addresses: ips.into_iter().map(IpAddress::v4).collect(),
            health_check_results: self
                .health
                .get(&t.id)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default(),
            local_volumes: Vec::new(),
            region: None,
            zone: None,
            role: Some("*".into()),
            extra: Default::default(),
        }
    }
}

impl State {
    /// `GET /v2/queue`: the apps with instances waiting to launch, with
    /// their backoff delay as of `now`.
    pub fn queue_view(&self, now: Instant) -> marathon::Queue {
        let queue = self
            .queue
            .values()
            .filter_map(|w| {
                let app = self.apps.get(&w.app_id)?;
                let backoff = self.backoff.get(&w.app_id);
                Some(marathon::QueueItem {
                    app: app.clone(),
                    count: u32::try_from(w.count).unwrap_or(u32::MAX),
                    delay: marathon::QueueDelay {
                        time_left_seconds: backoff
                            .map(|b| b.next_launch.saturating_duration_since(now).as_secs())
                            .unwrap_or(0),
                        overdue: backoff.is_none_or(|b| b.next_launch <= now),
                    },
                    since: w.since,
                    processed_offers_summary: Some(serde_json::json!({
                        "processedOffersCount": 0,
                        "unusedOffersCount": 0,
                        "rejectSummaryLastOffers": [],
                        "rejectSummaryLaunchAttempt": [],
                    })),
                    last_unused_offers: Some(serde_json::json!([])),
                })
            })
            .collect();
        marathon::Queue { queue }
    }

    /// `GET /v2/groups/{id}`: the group of apps under `group_id` with its
    /// subgroups (derived from app ids); `None` when no app is under it
    /// (the root group always exists). Its version is the newest app
    /// version, or `default_version` when there are no apps.
    pub fn group_view(
        &self,
        group_id: &str,
        default_version: Timestamp,
    ) -> Option<marathon::Group> {
        let prefix = if group_id == "/" {
            "/".to_string()
        } else {
            format!("{group_id}/")
        };
        let mut apps = Vec::new();
        let mut subgroups = BTreeSet::new();
        for app in self.apps.values().filter(|a| a.id.starts_with(&prefix)) {
            let rest = &app.id[prefix.len()..];
            match rest.split_once('/') {
                None => apps.push(app.clone()),
                Some((sub, _)) => {
                    subgroups.insert(format!("{prefix}{sub}"));
                }
            }
        }
        if group_id != "/" && apps.is_empty() && subgroups.is_empty() {
            return None;
        }
        let version = self
            .apps
            .values()
            .filter_map(|a| a.version)
            .max()
            .unwrap_or(default_version);
        let groups = subgroups
            .iter()
            .filter_map(|g| self.group_view(g, default_version))
            .collect();
        Some(marathon::Group {
            id: group_id.to_string(),
            apps,
            groups,
            pods: Vec::new(),
            dependencies: Vec::new(),
            version: Some(version),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskRecord {
        TaskRecord {
            runtime: "docker".into(),
            is_docker: true,
            ..TaskRecord::test("t", "/a", TaskState::Running)
        }
    }

    fn result(alive: bool) -> HealthCheckResult {
        HealthCheckResult {
            alive,
            ..HealthCheckResult::default()
        }
    }

    /// (Marathon checks defined, alive by result index, verdict).
    type Row = (usize, Vec<(usize, bool)>, Option<bool>);

    #[test]
    fn healthy_table_with_docker_healthcheck() {
        let table: Vec<Row> = vec![
            (0, vec![], None),
            (0, vec![(DOCKER_HEALTH, true)], Some(true)),
            (0, vec![(DOCKER_HEALTH, false)], Some(false)),
            (1, vec![], None),
            (1, vec![(0, true)], Some(true)),
            (1, vec![(DOCKER_HEALTH, true)], None),
            (1, vec![(DOCKER_HEALTH, false)], Some(false)),
            (1, vec![(0, true), (DOCKER_HEALTH, false)], Some(false)),
            (1, vec![(0, false), (DOCKER_HEALTH, true)], Some(false)),
            (2, vec![(0, true), (DOCKER_HEALTH, true)], Some(false)),
            (
                2,
                vec![(0, true), (1, true), (DOCKER_HEALTH, true)],
                Some(true),
            ),
        ];
        for (checks, results, want) in table {
            let mut s = State::default();
            let mut app = App {
                id: "/a".into(),
                ..App::default()
            };
            app.health_checks = vec![marathon::HealthCheck::default(); checks];
            s.apps.insert(app.id.clone(), app);
            if !results.is_empty() {
                s.health.insert(
                    "t".into(),
                    results.iter().map(|(i, a)| (*i, result(*a))).collect(),
                );
            }
            assert_eq!(s.healthy(&task()), want, "{checks} checks, {results:?}");
        }
    }
}
