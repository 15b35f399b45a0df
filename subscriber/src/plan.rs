//! The resync diff: what Marathon says is running (desired) against what the
//! registry holds (actual). Pure and table-tested; the writer applies it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::model::{AppSpec, TaskInfo};
use crate::record::{app_names, record_with_names, wanted, RecordError};
use crate::store::{Action, Existing, Expect, IdOf, Instance, RecordId};

/// Counts of a resync, as `/cleanup` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub summary: Summary,
    /// Desired records whose key holds another owner's record: left alone.
    pub foreign: usize,
}

/// Records for every wanted task of every app. Tasks whose names are
/// invalid are returned separately (logged and counted by the caller);
/// tasks in `skip` (recently killed) are never desired.
pub fn desired_records(
    apps: &[(AppSpec, Vec<TaskInfo>)],
    owner: &str,
    require_healthy: bool,
    skip: &dyn Fn(&str) -> bool,
) -> (Vec<Instance>, Vec<RecordError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (app, tasks) in apps {
        let mut wanted_tasks = tasks
            .iter()
            .filter(|t| wanted(app, t, require_healthy) && !skip(&t.id))
            .peekable();
        if wanted_tasks.peek().is_none() {
            continue;
        }
        // Names are checked once per app, before any of its records is
        // built: an app with invalid names gets no record (one error).
        let names = match app_names(app) {
            Ok(n) => n,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for task in wanted_tasks {
            let node = task.node.as_deref().unwrap_or(&task.host);
            match record_with_names(app, &names, task, owner, node) {
                Ok(r) => out.push(r),
                Err(e) => errors.push(e),
            }
        }
    }
    (out, errors)
}

/// Diffs desired against actual. Only records of `owner` are ever changed;
/// containers in `protect` (touched by an event since the desired state was
/// fetched) are left exactly as they are.
pub fn resync_plan(
    desired: &[Instance],
    actual: &[Existing],
    owner: &str,
    protect: &HashSet<String>,
) -> Plan {
    // Borrowed keys: no per-record allocation (this runs over every record).
    type Key<'a> = (&'a str, &'a str, &'a str);
    fn key(r: &Instance) -> Key<'_> {
        (&r.service, &r.group, &r.container)
    }
    let mut actual_by_id: HashMap<Key<'_>, &Existing> = HashMap::with_capacity(actual.len());
    for e in actual {
        actual_by_id.insert(key(&e.record), e);
    }
    let mut desired_ids: HashSet<Key<'_>> = HashSet::with_capacity(desired.len());
    let mut plan = Plan::default();
    for d in desired {
        if !desired_ids.insert(key(d)) || protect.contains(&d.container) {
            continue;
        }
        match actual_by_id.get(&key(d)) {
            Some(a) if a.record.owner != owner => plan.foreign += 1,
            Some(a) if same(&a.record, d) => plan.summary.unchanged += 1,
            Some(a) => {
                plan.summary.updated += 1;
                plan.actions.push(Action::Put {
                    record: d.clone(),
                    expect: Expect::Revision(a.revision),
                });
            }
            None => {
                plan.summary.added += 1;
                plan.actions.push(Action::Put {
                    record: d.clone(),
                    expect: Expect::Absent,
                });
            }
        }
    }
    // Stale records, in a stable (key) order.
    let mut stale: Vec<&Existing> = actual
        .iter()
        .filter(|a| {
            a.record.owner == owner
                && !desired_ids.contains(&key(&a.record))
                && !protect.contains(&a.record.container)
        })
        .collect();
    stale.sort_by(|a, b| key(&a.record).cmp(&key(&b.record)));
    stale.dedup_by(|a, b| key(&a.record) == key(&b.record));
    for a in stale {
        plan.summary.removed += 1;
        plan.actions.push(Action::Delete {
            id: RecordId::of(&a.record),
            expect: Expect::Revision(a.revision),
        });
    }
    plan
}

/// Records are the same when equal, except that `started_at` written from a
/// status event (the event's time) may differ by milliseconds from the
/// task's `startedAt` in Marathon: not worth a rewrite when both are set.
fn same(actual: &Instance, desired: &Instance) -> bool {
    // Field by field (no clone: this runs for every record of a resync).
    // The exhaustive pattern makes a new record field a compile error here.
    let Instance {
        schema,
        service,
        group,
        labels,
        container,
        app_id,
        app_version,
        node,
        host,
        internal_address,
        ports,
        state,
        healthy,
        started_at,
        owner,
    } = actual;
    let started_ok = if started_at.is_empty() || desired.started_at.is_empty() {
        *started_at == desired.started_at
    } else {
        true
    };
    started_ok
        && *schema == desired.schema
        && *service == desired.service
        && *group == desired.group
        && *labels == desired.labels
        && *container == desired.container
        && *app_id == desired.app_id
        && *app_version == desired.app_version
        && *node == desired.node
        && *host == desired.host
        && *internal_address == desired.internal_address
        && *ports == desired.ports
        && *state == desired.state
        && *healthy == desired.healthy
        && *owner == desired.owner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetworkMode;
    use crate::record::record_from_task;
    use crate::record::tests::{app, task};

    fn rec(container: &str, owner: &str, port: u32) -> Instance {
        let a = app("/dev/web", NetworkMode::Bridge, &[(Some("api"), Some(80))]);
        let t = task(container, "/dev/web", &[port]);
        record_from_task(&a, &t, owner, "n").unwrap()
    }

    fn ex(r: Instance, rev: i64) -> Existing {
        Existing {
            record: r,
            revision: rev,
        }
    }

    fn kinds(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .map(|a| match a {
                Action::Put { record, expect } => format!("put {} {:?}", record.container, expect),
                Action::Delete { id, expect } => format!("del {} {:?}", id.container, expect),
            })
            .collect()
    }

    #[test]
    fn resync_plan_table() {
        let none = HashSet::new();
        struct Case {
            what: &'static str,
            desired: Vec<Instance>,
            actual: Vec<Existing>,
            protect: Vec<&'static str>,
            want: Vec<&'static str>,
            summary: (usize, usize, usize, usize),
            foreign: usize,
        }
        let cases = vec![
            Case {
                what: "empty",
                desired: vec![],
                actual: vec![],
                protect: vec![],
                want: vec![],
                summary: (0, 0, 0, 0),
                foreign: 0,
            },
            Case {
                what: "missing record is added with an absent compare",
                desired: vec![rec("t1", "me", 1)],
                actual: vec![],
                protect: vec![],
                want: vec!["put t1 Absent"],
                summary: (1, 0, 0, 0),
                foreign: 0,
            },
            Case {
                what: "same record unchanged",
                desired: vec![rec("t1", "me", 1)],
                actual: vec![ex(rec("t1", "me", 1), 7)],
                protect: vec![],
                want: vec![],
                summary: (0, 0, 0, 1),
                foreign: 0,
            },
            Case {
                what: "different record updated at its revision",
                desired: vec![rec("t1", "me", 2)],
                actual: vec![ex(rec("t1", "me", 1), 7)],
                protect: vec![],
                want: vec!["put t1 Revision(7)"],
                summary: (0, 1, 0, 0),
                foreign: 0,
            },
            Case {
                what: "started_at from the event vs Marathon's startedAt: unchanged",
                desired: vec![rec("t1", "me", 1)],
                actual: vec![ex(
                    Instance {
                        started_at: "2026-11-22T10:00:01.007Z".into(),
                        ..rec("t1", "me", 1)
                    },
                    7,
                )],
                protect: vec![],
                want: vec![],
                summary: (0, 0, 0, 1),
                foreign: 0,
            },
            Case {
                what: "stale own record removed at its revision",
                desired: vec![],
                actual: vec![ex(rec("t1", "me", 1), 9)],
                protect: vec![],
                want: vec!["del t1 Revision(9)"],
                summary: (0, 0, 1, 0),
                foreign: 0,
            },
            Case {
                what: "another owner's records are never touched",
                desired: vec![rec("t1", "me", 2)],
                actual: vec![ex(rec("t1", "other", 1), 3), ex(rec("t2", "other", 1), 4)],
                protect: vec![],
                want: vec![],
                summary: (0, 0, 0, 0),
                foreign: 1,
            },
            Case {
                what: "protected containers are neither added nor removed",
                desired: vec![rec("t1", "me", 1)],
                actual: vec![ex(rec("t2", "me", 1), 5)],
                protect: vec!["t1", "t2"],
                want: vec![],
                summary: (0, 0, 0, 0),
                foreign: 0,
            },
            Case {
                what: "duplicates in desired count once",
                desired: vec![rec("t1", "me", 1), rec("t1", "me", 1)],
                actual: vec![],
                protect: vec![],
                want: vec!["put t1 Absent"],
                summary: (1, 0, 0, 0),
                foreign: 0,
            },
            Case {
                what: "mixed",
                desired: vec![rec("a", "me", 1), rec("b", "me", 2), rec("c", "me", 3)],
                actual: vec![
                    ex(rec("a", "me", 1), 1),
                    ex(rec("b", "me", 1), 2),
                    ex(rec("d", "me", 1), 3),
                    ex(rec("e", "you", 1), 4),
                ],
                protect: vec![],
                want: vec!["put b Revision(2)", "put c Absent", "del d Revision(3)"],
                summary: (1, 1, 1, 1),
                foreign: 0,
            },
        ];
        for c in cases {
            let protect: HashSet<String> = c.protect.iter().map(|s| s.to_string()).collect();
            let p = resync_plan(
                &c.desired,
                &c.actual,
                "me",
                if c.protect.is_empty() {
                    &none
                } else {
                    &protect
                },
            );
            assert_eq!(kinds(&p), c.want, "{}", c.what);
            let s = p.summary;
            assert_eq!(
                (s.added, s.updated, s.removed, s.unchanged),
                c.summary,
                "{}",
                c.what
            );
            assert_eq!(p.foreign, c.foreign, "{}", c.what);
        }
    }

    #[test]
    fn desired_skips_unwanted_killed_and_invalid() {
        let a = app("/dev/web", NetworkMode::Bridge, &[(Some("api"), Some(80))]);
        let mut staging = task("t-staging", "/dev/web", &[1]);
        staging.state = "TASK_STAGING".into();
        let apps = vec![
            (
                a.clone(),
                vec![
                    task("t-run", "/dev/web", &[1]),
                    staging,
                    task("t-killed", "/dev/web", &[2]),
                ],
            ),
            (
                app("/dev/Bad", NetworkMode::Host, &[]),
                vec![task("t-bad", "/dev/Bad", &[3])],
            ),
        ];
        let (recs, errs) = desired_records(&apps, "me", false, &|id| id == "t-killed");
        assert_eq!(
            recs.iter()
                .map(|r| r.container.as_str())
                .collect::<Vec<_>>(),
            vec!["t-run"]
        );
        assert_eq!(errs.len(), 1);
    }
}
