//! The scheduling decision for one app: `plan(desired, actual)` returns the
//! launches and kills that move the app's tasks towards its definition,
//! honouring `upgradeStrategy` during a rolling restart and `killSelection`
//! on scale-down. Pure and table-tested; the core applies the actions.
//! [`pass::plan_pass`] decides a whole reconcile pass over every app
//! (backoff, resources, constraints, ports, runtimes) with this plan.

use marathon::{KillSelection, Timestamp};

pub mod pass;

pub use pass::{plan_pass, Launch, Offer, PassPlan};

/// What the app wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub instances: usize,
    /// Tasks launched for another config version are "old".
    pub config_version: Timestamp,
    pub minimum_health_capacity: f64,
    pub maximum_over_capacity: f64,
    pub kill_selection: KillSelection,
}

/// One active (non-terminal, not being killed) task as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Actual {
    pub task_id: String,
    pub config_version: Timestamp,
    /// Running and (if the app has health checks) healthy.
    pub ready: bool,
    pub staged_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Launch this many new tasks.
    Launch(usize),
    Kill(String),
}

/// The actions for one app. `desired = None`: the app is gone, kill all.
pub fn plan(desired: Option<&Desired>, actual: &[Actual]) -> Vec<Action> {
    let Some(d) = desired else {
        return actual
            .iter()
            .map(|a| Action::Kill(a.task_id.clone()))
            .collect();
    };
    let (new, old): (Vec<&Actual>, Vec<&Actual>) = actual
        .iter()
        .partition(|a| a.config_version == d.config_version);
    let mut actions = Vec::new();
    if old.is_empty() {
        if new.len() > d.instances {
            for victim in victims(&new, new.len() - d.instances, d.kill_selection) {
                actions.push(Action::Kill(victim));
            }
        } else if new.len() < d.instances {
            actions.push(Action::Launch(d.instances - new.len()));
        }
        return actions;
    }
    // Rolling restart (Marathon's TaskReplaceActor arithmetic).
    let n = d.instances as f64;
    let min_healthy = (n * d.minimum_health_capacity).ceil() as usize;
    let mut max_capacity = (n * (1.0 + d.maximum_over_capacity)).floor() as usize;
    if min_healthy == max_capacity && max_capacity <= old.len() + new.len() {
        max_capacity = max_capacity.saturating_add(1);
    }
    let ready_new = new.iter().filter(|a| a.ready).count();
    let keep_old = min_healthy
        .saturating_sub(ready_new)
        .min(old.len())
        .min(d.instances);
    let kill_old = old.len() - keep_old;
    for victim in victims(&old, kill_old, KillSelection::OldestFirst) {
        actions.push(Action::Kill(victim));
    }
    if new.len() > d.instances {
        for victim in victims(&new, new.len() - d.instances, d.kill_selection) {
            actions.push(Action::Kill(victim));
        }
    } else {
        let room = max_capacity.saturating_sub(keep_old + new.len());
        let launch = (d.instances - new.len()).min(room);
        if launch > 0 {
            actions.push(Action::Launch(launch));
        }
    }
    actions
}

/// Whether the app has converged: exactly `instances` tasks, all of the
/// current config and ready.
pub fn converged(desired: Option<&Desired>, actual: &[Actual]) -> bool {
    match desired {
        None => actual.is_empty(),
        Some(d) => {
            actual.len() == d.instances
                && actual
                    .iter()
                    .all(|a| a.config_version == d.config_version && a.ready)
        }
    }
}

/// Picks `count` tasks to kill: not-ready ones first, then by age.
fn victims(tasks: &[&Actual], count: usize, selection: KillSelection) -> Vec<String> {
    let mut sorted: Vec<&&Actual> = tasks.iter().collect();
    sorted.sort_by(|a, b| {
        let age = match selection {
            KillSelection::YoungestFirst => b.staged_at.cmp(&a.staged_at),
            KillSelection::OldestFirst => a.staged_at.cmp(&b.staged_at),
        };
        a.ready
            .cmp(&b.ready)
            .then(age)
            .then(a.task_id.cmp(&b.task_id))
    });
    sorted
        .into_iter()
        .take(count)
        .map(|a| a.task_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    fn desired(n: usize, v: i64, mhc: f64, moc: f64) -> Desired {
        Desired {
            instances: n,
            config_version: ts(v),
            minimum_health_capacity: mhc,
            maximum_over_capacity: moc,
            kill_selection: KillSelection::YoungestFirst,
        }
    }

    fn task(id: &str, v: i64, ready: bool, staged: i64) -> Actual {
        Actual {
            task_id: id.into(),
            config_version: ts(v),
            ready,
            staged_at: ts(staged),
        }
    }

    fn kill(id: &str) -> Action {
        Action::Kill(id.into())
    }

    /// Name, desired, actual, expected actions.
    type Case = (&'static str, Option<Desired>, Vec<Actual>, Vec<Action>);

    #[test]
    fn table() {
        let cases: Vec<Case> = vec![
            (
                "empty app launches",
                Some(desired(3, 1, 1.0, 1.0)),
                vec![],
                vec![Action::Launch(3)],
            ),
            (
                "steady",
                Some(desired(1, 1, 1.0, 1.0)),
                vec![task("a", 1, true, 1)],
                vec![],
            ),
            (
                "scale up counts starting tasks",
                Some(desired(3, 1, 1.0, 1.0)),
                vec![task("a", 1, true, 1), task("b", 1, false, 2)],
                vec![Action::Launch(1)],
            ),
            (
                "scale down youngest first",
                Some(desired(1, 1, 1.0, 1.0)),
                vec![
                    task("a", 1, true, 1),
                    task("b", 1, true, 3),
                    task("c", 1, true, 2),
                ],
                vec![kill("b"), kill("c")],
            ),
            (
                "scale down prefers not-ready",
                Some(desired(1, 1, 1.0, 1.0)),
                vec![task("a", 1, true, 5), task("b", 1, false, 1)],
                vec![kill("b")],
            ),
            (
                "app gone",
                None,
                vec![task("a", 1, true, 1)],
                vec![kill("a")],
            ),
            (
                "restart mhc=1: start all new beside old",
                Some(desired(2, 2, 1.0, 1.0)),
                vec![task("a", 1, true, 1), task("b", 1, true, 2)],
                vec![Action::Launch(2)],
            ),
            (
                "restart mhc=1: one new ready -> one old goes",
                Some(desired(2, 2, 1.0, 1.0)),
                vec![
                    task("a", 1, true, 1),
                    task("b", 1, true, 2),
                    task("c", 2, true, 3),
                    task("d", 2, false, 4),
                ],
                vec![kill("a")],
            ),
            (
                "restart mhc=0: kill all old first",
                Some(desired(2, 2, 0.0, 0.0)),
                vec![task("a", 1, true, 1), task("b", 1, true, 2)],
                vec![kill("a"), kill("b"), Action::Launch(2)],
            ),
            (
                "restart mhc=1 moc=0: one extra allowed",
                Some(desired(2, 2, 1.0, 0.0)),
                vec![task("a", 1, true, 1), task("b", 1, true, 2)],
                vec![Action::Launch(1)],
            ),
            (
                "restart mhc=0.5 moc=0: half first",
                Some(desired(4, 2, 0.5, 0.0)),
                vec![
                    task("a", 1, true, 1),
                    task("b", 1, true, 2),
                    task("c", 1, true, 3),
                    task("d", 1, true, 4),
                ],
                vec![kill("a"), kill("b"), Action::Launch(2)],
            ),
        ];
        for (name, d, actual, want) in cases {
            assert_eq!(plan(d.as_ref(), &actual), want, "{name}");
        }
    }

    #[test]
    fn convergence() {
        let d = desired(2, 2, 1.0, 1.0);
        assert!(converged(
            Some(&d),
            &[task("a", 2, true, 1), task("b", 2, true, 1)]
        ));
        assert!(!converged(
            Some(&d),
            &[task("a", 2, true, 1), task("b", 1, true, 1)]
        ));
        assert!(!converged(
            Some(&d),
            &[task("a", 2, true, 1), task("b", 2, false, 1)]
        ));
        assert!(converged(None, &[]));
    }
}
