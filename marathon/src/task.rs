//! Tasks (`/v2/tasks`, `/v2/apps/{id}/tasks`, embedded `tasks`) and task
//! failures. Arrays are always written (possibly empty); optional fields are
//! omitted when absent.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::checks::HealthCheckResult;
use crate::Timestamp;

/// A running (or recently ended) task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// e.g. `prod_web.instance-<uuid>._app.1`.
    pub id: String,
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_id: Option<String>,
    #[serde(default)]
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// The app version this task runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Timestamp>,
    /// Host ports, by port index.
    #[serde(default)]
    pub ports: Vec<u32>,
    /// The app's service ports. Marathon 1.4 fills them in `/v2/tasks` only
    /// (`[]` elsewhere); the mdo manager fills them wherever a task appears.
    #[serde(default)]
    pub service_ports: Vec<u32>,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub health_check_results: Vec<HealthCheckResult>,
    #[serde(default)]
    pub local_volumes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Anything else (`checkResult`, ...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Task {
    /// `Some(true)` if every health check result is alive, `Some(false)` if
    /// any is not, `None` without results.
    pub fn healthy(&self) -> Option<bool> {
        if self.health_check_results.is_empty() {
            None
        } else {
            Some(self.health_check_results.iter().all(|r| r.alive))
        }
    }
}

/// `ipAddresses[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    pub ip_address: String,
    /// `IPv4` or `IPv6`.
    #[serde(default = "ipv4")]
    pub protocol: String,
}

fn ipv4() -> String {
    "IPv4".to_owned()
}

impl IpAddress {
    /// An IPv4 entry.
    pub fn v4(ip: impl Into<String>) -> Self {
        Self {
            ip_address: ip.into(),
            protocol: ipv4(),
        }
    }
}

/// `lastTaskFailure`: the most recent failed task of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailure {
    pub app_id: String,
    pub host: String,
    pub message: String,
    pub state: TaskState,
    pub task_id: String,
    pub timestamp: Timestamp,
    pub version: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_id: Option<String>,
}

/// A Mesos task state (`TASK_RUNNING`, ...). Unknown states are kept as
/// [`TaskState::Other`] so a newer Marathon never breaks parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum TaskState {
    #[default]
    Staging,
    Starting,
    Running,
    Killing,
    Finished,
    Failed,
    Killed,
    Error,
    Lost,
    Unreachable,
    Gone,
    Dropped,
    Unknown,
    /// A state this crate does not know, as sent.
    Other(String),
}

impl TaskState {
    const NAMES: [(&'static str, TaskState); 13] = [
        ("TASK_STAGING", TaskState::Staging),
        ("TASK_STARTING", TaskState::Starting),
        ("TASK_RUNNING", TaskState::Running),
        ("TASK_KILLING", TaskState::Killing),
        ("TASK_FINISHED", TaskState::Finished),
        ("TASK_FAILED", TaskState::Failed),
        ("TASK_KILLED", TaskState::Killed),
        ("TASK_ERROR", TaskState::Error),
        ("TASK_LOST", TaskState::Lost),
        ("TASK_UNREACHABLE", TaskState::Unreachable),
        ("TASK_GONE", TaskState::Gone),
        ("TASK_DROPPED", TaskState::Dropped),
        ("TASK_UNKNOWN", TaskState::Unknown),
    ];

    /// The wire spelling (`TASK_RUNNING`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(s) => s,
            known => Self::NAMES
                .iter()
                .find(|(_, st)| st == known)
                .map(|(n, _)| *n)
                .unwrap_or("TASK_UNKNOWN"),
        }
    }

    /// Parses the wire spelling; never fails.
    pub fn parse(s: &str) -> Self {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, st)| st.clone())
            .unwrap_or_else(|| Self::Other(s.to_owned()))
    }

    /// The task is gone for good (finished, failed, killed, error, lost, gone, dropped).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Finished
                | Self::Failed
                | Self::Killed
                | Self::Error
                | Self::Lost
                | Self::Gone
                | Self::Dropped
        )
    }

    /// `TASK_RUNNING`.
    pub fn is_running(&self) -> bool {
        *self == Self::Running
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_state_round_trips_known_and_unknown() {
        for (name, st) in TaskState::NAMES.iter() {
            assert_eq!(TaskState::parse(name), *st);
            assert_eq!(st.as_str(), *name);
        }
        let odd: TaskState = serde_json::from_str("\"TASK_NEW_THING\"").unwrap();
        assert_eq!(odd, TaskState::Other("TASK_NEW_THING".into()));
        assert_eq!(serde_json::to_string(&odd).unwrap(), "\"TASK_NEW_THING\"");
        assert!(TaskState::Killed.is_terminal());
        assert!(!TaskState::Running.is_terminal());
    }

    #[test]
    fn minimal_task_writes_every_array() {
        let t = Task {
            id: "web.instance-1._app.1".into(),
            app_id: "/web".into(),
            host: "h".into(),
            state: TaskState::Running,
            ..Task::default()
        };
        let v = serde_json::to_value(&t).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "appId",
                "healthCheckResults",
                "host",
                "id",
                "ipAddresses",
                "localVolumes",
                "ports",
                "servicePorts",
                "state"
            ]
        );
    }
}
