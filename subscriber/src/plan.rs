//! The pure decisions of the writer, table-tested; the writer applies them:
//! - the resync diff: what Marathon says is running (desired) against what
//!   the registry holds (actual);
//! - event changes made safe: where a dead task's record may be
//!   ([`record_keys`]) and which deletes may go ahead, against what the
//!   registry holds at those keys now ([`event_actions`]).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::model::AppSpec;
use crate::record::{app_names, started_at_same};
use crate::record_store::{Action, Existing, Expect, IdOf, Instance, RecordId, StoredKey};
use registry::naming::names_from_app;

mod wanted;

pub use wanted::{desired_apps, DesiredApp, Wanted};

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

/// One desired record of the resync diff: its key, whether a stored record
/// already says the same, and the record itself (built only when it must
/// be written). [`Wanted`] is what a resync diffs; an [`Instance`] is its
/// own desired record (tests).
pub trait Desired {
    /// (service, group, container): the record's key.
    fn key(&self) -> (&str, &str, &str);
    /// Whether `actual` (at this key) needs no rewrite.
    fn held_by(&self, actual: &Instance) -> bool;
    /// Whether the record whose JSON is `json` (as this process wrote or
    /// read it) needs no rewrite: as [`Desired::held_by`] says of it.
    fn held_by_json(&self, json: &[u8]) -> bool {
        serde_json::from_slice::<Instance>(json).is_ok_and(|r| self.held_by(&r))
    }
    fn record(&self) -> Instance;
}

/// A stored record as the resync diff sees it: read from the registry, or
/// one of `owner`'s that the writer knows at its mod revision (it wrote or
/// read it there, and the key is still at that revision: its value was
/// not read again).
#[derive(Debug, Clone, Copy)]
pub enum Stored<'a> {
    Read(&'a Existing),
    Known {
        service: &'a str,
        group: &'a str,
        container: &'a str,
        /// The record's JSON as written or read at `revision`.
        json: &'a [u8],
        revision: i64,
    },
}

impl Stored<'_> {
    fn key(&self) -> (&str, &str, &str) {
        match self {
            Stored::Read(e) => (&e.record.service, &e.record.group, &e.record.container),
            Stored::Known {
                service,
                group,
                container,
                ..
            } => (service, group, container),
        }
    }

    /// `None` for a known record: it is `owner`'s.
    fn owner(&self) -> Option<&str> {
        match self {
            Stored::Read(e) => Some(&e.record.owner),
            Stored::Known { .. } => None,
        }
    }

    fn revision(&self) -> i64 {
        match self {
            Stored::Read(e) => e.revision,
            Stored::Known { revision, .. } => *revision,
        }
    }

    fn held_by<D: Desired>(&self, d: &D) -> bool {
        match self {
            Stored::Read(e) => d.held_by(&e.record),
            Stored::Known { json, .. } => d.held_by_json(json),
        }
    }
}

impl Desired for Instance {
    fn key(&self) -> (&str, &str, &str) {
        (&self.service, &self.group, &self.container)
    }

    fn held_by(&self, actual: &Instance) -> bool {
        same(actual, self)
    }

    fn record(&self) -> Instance {
        self.clone()
    }
}

/// Diffs desired against actual. Only records of `owner` are ever changed;
/// containers in `protect` (touched by an event since the desired state was
/// fetched) are left exactly as they are. A desired record is built only
/// when it is added or updated.
pub fn resync_plan<D: Desired>(
    desired: &[D],
    actual: &[Existing],
    owner: &str,
    protect: &HashSet<String>,
) -> Plan {
    let stored: Vec<Stored<'_>> = actual.iter().map(Stored::Read).collect();
    resync_plan_stored(desired, &stored, owner, protect)
}

/// [`resync_plan`] over records read or known ([`Stored`]): a known record
/// is compared through its JSON ([`Desired::held_by_json`]).
pub fn resync_plan_stored<D: Desired>(
    desired: &[D],
    actual: &[Stored<'_>],
    owner: &str,
    protect: &HashSet<String>,
) -> Plan {
    // Borrowed keys: no per-record allocation (this runs over every record).
    type Key<'a> = (&'a str, &'a str, &'a str);
    let ours = |a: &Stored<'_>| a.owner().is_none_or(|o| o == owner);
    let mut actual_by_id: HashMap<Key<'_>, &Stored<'_>> = HashMap::with_capacity(actual.len());
    for a in actual {
        actual_by_id.insert(a.key(), a);
    }
    let mut desired_ids: HashSet<Key<'_>> = HashSet::with_capacity(desired.len());
    let mut plan = Plan::default();
    for d in desired {
        let id = d.key();
        if !desired_ids.insert(id) || protect.contains(id.2) {
            continue;
        }
        match actual_by_id.get(&id) {
            Some(a) if !ours(a) => plan.foreign += 1,
            Some(a) if a.held_by(d) => plan.summary.unchanged += 1,
            Some(a) => {
                plan.summary.updated += 1;
                plan.actions.push(Action::Put {
                    record: d.record(),
                    expect: Expect::Revision(a.revision()),
                });
            }
            None => {
                plan.summary.added += 1;
                plan.actions.push(Action::Put {
                    record: d.record(),
                    expect: Expect::Absent,
                });
            }
        }
    }
    // Stale records, in a stable (key) order.
    let mut stale: Vec<&Stored<'_>> = actual
        .iter()
        .filter(|a| ours(a) && !desired_ids.contains(&a.key()) && !protect.contains(a.key().2))
        .collect();
    stale.sort_by(|a, b| a.key().cmp(&b.key()));
    stale.dedup_by(|a, b| a.key() == b.key());
    for a in stale {
        let (service, group, container) = a.key();
        plan.summary.removed += 1;
        plan.actions.push(Action::Delete {
            id: RecordId {
                service: service.to_string(),
                group: group.to_string(),
                container: container.to_string(),
            },
            expect: Expect::Revision(a.revision()),
        });
    }
    plan
}

/// Which listed keys a resync reads the values of ([`split_known`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownSplit {
    /// Indices of keys whose value the writer holds: the key is at the mod
    /// revision the writer wrote or read it at, under the same names.
    pub known: Vec<usize>,
    /// Indices of keys whose value must be read: unknown to the writer,
    /// or changed since (another writer, another owner, a rewrite).
    pub read: Vec<usize>,
}

/// Splits a keys-only listing into the keys whose values the writer knows
/// (`known_at`: the names and mod revision it last wrote or read a
/// container's record at) and those to read. A key of a `protect`ed
/// container is in neither: the plan leaves it alone.
pub fn split_known<'a>(
    keys: &[StoredKey],
    known_at: impl Fn(&str) -> Option<(&'a str, &'a str, i64)>,
    protect: &HashSet<String>,
) -> KnownSplit {
    let mut split = KnownSplit::default();
    for (i, k) in keys.iter().enumerate() {
        if protect.contains(&k.id.container) {
            continue;
        }
        match known_at(&k.id.container) {
            Some((service, group, revision))
                if revision == k.revision && service == k.id.service && group == k.id.group =>
            {
                split.known.push(i)
            }
            _ => split.read.push(i),
        }
    }
    split
}

/// A change asked for by task events, before it is checked against the
/// registry ([`event_actions`]).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built and consumed at once, never stored in bulk
pub enum Change {
    /// Write this record (the event writer is the only writer of its
    /// records: unconditional).
    Put(Instance),
    /// Remove the record at this key, if it is one of ours.
    Delete(RecordId),
    /// Remove our record at this key if it is still at this mod revision
    /// (this process wrote or read it there): no read first. When the
    /// compare fails the writer deletes as for [`Change::Delete`].
    DeleteAt(RecordId, i64),
}

impl Change {
    pub fn id(&self) -> RecordId {
        match self {
            Change::Put(r) => RecordId::of(r),
            Change::Delete(id) | Change::DeleteAt(id, _) => id.clone(),
        }
    }
}

/// Every key under which the record of the task `container` of app
/// `app_id` may be, in this order, without duplicates:
/// - `known`: where this process last wrote or read it, if it did;
/// - where the app definition's names put it (`SERVICE_NAME` /
///   `SERVICE_GROUP` labels, else the app id), when the definition is known;
/// - where the app id alone puts it (the app may be deleted already; apps
///   made by the deployer are named the same either way).
///
/// So a record written by an earlier process (or before the first resync)
/// is found by its key. Names that are not valid give no key.
pub fn record_keys(
    container: &str,
    known: Option<RecordId>,
    app: Option<&AppSpec>,
    app_id: &str,
) -> Vec<RecordId> {
    let mut out: Vec<RecordId> = known.into_iter().collect();
    let from_app = app.and_then(|a| app_names(a).ok());
    let from_id = names_from_app(app_id, &Default::default()).ok();
    for names in [from_app, from_id].into_iter().flatten() {
        if let Ok(id) = RecordId::new(names.service, names.group, container) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// Event changes as store actions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPlan {
    pub actions: Vec<Action>,
    /// Deletes skipped: the key holds another owner's record.
    pub foreign: usize,
    /// Deletes skipped: nothing at the key.
    pub absent: usize,
}

/// Turns event changes (one per key: coalesced) into actions. Puts go as
/// they are. A delete goes only when the key holds a record of `owner`
/// (`stored`: what the registry holds now at the deleted keys), and only
/// at that record's mod revision: whatever is written there after the
/// read (a newer record of a restarted subscriber, another owner's) wins
/// over the delete, which then fails its compare and changes nothing. A
/// [`Change::DeleteAt`] needs no read: it deletes at the revision it
/// carries, under the same rule.
pub fn event_actions(
    changes: Vec<Change>,
    stored: &HashMap<RecordId, Existing>,
    owner: &str,
) -> EventPlan {
    let mut plan = EventPlan::default();
    for c in changes {
        match c {
            Change::Put(record) => plan.actions.push(Action::Put {
                record,
                expect: Expect::Any,
            }),
            Change::Delete(id) => match stored.get(&id) {
                None => plan.absent += 1,
                Some(e) if e.record.owner != owner => plan.foreign += 1,
                Some(e) => plan.actions.push(Action::Delete {
                    id,
                    expect: Expect::Revision(e.revision),
                }),
            },
            Change::DeleteAt(id, revision) => plan.actions.push(Action::Delete {
                id,
                expect: Expect::Revision(revision),
            }),
        }
    }
    plan
}

/// Records are the same when equal, except for `started_at`
/// ([`started_at_same`]: not worth a rewrite for milliseconds).
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
    started_at_same(started_at, &desired.started_at)
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
        #[derive(Default)]
        struct Case {
            what: &'static str,
            /// (container, port) of tasks of the app of `rec`, owner "me".
            desired: Vec<(&'static str, u32)>,
            actual: Vec<Existing>,
            protect: Vec<&'static str>,
            want: Vec<&'static str>,
            summary: (usize, usize, usize, usize),
            foreign: usize,
        }
        let cases = vec![
            Case {
                what: "empty",
                ..Case::default()
            },
            Case {
                what: "missing record is added with an absent compare",
                desired: vec![("t1", 1)],
                want: vec!["put t1 Absent"],
                summary: (1, 0, 0, 0),
                ..Case::default()
            },
            Case {
                what: "same record unchanged",
                desired: vec![("t1", 1)],
                actual: vec![ex(rec("t1", "me", 1), 7)],
                summary: (0, 0, 0, 1),
                ..Case::default()
            },
            Case {
                what: "different record updated at its revision",
                desired: vec![("t1", 2)],
                actual: vec![ex(rec("t1", "me", 1), 7)],
                want: vec!["put t1 Revision(7)"],
                summary: (0, 1, 0, 0),
                ..Case::default()
            },
            Case {
                what: "started_at from the event vs Marathon's startedAt: unchanged",
                desired: vec![("t1", 1)],
                actual: vec![ex(
                    Instance {
                        started_at: "2026-11-22T10:00:01.007Z".into(),
                        ..rec("t1", "me", 1)
                    },
                    7,
                )],
                summary: (0, 0, 0, 1),
                ..Case::default()
            },
            Case {
                what: "stale own record removed at its revision",
                actual: vec![ex(rec("t1", "me", 1), 9)],
                want: vec!["del t1 Revision(9)"],
                summary: (0, 0, 1, 0),
                ..Case::default()
            },
            Case {
                what: "another owner's records are never touched",
                desired: vec![("t1", 2)],
                actual: vec![ex(rec("t1", "other", 1), 3), ex(rec("t2", "other", 1), 4)],
                foreign: 1,
                ..Case::default()
            },
            Case {
                what: "protected containers are neither added nor removed",
                desired: vec![("t1", 1)],
                actual: vec![ex(rec("t2", "me", 1), 5)],
                protect: vec!["t1", "t2"],
                ..Case::default()
            },
            Case {
                what: "duplicates in desired count once",
                desired: vec![("t1", 1), ("t1", 1)],
                want: vec!["put t1 Absent"],
                summary: (1, 0, 0, 0),
                ..Case::default()
            },
            Case {
                what: "mixed",
                desired: vec![("a", 1), ("b", 2), ("c", 3)],
                actual: vec![
                    ex(rec("a", "me", 1), 1),
                    ex(rec("b", "me", 1), 2),
                    ex(rec("d", "me", 1), 3),
                    ex(rec("e", "you", 1), 4),
                ],
                want: vec!["put b Revision(2)", "put c Absent", "del d Revision(3)"],
                summary: (1, 1, 1, 1),
                ..Case::default()
            },
        ];
        for c in cases {
            let protect: HashSet<String> = c.protect.iter().map(|s| s.to_string()).collect();
            let protect = if c.protect.is_empty() {
                &none
            } else {
                &protect
            };
            let records: Vec<Instance> = c.desired.iter().map(|(t, p)| rec(t, "me", *p)).collect();
            let p = resync_plan(&records, &c.actual, "me", protect);
            // The same diff from the tasks, comparing without building.
            let tasks = wanted::tests::tasks_of(&c.desired);
            assert_eq!(
                wanted::tests::plan_from_tasks(&tasks, &c.actual, "me", protect),
                p,
                "{}: from the tasks",
                c.what
            );
            // The same with our records known to the writer: compared
            // through their JSON as written, not read.
            let jsons: Vec<Vec<u8>> = c.actual.iter().map(|e| e.record.to_json()).collect();
            let stored: Vec<Stored> = c
                .actual
                .iter()
                .zip(&jsons)
                .map(|(e, json)| match e.record.owner.as_str() {
                    "me" => Stored::Known {
                        service: &e.record.service,
                        group: &e.record.group,
                        container: &e.record.container,
                        json,
                        revision: e.revision,
                    },
                    _ => Stored::Read(e),
                })
                .collect();
            assert_eq!(
                resync_plan_stored(&records, &stored, "me", protect),
                p,
                "{}: known records",
                c.what
            );
            assert_eq!(
                wanted::tests::plan_from_tasks_stored(&tasks, &stored, "me", protect),
                p,
                "{}: known records, from the tasks",
                c.what
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
    fn split_known_table() {
        let key = |container: &str, service: &str, revision| StoredKey {
            id: id(service, "dev", container),
            revision,
        };
        let keys = vec![
            key("same", "web", 5),
            key("rewritten", "web", 9),
            key("unknown", "web", 3),
            key("renamed", "api", 4),
            key("protected", "web", 6),
            key("not-at-a-known-revision", "web", 7),
        ];
        // The writer's view: (service, group, revision) by container.
        let view: HashMap<&str, (&str, &str, Option<i64>)> = HashMap::from([
            ("same", ("web", "dev", Some(5))),
            ("rewritten", ("web", "dev", Some(8))),
            ("renamed", ("web", "dev", Some(4))),
            ("protected", ("web", "dev", Some(6))),
            ("not-at-a-known-revision", ("web", "dev", None)),
        ]);
        let protect: HashSet<String> = HashSet::from(["protected".to_string()]);
        let split = split_known(
            &keys,
            |c| {
                let (s, g, r) = view.get(c)?;
                Some((*s, *g, (*r)?))
            },
            &protect,
        );
        let names = |ix: &[usize]| {
            ix.iter()
                .map(|i| keys[*i].id.container.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&split.known), ["same"]);
        assert_eq!(
            names(&split.read),
            ["rewritten", "unknown", "renamed", "not-at-a-known-revision"]
        );
        // Nothing known: every key but the protected one is read.
        let split = split_known(&keys, |_| None, &protect);
        assert!(split.known.is_empty());
        assert_eq!(split.read, [0, 1, 2, 3, 5]);
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
                    task("bad/id", "/dev/web", &[4]),
                ],
            ),
            (
                app("/dev/Bad", NetworkMode::Host, &[]),
                vec![task("t-bad", "/dev/Bad", &[3])],
            ),
        ];
        let (desired, errs) = desired_apps(&apps, false, &|id| id == "t-killed");
        assert_eq!(
            desired
                .iter()
                .flat_map(|a| a.wanted("me"))
                .map(|w| w.record().container)
                .collect::<Vec<_>>(),
            vec!["t-run"]
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    fn id(service: &str, group: &str, container: &str) -> RecordId {
        RecordId::new(service, group, container).unwrap()
    }

    #[test]
    fn record_keys_table() {
        let plain = app("/dev/web", NetworkMode::Bridge, &[]);
        let mut labelled = plain.clone();
        labelled
            .labels
            .insert("SERVICE_NAME".into(), "front".into());
        labelled
            .labels
            .insert("SERVICE_GROUP".into(), "prod.eu".into());
        let mut bad_labels = plain.clone();
        bad_labels
            .labels
            .insert("SERVICE_NAME".into(), "Bad_Name".into());
        #[derive(Default)]
        struct Case {
            what: &'static str,
            container: &'static str,
            known: Option<RecordId>,
            app: Option<AppSpec>,
            app_id: &'static str,
            want: Vec<RecordId>,
        }
        let cases = vec![
            Case {
                what: "nothing known, app deleted: from the app id",
                container: "t1",
                app_id: "/dev/web",
                want: vec![id("web", "dev", "t1")],
                ..Case::default()
            },
            Case {
                what: "app known with the id's names: one key",
                container: "t1",
                app: Some(plain.clone()),
                app_id: "/dev/web",
                want: vec![id("web", "dev", "t1")],
                ..Case::default()
            },
            Case {
                what: "labels name it otherwise: labels first, then the id",
                container: "t1",
                app: Some(labelled.clone()),
                app_id: "/dev/web",
                want: vec![id("front", "eu.prod", "t1"), id("web", "dev", "t1")],
                ..Case::default()
            },
            Case {
                what: "the key this process knows comes first, not repeated",
                container: "t1",
                known: Some(id("web", "dev", "t1")),
                app: Some(labelled.clone()),
                app_id: "/dev/web",
                want: vec![id("web", "dev", "t1"), id("front", "eu.prod", "t1")],
            },
            Case {
                what: "a known key under old names is kept beside the current ones",
                container: "t1",
                known: Some(id("old", "default", "t1")),
                app_id: "/web",
                want: vec![id("old", "default", "t1"), id("web", "default", "t1")],
                ..Case::default()
            },
            Case {
                what: "invalid label names give no key; the id still does",
                container: "t1",
                app: Some(bad_labels),
                app_id: "/dev/web",
                want: vec![id("web", "dev", "t1")],
                ..Case::default()
            },
            Case {
                what: "an app id with an invalid service gives no key",
                container: "t1",
                app_id: "/dev/Web_1",
                want: vec![],
                ..Case::default()
            },
            Case {
                what: "an invalid container gives no key",
                container: "../x",
                app: Some(plain.clone()),
                app_id: "/dev/web",
                want: vec![],
                ..Case::default()
            },
        ];
        for c in cases {
            assert_eq!(
                record_keys(c.container, c.known, c.app.as_ref(), c.app_id),
                c.want,
                "{}",
                c.what
            );
        }
    }

    #[test]
    fn event_actions_table() {
        let mine = rec("t1", "me", 1);
        let theirs = rec("t2", "other", 1);
        let put = |r: &Instance| Change::Put(r.clone());
        let del = |r: &Instance| Change::Delete(RecordId::of(r));
        #[derive(Default)]
        struct Case {
            what: &'static str,
            changes: Vec<Change>,
            stored: Vec<Existing>,
            want: Vec<&'static str>,
            foreign: usize,
            absent: usize,
        }
        let cases = vec![
            Case {
                what: "nothing",
                ..Case::default()
            },
            Case {
                what: "puts are unconditional",
                changes: vec![put(&mine)],
                want: vec!["put t1 Any"],
                ..Case::default()
            },
            Case {
                what: "our record is deleted at the revision read, never unconditionally",
                changes: vec![del(&mine)],
                stored: vec![ex(mine.clone(), 42)],
                want: vec!["del t1 Revision(42)"],
                ..Case::default()
            },
            Case {
                what: "another owner's record at the key is left alone",
                changes: vec![del(&theirs)],
                stored: vec![ex(theirs.clone(), 7)],
                foreign: 1,
                ..Case::default()
            },
            Case {
                what: "nothing at the key: no delete",
                changes: vec![del(&mine)],
                absent: 1,
                ..Case::default()
            },
            Case {
                what: "mixed, in order",
                changes: vec![put(&rec("t3", "me", 3)), del(&theirs), del(&mine)],
                stored: vec![ex(theirs.clone(), 7), ex(mine.clone(), 9)],
                want: vec!["put t3 Any", "del t1 Revision(9)"],
                foreign: 1,
                ..Case::default()
            },
            Case {
                what: "a delete at a known revision needs nothing read",
                changes: vec![Change::DeleteAt(RecordId::of(&mine), 5)],
                want: vec!["del t1 Revision(5)"],
                ..Case::default()
            },
        ];
        for c in cases {
            let stored: HashMap<RecordId, Existing> = c
                .stored
                .into_iter()
                .map(|e| (RecordId::of(&e.record), e))
                .collect();
            let p = event_actions(c.changes, &stored, "me");
            let got = kinds(&Plan {
                actions: p.actions,
                ..Plan::default()
            });
            assert_eq!(got, c.want, "{}", c.what);
            assert_eq!((p.foreign, p.absent), (c.foreign, c.absent), "{}", c.what);
        }
    }
}
