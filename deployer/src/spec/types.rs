//! The typed specs a validated deploy document is made of.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use registry::naming;

/// One problem at one place in the document (Marathon's error detail shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub path: String,
    pub errors: Vec<String>,
}

/// A validated document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub deploy: Vec<ServiceSpec>,
    pub remove: Vec<RemoveSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoveSpec {
    pub service: String,
    /// Canonical (sorted, deduplicated).
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Bridge,
    Host,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    pub name: String,
    pub port: u16,
    /// `ports-hard`: the same fixed port on the host.
    pub hard: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    pub host: String,
    pub container: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckProtocol {
    Http,
    Https,
    Tcp,
    Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub protocol: CheckProtocol,
    /// Index into the app's ports (HTTP/HTTPS/TCP).
    pub port_index: Option<usize>,
    pub path: Option<String>,
    pub command: Option<String>,
    pub grace_period_seconds: u64,
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    pub max_consecutive_failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpgradeSpec {
    pub minimum_health_capacity: f64,
    pub maximum_over_capacity: f64,
}

/// One service of `deploy:`, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub service: String,
    /// Canonical (sorted, deduplicated).
    pub labels: Vec<String>,
    pub image: Option<String>,
    pub cmd: Option<String>,
    pub args: Vec<String>,
    /// Sorted by name: the port index order of the app.
    pub ports: Vec<PortSpec>,
    pub environment: BTreeMap<String, String>,
    pub instances: u64,
    pub cpus: f64,
    pub mem: f64,
    pub disk: Option<f64>,
    pub volumes: Vec<VolumeSpec>,
    pub constraints: Vec<Vec<String>>,
    pub fixed_host: bool,
    pub health_checks: Vec<HealthCheckSpec>,
    pub upgrade: Option<UpgradeSpec>,
    pub network: Network,
    pub marathon: Map<String, Value>,
}

impl ServiceSpec {
    pub fn app_id(&self) -> String {
        naming::app_id(&self.service, &self.labels)
    }
}

impl RemoveSpec {
    pub fn app_id(&self) -> String {
        naming::app_id(&self.service, &self.labels)
    }
}
