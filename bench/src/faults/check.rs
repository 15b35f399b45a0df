//! The invariant of issue 14, checked from outside: per app, the command
//! processes and containers that run == the manager's running tasks == the
//! records in etcd, the manager at the app's instance count, with no
//! duplicates, no orphans and no record (or task) coming back after it was
//! gone.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::stack::Stack;
use crate::setup::ManagerApi;

/// Task states that are over (the manager may still list them a while).
const TERMINAL: [&str; 7] = [
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_GONE",
    "TASK_DROPPED",
];

/// etcd readers, one per member, of the registry's records (`/services`)
/// and of the manager's own state (`/mdo/manager`). A read goes to the
/// first member that answers, so that a dead member never slows the
/// checker down (what is measured is the stack, not our client's failover).
pub struct EtcdReaders {
    pub records: Vec<registry::Registry>,
    pub state: Vec<registry::Registry>,
}

impl EtcdReaders {
    /// Every record under the registry prefix.
    pub async fn list_records(&self) -> Result<registry::Snapshot> {
        let mut last = None;
        for r in &self.records {
            match r.list_all().await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no etcd member"), Into::into))
    }

    /// The manager's task states in etcd.
    pub async fn manager_tasks(&self) -> Result<Vec<registry::KeyValue>> {
        let keys = registry::ManagerKeys::new("/mdo/manager")?;
        let mut last = None;
        for r in &self.state {
            match r
                .range_prefix(&keys.tasks_prefix(), registry::DEFAULT_PAGE)
                .await
            {
                Ok((_, kvs)) => return Ok(kvs),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no etcd member"), Into::into))
    }
}

/// One app as seen by the three sources at (nearly) one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppView {
    /// The app's `instances` (`None`: the manager does not know the app).
    pub instances: Option<u64>,
    /// Task ids of command processes and containers that run (a duplicate
    /// appears twice).
    pub running: Vec<String>,
    /// Task ids the manager lists `TASK_RUNNING`.
    pub manager_running: Vec<String>,
    /// The manager's tasks in other states that are not over (staging,
    /// killing, unreachable...): `(id, state)`.
    pub manager_busy: Vec<(String, String)>,
    /// Task ids with a record in etcd (a duplicate appears twice).
    pub records: Vec<String>,
    /// Task ids in the manager's own state in etcd (what a restarted
    /// manager would load).
    pub persisted: Vec<String>,
}

/// Everything the checker saw in one round.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub apps: BTreeMap<String, AppView>,
}

fn dups(ids: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            out.insert(id.clone());
        }
    }
    out.into_iter().collect()
}

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

impl AppView {
    /// Why this app is not (yet) right; empty when it is.
    pub fn problems(&self, app: &str) -> Vec<String> {
        let mut p = Vec::new();
        let running = set(&self.running);
        let manager = set(&self.manager_running);
        let records = set(&self.records);
        match self.instances {
            None if !running.is_empty() || !records.is_empty() => p.push(format!(
                "{app}: unknown to the manager, yet running {running:?}, records {records:?}"
            )),
            Some(n) if manager.len() as u64 != n => p.push(format!(
                "{app}: {} running tasks in the manager, instances {n}",
                manager.len()
            )),
            _ => {}
        }
        if !self.manager_busy.is_empty() {
            p.push(format!("{app}: tasks in flight {:?}", self.manager_busy));
        }
        for (what, ids) in [("running", &self.running), ("records", &self.records)] {
            let d = dups(ids);
            if !d.is_empty() {
                p.push(format!("{app}: duplicate {what} {d:?}"));
            }
        }
        let orphans: Vec<_> = running.difference(&manager).collect();
        if !orphans.is_empty() {
            p.push(format!(
                "{app}: running, unknown to the manager {orphans:?}"
            ));
        }
        let gone: Vec<_> = manager.difference(&running).collect();
        if !gone.is_empty() {
            p.push(format!(
                "{app}: RUNNING in the manager, not running {gone:?}"
            ));
        }
        let stale: Vec<_> = records.difference(&manager).collect();
        if !stale.is_empty() {
            p.push(format!("{app}: records of tasks not running {stale:?}"));
        }
        let missing: Vec<_> = manager.difference(&records).collect();
        if !missing.is_empty() {
            p.push(format!("{app}: running tasks without a record {missing:?}"));
        }
        let mut known = manager.clone();
        known.extend(self.manager_busy.iter().map(|(id, _)| id.clone()));
        let persisted = set(&self.persisted);
        let unsaved: Vec<_> = known.difference(&persisted).collect();
        if !unsaved.is_empty() {
            p.push(format!(
                "{app}: tasks missing from the manager's state in etcd {unsaved:?}"
            ));
        }
        let leftover: Vec<_> = persisted.difference(&known).collect();
        if !leftover.is_empty() {
            p.push(format!(
                "{app}: the manager's state in etcd holds tasks it does not run {leftover:?}"
            ));
        }
        p
    }
}

impl Observation {
    /// Every problem of every app; empty = the invariant holds.
    pub fn problems(&self) -> Vec<String> {
        self.apps
            .iter()
            .flat_map(|(app, v)| v.problems(app))
            .collect()
    }

    /// Every task id any source shows (not over).
    pub fn task_ids(&self) -> BTreeSet<(String, &'static str)> {
        let mut out = BTreeSet::new();
        for v in self.apps.values() {
            out.extend(v.running.iter().map(|i| (i.clone(), "process/container")));
            out.extend(v.manager_running.iter().map(|i| (i.clone(), "manager")));
            out.extend(v.manager_busy.iter().map(|(i, _)| (i.clone(), "manager")));
            out.extend(v.records.iter().map(|i| (i.clone(), "etcd record")));
            out.extend(
                v.persisted
                    .iter()
                    .map(|i| (i.clone(), "manager state in etcd")),
            );
        }
        out
    }

    /// Task ids that show up twice in one source (never right, not even
    /// for a moment).
    pub fn duplicates(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (app, v) in &self.apps {
            for (what, ids) in [("running", &v.running), ("records", &v.records)] {
                for d in dups(ids) {
                    out.push(format!("{app}: {d} twice in {what}"));
                }
            }
        }
        out
    }
}

/// Reads the three sources once. Fails when the manager's API or etcd does
/// not answer (the invariant cannot hold then).
pub async fn observe(stack: &Stack, reg: &EtcdReaders) -> Result<Observation> {
    let mut obs = Observation::default();
    // The runtime's truth first, then the manager, then etcd: something
    // started between two reads shows up as "not yet everywhere", which the
    // next round clears.
    for t in manager::runtime::command::live_tasks(&stack.data_dir()) {
        obs.apps
            .entry(t.app_id)
            .or_default()
            .running
            .push(t.task_id);
    }
    for (task, app) in running_containers(stack.manager_id()).await? {
        obs.apps.entry(app).or_default().running.push(task);
    }
    let (s, apps) = stack
        .api(reqwest::Method::GET, "/v2/apps", None)
        .await
        .context("GET /v2/apps")?;
    anyhow::ensure!(s == 200, "GET /v2/apps: {s}");
    for a in apps["apps"].as_array().into_iter().flatten() {
        let id = a["id"].as_str().unwrap_or_default().to_string();
        obs.apps.entry(id).or_default().instances = a["instances"].as_u64();
    }
    let (s, tasks) = stack
        .api(reqwest::Method::GET, "/v2/tasks", None)
        .await
        .context("GET /v2/tasks")?;
    anyhow::ensure!(s == 200, "GET /v2/tasks: {s}");
    for t in tasks["tasks"].as_array().into_iter().flatten() {
        let app = t["appId"].as_str().unwrap_or_default().to_string();
        let id = t["id"].as_str().unwrap_or_default().to_string();
        let state = t["state"].as_str().unwrap_or_default().to_string();
        let view = obs.apps.entry(app).or_default();
        if state == "TASK_RUNNING" {
            view.manager_running.push(id);
        } else if !TERMINAL.contains(&state.as_str()) {
            view.manager_busy.push((id, state));
        }
    }
    let stored = reg
        .manager_tasks()
        .await
        .context("reading the manager's tasks in etcd")?;
    for kv in stored {
        let Ok(t) = serde_json::from_slice::<serde_json::Value>(&kv.value) else {
            continue;
        };
        let app = t["appId"].as_str().unwrap_or_default().to_string();
        let id = t["id"].as_str().unwrap_or_default().to_string();
        obs.apps.entry(app).or_default().persisted.push(id);
    }
    let snapshot = reg.list_records().await.context("reading the registry")?;
    for e in snapshot.entries {
        obs.apps
            .entry(e.instance.app_id.clone())
            .or_default()
            .records
            .push(e.name.container.clone());
    }
    Ok(obs)
}

/// `(task id, app id)` of the running containers labelled with this manager,
/// asked of the engine itself (not through the stack's proxy).
async fn running_containers(manager_id: &str) -> Result<Vec<(String, String)>> {
    use manager::runtime::docker::{LABEL_APP_ID, LABEL_MANAGER, LABEL_TASK_ID};
    let out = tokio::process::Command::new("docker")
        .args(["ps", "--no-trunc", "--filter"])
        .arg(format!("label={LABEL_MANAGER}={manager_id}"))
        .arg("--format")
        .arg(format!(
            "{{{{.Label \"{LABEL_TASK_ID}\"}}}}\t{{{{.Label \"{LABEL_APP_ID}\"}}}}"
        ))
        .output()
        .await
        .context("docker ps")?;
    anyhow::ensure!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (task, app) = l.split_once('\t')?;
            Some((task.to_string(), app.to_string()))
        })
        .collect())
}

/// The result of waiting for the invariant after one fault.
#[derive(Debug, Clone)]
pub struct Converged {
    /// From the given start to the first observation where it held.
    pub took: Duration,
    /// Observations made while waiting.
    pub rounds: usize,
}

/// Watches the stack across faults: remembers every task id ever seen and
/// which ones were gone, and collects violations (a duplicate at any moment,
/// a task id back after it was gone, not converging within the deadline).
#[derive(Debug, Default)]
pub struct Checker {
    seen: HashSet<String>,
    gone: HashSet<String>,
    pub violations: Vec<String>,
    /// The last observation's problems (for messages).
    pub last_problems: Vec<String>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Checks what never may happen, even for a moment: duplicates, and a
    /// task id that was gone showing up again.
    fn screen(&mut self, obs: &Observation, label: &str) {
        for d in obs.duplicates() {
            self.violations.push(format!("{label}: duplicate: {d}"));
        }
        for (id, source) in obs.task_ids() {
            if self.gone.contains(&id) {
                self.violations.push(format!(
                    "{label}: resurrected: {id} is back in the {source}"
                ));
                self.gone.remove(&id);
            }
        }
    }

    /// After a round where the invariant held: ids seen before and now in no
    /// source are gone for good.
    fn settle(&mut self, obs: &Observation) {
        let now: HashSet<String> = obs.task_ids().into_iter().map(|(id, _)| id).collect();
        for id in self.seen.difference(&now) {
            self.gone.insert(id.clone());
        }
        self.seen = now;
    }

    /// Polls until the invariant holds (returns how long it took from
    /// `since`) or `deadline` passes (a violation: the last problems are
    /// recorded, `None` returned).
    pub async fn converge(
        &mut self,
        stack: &Stack,
        reg: &EtcdReaders,
        label: &str,
        since: Instant,
        deadline: Duration,
    ) -> Option<Converged> {
        let mut rounds = 0;
        loop {
            rounds += 1;
            match observe(stack, reg).await {
                Ok(obs) => {
                    self.screen(&obs, label);
                    let problems = obs.problems();
                    if problems.is_empty() {
                        let took = since.elapsed();
                        self.settle(&obs);
                        self.last_problems.clear();
                        return Some(Converged { took, rounds });
                    }
                    self.seen
                        .extend(obs.task_ids().into_iter().map(|(id, _)| id));
                    self.last_problems = problems;
                }
                Err(e) => self.last_problems = vec![format!("observation failed: {e:#}")],
            }
            if since.elapsed() > deadline {
                self.violations.push(format!(
                    "{label}: not converged within {deadline:?}: {}",
                    self.last_problems.join("; ")
                ));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One observation, screened, without waiting (during a fault).
    pub async fn peek(
        &mut self,
        stack: &Stack,
        reg: &EtcdReaders,
        label: &str,
    ) -> Option<Observation> {
        let obs = observe(stack, reg).await.ok()?;
        self.screen(&obs, label);
        self.seen
            .extend(obs.task_ids().into_iter().map(|(id, _)| id));
        Some(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn view(running: &[&str], manager: &[&str], records: &[&str]) -> AppView {
        AppView {
            instances: Some(manager.len() as u64),
            running: ids(running),
            manager_running: ids(manager),
            manager_busy: vec![],
            records: ids(records),
            persisted: ids(manager),
        }
    }

    #[test]
    fn the_invariant_names_each_kind_of_difference() {
        assert!(view(&["a", "b"], &["a", "b"], &["a", "b"])
            .problems("/x")
            .is_empty());
        let cases = [
            (view(&["a", "b"], &["a"], &["a"]), "unknown to the manager"),
            (view(&["a"], &["a", "b"], &["a", "b"]), "not running"),
            (
                view(&["a"], &["a"], &["a", "z"]),
                "records of tasks not running",
            ),
            (view(&["a", "b"], &["a", "b"], &["a"]), "without a record"),
            (view(&["a", "a"], &["a"], &["a"]), "duplicate running"),
            (view(&["a"], &["a"], &["a", "a"]), "duplicate records"),
        ];
        for (v, what) in cases {
            let p = v.problems("/x").join("; ");
            assert!(p.contains(what), "{what}: {p}");
        }
        let mut short = view(&["a"], &["a"], &["a"]);
        short.instances = Some(2);
        assert!(short.problems("/x")[0].contains("instances 2"));
        let mut busy = view(&["a"], &["a"], &["a"]);
        busy.manager_busy.push(("b".into(), "TASK_STAGING".into()));
        assert!(busy.problems("/x")[0].contains("in flight"));
        let mut unsaved = view(&["a", "b"], &["a", "b"], &["a", "b"]);
        unsaved.persisted = ids(&["a", "z"]);
        let p = unsaved.problems("/x").join("; ");
        assert!(
            p.contains("missing from the manager's state in etcd [\"b\"]"),
            "{p}"
        );
        assert!(p.contains("holds tasks it does not run [\"z\"]"), "{p}");
        let unknown = AppView {
            records: ids(&["a"]),
            ..AppView::default()
        };
        assert!(unknown.problems("/x")[0].contains("unknown to the manager"));
    }

    #[test]
    fn a_gone_task_coming_back_is_a_resurrection() {
        let mut c = Checker::new();
        let mut obs = Observation::default();
        obs.apps.insert("/x".into(), view(&["a"], &["a"], &["a"]));
        c.screen(&obs, "start");
        c.settle(&obs);
        let empty = Observation::default();
        c.screen(&empty, "killed");
        c.settle(&empty);
        assert!(c.violations.is_empty());
        let mut back = Observation::default();
        back.apps.insert("/x".into(), view(&[], &[], &["a"]));
        c.screen(&back, "later");
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(c.violations[0].contains("resurrected: a is back in the etcd record"));
    }
}
