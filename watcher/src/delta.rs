//! The pure decision: given the instance set last reported and the current
//! one, is there a change worth a callback, and what is it?
//!
//! Identity is the container name. A record rewritten with the same
//! user-visible content is not a change; a record whose address changed
//! (host, internal address, ports or labels) is reported as removed (old
//! record) and added (new record), so that applying `removed` then `added`
//! to a set of addresses always yields the current set.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

/// Record fields whose change users see (what lookups return). Anything
/// else (health, state, app version, timestamps) changing alone is not a
/// change of the instance set.
pub const VISIBLE_FIELDS: [&str; 4] = ["host", "internal_address", "ports", "labels"];

/// One instance as reported to callbacks: the registry record as JSON
/// (shared: the sets of a watch and every change reported hold the same
/// record, so copying a set of hundreds of instances is cheap).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub container: String,
    pub record: Arc<Value>,
}

/// A node serialises as its record.
impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.record.serialize(s)
    }
}

impl Node {
    pub fn new(container: impl Into<String>, record: Value) -> Node {
        Node {
            container: container.into(),
            record: Arc::new(record),
        }
    }

    /// Same container, same visible fields.
    fn same_as(&self, other: &Node) -> bool {
        self.container == other.container
            && VISIBLE_FIELDS
                .iter()
                .all(|f| self.record.get(f) == other.record.get(f))
    }
}

/// The instance set of one watch, by container name.
pub type InstanceSet = BTreeMap<String, Node>;

/// A net change of the instance set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// New instances (or new versions of instances whose address changed).
    pub added: Vec<Node>,
    /// Gone instances (or the old versions of changed ones).
    pub removed: Vec<Node>,
    /// Every current instance, sorted by container name.
    pub nodes: Vec<Node>,
    /// Change in the number of instances (`nodes` now minus before).
    pub delta: i64,
}

/// The net change from `previous` to `current`, or `None` when users could
/// not tell them apart. Lists are sorted by container name.
pub fn delta(previous: &InstanceSet, current: &InstanceSet) -> Option<Change> {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (name, node) in current {
        match previous.get(name) {
            None => added.push(node.clone()),
            Some(old) if !old.same_as(node) => {
                removed.push(old.clone());
                added.push(node.clone());
            }
            Some(_) => {}
        }
    }
    for (name, old) in previous {
        if !current.contains_key(name) {
            removed.push(old.clone());
        }
    }
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    removed.sort_by(|a, b| a.container.cmp(&b.container));
    Some(Change {
        added,
        removed,
        nodes: current.values().cloned().collect(),
        delta: current.len() as i64 - previous.len() as i64,
    })
}

/// Two successive changes as one: from the set before `first` to the set
/// after `then` (`None` when they cancel out).
pub fn merge(first: &Change, then: &Change) -> Option<Change> {
    let mut before: InstanceSet = first
        .nodes
        .iter()
        .map(|n| (n.container.clone(), n.clone()))
        .collect();
    for n in &first.added {
        before.remove(&n.container);
    }
    for n in &first.removed {
        before.insert(n.container.clone(), n.clone());
    }
    let after: InstanceSet = then
        .nodes
        .iter()
        .map(|n| (n.container.clone(), n.clone()))
        .collect();
    delta(&before, &after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(container: &str, host: &str, port: u16) -> Node {
        Node::new(
            container,
            json!({
                "container": container, "host": host, "labels": ["dev"],
                "ports": {"api": {"external": port, "exposed": 5000, "protocol": "tcp"}},
                "healthy": true, "state": "TASK_RUNNING",
            }),
        )
    }

    fn set(nodes: Vec<Node>) -> InstanceSet {
        nodes
            .iter()
            .map(|n| (n.container.clone(), n.clone()))
            .collect()
    }

    fn names(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(|n| n.container.as_str()).collect()
    }

    #[test]
    fn merged_changes_are_the_net_change() {
        let a = node("a", "10.0.0.1", 31001);
        let b = node("b", "10.0.0.1", 31002);
        let c = node("c", "10.0.0.2", 31003);
        let a_moved = node("a", "10.0.0.9", 31001);
        let s0 = set(vec![a.clone(), b.clone()]);
        let s1 = set(vec![a.clone(), b.clone(), c.clone()]);
        let s2 = set(vec![a_moved.clone(), c.clone()]);
        let first = delta(&s0, &s1).unwrap();
        let then = delta(&s1, &s2).unwrap();
        let merged = merge(&first, &then).unwrap();
        assert_eq!(Some(merged.clone()), delta(&s0, &s2));
        assert_eq!(names(&merged.added), vec!["a", "c"]);
        assert_eq!(names(&merged.removed), vec!["a", "b"]);
        assert_eq!(merged.delta, 0);
        // There and back again: nothing to report.
        let back = delta(&s1, &s0).unwrap();
        assert_eq!(merge(&first, &back), None);
    }

    /// (previous, current) -> None or (added, removed, delta)
    #[test]
    fn delta_table() {
        let a = node("a", "10.0.0.1", 31001);
        let b = node("b", "10.0.0.1", 31002);
        let c = node("c", "10.0.0.2", 31003);
        let a_moved = node("a", "10.0.0.9", 31001);
        let a_new_port = node("a", "10.0.0.1", 31999);
        let mut a_unhealthy = a.clone();
        Arc::make_mut(&mut a_unhealthy.record)["healthy"] = json!(false);
        Arc::make_mut(&mut a_unhealthy.record)["app_version"] = json!("v2");
        let mut a_relabelled = a.clone();
        Arc::make_mut(&mut a_relabelled.record)["labels"] = json!(["prod"]);

        type Expected<'a> = Option<(Vec<&'a str>, Vec<&'a str>, i64)>;
        let cases: Vec<(&str, InstanceSet, InstanceSet, Expected)> = vec![
            ("empty to empty", set(vec![]), set(vec![]), None),
            (
                "unchanged",
                set(vec![a.clone(), b.clone()]),
                set(vec![a.clone(), b.clone()]),
                None,
            ),
            (
                "rewrite, only health/version differ",
                set(vec![a.clone()]),
                set(vec![a_unhealthy]),
                None,
            ),
            (
                "first instance",
                set(vec![]),
                set(vec![a.clone()]),
                Some((vec!["a"], vec![], 1)),
            ),
            (
                "two more",
                set(vec![a.clone()]),
                set(vec![a.clone(), b.clone(), c.clone()]),
                Some((vec!["b", "c"], vec![], 2)),
            ),
            (
                "one gone",
                set(vec![a.clone(), b.clone()]),
                set(vec![b.clone()]),
                Some((vec![], vec!["a"], -1)),
            ),
            (
                "replaced: same count, different members",
                set(vec![a.clone(), b.clone()]),
                set(vec![b.clone(), c.clone()]),
                Some((vec!["c"], vec!["a"], 0)),
            ),
            (
                "moved host",
                set(vec![a.clone()]),
                set(vec![a_moved]),
                Some((vec!["a"], vec!["a"], 0)),
            ),
            (
                "new port",
                set(vec![a.clone()]),
                set(vec![a_new_port]),
                Some((vec!["a"], vec!["a"], 0)),
            ),
            (
                "labels changed",
                set(vec![a.clone()]),
                set(vec![a_relabelled]),
                Some((vec!["a"], vec!["a"], 0)),
            ),
            (
                "all gone",
                set(vec![a.clone(), c.clone()]),
                set(vec![]),
                Some((vec![], vec!["a", "c"], -2)),
            ),
        ];
        for (what, previous, current, expected) in cases {
            let got = delta(&previous, &current);
            match (got, expected) {
                (None, None) => {}
                (Some(change), Some((added, removed, d))) => {
                    assert_eq!(names(&change.added), added, "{what}: added");
                    assert_eq!(names(&change.removed), removed, "{what}: removed");
                    assert_eq!(change.delta, d, "{what}: delta");
                    assert_eq!(
                        names(&change.nodes),
                        current.keys().map(String::as_str).collect::<Vec<_>>(),
                        "{what}: nodes"
                    );
                }
                (got, expected) => panic!("{what}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn moved_instance_reports_old_and_new_records() {
        let a = node("a", "10.0.0.1", 31001);
        let moved = node("a", "10.0.0.9", 31001);
        let change = delta(&set(vec![a.clone()]), &set(vec![moved.clone()])).unwrap();
        assert_eq!(change.removed, vec![a]);
        assert_eq!(change.added, vec![moved]);
    }

    #[test]
    fn nodes_serialise_as_the_record() {
        let a = node("a", "10.0.0.1", 31001);
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v, *a.record);
    }
}
