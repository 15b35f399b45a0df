//! The host pin of a fixed-host service: a `hostname LIKE` constraint the
//! deployer adds on an update so the tasks stay on the hosts they run on.

use serde_json::{json, Value};

/// Removes (and returns) the host pin constraint the deployer added on an
/// earlier update, so it does not count as a difference.
pub(super) fn take_pin(desired: &Value, current: &mut Value) -> Option<String> {
    let wanted = desired.get("constraints").cloned().unwrap_or(json!([]));
    let list = current.get_mut("constraints")?.as_array_mut()?;
    let mut pin = None;
    list.retain(|c| {
        let is_pin = c.get(0).and_then(Value::as_str) == Some("hostname")
            && c.get(1).and_then(Value::as_str) == Some("LIKE")
            && !wanted.as_array().is_some_and(|w| w.contains(c));
        if is_pin {
            pin = c.get(2).and_then(Value::as_str).map(str::to_string);
        }
        !is_pin
    });
    pin
}

/// Distinct hosts of the app's tasks.
pub(super) fn task_hosts(current: &Value) -> Vec<&Value> {
    let mut hosts: Vec<&Value> = Vec::new();
    for t in current
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(h) = t.get("host") {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// `host-a|host-b` (regex-escaped) for the hosts the app's tasks run on,
/// when every wanted instance fits on them. Each task contributes its `host`
/// and its `slaveId`: Marathon matches `hostname` against the agent's host
/// name (= the task's `host`), the built-in manager against its node name
/// (= the task's `slaveId`); an agent id never matches a host name.
pub(super) fn pin_for(current: &Value, instances: u64) -> Option<String> {
    let hosts = task_hosts(current).len();
    if hosts == 0 || instances as usize > hosts {
        return None;
    }
    let mut names: Vec<String> = current
        .get("tasks")?
        .as_array()?
        .iter()
        .flat_map(|t| [t.get("host"), t.get("slaveId")])
        .flatten()
        .filter_map(Value::as_str)
        .map(regex::escape)
        .collect();
    names.sort();
    names.dedup();
    Some(names.join("|"))
}
