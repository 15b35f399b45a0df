//! The environment contract of DESIGN.md, as an injectable map.

use std::collections::BTreeMap;
use std::path::PathBuf;

use registry::naming::{group_from_labels, names_from_app};
use registry::Settings;

use crate::error::{Error, Result};

/// The variables a task sees. Empty values count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Environment {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl Environment {
    /// The process environment (non UTF-8 entries are ignored).
    pub fn from_process_env() -> Environment {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }

    /// A variable's value, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }

    /// `CONTAINER_NAME` -> `MESOS_TASK_ID`.
    pub fn container_name(&self) -> Result<String> {
        self.first(&["CONTAINER_NAME", "MESOS_TASK_ID"])
            .map(str::to_string)
            .ok_or(Error::MissingEnv {
                what: "container name",
                vars: "CONTAINER_NAME, MESOS_TASK_ID",
            })
    }

    /// `CONTAINER_HOST_ADDRESS` -> `HOST`.
    pub fn host_address(&self) -> Result<String> {
        self.first(&["CONTAINER_HOST_ADDRESS", "HOST"])
            .map(str::to_string)
            .ok_or(Error::MissingEnv {
                what: "container host address",
                vars: "CONTAINER_HOST_ADDRESS, HOST",
            })
    }

    /// `SERVICE_NAME` -> `MARATHON_APP_LABEL_SERVICE_NAME` -> the naming
    /// rule on `MARATHON_APP_ID` (its last segment).
    pub fn service_name(&self) -> Result<String> {
        if let Some(s) = self.first(&["SERVICE_NAME", "MARATHON_APP_LABEL_SERVICE_NAME"]) {
            return Ok(s.to_string());
        }
        let app_id = self.get("MARATHON_APP_ID").ok_or(Error::MissingEnv {
            what: "service name",
            vars: "SERVICE_NAME, MARATHON_APP_LABEL_SERVICE_NAME, MARATHON_APP_ID",
        })?;
        self.names_from_app_id("MARATHON_APP_ID", app_id)
            .map(|n| n.service)
    }

    /// The environment (group) name: `SERVICE_GROUP` ->
    /// `MARATHON_APP_LABEL_SERVICE_GROUP` -> `LABELS` (comma separated,
    /// sorted and joined with `.`; `default` when empty) -> the naming rule
    /// on `MARATHON_APP_ID` (the segments before the last one).
    pub fn group(&self) -> Result<String> {
        if let Some(g) = self.first(&["SERVICE_GROUP", "MARATHON_APP_LABEL_SERVICE_GROUP"]) {
            return Ok(g.to_string());
        }
        if let Some(labels) = self.vars.get("LABELS") {
            let labels: Vec<&str> = labels.split(',').map(str::trim).collect();
            return Ok(group_from_labels(&labels));
        }
        let app_id = self.get("MARATHON_APP_ID").ok_or(Error::MissingEnv {
            what: "environment (group) name",
            vars: "SERVICE_GROUP, MARATHON_APP_LABEL_SERVICE_GROUP, LABELS, MARATHON_APP_ID",
        })?;
        self.names_from_app_id("MARATHON_APP_ID", app_id)
            .map(|n| n.group)
    }

    fn names_from_app_id(&self, var: &str, app_id: &str) -> Result<registry::Names> {
        names_from_app(app_id, &BTreeMap::new()).map_err(|e| Error::InvalidEnv {
            var: var.to_string(),
            value: app_id.to_string(),
            reason: e.to_string(),
        })
    }

    /// `PORT_<NAME>` (name upper-cased, as Marathon sets it), as an integer.
    pub fn port(&self, name: &str) -> Result<Option<u16>> {
        let var = format!("PORT_{}", name.to_uppercase());
        match self.get(&var) {
            None => Ok(None),
            Some(v) => v.parse::<u16>().map(Some).map_err(|_| Error::InvalidEnv {
                var,
                value: v.to_string(),
                reason: "not a port number".into(),
            }),
        }
    }

    /// Registry settings: endpoints from `ETCD_ENDPOINTS` ->
    /// `ETCD_HOST_ADDRESS[:ETCD_PORT]` -> `http://127.0.0.1:2379`; prefix
    /// from `REGISTRY_PREFIX` (default `/services`); optional `ETCD_USER` /
    /// `ETCD_PASSWORD`, `ETCD_CA` (`ETCD_CACERT`, the name of earlier
    /// releases, is still read), `ETCD_CERT` / `ETCD_KEY`: the same names as
    /// every other component.
    pub fn settings(&self) -> Result<Settings> {
        let endpoints = registry::resolve_endpoints(
            self.get("ETCD_ENDPOINTS"),
            self.get("ETCD_HOST_ADDRESS"),
            self.get("ETCD_PORT"),
        )?;
        let path = |n: &str| self.get(n).map(PathBuf::from);
        Ok(Settings::from_parts(
            Some(&endpoints),
            self.get("REGISTRY_PREFIX"),
            self.get("ETCD_USER"),
            self.get("ETCD_PASSWORD"),
            self.first(&["ETCD_CA", "ETCD_CACERT"]).map(PathBuf::from),
            path("ETCD_CERT"),
            path("ETCD_KEY"),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Vars<'a> = &'a [(&'a str, &'a str)];

    fn env(pairs: &[(&str, &str)]) -> Environment {
        pairs.iter().copied().collect()
    }

    #[test]
    fn container_name_falls_back_to_mesos_task_id() {
        let cases: [(Vars, Option<&str>); 4] = [
            (
                &[("CONTAINER_NAME", "c1"), ("MESOS_TASK_ID", "m1")],
                Some("c1"),
            ),
            (&[("MESOS_TASK_ID", "m1")], Some("m1")),
            (
                &[("CONTAINER_NAME", ""), ("MESOS_TASK_ID", "m1")],
                Some("m1"),
            ),
            (&[], None),
        ];
        for (vars, expected) in cases {
            assert_eq!(
                env(vars).container_name().ok().as_deref(),
                expected,
                "{vars:?}"
            );
        }
    }

    #[test]
    fn host_address_falls_back_to_host() {
        let cases: [(Vars, Option<&str>); 3] = [
            (
                &[("CONTAINER_HOST_ADDRESS", "10.0.0.5"), ("HOST", "h")],
                Some("10.0.0.5"),
            ),
            (&[("HOST", "node-1")], Some("node-1")),
            (&[], None),
        ];
        for (vars, expected) in cases {
            assert_eq!(
                env(vars).host_address().ok().as_deref(),
                expected,
                "{vars:?}"
            );
        }
    }

    #[test]
    fn service_name_fallbacks() {
        let cases: [(Vars, Option<&str>); 6] = [
            (
                &[
                    ("SERVICE_NAME", "a"),
                    ("MARATHON_APP_LABEL_SERVICE_NAME", "b"),
                    ("MARATHON_APP_ID", "/dev/c"),
                ],
                Some("a"),
            ),
            (
                &[
                    ("MARATHON_APP_LABEL_SERVICE_NAME", "b"),
                    ("MARATHON_APP_ID", "/dev/c"),
                ],
                Some("b"),
            ),
            (&[("MARATHON_APP_ID", "/dev/ingestor")], Some("ingestor")),
            (&[("MARATHON_APP_ID", "/web")], Some("web")),
            (&[("MARATHON_APP_ID", "/dev/my.app")], None),
            (&[], None),
        ];
        for (vars, expected) in cases {
            assert_eq!(
                env(vars).service_name().ok().as_deref(),
                expected,
                "{vars:?}"
            );
        }
    }

    #[test]
    fn group_fallbacks() {
        let cases: [(Vars, Option<&str>); 7] = [
            (
                &[("SERVICE_GROUP", "dev"), ("MARATHON_APP_ID", "/x/y")],
                Some("dev"),
            ),
            (
                &[("MARATHON_APP_LABEL_SERVICE_GROUP", "prod")],
                Some("prod"),
            ),
            (&[("LABELS", "ponies,hello")], Some("hello.ponies")),
            (&[("LABELS", "")], Some("default")),
            (&[("MARATHON_APP_ID", "/a/b/web")], Some("a.b")),
            (&[("MARATHON_APP_ID", "/web")], Some("default")),
            (&[], None),
        ];
        for (vars, expected) in cases {
            assert_eq!(env(vars).group().ok().as_deref(), expected, "{vars:?}");
        }
    }

    #[test]
    fn ports_from_env() {
        let e = env(&[("PORT_API", "31001"), ("PORT_BAD", "x")]);
        assert_eq!(e.port("api").unwrap(), Some(31001));
        assert_eq!(e.port("API").unwrap(), Some(31001));
        assert_eq!(e.port("other").unwrap(), None);
        assert!(e.port("bad").is_err());
    }

    #[test]
    fn etcd_settings_fallbacks() {
        let cases: [(Vars, &[&str]); 4] = [
            (
                &[
                    ("ETCD_ENDPOINTS", "http://a:1,b:2"),
                    ("ETCD_HOST_ADDRESS", "h"),
                ],
                &["http://a:1", "http://b:2"],
            ),
            (
                &[("ETCD_HOST_ADDRESS", "h"), ("ETCD_PORT", "4001")],
                &["http://h:4001"],
            ),
            (&[("ETCD_HOST_ADDRESS", "h")], &["http://h:2379"]),
            (&[], &["http://127.0.0.1:2379"]),
        ];
        for (vars, expected) in cases {
            assert_eq!(
                env(vars).settings().unwrap().endpoints,
                expected,
                "{vars:?}"
            );
        }
        let s = env(&[
            ("REGISTRY_PREFIX", "/x/"),
            ("ETCD_USER", "u"),
            ("ETCD_PASSWORD", "p"),
        ])
        .settings()
        .unwrap();
        assert_eq!(s.prefix, "/x");
        assert_eq!(s.auth, Some(("u".into(), "p".into())));
        assert!(env(&[("ETCD_PORT", "x"), ("ETCD_HOST_ADDRESS", "h")])
            .settings()
            .is_err());
    }
    #[test]
    fn etcd_ca_under_the_shared_name_and_the_old_one() {
        let ca = |vars: Vars| {
            let mut vars = vars.to_vec();
            vars.push(("ETCD_ENDPOINTS", "https://etcd:2379"));
            env(&vars).settings().unwrap().tls.and_then(|t| t.ca)
        };
        assert_eq!(ca(&[("ETCD_CA", "/a.pem")]), Some(PathBuf::from("/a.pem")));
        assert_eq!(
            ca(&[("ETCD_CACERT", "/b.pem")]),
            Some(PathBuf::from("/b.pem"))
        );
        assert_eq!(
            ca(&[("ETCD_CA", "/a.pem"), ("ETCD_CACERT", "/b.pem")]),
            Some(PathBuf::from("/a.pem"))
        );
        assert_eq!(ca(&[]), None);
    }
}
