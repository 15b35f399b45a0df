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

/// Task states after which a task never runs again (plus TASK_KILLING: the
/// record goes as soon as the kill starts, before the drain delay).
pub fn is_gone(state: &str) -> bool {
    matches!(
        state,
        "TASK_KILLING"
            | "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_LOST"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
            | "TASK_DROPPED"
            | "TASK_UNREACHABLE"
            | "TASK_UNKNOWN"
    )
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
    fn gone_states() {
        assert!(is_gone("TASK_KILLING"));
        assert!(is_gone("TASK_KILLED"));
        assert!(is_gone("TASK_FAILED"));
        assert!(!is_gone("TASK_RUNNING"));
        assert!(!is_gone("TASK_STAGING"));
    }
}
