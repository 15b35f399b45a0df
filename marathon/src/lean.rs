//! A lean read of `GET /v2/apps?embed=apps.tasks`: only the fields that say
//! where an app's tasks run and how their ports are named, nothing
//! flattened, everything else skipped.
//!
//! [`AppInfo`](crate::AppInfo) flattens [`App`](crate::App) into it and
//! [`Task`](crate::Task) keeps unknown fields through `#[serde(flatten)]`;
//! serde then buffers every app (tasks included) into an intermediate tree
//! before decoding it, which for 10,000 tasks costs hundreds of
//! milliseconds and tens of megabytes. These types read the same values
//! (the leaf types are this crate's own) in one pass. Used through
//! [`Client::apps_with_tasks`]; the subscriber's resync reads Marathon with
//! it.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::Method;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::app::null_default;
use crate::client::path;
use crate::{Client, Error, IpAddress, Network, PortDefinition, PortMapping, Result};
use crate::{TaskState, Timestamp};

/// The length of a list whose items are skipped (`null` counts as empty).
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or null")
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_none<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(Count)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }
    d.deserialize_option(Count)
}

#[derive(Deserialize)]
struct Body {
    #[serde(default, deserialize_with = "null_default")]
    apps: Vec<LeanApp>,
}

/// An app as the lean read sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanApp {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub version: Option<Timestamp>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Legacy `ports` (host networking before `portDefinitions`).
    #[serde(default)]
    pub ports: Option<Vec<u32>>,
    #[serde(default)]
    pub container: Option<LeanContainer>,
    /// How many health checks the app defines.
    #[serde(default, deserialize_with = "count")]
    pub health_checks: usize,
    #[serde(default)]
    pub tasks: Option<Vec<LeanTask>>,
}

/// `container`: only its port mappings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanContainer {
    #[serde(default)]
    pub docker: Option<LeanDocker>,
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
}

/// Legacy `container.docker.portMappings`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanDocker {
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
}

impl LeanContainer {
    /// `container.portMappings`, else the legacy `container.docker.portMappings`.
    pub fn into_port_mappings(self) -> Option<Vec<PortMapping>> {
        self.port_mappings
            .or_else(|| self.docker.and_then(|d| d.port_mappings))
    }
}

/// A task as the lean read sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanTask {
    pub id: String,
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub slave_id: Option<String>,
    #[serde(default)]
    pub state: TaskState,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub version: Option<Timestamp>,
    #[serde(default)]
    pub ports: Vec<u32>,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub health_check_results: Vec<LeanCheck>,
}

/// One health check result: only whether it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct LeanCheck {
    pub alive: bool,
}

/// Decodes a `/v2/apps?embed=apps.tasks` body.
pub fn decode(body: &[u8]) -> serde_json::Result<Vec<LeanApp>> {
    let body: Body = serde_json::from_slice(body)?;
    Ok(body.apps)
}

impl Client {
    /// `GET /v2/apps?embed=apps.tasks`, read with the lean types.
    pub async fn apps_with_tasks(&self) -> Result<Vec<LeanApp>> {
        let url = self.url(path::APPS, None, &[]);
        let q = vec![("embed", "apps.tasks".to_owned())];
        let (_, bytes) = self.call::<()>(Method::GET, url, &q, None).await?;
        decode(&bytes).map_err(Error::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_needs_and_skips_the_rest() {
        let body = br#"{"apps": [
          {"id": "/dev/web", "version": "2026-11-22T10:00:00.000Z", "labels": {"A": "b"},
           "container": {"type": "DOCKER", "docker": {"image": "x", "portMappings": [{"containerPort": 1}]},
                         "volumes": []},
           "healthChecks": [{"protocol": "TCP"}, {"protocol": "COMMAND", "command": {"value": "true"}}],
           "unknown": {"deep": [1, 2, {"x": null}]},
           "tasks": [{"id": "t1", "state": "TASK_RUNNING", "slaveId": "n1", "ports": [31000],
                      "healthCheckResults": [{"alive": false, "extra": 1}], "checkResult": {}}]},
          {"id": "/b", "labels": null, "healthChecks": null, "networks": null},
          {"id": "/c"}
        ]}"#;
        let apps = decode(body).unwrap();
        assert_eq!(apps.len(), 3);
        assert_eq!(apps[0].health_checks, 2);
        assert_eq!(apps[1].health_checks, 0);
        assert_eq!(apps[2].health_checks, 0);
        assert_eq!(apps[0].labels["A"], "b");
        assert!(apps[1].labels.is_empty());
        let tasks = apps[0].tasks.as_ref().unwrap();
        assert_eq!(tasks[0].state, TaskState::Running);
        assert_eq!(tasks[0].health_check_results, [LeanCheck { alive: false }]);
        let mappings = apps[0].container.clone().unwrap().into_port_mappings();
        assert_eq!(mappings.unwrap()[0].container_port, 1);
        assert!(apps[2].tasks.is_none());
        assert!(decode(b"{}").unwrap().is_empty());
        assert!(decode(br#"{"apps": null}"#).unwrap().is_empty());
        assert!(decode(b"3").is_err());
    }
}
