//! Health checks (`healthChecks`) and readiness checks (`readinessChecks`).
//! Every numeric field of a health check is always written: marathon-lb
//! indexes them directly.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Timestamp;

/// `healthChecks[]` (Marathon-level or Mesos-level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default)]
    pub protocol: HealthCheckProtocol,
    /// No server default (marathon-lb assumes `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<u32>,
    /// Wins over `portIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// For `COMMAND`: `{"value":"sh cmd"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(default = "d300")]
    pub grace_period_seconds: u64,
    #[serde(default = "d60")]
    pub interval_seconds: u64,
    #[serde(default = "d20")]
    pub timeout_seconds: u64,
    /// Marathon-level checks: 0 = never kill.
    #[serde(default = "d3")]
    pub max_consecutive_failures: u32,
    #[serde(default = "d15")]
    pub delay_seconds: u64,
    /// HTTP/HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_http1xx: Option<bool>,
    /// `IPv4` or `IPv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn d300() -> u64 {
    300
}
fn d60() -> u64 {
    60
}
fn d20() -> u64 {
    20
}
fn d3() -> u32 {
    3
}
fn d15() -> u64 {
    15
}
fn d30() -> u64 {
    30
}
fn d10() -> u64 {
    10
}

impl Default for HealthCheck {
    /// Marathon's defaults: HTTP, grace 300 s, interval 60 s, timeout 20 s, 3 failures.
    fn default() -> Self {
        Self {
            protocol: HealthCheckProtocol::Http,
            path: None,
            port_index: None,
            port: None,
            command: None,
            grace_period_seconds: d300(),
            interval_seconds: d60(),
            timeout_seconds: d20(),
            max_consecutive_failures: d3(),
            delay_seconds: d15(),
            ignore_http1xx: None,
            ip_protocol: None,
            extra: Map::new(),
        }
    }
}

/// `healthChecks[].command`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub value: String,
}

/// `healthChecks[].protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckProtocol {
    #[default]
    Http,
    Https,
    Tcp,
    Command,
    MesosHttp,
    MesosHttps,
    MesosTcp,
}

impl HealthCheckProtocol {
    /// Mesos-level checks run by the agent (not by Marathon).
    pub fn is_mesos(&self) -> bool {
        matches!(self, Self::MesosHttp | Self::MesosHttps | Self::MesosTcp)
    }
}

/// `readinessChecks[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheck {
    #[serde(default = "readiness_name")]
    pub name: String,
    /// `HTTP` or `HTTPS`.
    #[serde(default = "http")]
    pub protocol: String,
    #[serde(default = "slash")]
    pub path: String,
    #[serde(default)]
    pub port_name: String,
    #[serde(default = "d30")]
    pub interval_seconds: u64,
    #[serde(default = "d10")]
    pub timeout_seconds: u64,
    #[serde(default = "ok_codes")]
    pub http_status_codes_for_ready: Vec<u16>,
    #[serde(default)]
    pub preserve_last_response: bool,
}

fn readiness_name() -> String {
    "readinessCheck".to_owned()
}
fn http() -> String {
    "HTTP".to_owned()
}
fn slash() -> String {
    "/".to_owned()
}
fn ok_codes() -> Vec<u16> {
    vec![200]
}

impl Default for ReadinessCheck {
    fn default() -> Self {
        Self {
            name: readiness_name(),
            protocol: http(),
            path: slash(),
            port_name: String::new(),
            interval_seconds: d30(),
            timeout_seconds: d10(),
            http_status_codes_for_ready: ok_codes(),
            preserve_last_response: false,
        }
    }
}

/// `readinessCheckResults[]` (in AppInfo and deployment `currentActions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheckResult {
    pub name: String,
    pub task_id: String,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response: Option<HttpResponse>,
}

/// The response a readiness check kept (`preserveLastResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub body: String,
}

/// One entry of a task's `healthCheckResults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    pub alive: bool,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Since Marathon 1.4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Marathon <= 1.3 wrote `taskId` instead of `instanceId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_cause: Option<String>,
}
