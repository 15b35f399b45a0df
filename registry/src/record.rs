//! The instance record, schema 1 (DESIGN.md). Fields may be added, never
//! renamed; unknown fields are tolerated on read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::InstanceName;

/// The schema number written in every record.
pub const SCHEMA: u32 = 1;

fn schema_default() -> u32 {
    SCHEMA
}

/// One running container, as other containers find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    #[serde(default = "schema_default")]
    pub schema: u32,
    pub service: String,
    pub group: String,
    /// The labels of the group (sorted), so lookups can filter by label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The task id (`CONTAINER_NAME` inside the container).
    pub container: String,
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub app_version: String,
    #[serde(default)]
    pub node: String,
    /// The address other containers use to reach the external ports.
    #[serde(default)]
    pub host: String,
    /// The container's own address (reach the exposed ports there).
    #[serde(default)]
    pub internal_address: Option<String>,
    /// Named ports: `port0`, `port1`... for unnamed ones.
    #[serde(default)]
    pub ports: BTreeMap<String, Port>,
    #[serde(default)]
    pub state: String,
    /// `null` when the app has no health checks (the key is always written).
    #[serde(default)]
    pub healthy: Option<bool>,
    #[serde(default)]
    pub started_at: String,
    /// Which cluster's subscriber wrote this record.
    #[serde(default)]
    pub owner: String,
}

/// One named port of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Host-side port (reach it at `host`).
    pub external: u16,
    /// Container-side port (reach it at `internal_address`).
    pub exposed: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "tcp".to_string()
}

impl Port {
    pub fn tcp(external: u16, exposed: u16) -> Port {
        Port {
            external,
            exposed,
            protocol: tcp(),
        }
    }
}

impl Instance {
    /// The validated identity of this record.
    pub fn name(&self) -> Result<InstanceName> {
        InstanceName::new(&self.service, &self.group, &self.container)
    }

    /// The etcd key of this record under `prefix` (names validated).
    pub fn key(&self, prefix: &str) -> Result<String> {
        self.name()?.key(prefix)
    }

    /// JSON bytes as stored in etcd.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an instance always serialises")
    }

    /// Parses a stored record and checks it matches the key it was found at.
    pub fn from_stored(key: &str, name: &InstanceName, value: &[u8]) -> Result<Instance> {
        let instance: Instance =
            serde_json::from_slice(value).map_err(|e| Error::InvalidRecord {
                key: key.to_string(),
                reason: e.to_string(),
            })?;
        if instance.service != name.service
            || instance.group != name.group
            || instance.container != name.container
        {
            return Err(Error::InvalidRecord {
                key: key.to_string(),
                reason: format!(
                    "record names {}/{}/{} do not match its key",
                    instance.service, instance.group, instance.container
                ),
            });
        }
        Ok(instance)
    }

    /// True when the instance carries every label in `wanted`.
    pub fn has_labels<S: AsRef<str>>(&self, wanted: &[S]) -> bool {
        wanted
            .iter()
            .all(|w| self.labels.iter().any(|l| l == w.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Instance {
        Instance {
            schema: 1,
            service: "ingestor".into(),
            group: "dev".into(),
            labels: vec!["dev".into()],
            container: "dev_ingestor.instance-1._app.1".into(),
            app_id: "/dev/ingestor".into(),
            app_version: "2026-11-22T10:00:00.000Z".into(),
            node: "node-1".into(),
            host: "10.0.0.5".into(),
            internal_address: Some("172.17.0.3".into()),
            ports: [("api".to_string(), Port::tcp(31001, 5000))].into(),
            state: "TASK_RUNNING".into(),
            healthy: Some(true),
            started_at: "2026-11-22T10:00:01.000Z".into(),
            owner: "default".into(),
        }
    }

    #[test]
    fn design_example_round_trips() {
        let doc = r#"{ "schema": 1,
          "service": "ingestor", "group": "dev", "labels": ["dev"],
          "container": "dev_ingestor.instance-1._app.1",
          "app_id": "/dev/ingestor", "app_version": "2026-11-22T10:00:00.000Z",
          "node": "node-1", "host": "10.0.0.5", "internal_address": "172.17.0.3",
          "ports": { "api": { "external": 31001, "exposed": 5000, "protocol": "tcp" } },
          "state": "TASK_RUNNING", "healthy": true, "started_at": "2026-11-22T10:00:01.000Z",
          "owner": "default" }"#;
        let parsed: Instance = serde_json::from_str(doc).unwrap();
        assert_eq!(parsed, sample());
        let back: serde_json::Value = serde_json::from_slice(&parsed.to_json()).unwrap();
        let orig: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn healthy_none_is_written_as_null() {
        let mut i = sample();
        i.healthy = None;
        i.internal_address = None;
        let v: serde_json::Value = serde_json::from_slice(&i.to_json()).unwrap();
        assert_eq!(v["healthy"], serde_json::Value::Null);
        assert!(v.as_object().unwrap().contains_key("healthy"));
        assert!(v.as_object().unwrap().contains_key("internal_address"));
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["future_field"] = serde_json::json!({"x": 1});
        let parsed: Instance = serde_json::from_value(v).unwrap();
        assert_eq!(parsed, sample());
    }

    #[test]
    fn stored_record_must_match_its_key() {
        let i = sample();
        let name = i.name().unwrap();
        let key = i.key("/services").unwrap();
        assert_eq!(Instance::from_stored(&key, &name, &i.to_json()).unwrap(), i);
        let other = InstanceName::new("other", "dev", &i.container).unwrap();
        assert!(Instance::from_stored(&key, &other, &i.to_json()).is_err());
        assert!(Instance::from_stored(&key, &name, b"not json").is_err());
    }

    #[test]
    fn label_filter() {
        let mut i = sample();
        i.labels = vec!["hello".into(), "ponies".into()];
        assert!(i.has_labels::<&str>(&[]));
        assert!(i.has_labels(&["ponies"]));
        assert!(i.has_labels(&["hello", "ponies"]));
        assert!(!i.has_labels(&["dev"]));
    }
}
