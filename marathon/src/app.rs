//! The app definition (`App`) and its status view (`AppInfo`).
//!
//! `App` reads every current field plus Marathon's legacy input fields
//! (`ports`, `uris`, `ipAddress`, `container.docker.network`,
//! `container.docker.portMappings`), which are never written back. Unknown
//! keys are kept in `extra` so that nothing a user sent is lost. Output
//! follows Marathon's canonical rules: unset optionals and empty `omitEmpty`
//! collections are omitted, `labels` and the scalar settings always present.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::checks::{HealthCheck, ReadinessCheck, ReadinessCheckResult};
use crate::container::{Container, Network, NetworkMode, PortDefinition};
pub use crate::strategy::{KillSelection, UnreachableStrategy, UpgradeStrategy};
use crate::task::{Task, TaskFailure};
use crate::Timestamp;

/// A Marathon app definition (`RAML/v2/types/app.raml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default = "one_u32")]
    pub instances: u32,
    #[serde(default = "one_f64")]
    #[serde(serialize_with = "crate::app::number")]
    pub cpus: f64,
    #[serde(default = "mem_default")]
    #[serde(serialize_with = "crate::app::number")]
    pub mem: f64,
    #[serde(default)]
    #[serde(serialize_with = "crate::app::number")]
    pub disk: f64,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub executor: String,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub fetch: Vec<Fetch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Empty on input means "not given" (the manager defaults it to host).
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub networks: Vec<Network>,
    /// `None` = not given (host mode default: one port); `Some([])` = no ports.
    /// Written only when set: the manager sets it for host networking only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_definitions: Option<Vec<PortDefinition>>,
    #[serde(default)]
    pub require_ports: bool,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub health_checks: Vec<HealthCheck>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub readiness_checks: Vec<ReadinessCheck>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    /// Always written, even when empty (marathon-lb requires the key).
    #[serde(default, deserialize_with = "crate::app::null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "one_u64")]
    pub backoff_seconds: u64,
    #[serde(default = "backoff_factor_default")]
    #[serde(serialize_with = "crate::app::number")]
    pub backoff_factor: f64,
    #[serde(default = "max_launch_delay_default")]
    pub max_launch_delay_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<u64>,
    #[serde(default)]
    pub kill_selection: KillSelection,
    #[serde(default)]
    pub unreachable_strategy: UnreachableStrategy,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Set by the server (`*` unless configured); omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Set by the server. On input only meaningful for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,

    /// Legacy input: becomes `portDefinitions`. Never written.
    #[serde(default, skip_serializing)]
    pub ports: Option<Vec<u32>>,
    /// Legacy input: becomes `fetch`. Never written.
    #[serde(default, skip_serializing)]
    pub uris: Option<Vec<String>>,
    /// Legacy input: becomes `networks` (`{networkName, groups, labels, discovery}`). Never written.
    #[serde(default, skip_serializing)]
    pub ip_address: Option<Value>,

    /// Fields this crate does not model (`tty`, `check`, `residency`, ...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Reads `null` as the default (empty list or map), as Marathon does.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Writes a whole `f64` as an integer (`128`, not `128.0`), as Marathon does.
pub(crate) fn number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn one_u32() -> u32 {
    1
}
fn one_u64() -> u64 {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn mem_default() -> f64 {
    128.0
}
fn backoff_factor_default() -> f64 {
    1.15
}
fn max_launch_delay_default() -> u64 {
    300
}

impl Default for App {
    /// What Marathon stores for `{"id": ""}`: 1 instance, 1 cpu, 128 MiB,
    /// host networking with one dynamic port, default strategies.
    fn default() -> Self {
        Self {
            id: String::new(),
            cmd: None,
            args: Vec::new(),
            user: None,
            env: BTreeMap::new(),
            instances: 1,
            cpus: 1.0,
            mem: 128.0,
            disk: 0.0,
            gpus: 0,
            executor: String::new(),
            constraints: Vec::new(),
            fetch: Vec::new(),
            accepted_resource_roles: None,
            container: None,
            networks: vec![Network::host()],
            port_definitions: Some(vec![PortDefinition::default()]),
            require_ports: false,
            health_checks: Vec::new(),
            readiness_checks: Vec::new(),
            dependencies: Vec::new(),
            upgrade_strategy: UpgradeStrategy::default(),
            labels: BTreeMap::new(),
            backoff_seconds: 1,
            backoff_factor: 1.15,
            max_launch_delay_seconds: 300,
            task_kill_grace_period_seconds: None,
            kill_selection: KillSelection::default(),
            unreachable_strategy: UnreachableStrategy::default(),
            secrets: BTreeMap::new(),
            role: None,
            version: None,
            version_info: None,
            ports: None,
            uris: None,
            ip_address: None,
            extra: Map::new(),
        }
    }
}

impl App {
    /// A default app with this id.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// True when the app uses host networking (also when `networks` is empty,
    /// Marathon's default).
    pub fn is_host_network(&self) -> bool {
        self.networks.is_empty() || self.networks.iter().any(|n| n.mode == NetworkMode::Host)
    }

    /// The Docker image, if the app runs a Docker container.
    pub fn docker_image(&self) -> Option<&str> {
        self.container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .map(|d| d.image.as_str())
            .filter(|i| !i.is_empty())
    }

    /// The declared ports as `(name, servicePort)` pairs, by index, from
    /// `container.portMappings` (non-host) or `portDefinitions` (host).
    /// Unnamed ports are called `port0`, `port1`, ... (DESIGN.md).
    pub fn canonical_ports(&self) -> Vec<(String, u32)> {
        let name = |i: usize, n: &Option<String>| n.clone().unwrap_or_else(|| format!("port{i}"));
        let mappings = self
            .container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref());
        match (self.is_host_network(), mappings, &self.port_definitions) {
            (false, Some(pm), _) => pm
                .iter()
                .enumerate()
                .map(|(i, p)| (name(i, &p.name), p.service_port))
                .collect(),
            (_, _, Some(pd)) => pd
                .iter()
                .enumerate()
                .map(|(i, p)| (name(i, &p.name), p.port))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The port names by index (see [`App::canonical_ports`]).
    pub fn canonical_port_names(&self) -> Vec<String> {
        self.canonical_ports().into_iter().map(|(n, _)| n).collect()
    }

    /// The app's service ports by index (see [`App::canonical_ports`]).
    pub fn service_ports(&self) -> Vec<u32> {
        self.canonical_ports().into_iter().map(|(_, p)| p).collect()
    }
}

/// An `env` value: a plain string or a reference into `secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Value(String),
    Secret { secret: String },
}

impl EnvValue {
    /// The plain string value, if this is not a secret reference.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Value(v) => Some(v),
            Self::Secret { .. } => None,
        }
    }
}

impl From<&str> for EnvValue {
    fn from(v: &str) -> Self {
        Self::Value(v.to_owned())
    }
}

impl From<String> for EnvValue {
    fn from(v: String) -> Self {
        Self::Value(v)
    }
}

/// `secrets.<key>`: `{"source":"<store path>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSource {
    pub source: String,
}

/// `fetch[]`: an artifact downloaded into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fetch {
    pub uri: String,
    #[serde(default = "yes")]
    pub extract: bool,
    #[serde(default)]
    pub executable: bool,
    #[serde(default)]
    pub cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_path: Option<String>,
}

fn yes() -> bool {
    true
}

impl Fetch {
    /// Marathon's conversion of a legacy `uris` entry.
    pub fn from_uri(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            extract: true,
            executable: false,
            cache: false,
            dest_path: None,
        }
    }
}

/// `versionInfo`: when the app last scaled and last changed its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub last_scaling_at: Timestamp,
    pub last_config_change_at: Timestamp,
}

/// `{"id": "<deployment uuid>"}` as listed in `AppInfo.deployments` and 409 bodies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeploymentRef {
    pub id: String,
}

/// An app with its status, as returned by `GET /v2/apps[/{id}]` and `POST /v2/apps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    #[serde(flatten)]
    pub app: App,
    #[serde(default)]
    pub tasks_staged: u32,
    #[serde(default)]
    pub tasks_running: u32,
    #[serde(default)]
    pub tasks_healthy: u32,
    #[serde(default)]
    pub tasks_unhealthy: u32,
    #[serde(default)]
    pub deployments: Vec<DeploymentRef>,
    /// Present when embedded (`embed=apps.tasks`); then always written, maybe empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<Task>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_check_results: Option<Vec<ReadinessCheckResult>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task_failure: Option<TaskFailure>,
    /// Written as `taskStats` (marathon-python rejects HEAD's `tasksStats`).
    #[serde(default, alias = "tasksStats", skip_serializing_if = "Option::is_none")]
    pub task_stats: Option<Value>,
}

impl std::ops::Deref for AppInfo {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

impl AppInfo {
    /// Wraps an app with zero counts and no deployments.
    pub fn new(app: App) -> Self {
        Self {
            app,
            ..Self::default()
        }
    }
}
