//! Naming rules (DESIGN.md "The registry layout"): pure functions, no I/O.
//!
//! - service: `[a-z0-9]([a-z0-9-]*[a-z0-9])?` (no dots)
//! - group: one or more labels of the service pattern joined with `.`;
//!   `default` when there are no labels
//! - container: the task id, `[A-Za-z0-9_.-]+`, never `.` or `..`
//! - app id (the deployer's rule): `/<group>/<service>`, `/<service>` in
//!   the default group; a deploy document's names are also at most 63
//!   characters and never Marathon's reserved last segments

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

/// Marathon routes `/v2/apps/<id>/<word>` to sub-resources, so an app id
/// (and so a service name) may not end with these.
pub const RESERVED_SERVICES: &[&str] = &["restart", "tasks", "versions"];

/// The longest service name or label a deploy document may use.
pub const MAX_NAME_LEN: usize = 63;

/// Why `name` cannot be a service name or label of a deploy document, in
/// words for its author (with a hint), or None when it can. The pattern is
/// [`validate_service`]'s, plus at most [`MAX_NAME_LEN`] characters.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let hint = if bad.is_ascii_uppercase() {
            " (use lowercase)"
        } else if bad == '.' {
            " (dots separate labels in a group name)"
        } else {
            ""
        };
        return Some(format!(
            "\"{name}\" is not a valid Marathon id segment: character '{bad}' is not allowed{hint}; use lowercase letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some(format!(
            "\"{name}\" is not a valid Marathon id segment: it must start and end with a letter or digit"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "\"{name}\" is longer than {MAX_NAME_LEN} characters"
        ));
    }
    None
}

/// Like [`name_problem`], plus Marathon's reserved last segments
/// ([`RESERVED_SERVICES`]).
pub fn service_problem(name: &str) -> Option<String> {
    if let Some(p) = name_problem(name) {
        return Some(p);
    }
    if RESERVED_SERVICES.contains(&name) {
        return Some(format!(
            "\"{name}\" is reserved by the Marathon API (an app id may not end with restart, tasks or versions)"
        ));
    }
    None
}

/// Labels sorted and de-duplicated: the canonical form.
pub fn canonical_labels(labels: &[String]) -> Vec<String> {
    let mut l = labels.to_vec();
    l.sort();
    l.dedup();
    l
}

/// The Marathon app id of a service: `/<group>/<service>`, or
/// `/<service>` without labels (the default group).
pub fn app_id<S: AsRef<str>>(service: &str, labels: &[S]) -> String {
    if labels.is_empty() {
        format!("/{service}")
    } else {
        format!("/{}/{service}", group_from_labels(labels))
    }
}

/// (service, labels) of an app id that follows [`app_id`]'s rule (the
/// last segment, and the segments before it split on `.`), never failing:
/// for showing apps nobody labelled. [`names_from_app`] is the checked
/// form.
pub fn app_id_parts(id: &str) -> (String, Vec<String>) {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    match segs.split_last() {
        Some((last, rest)) => {
            let labels = rest
                .iter()
                .flat_map(|s| s.split('.'))
                .map(str::to_string)
                .collect();
            (last.to_string(), labels)
        }
        None => (String::new(), Vec::new()),
    }
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

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    // Moved from the deployer's copy of the rules (deployer/src/naming.rs).
    #[test]
    fn app_ids_and_groups() {
        assert_eq!(app_id("ingestor", &strings(&["dev"])), "/dev/ingestor");
        assert_eq!(app_id::<String>("web", &[]), "/web");
        assert_eq!(
            app_id("hello", &strings(&["ponies", "hello"])),
            "/hello.ponies/hello"
        );
        assert_eq!(group_from_labels::<String>(&[]), "default");
        assert_eq!(group_from_labels(&strings(&["b", "a", "b"])), "a.b");
        assert_eq!(canonical_labels(&strings(&["b", "a", "b"])), ["a", "b"]);
    }

    #[test]
    fn deploy_name_rules() {
        assert!(name_problem("web-1").is_none());
        assert!(name_problem("Web").unwrap().contains("lowercase"));
        assert!(name_problem("a.b").unwrap().contains("dots"));
        assert!(name_problem("-a").unwrap().contains("start and end"));
        assert!(name_problem("a_b").unwrap().contains("'_'"));
        assert!(service_problem("tasks").unwrap().contains("reserved"));
        assert!(name_problem("").is_some());
        assert!(name_problem(&"a".repeat(63)).is_none());
        assert!(name_problem(&"a".repeat(64)).unwrap().contains("63"));
        // What the deploy rules accept, the registry accepts.
        for ok in ["web-1", "a", "0x", &"a".repeat(63)] {
            assert!(validate_service(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn app_id_back_to_names() {
        assert_eq!(
            app_id_parts("/dev/ingestor"),
            ("ingestor".into(), strings(&["dev"]))
        );
        assert_eq!(
            app_id_parts("/hello.ponies/x"),
            ("x".into(), strings(&["hello", "ponies"]))
        );
        assert_eq!(app_id_parts("/web"), ("web".into(), vec![]));
        assert_eq!(app_id_parts("/"), (String::new(), vec![]));
    }
}
