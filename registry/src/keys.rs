//! Key builders and parser: the only place key strings are made.
//!
//! `<prefix>/<service>/<group>/containers/<container>`. Every name is
//! validated first; a bad name is an error, never a key. The manager's own
//! state keys are built by [`manager`].

pub mod manager;

use std::fmt;

use crate::error::{Error, Result};
use crate::naming::{validate_container, validate_group, validate_service};

const CONTAINERS: &str = "containers";

/// The identity of one instance record (what its key encodes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName {
    pub service: String,
    pub group: String,
    pub container: String,
}

impl InstanceName {
    /// Builds a name after validating all three parts.
    pub fn new(
        service: impl Into<String>,
        group: impl Into<String>,
        container: impl Into<String>,
    ) -> Result<InstanceName> {
        let name = InstanceName {
            service: service.into(),
            group: group.into(),
            container: container.into(),
        };
        name.validate()?;
        Ok(name)
    }

    pub fn validate(&self) -> Result<()> {
        validate_service(&self.service)?;
        validate_group(&self.group)?;
        validate_container(&self.container)
    }

    /// The etcd key of this instance under `prefix`.
    pub fn key(&self, prefix: &str) -> Result<String> {
        instance_key(prefix, &self.service, &self.group, &self.container)
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.group, self.container)
    }
}

/// What a read or a watch covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every record under the prefix.
    All,
    /// Every group of one service.
    Service(String),
    /// One group of one service.
    Group { service: String, group: String },
}

impl Scope {
    pub fn service(service: impl Into<String>) -> Scope {
        Scope::Service(service.into())
    }

    pub fn group(service: impl Into<String>, group: impl Into<String>) -> Scope {
        Scope::Group {
            service: service.into(),
            group: group.into(),
        }
    }

    /// The key prefix (ending in `/`) covering this scope.
    pub fn key_prefix(&self, prefix: &str) -> Result<String> {
        match self {
            Scope::All => all_prefix(prefix),
            Scope::Service(s) => service_prefix(prefix, s),
            Scope::Group { service, group } => group_prefix(prefix, service, group),
        }
    }
}

/// Normalises a registry prefix: leading `/` added, trailing `/` removed;
/// `..`, `.` and empty segments are rejected. `/` alone becomes the empty
/// string (keys then start at `/<service>`).
pub fn normalize_prefix(prefix: &str) -> Result<String> {
    let trimmed = prefix.trim().trim_end_matches('/');
    let body = trimmed.strip_prefix('/').unwrap_or(trimmed);
    if body.is_empty() {
        return Ok(String::new());
    }
    for segment in body.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(Error::InvalidPrefix(prefix.to_string()));
        }
    }
    if body.contains("..") {
        return Err(Error::InvalidPrefix(prefix.to_string()));
    }
    Ok(format!("/{body}"))
}

/// `<prefix>/` — every record.
pub fn all_prefix(prefix: &str) -> Result<String> {
    Ok(format!("{}/", normalize_prefix(prefix)?))
}

/// `<prefix>/<service>/` — every group of a service.
pub fn service_prefix(prefix: &str, service: &str) -> Result<String> {
    validate_service(service)?;
    Ok(format!("{}/{service}/", normalize_prefix(prefix)?))
}

/// `<prefix>/<service>/<group>/containers/` — one group.
pub fn group_prefix(prefix: &str, service: &str, group: &str) -> Result<String> {
    validate_service(service)?;
    validate_group(group)?;
    Ok(format!(
        "{}/{service}/{group}/{CONTAINERS}/",
        normalize_prefix(prefix)?
    ))
}

/// `<prefix>/<service>/<group>/containers/<container>` — one instance.
pub fn instance_key(prefix: &str, service: &str, group: &str, container: &str) -> Result<String> {
    validate_container(container)?;
    Ok(format!(
        "{}{container}",
        group_prefix(prefix, service, group)?
    ))
}

/// Parses an instance key under `prefix`; `None` for anything else (other
/// keys under the prefix, invalid names).
pub fn parse_instance_key(prefix: &str, key: &str) -> Option<InstanceName> {
    let base = normalize_prefix(prefix).ok()?;
    let rest = key.strip_prefix(base.as_str())?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (service, group, containers, container) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || containers != CONTAINERS {
        return None;
    }
    InstanceName::new(service, group, container).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        let cases = [
            ("/services", Some("/services")),
            ("/services/", Some("/services")),
            ("services", Some("/services")),
            ("/a/b/", Some("/a/b")),
            ("/", Some("")),
            ("", Some("")),
            ("/a/../b", None),
            ("/..", None),
            ("/a//b", None),
            ("/a/./b", None),
            ("/a..b", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_prefix(input).ok().as_deref(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn keys_are_built_from_valid_names_only() {
        assert_eq!(
            instance_key("/services", "ingestor", "dev", "t.1").unwrap(),
            "/services/ingestor/dev/containers/t.1"
        );
        assert_eq!(
            instance_key("/services/", "web", "default", "x").unwrap(),
            "/services/web/default/containers/x"
        );
        assert_eq!(service_prefix("/s", "web").unwrap(), "/s/web/");
        assert_eq!(
            group_prefix("/s", "web", "a.b").unwrap(),
            "/s/web/a.b/containers/"
        );
        assert_eq!(all_prefix("/s/").unwrap(), "/s/");
        assert_eq!(Scope::All.key_prefix("/").unwrap(), "/");
        for (s, g, c) in [
            ("Web", "dev", "x"),
            ("web", "dev/x", "x"),
            ("web", "dev", "../x"),
            ("web", "dev", ".."),
            ("web", "", "x"),
            ("", "dev", "x"),
        ] {
            assert!(instance_key("/services", s, g, c).is_err(), "{s} {g} {c}");
        }
        assert!(instance_key("/a/../b", "web", "dev", "x").is_err());
    }

    #[test]
    fn keys_parse_back() {
        let name = InstanceName::new("web", "hello.ponies", "task.1").unwrap();
        let key = name.key("/services").unwrap();
        assert_eq!(parse_instance_key("/services", &key), Some(name.clone()));
        assert_eq!(parse_instance_key("/services/", &key), Some(name));
        let none = [
            "/services/web/dev/containers",
            "/services/web/dev/containers/",
            "/services/web/dev/other/x",
            "/services/web/dev/containers/x/y",
            "/servicesx/web/dev/containers/x",
            "/other/web/dev/containers/x",
            "/services/Web/dev/containers/x",
            "/services/web/dev/containers/..",
        ];
        for key in none {
            assert_eq!(parse_instance_key("/services", key), None, "{key}");
        }
        assert_eq!(
            parse_instance_key("/", "/web/default/containers/x"),
            Some(InstanceName::new("web", "default", "x").unwrap())
        );
    }
}
