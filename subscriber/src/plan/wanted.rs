//! The desired side of a resync without building its records: the wanted
//! tasks of each app, with the app's names worked out once. A task is
//! compared with the stored record field by field
//! ([`crate::record::record_matches`]); its record is built only when it
//! has to be written, so a resync with nothing to change builds none.

use registry::naming::{labels_from_group, validate_container, Names};

use super::Desired;
use crate::model::{AppSpec, TaskInfo};
use crate::record::{
    app_names, record_json_is, record_matches, record_ref, record_with_names, wanted, RecordError,
};
use crate::record_store::Instance;

/// One app's wanted tasks.
pub struct DesiredApp<'a> {
    pub app: &'a AppSpec,
    pub names: Names,
    /// The group's labels, as every record of the app carries them.
    pub labels: Vec<String>,
    pub tasks: Vec<&'a TaskInfo>,
}

/// Every wanted task of every app, by app. Apps whose names are invalid
/// (one error each) and tasks whose ids are not valid container names are
/// returned separately (logged and counted by the caller); tasks in `skip`
/// (recently killed) are never desired.
pub fn desired_apps<'a>(
    apps: &'a [(AppSpec, Vec<TaskInfo>)],
    require_healthy: bool,
    skip: &dyn Fn(&str) -> bool,
) -> (Vec<DesiredApp<'a>>, Vec<RecordError>) {
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
        // Names are checked once per app, before any of its tasks: an app
        // with invalid names gets no record (one error).
        let names = match app_names(app) {
            Ok(n) => n,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut valid = Vec::new();
        for t in wanted_tasks {
            match validate_container(&t.id) {
                Ok(()) => valid.push(t),
                Err(_) => errors.push(RecordError::InvalidContainer(t.id.clone())),
            }
        }
        out.push(DesiredApp {
            app,
            labels: labels_from_group(&names.group),
            names,
            tasks: valid,
        });
    }
    (out, errors)
}

impl<'a> DesiredApp<'a> {
    /// The app's tasks as desired records of `owner`.
    pub fn wanted<'b>(&'b self, owner: &'b str) -> impl Iterator<Item = Wanted<'b>> + 'b {
        self.tasks.iter().map(move |task| Wanted {
            app: self,
            task,
            owner,
        })
    }
}

/// A wanted task: the record it should have, not built yet.
pub struct Wanted<'a> {
    pub app: &'a DesiredApp<'a>,
    pub task: &'a TaskInfo,
    pub owner: &'a str,
}

impl Wanted<'_> {
    /// The agent a record names: the task's node id, else its host.
    fn node(&self) -> &str {
        self.task.node.as_deref().unwrap_or(&self.task.host)
    }
}

impl Desired for Wanted<'_> {
    fn key(&self) -> (&str, &str, &str) {
        (
            &self.app.names.service,
            &self.app.names.group,
            &self.task.id,
        )
    }

    fn held_by(&self, actual: &Instance) -> bool {
        let a = self.app;
        record_matches(
            a.app,
            &a.names,
            &a.labels,
            self.task,
            self.owner,
            self.node(),
            actual,
        )
    }

    /// Compared as serialised first (nothing built or parsed); a record
    /// that differs in its bytes (`started_at` within the rule's slack, or
    /// anything else) is parsed and compared as [`Desired::held_by`] does.
    fn held_by_json(&self, json: &[u8]) -> bool {
        let a = self.app;
        let exact = record_ref(
            a.app,
            &a.names,
            &a.labels,
            self.task,
            self.owner,
            self.node(),
        );
        record_json_is(&exact, json)
            || serde_json::from_slice::<Instance>(json).is_ok_and(|r| self.held_by(&r))
    }

    fn record(&self) -> Instance {
        record_with_names(
            self.app.app,
            &self.app.names,
            self.task,
            self.owner,
            self.node(),
        )
        .expect("the container name was checked by desired_apps")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::model::{NetworkMode, PortSpec};
    use crate::plan::{resync_plan, resync_plan_stored, same, Plan, Stored};
    use crate::record::tests::{app, task};
    use crate::record_store::{Existing, PortRecord};

    /// Tasks (container, port) of the app the plan table's records are of.
    pub fn tasks_of(desired: &[(&str, u32)]) -> Vec<(AppSpec, Vec<TaskInfo>)> {
        let a = app("/dev/web", NetworkMode::Bridge, &[(Some("api"), Some(80))]);
        let tasks = desired
            .iter()
            .map(|(c, p)| TaskInfo {
                node: Some("n".into()),
                ..task(c, "/dev/web", &[*p])
            })
            .collect();
        vec![(a, tasks)]
    }

    /// The resync diff as the writer makes it, from the tasks.
    pub fn plan_from_tasks(
        apps: &[(AppSpec, Vec<TaskInfo>)],
        actual: &[Existing],
        owner: &str,
        protect: &HashSet<String>,
    ) -> Plan {
        with_wanted(apps, owner, |wanted| {
            resync_plan(wanted, actual, owner, protect)
        })
    }

    /// Hands `f` the records the tasks want (they borrow the desired apps,
    /// which live only for this call).
    fn with_wanted<R>(
        apps: &[(AppSpec, Vec<TaskInfo>)],
        owner: &str,
        f: impl FnOnce(&[Wanted]) -> R,
    ) -> R {
        let (desired, errors) = desired_apps(apps, false, &|_| false);
        assert!(errors.is_empty(), "{errors:?}");
        let wanted: Vec<Wanted> = desired.iter().flat_map(|a| a.wanted(owner)).collect();
        f(&wanted)
    }

    /// [`plan_from_tasks`] over records read or known.
    pub fn plan_from_tasks_stored(
        apps: &[(AppSpec, Vec<TaskInfo>)],
        actual: &[Stored<'_>],
        owner: &str,
        protect: &HashSet<String>,
    ) -> Plan {
        with_wanted(apps, owner, |wanted| {
            resync_plan_stored(wanted, actual, owner, protect)
        })
    }

    fn one_task_plan(stored: Instance) -> Plan {
        let apps = tasks_of(&[("t1", 1)]);
        let actual = [Existing {
            record: stored,
            revision: 7,
        }];
        let read = plan_from_tasks(&apps, &actual, "me", &HashSet::new());
        if actual[0].record.owner == "me" {
            // Known to the writer (its JSON, not read): the same plan.
            let json = actual[0].record.to_json();
            let known = [Stored::Known {
                service: &actual[0].record.service,
                group: &actual[0].record.group,
                container: &actual[0].record.container,
                json: &json,
                revision: 7,
            }];
            assert_eq!(
                plan_from_tasks_stored(&apps, &known, "me", &HashSet::new()),
                read
            );
        }
        read
    }

    /// A stored record that differs from the task's in any one field is
    /// rewritten at its revision; `started_at` only when one side is empty.
    #[test]
    fn one_field_off_is_rewritten() {
        let apps = tasks_of(&[("t1", 1)]);
        let (desired, _) = desired_apps(&apps, false, &|_| false);
        let good = desired[0].wanted("me").next().unwrap().record();
        let port = |external, exposed, protocol: &str| PortRecord {
            external,
            exposed,
            protocol: protocol.into(),
        };
        type Edit = Box<dyn Fn(&mut Instance)>;
        let rewritten: Vec<(&str, Edit)> = vec![
            ("schema", Box::new(|r| r.schema = 2)),
            ("labels", Box::new(|r| r.labels = vec!["x".into()])),
            ("app_id", Box::new(|r| r.app_id = "/dev/other".into())),
            ("app_version", Box::new(|r| r.app_version = "v2".into())),
            ("node", Box::new(|r| r.node = "node-2".into())),
            ("host", Box::new(|r| r.host = "10.0.0.6".into())),
            ("internal_address", Box::new(|r| r.internal_address = None)),
            (
                "internal_address value",
                Box::new(|r| r.internal_address = Some("172.17.0.4".into())),
            ),
            ("state", Box::new(|r| r.state = "TASK_STAGING".into())),
            ("healthy", Box::new(|r| r.healthy = Some(true))),
            ("owner", Box::new(|r| r.owner = "me2".into())),
            ("started_at empty", Box::new(|r| r.started_at.clear())),
            (
                "external port",
                Box::new(move |r| {
                    r.ports.insert("api".into(), port(2, 80, "tcp"));
                }),
            ),
            (
                "exposed port",
                Box::new(move |r| {
                    r.ports.insert("api".into(), port(1, 81, "tcp"));
                }),
            ),
            (
                "protocol",
                Box::new(move |r| {
                    r.ports.insert("api".into(), port(1, 80, "udp"));
                }),
            ),
            (
                "one port more",
                Box::new(move |r| {
                    r.ports.insert("admin".into(), port(1, 80, "tcp"));
                }),
            ),
            (
                "port renamed",
                Box::new(move |r| {
                    r.ports = BTreeMap::from([("web".into(), port(1, 80, "tcp"))]);
                }),
            ),
            ("no port", Box::new(|r| r.ports.clear())),
        ];
        for (what, edit) in rewritten {
            let mut stored = good.clone();
            edit(&mut stored);
            // Another owner's record is left alone, changed or not.
            let p = one_task_plan(stored.clone());
            if what == "owner" {
                assert_eq!((p.actions.len(), p.foreign), (0, 1), "{what}");
                continue;
            }
            assert_eq!(p.summary.updated, 1, "{what}");
            assert_eq!(
                p.actions,
                vec![crate::record_store::Action::Put {
                    record: good.clone(),
                    expect: crate::record_store::Expect::Revision(7),
                }],
                "{what}"
            );
        }
        let later = Instance {
            started_at: "2026-11-22T10:00:01.007Z".into(),
            ..good.clone()
        };
        assert_eq!(one_task_plan(later).summary.unchanged, 1);
        assert_eq!(one_task_plan(good).summary.unchanged, 1);
    }

    /// Comparing a task with a stored record says what building its record
    /// and comparing would, over apps and tasks of every shape the record
    /// rules distinguish, against the records of every other one.
    #[test]
    fn matching_agrees_with_building() {
        let spec = |name: Option<&str>, cp: Option<u32>, proto: Option<&str>| PortSpec {
            name: name.map(str::to_string),
            container_port: cp,
            protocol: proto.map(str::to_string),
        };
        let mut apps = Vec::new();
        for network in [
            NetworkMode::Host,
            NetworkMode::Bridge,
            NetworkMode::Container,
        ] {
            for ports in [
                vec![],
                vec![spec(Some("api"), Some(80), None)],
                vec![
                    spec(None, Some(80), Some("udp")),
                    spec(Some(""), Some(0), Some("")),
                ],
                // A named port colliding with an unnamed one's `port<i>`,
                // and a repeated name: the later one wins.
                vec![
                    spec(Some("port1"), Some(80), None),
                    spec(None, Some(81), None),
                ],
                vec![
                    spec(Some("a"), Some(80), None),
                    spec(Some("a"), Some(81), None),
                ],
                vec![spec(Some("big"), Some(70_000), None)],
            ] {
                for checks in [false, true] {
                    let mut a = app("/dev/web", network, &[]);
                    a.ports = ports.clone();
                    a.has_health_checks = checks;
                    apps.push(a);
                }
            }
        }
        let mut grouped = app("/dev/web", NetworkMode::Bridge, &[]);
        grouped.labels.insert("SERVICE_GROUP".into(), "b.a".into());
        grouped.labels.insert("SERVICE_NAME".into(), "web".into());
        apps.push(grouped);
        let mut tasks = Vec::new();
        for ports in [vec![], vec![31001], vec![31001, 31002], vec![70_000, 31002]] {
            for healthy in [None, Some(true), Some(false)] {
                for (node, version, ip, started) in [
                    (
                        Some("node-1"),
                        Some("v1"),
                        true,
                        Some("2026-11-22T10:00:01.000Z"),
                    ),
                    (None, None, false, None),
                ] {
                    let mut t = task("t1", "/dev/web", &ports);
                    t.healthy = healthy;
                    t.node = node.map(str::to_string);
                    t.app_version = version.map(str::to_string);
                    if !ip {
                        t.ip_addresses.clear();
                    }
                    t.started_at = started.map(str::to_string);
                    tasks.push(t);
                }
            }
        }
        let pairs: Vec<(AppSpec, Vec<TaskInfo>)> =
            apps.iter().map(|a| (a.clone(), tasks.clone())).collect();
        let (desired, errors) = desired_apps(&pairs, false, &|_| false);
        assert!(errors.is_empty());
        let wanted: Vec<Wanted> = desired.iter().flat_map(|a| a.wanted("me")).collect();
        let records: Vec<Instance> = wanted.iter().map(Desired::record).collect();
        let mut compared = 0;
        let jsons: Vec<Vec<u8>> = records.iter().map(Instance::to_json).collect();
        for w in &wanted {
            let built = w.record();
            // The borrowed record serialises as the built one, byte for byte.
            let borrowed = record_ref(
                w.app.app,
                &w.app.names,
                &w.app.labels,
                w.task,
                w.owner,
                w.node(),
            );
            assert_eq!(borrowed.to_instance(), built);
            assert!(record_json_is(&borrowed, &built.to_json()), "{built:?}");
            for (j, (stored, json)) in records.iter().zip(&jsons).enumerate() {
                assert_eq!(
                    w.held_by(stored),
                    same(stored, &built),
                    "task {:?} of {:?} against {stored:?}",
                    w.task,
                    w.app.app
                );
                // Through the JSON (parsed when the bytes differ: every
                // 16th record, and the task's own).
                if j % 16 == 0 || *stored == built {
                    assert_eq!(
                        w.held_by_json(json),
                        same(stored, &built),
                        "task {:?} of {:?} against the JSON of {stored:?}",
                        w.task,
                        w.app.app
                    );
                }
                assert_eq!(
                    record_json_is(&borrowed, json),
                    *stored == built,
                    "task {:?} of {:?} against the bytes of {stored:?}",
                    w.task,
                    w.app.app
                );
                compared += 1;
            }
        }
        assert!(compared > 100_000, "{compared}");
    }
}
