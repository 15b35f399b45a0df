//! Containers, networks and ports of an app (`container`, `networks`,
//! `portDefinitions`). Legacy input (`container.docker.network`,
//! `container.docker.portMappings`) is read but never written: the manager
//! moves it to the current fields when it normalises an app.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn default_tcp() -> String {
    "tcp".to_owned()
}

/// `container`: how the task is packaged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `DOCKER` (Marathon's default) or `MESOS`.
    #[serde(rename = "type", default)]
    pub kind: ContainerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Docker>,
    /// Always written, possibly empty (as Marathon does).
    #[serde(default, deserialize_with = "crate::app::null_default")]
    pub volumes: Vec<Volume>,
    /// Written when set: the manager sets it for non-host networking only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Anything else (`linuxInfo`, ...) is kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `container.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerType {
    #[default]
    #[serde(rename = "DOCKER")]
    Docker,
    #[serde(rename = "MESOS")]
    Mesos,
}

/// `container.docker`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub force_pull_image: bool,
    #[serde(default)]
    pub privileged: bool,
    /// Extra `docker run --key=value` flags; always written.
    #[serde(default, deserialize_with = "crate::app::null_default")]
    pub parameters: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Value>,
    /// Legacy input (`HOST`, `BRIDGE`, `USER`, `NONE`); never written.
    #[serde(default, skip_serializing)]
    pub network: Option<String>,
    /// Legacy input (moved to `container.portMappings`); never written.
    #[serde(default, skip_serializing)]
    pub port_mappings: Option<Vec<PortMapping>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `docker run` flag: `{"key":"add-host","value":"h:1.2.3.4"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

/// `container.volumes[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RO` or `RW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `container.portMappings[]` (non-host networking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// 0 means "same as the allocated host port".
    #[serde(default)]
    pub container_port: u32,
    /// Missing means "no host port" in `container` mode; 0 means random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    /// 0 means "assign one" (the server writes the assigned port back).
    #[serde(default)]
    pub service_port: u32,
    /// `tcp`, `udp` or `udp,tcp`.
    #[serde(default = "default_tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Written only when set: marathon-python rejects this key.
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub network_names: Vec<String>,
}

impl Default for PortMapping {
    fn default() -> Self {
        Self {
            container_port: 0,
            host_port: None,
            service_port: 0,
            protocol: default_tcp(),
            name: None,
            labels: BTreeMap::new(),
            network_names: Vec::new(),
        }
    }
}

/// `portDefinitions[]` (host networking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinition {
    /// The service port (or host port with `requirePorts`); 0 = assign.
    #[serde(default)]
    pub port: u32,
    #[serde(default = "default_tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

impl Default for PortDefinition {
    /// Marathon's default port for a host-mode app: `{"port":0,"name":"default","protocol":"tcp"}`.
    fn default() -> Self {
        Self {
            port: 0,
            protocol: default_tcp(),
            name: Some("default".to_owned()),
            labels: BTreeMap::new(),
        }
    }
}

/// `networks[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    #[serde(default)]
    pub mode: NetworkMode,
    /// Only for `container` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::app::null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// `{"mode":"host"}`, Marathon's default.
    pub fn host() -> Self {
        Self {
            mode: NetworkMode::Host,
            ..Self::default()
        }
    }

    /// `{"mode":"container/bridge"}`.
    pub fn bridge() -> Self {
        Self {
            mode: NetworkMode::ContainerBridge,
            ..Self::default()
        }
    }
}

/// `networks[].mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NetworkMode {
    #[serde(rename = "host")]
    Host,
    #[serde(rename = "container/bridge")]
    ContainerBridge,
    /// The RAML default when `mode` is missing.
    #[default]
    #[serde(rename = "container")]
    Container,
}

impl NetworkMode {
    /// The JSON spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::ContainerBridge => "container/bridge",
            Self::Container => "container",
        }
    }
}
