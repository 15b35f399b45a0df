//! System endpoints: `/v2/info`, `/v2/leader`, `/v2/queue`,
//! `/v2/eventSubscriptions`. marathon-python requires the three config
//! objects of `Info` and accepts only its known keys inside them, so every
//! typed field here is one of those keys.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{App, Timestamp};

/// `GET /v2/info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    pub name: String,
    /// Semver-like (`1.11.0`): marathon-python compares it with `LooseVersion`.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildref: Option<String>,
    #[serde(default)]
    pub elected: bool,
    /// `host:port` of the leader; `null` when there is none.
    #[serde(default)]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<String>,
    #[serde(rename = "marathon_config", default)]
    pub marathon_config: MarathonConfig,
    #[serde(rename = "zookeeper_config", default)]
    pub zookeeper_config: ZookeeperConfig,
    #[serde(rename = "http_config", default)]
    pub http_config: HttpConfig,
    /// Marathon <= 1.4: `{"type":"http_callback","http_endpoints":[...]}`.
    #[serde(
        rename = "event_subscriber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub event_subscriber: Option<EventSubscriber>,
}

/// `marathon_config` (snake_case command-line flags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarathonConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout: Option<u64>,
    /// Enabled features (`--enable_features`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port_min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port_max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_network_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_launch_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_mode: Option<bool>,
    /// The other known keys (see marathon-python's `MarathonConfig`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `zookeeper_config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZookeeperConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk_session_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk_max_versions: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `http_config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets_path: Option<String>,
}

/// `event_subscriber` (Marathon <= 1.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSubscriber {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub http_endpoints: Vec<String>,
}

/// `GET /v2/leader`: `{"leader":"host:port"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub leader: String,
}

/// `GET /v2/queue`: `{"queue":[...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub queue: Vec<QueueItem>,
}

/// An app with instances waiting to launch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueItem {
    pub app: App,
    /// Instances still to launch.
    pub count: u32,
    pub delay: QueueDelay,
    pub since: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_offers_summary: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unused_offers: Option<Value>,
}

/// `delay` of a queue item (backoff).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDelay {
    pub time_left_seconds: u64,
    pub overdue: bool,
}

/// `GET /v2/eventSubscriptions`: `{"callbackUrls":[...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscriptions {
    pub callback_urls: Vec<String>,
}
