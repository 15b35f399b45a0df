//! What the subscriber needs to know about Marathon apps, tasks and events,
//! independent of how they were fetched (SSE, callback, `/v2/apps`). Built
//! from the `marathon` crate's types in [`crate::convert`]; tests build them
//! directly.

use std::collections::BTreeMap;

/// How an app's tasks are networked; decides which address is internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Host,
    Bridge,
    Container,
}

/// One port of an app definition, in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `portMappings[].name` / `portDefinitions[].name`.
    pub name: Option<String>,
    /// `portMappings[].containerPort` (0 or absent means "same as the host port").
    pub container_port: Option<u32>,
    pub protocol: Option<String>,
}

/// The parts of an app definition that shape its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub id: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub network: NetworkMode,
    pub ports: Vec<PortSpec>,
    pub has_health_checks: bool,
}

/// A task as seen in `/v2/apps?embed=apps.tasks` or a status update event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub app_id: String,
    pub app_version: Option<String>,
    pub host: String,
    /// Agent / node id (`slaveId`), when known.
    pub node: Option<String>,
    pub state: String,
    pub ports: Vec<u32>,
    pub ip_addresses: Vec<String>,
    pub started_at: Option<String>,
    /// `None` when no health check result is known.
    pub healthy: Option<bool>,
}

/// What a task status update means for the task's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEffect {
    /// `TASK_RUNNING`: the record is written (when wanted).
    Running,
    /// The task never runs again: the record goes and the task id is
    /// remembered (tombstoned), so neither a late `TASK_RUNNING` nor a stale
    /// resync brings it back.
    Final,
    /// The task is out of reach but may still run and come back (agent
    /// partition): the record goes, nothing is remembered, and the next
    /// `TASK_RUNNING` (event or resync) writes it again at once.
    Away,
    /// Staging, starting, anything unknown: no change.
    Ignore,
}

/// The effect of a task state on its record. Pure; table-tested below.
///
/// Final: FINISHED, FAILED, KILLED, ERROR, GONE, GONE_BY_OPERATOR, DROPPED
/// (terminal in Mesos: the agent and the task are gone for good), and
/// KILLING (a kill is never undone; the record goes as soon as it starts,
/// before the drain delay).
///
/// Away: UNREACHABLE and UNKNOWN (the task "may or may not still be
/// running": a healed partition reports it RUNNING again), and LOST. The
/// reference (marathon-api.md, task `state`) lists the states Marathon 1.4+
/// derives from an instance's condition, and TASK_LOST is not one of them:
/// a partitioned task is TASK_UNREACHABLE there. TASK_LOST still arrives
/// from Marathon <= 1.3 and from versions that report unreachable/unknown
/// conditions under Mesos's old name, and Mesos itself says TASK_LOST is not
/// always terminal (the agent of a lost task may re-register, and its task
/// then reports RUNNING again). So it is treated like UNREACHABLE.
/// Nothing is lost by not tombstoning it: a resync whose fetch predates the
/// event is already kept off the task (the writer's `protect`), and a later
/// resync that lists the task as running sees a task that runs again.
pub fn status_effect(state: &str) -> StatusEffect {
    match state {
        "TASK_RUNNING" => StatusEffect::Running,
        "TASK_KILLING"
        | "TASK_FINISHED"
        | "TASK_FAILED"
        | "TASK_KILLED"
        | "TASK_ERROR"
        | "TASK_GONE"
        | "TASK_GONE_BY_OPERATOR"
        | "TASK_DROPPED" => StatusEffect::Final,
        "TASK_UNREACHABLE" | "TASK_UNKNOWN" | "TASK_LOST" => StatusEffect::Away,
        _ => StatusEffect::Ignore,
    }
}

/// The events the subscriber acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// `status_update_event`.
    Status(TaskInfo),
    /// `health_status_changed_event` / `instance_health_changed_event`: `id`
    /// is an instance id or a task id.
    Health {
        app_id: Option<String>,
        id: String,
        healthy: Option<bool>,
    },
    /// Anything else (counted, otherwise ignored).
    Other,
}

/// True when `task_id` belongs to the instance (or task) `id`: task ids are
/// `<instance id>._app.<n>` (or `<instance id>._app` in older versions).
pub fn task_matches(task_id: &str, id: &str) -> bool {
    task_id == id
        || (task_id.len() > id.len()
            && task_id.starts_with(id)
            && task_id.as_bytes()[id.len()] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_matches_instance_ids() {
        let t = "dev_web.instance-1234._app.1";
        assert!(task_matches(t, "dev_web.instance-1234"));
        assert!(task_matches(t, t));
        assert!(!task_matches(t, "dev_web.instance-12"));
        assert!(!task_matches("dev_web.instance-12", t));
    }

    #[test]
    fn status_effects() {
        use StatusEffect::*;
        let cases = [
            ("TASK_RUNNING", Running),
            ("TASK_KILLING", Final),
            ("TASK_FINISHED", Final),
            ("TASK_FAILED", Final),
            ("TASK_KILLED", Final),
            ("TASK_ERROR", Final),
            ("TASK_GONE", Final),
            ("TASK_GONE_BY_OPERATOR", Final),
            ("TASK_DROPPED", Final),
            ("TASK_UNREACHABLE", Away),
            ("TASK_UNKNOWN", Away),
            ("TASK_LOST", Away),
            ("TASK_STAGING", Ignore),
            ("TASK_STARTING", Ignore),
            ("TASK_WHATEVER", Ignore),
            ("", Ignore),
        ];
        for (state, want) in cases {
            assert_eq!(status_effect(state), want, "{state}");
        }
    }
}
