//! Naming rules (DESIGN.md "The registry layout"): pure functions, no I/O.
//!
//! - service: `[a-z0-9]([a-z0-9-]*[a-z0-9])?` (no dots)
//! - group: one or more labels of the service pattern joined with `.`;
//!   `default` when there are no labels
//! - container: the task id, `[A-Za-z0-9_.-]+`, never `.` or `..`

use std::collections::BTreeMap;

use crate::error::{Error, NameKind, Result};

/// The group of a service without labels.
pub const DEFAULT_GROUP: &str = "default";

/// The service and group an app's tasks are registered under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Names {
    pub service: String,
    pub group: String,
}

fn label_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("must not be empty");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("only lowercase letters, digits and '-' are allowed");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// Checks a service name: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`.
pub fn validate_service(name: &str) -> Result<()> {
    match label_problem(name) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            kind: NameKind::Service,
            value: name.to_string(),
            reason: if name.contains('.') {
                "dots are not allowed in a service name (set a SERVICE_NAME label)"
            } else {
                reason
            },
        }),
    }
}

/// Checks a group: one or more service-pattern labels joined with `.`.
pub fn validate_group(group: &str) -> Result<()> {
    for label in group.split('.') {
        if let Some(reason) = label_problem(label) {
            return Err(Error::InvalidName {
                kind: NameKind::Group,
                value: group.to_string(),
                reason,
            });
        }
    }
    Ok(())
}

/// Checks a container name (task id): `[A-Za-z0-9_.-]+`, not `.` or `..`.
pub fn validate_container(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("only letters, digits, '_', '.' and '-' are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            kind: NameKind::Container,
            value: name.to_string(),
            reason,
        }),
    }
}

/// The group of a set of labels: sorted, de-duplicated, joined with `.`;
/// `default` when empty. Not validated here (keys validate before writing).
pub fn group_from_labels<S: AsRef<str>>(labels: &[S]) -> String {
    let mut sorted: Vec<&str> = labels
        .iter()
        .map(|l| l.as_ref().trim())
        .filter(|l| !l.is_empty())
        .collect();
    if sorted.is_empty() {
        return DEFAULT_GROUP.to_string();
    }
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(".")
}

/// The labels of a group: `default` has none, otherwise split on `.`.
pub fn labels_from_group(group: &str) -> Vec<String> {
    if group == DEFAULT_GROUP || group.is_empty() {
        return Vec::new();
    }
    group.split('.').map(str::to_string).collect()
}

/// The canonical form of a group given as `.`-separated labels (a
/// `SERVICE_GROUP` label, or app id segments): the labels sorted and
/// de-duplicated, joined with `.` — the deployer's rule, so
/// `ponies.hello` -> `hello.ponies`. Empty labels are kept (they make the
/// group invalid rather than silently becoming another group).
fn canonical_group<'a>(labels: impl Iterator<Item = &'a str>) -> String {
    let mut sorted: Vec<&str> = labels.collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(".")
}

/// Service and group of a Marathon app: the `SERVICE_NAME` / `SERVICE_GROUP`
/// labels win; otherwise the app id's last segment is the service and the
/// segments before it are the labels of the group (`default` at top level).
/// A group is always the sorted, de-duplicated labels joined with `.`
/// (DESIGN.md: `[ponies, hello]` -> `hello.ponies`), whether it comes from
/// `SERVICE_GROUP` (split on `.`) or from the app id (segments, each split
/// on `.`), exactly as the deployer names groups. Both names are validated.
pub fn names_from_app(app_id: &str, labels: &BTreeMap<String, String>) -> Result<Names> {
    let segments: Vec<&str> = app_id.split('/').filter(|s| !s.is_empty()).collect();
    let service = match labels.get("SERVICE_NAME").map(|s| s.trim()) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => segments.last().copied().unwrap_or_default().to_string(),
    };
    let group = match labels.get("SERVICE_GROUP").map(|s| s.trim()) {
        Some(g) if !g.is_empty() => canonical_group(g.split('.').map(str::trim)),
        _ if segments.len() > 1 => canonical_group(
            segments[..segments.len() - 1]
                .iter()
                .flat_map(|s| s.split('.')),
        ),
        _ => DEFAULT_GROUP.to_string(),
    };
    validate_service(&service)?;
    validate_group(&group)?;
    Ok(Names { service, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        let cases = [
            ("web", true),
            ("a", true),
            ("0", true),
            ("my-svc2", true),
            ("a-b-c", true),
            ("", false),
            ("-web", false),
            ("web-", false),
            ("Web", false),
            ("in.gestor", false),
            ("web_1", false),
            ("we b", false),
            ("web/x", false),
            ("é", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_service(name).is_ok(), ok, "service {name:?}");
        }
    }

    #[test]
    fn group_names() {
        let cases = [
            ("default", true),
            ("dev", true),
            ("hello.ponies", true),
            ("a.b-c.d1", true),
            ("", false),
            (".dev", false),
            ("dev.", false),
            ("a..b", false),
            ("Dev", false),
            ("dev/x", false),
            ("-a.b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_group(name).is_ok(), ok, "group {name:?}");
        }
    }

    #[test]
    fn container_names() {
        let cases = [
            ("dev_ingestor.instance-0b1c._app.1", true),
            ("A-Z_0.9", true),
            ("...", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a b", false),
            ("a:b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_container(name).is_ok(), ok, "container {name:?}");
        }
    }

    #[test]
    fn groups_from_labels() {
        let cases: [(&[&str], &str); 5] = [
            (&[], "default"),
            (&["dev"], "dev"),
            (&["ponies", "hello"], "hello.ponies"),
            (&["b", "a", "b"], "a.b"),
            (&["", " "], "default"),
        ];
        for (labels, group) in cases {
            assert_eq!(group_from_labels(labels), group, "{labels:?}");
        }
    }

    #[test]
    fn labels_of_groups() {
        assert!(labels_from_group("default").is_empty());
        assert_eq!(labels_from_group("dev"), vec!["dev"]);
        assert_eq!(labels_from_group("hello.ponies"), vec!["hello", "ponies"]);
    }

    #[test]
    fn names_of_apps() {
        let none = BTreeMap::new();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        type Case<'a> = (
            &'a str,
            BTreeMap<String, String>,
            Option<(&'a str, &'a str)>,
        );
        let cases: Vec<Case> = vec![
            ("/dev/ingestor", none.clone(), Some(("ingestor", "dev"))),
            ("/web", none.clone(), Some(("web", "default"))),
            ("web", none.clone(), Some(("web", "default"))),
            ("/a/b/web", none.clone(), Some(("web", "a.b"))),
            (
                "/x/y",
                labels(&[("SERVICE_NAME", "api"), ("SERVICE_GROUP", "hello.ponies")]),
                Some(("api", "hello.ponies")),
            ),
            (
                "/dev/y",
                labels(&[("SERVICE_NAME", "api")]),
                Some(("api", "dev")),
            ),
            (
                "/y",
                labels(&[("SERVICE_GROUP", "prod")]),
                Some(("y", "prod")),
            ),
            ("/dev/my.app", none.clone(), None),
            (
                "/dev/my.app",
                labels(&[("SERVICE_NAME", "myapp")]),
                Some(("myapp", "dev")),
            ),
            ("/Dev/app", none.clone(), None),
            ("/", none.clone(), None),
            ("", none.clone(), None),
            // SERVICE_GROUP parts are sorted and de-duplicated (DESIGN.md:
            // labels [ponies, hello] -> hello.ponies), as the deployer does.
            (
                "/x/y",
                labels(&[("SERVICE_NAME", "api"), ("SERVICE_GROUP", "ponies.hello")]),
                Some(("api", "hello.ponies")),
            ),
            (
                "/x/y",
                labels(&[("SERVICE_GROUP", "b.a.b")]),
                Some(("y", "a.b")),
            ),
            (
                "/x/y",
                labels(&[("SERVICE_GROUP", " prod ")]),
                Some(("y", "prod")),
            ),
            (
                "/x/y",
                labels(&[("SERVICE_GROUP", "default")]),
                Some(("y", "default")),
            ),
            // An empty label part is never dropped silently: invalid.
            ("/x/y", labels(&[("SERVICE_GROUP", "a..b")]), None),
            ("/x/y", labels(&[("SERVICE_GROUP", "dev.")]), None),
            ("/x/y", labels(&[("SERVICE_GROUP", "Dev")]), None),
            ("/x/y", labels(&[("SERVICE_GROUP", "dev/x")]), None),
            // A blank SERVICE_GROUP / SERVICE_NAME falls back to the app id.
            (
                "/dev/y",
                labels(&[("SERVICE_GROUP", " "), ("SERVICE_NAME", "")]),
                Some(("y", "dev")),
            ),
            // From the app id: the segments (and dotted parts, as in the
            // deployer's `/hello.ponies/hello`) are labels, sorted.
            ("/b/a/web", none.clone(), Some(("web", "a.b"))),
            (
                "/ponies.hello/hello",
                none.clone(),
                Some(("hello", "hello.ponies")),
            ),
            (
                "/hello.ponies/hello",
                none.clone(),
                Some(("hello", "hello.ponies")),
            ),
            ("/dev/dev/web", none.clone(), Some(("web", "dev"))),
            ("/dev/web/", none.clone(), Some(("web", "dev"))),
            ("/dev..x/web", none.clone(), None),
            (
                "/dev/x.y",
                labels(&[("SERVICE_NAME", "x-y"), ("SERVICE_GROUP", "qa.dev")]),
                Some(("x-y", "dev.qa")),
            ),
        ];
        for (app_id, labels, expected) in cases {
            let got = names_from_app(app_id, &labels).ok();
            let expected = expected.map(|(s, g)| Names {
                service: s.to_string(),
                group: g.to_string(),
            });
            assert_eq!(got, expected, "{app_id} {labels:?}");
        }
    }
}
