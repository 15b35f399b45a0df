//! Marathon events (`/v2/events` SSE `data`, callback POST bodies).
//!
//! Every event is written as one JSON object with `eventType` and
//! `timestamp` plus its own fields. Reading never fails on an event type
//! this crate does not know: it becomes [`Event::Unknown`] holding the raw
//! JSON. A *known* type with a malformed body is a decode error.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::checks::HealthCheck;
use crate::deployment::{DeploymentPlan, DeploymentStep};
use crate::task::{IpAddress, TaskState};
use crate::{App, Timestamp};

macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident($ty:ident) = $name:literal, )*) => {
        /// One Marathon event. See the payload types for the fields.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Event {
            $( $(#[$doc])* $variant($ty), )*
            /// An event type this crate does not know, as received.
            Unknown(UnknownEvent),
        }

        #[derive(Serialize)]
        #[serde(tag = "eventType")]
        enum KnownRef<'a> {
            $( #[serde(rename = $name)] $variant(&'a $ty), )*
        }

        #[derive(Deserialize)]
        #[serde(tag = "eventType")]
        #[allow(clippy::large_enum_variant)]
        enum KnownOwned {
            $( #[serde(rename = $name)] $variant($ty), )*
        }

        impl Event {
            /// Every `eventType` this crate models.
            pub const KNOWN_TYPES: &'static [&'static str] = &[$($name),*];

            /// The `eventType` string (also for unknown events).
            pub fn event_type(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $name, )*
                    Self::Unknown(u) => &u.event_type,
                }
            }

            /// The event's `timestamp` (`None` only for an unknown event without one).
            pub fn timestamp(&self) -> Option<Timestamp> {
                match self {
                    $( Self::$variant(e) => Some(e.timestamp), )*
                    Self::Unknown(u) => u.timestamp,
                }
            }
        }

        impl Serialize for Event {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Self::$variant(e) => KnownRef::$variant(e).serialize(s), )*
                    Self::Unknown(u) => u.raw.serialize(s),
                }
            }
        }

        impl From<KnownOwned> for Event {
            fn from(k: KnownOwned) -> Self {
                match k {
                    $( KnownOwned::$variant(e) => Self::$variant(e), )*
                }
            }
        }
    };
}

events! {
    EventStreamAttached(EventStreamChange) = "event_stream_attached",
    EventStreamDetached(EventStreamChange) = "event_stream_detached",
    ApiPost(ApiPostEvent) = "api_post_event",
    StatusUpdate(StatusUpdateEvent) = "status_update_event",
    InstanceChanged(InstanceChangedEvent) = "instance_changed_event",
    UnknownInstanceTerminated(UnknownInstanceTerminatedEvent) = "unknown_instance_terminated_event",
    InstanceHealthChanged(InstanceHealthChangedEvent) = "instance_health_changed_event",
    HealthStatusChanged(HealthStatusChangedEvent) = "health_status_changed_event",
    FailedHealthCheck(FailedHealthCheckEvent) = "failed_health_check_event",
    UnhealthyInstanceKill(UnhealthyInstanceKillEvent) = "unhealthy_instance_kill_event",
    /// Marathon <= 1.3 name of `unhealthy_instance_kill_event`.
    UnhealthyTaskKill(UnhealthyInstanceKillEvent) = "unhealthy_task_kill_event",
    AddHealthCheck(HealthCheckAdded) = "add_health_check_event",
    RemoveHealthCheck(AppIdEvent) = "remove_health_check_event",
    AppTerminated(AppIdEvent) = "app_terminated_event",
    /// Start of each non-empty deployment step.
    DeploymentInfo(DeploymentStepEvent) = "deployment_info",
    DeploymentStepSuccess(DeploymentStepEvent) = "deployment_step_success",
    DeploymentStepFailure(DeploymentStepEvent) = "deployment_step_failure",
    DeploymentSuccess(DeploymentDone) = "deployment_success",
    DeploymentFailed(DeploymentDone) = "deployment_failed",
    GroupChangeSuccess(GroupChangeEvent) = "group_change_success",
    GroupChangeFailed(GroupChangeEvent) = "group_change_failed",
    PodCreated(PodEvent) = "pod_created_event",
    PodUpdated(PodEvent) = "pod_updated_event",
    PodDeleted(PodEvent) = "pod_deleted_event",
    /// Legacy callback subscription added (also the body of `POST /v2/eventSubscriptions`).
    Subscribe(SubscriptionEvent) = "subscribe_event",
    Unsubscribe(SubscriptionEvent) = "unsubscribe_event",
    FrameworkMessage(FrameworkMessageEvent) = "framework_message_event",
    SchedulerRegistered(SchedulerRegisteredEvent) = "scheduler_registered_event",
    SchedulerReregistered(SchedulerReregisteredEvent) = "scheduler_reregistered_event",
    SchedulerDisconnected(SchedulerDisconnectedEvent) = "scheduler_disconnected_event",
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let event_type = match raw.get("eventType") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(serde::de::Error::missing_field("eventType")),
        };
        if Self::KNOWN_TYPES.contains(&event_type.as_str()) {
            KnownOwned::deserialize(raw)
                .map(Event::from)
                .map_err(|e| serde::de::Error::custom(format!("{event_type}: {e}")))
        } else {
            let timestamp = raw
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok());
            Ok(Self::Unknown(UnknownEvent {
                event_type,
                timestamp,
                raw,
            }))
        }
    }
}

impl Event {
    /// Parses one event from JSON text (an SSE `data` field or a callback body).
    pub fn from_json(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }

    /// One-line JSON, as written in SSE `data:` lines.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialise")
    }

    /// The app (run spec) the event is about, when there is exactly one.
    pub fn app_id(&self) -> Option<&str> {
        Some(match self {
            Self::ApiPost(e) => &e.app_definition.id,
            Self::StatusUpdate(e) => &e.app_id,
            Self::InstanceChanged(e) => &e.run_spec_id,
            Self::UnknownInstanceTerminated(e) => &e.run_spec_id,
            Self::InstanceHealthChanged(e) => &e.run_spec_id,
            Self::HealthStatusChanged(e) => &e.app_id,
            Self::FailedHealthCheck(e) => &e.app_id,
            Self::UnhealthyInstanceKill(e) | Self::UnhealthyTaskKill(e) => &e.app_id,
            Self::AddHealthCheck(e) => &e.app_id,
            Self::RemoveHealthCheck(e) | Self::AppTerminated(e) => &e.app_id,
            _ => return None,
        })
    }
}

/// An event of a type this crate does not model.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownEvent {
    pub event_type: String,
    pub timestamp: Option<Timestamp>,
    /// The whole JSON object, written back unchanged.
    pub raw: Value,
}

/// `event_stream_attached` / `event_stream_detached`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStreamChange {
    pub remote_address: String,
    pub timestamp: Timestamp,
}

/// `api_post_event`: an app was created or updated through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiPostEvent {
    pub client_ip: String,
    pub uri: String,
    /// Boxed: an app is large and most events are small.
    pub app_definition: Box<App>,
    pub timestamp: Timestamp,
}

/// `status_update_event`: a task changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdateEvent {
    #[serde(default)]
    pub slave_id: String,
    pub task_id: String,
    pub task_status: TaskState,
    #[serde(default)]
    pub message: String,
    pub app_id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub ports: Vec<u32>,
    /// The app version of the task.
    pub version: Timestamp,
    pub timestamp: Timestamp,
}

/// `instance_changed_event`: follows the matching status update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceChangedEvent {
    pub instance_id: String,
    /// e.g. `Running`, `Killed`.
    pub condition: String,
    pub run_spec_id: String,
    #[serde(default)]
    pub agent_id: String,
    #[serde(default)]
    pub host: String,
    pub run_spec_version: Timestamp,
    pub timestamp: Timestamp,
}

/// `unknown_instance_terminated_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnknownInstanceTerminatedEvent {
    pub instance_id: String,
    pub run_spec_id: String,
    pub condition: String,
    pub timestamp: Timestamp,
}

/// `instance_health_changed_event`; `healthy` is written as `null` when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHealthChangedEvent {
    pub instance_id: String,
    pub run_spec_id: String,
    pub run_spec_version: Timestamp,
    #[serde(default)]
    pub healthy: Option<bool>,
    pub timestamp: Timestamp,
}

/// `health_status_changed_event` (Marathon-level check flipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "HealthStatusChangedWire")]
pub struct HealthStatusChangedEvent {
    pub app_id: String,
    /// Marathon <= 1.3 sent only `taskId`; it is read as the instance id then.
    pub instance_id: String,
    /// The task id, written beside `instanceId` when known (Marathon <= 1.3
    /// readers look for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub version: Timestamp,
    pub alive: bool,
    pub timestamp: Timestamp,
}

/// What `health_status_changed_event` may carry: `instanceId`, `taskId` or both.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthStatusChangedWire {
    app_id: String,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    task_id: Option<String>,
    version: Timestamp,
    alive: bool,
    timestamp: Timestamp,
}

impl TryFrom<HealthStatusChangedWire> for HealthStatusChangedEvent {
    type Error = &'static str;

    fn try_from(w: HealthStatusChangedWire) -> Result<Self, Self::Error> {
        let instance_id = w
            .instance_id
            .or_else(|| w.task_id.clone())
            .ok_or("missing field `instanceId`")?;
        Ok(Self {
            app_id: w.app_id,
            instance_id,
            task_id: w.task_id,
            version: w.version,
            alive: w.alive,
            timestamp: w.timestamp,
        })
    }
}

/// `failed_health_check_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedHealthCheckEvent {
    pub app_id: String,
    /// The instance id string.
    pub task_id: String,
    /// The instance id again, under its current name (Marathon >= 1.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub health_check: HealthCheck,
    pub timestamp: Timestamp,
}

/// `unhealthy_instance_kill_event`, and `unhealthy_task_kill_event` of
/// Marathon <= 1.3: the same fields but `instanceId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyInstanceKillEvent {
    pub app_id: String,
    pub task_id: String,
    /// Empty in an `unhealthy_task_kill_event` (written only when set).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
    pub version: Timestamp,
    pub reason: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_id: Option<String>,
    pub timestamp: Timestamp,
}

/// `add_health_check_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckAdded {
    pub app_id: String,
    pub version: Timestamp,
    pub health_check: HealthCheck,
    pub timestamp: Timestamp,
}

/// Events with only an `appId` (`remove_health_check_event`, `app_terminated_event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppIdEvent {
    pub app_id: String,
    pub timestamp: Timestamp,
}

/// `deployment_info`, `deployment_step_success`, `deployment_step_failure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStepEvent {
    pub plan: DeploymentPlan,
    pub current_step: DeploymentStep,
    pub timestamp: Timestamp,
}

/// `deployment_success` / `deployment_failed` (`reason` only on failure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentDone {
    pub id: String,
    pub plan: DeploymentPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub timestamp: Timestamp,
}

/// `group_change_success` / `group_change_failed` (`reason` only on failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupChangeEvent {
    pub group_id: String,
    pub version: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub timestamp: Timestamp,
}

/// `pod_created_event` / `pod_updated_event` / `pod_deleted_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodEvent {
    pub client_ip: String,
    pub uri: String,
    pub timestamp: Timestamp,
}

/// `subscribe_event` / `unsubscribe_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionEvent {
    pub client_ip: String,
    pub callback_url: String,
    pub timestamp: Timestamp,
}

/// `framework_message_event` (`message` is base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameworkMessageEvent {
    pub executor_id: String,
    pub slave_id: String,
    pub message: String,
    pub timestamp: Timestamp,
}

/// `scheduler_registered_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerRegisteredEvent {
    pub framework_id: String,
    pub master: String,
    pub timestamp: Timestamp,
}

/// `scheduler_reregistered_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerReregisteredEvent {
    pub master: String,
    pub timestamp: Timestamp,
}

/// `scheduler_disconnected_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerDisconnectedEvent {
    pub timestamp: Timestamp,
}
