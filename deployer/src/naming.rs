//! Names: services, labels, groups and the Marathon app ids built from them.
//!
//! A service name and each label must match `[a-z0-9]([a-z0-9-]*[a-z0-9])?`
//! (the registry's rule, and a valid Marathon id segment without dots). The
//! group is the sorted labels joined with `.`; the app id is
//! `/<group>/<service>`, or `/<service>` in the default group.

/// The group name used when a service has no labels.
pub const DEFAULT_GROUP: &str = "default";

/// Marathon routes `/v2/apps/<id>/<word>` to sub-resources, so an id may not
/// end with these.
const RESERVED: &[&str] = &["restart", "tasks", "versions"];

/// Why `name` is not usable as a service name or label, or None when it is.
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
    if name.len() > 63 {
        return Some(format!("\"{name}\" is longer than 63 characters"));
    }
    None
}

/// Like [`name_problem`], plus Marathon's reserved last segments.
pub fn service_problem(name: &str) -> Option<String> {
    if let Some(p) = name_problem(name) {
        return Some(p);
    }
    if RESERVED.contains(&name) {
        return Some(format!(
            "\"{name}\" is reserved by the Marathon API (an app id may not end with restart, tasks or versions)"
        ));
    }
    None
}

/// Labels sorted and deduplicated: the canonical form.
pub fn canonical_labels(labels: &[String]) -> Vec<String> {
    let mut l = labels.to_vec();
    l.sort();
    l.dedup();
    l
}

/// `["ponies","hello"]` -> `Some("hello.ponies")`; no labels -> None.
pub fn group_of(labels: &[String]) -> Option<String> {
    if labels.is_empty() {
        None
    } else {
        Some(canonical_labels(labels).join("."))
    }
}

/// The group name as the registry and the apps' env see it.
pub fn group_name(labels: &[String]) -> String {
    group_of(labels).unwrap_or_else(|| DEFAULT_GROUP.to_string())
}

/// `/<group>/<service>` or `/<service>`.
pub fn app_id(service: &str, labels: &[String]) -> String {
    match group_of(labels) {
        Some(g) => format!("/{g}/{service}"),
        None => format!("/{service}"),
    }
}

/// (service, labels) from an app id following the naming rule, for apps the
/// deployer did not label itself.
pub fn from_app_id(id: &str) -> (String, Vec<String>) {
    let segs: Vec<&str> = id
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
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

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ids_and_groups() {
        assert_eq!(app_id("ingestor", &s(&["dev"])), "/dev/ingestor");
        assert_eq!(app_id("web", &[]), "/web");
        assert_eq!(
            app_id("hello", &s(&["ponies", "hello"])),
            "/hello.ponies/hello"
        );
        assert_eq!(group_name(&[]), "default");
        assert_eq!(group_name(&s(&["b", "a", "b"])), "a.b");
    }

    #[test]
    fn name_rules() {
        assert!(name_problem("web-1").is_none());
        assert!(name_problem("Web").unwrap().contains("lowercase"));
        assert!(name_problem("a.b").unwrap().contains("dots"));
        assert!(name_problem("-a").unwrap().contains("start and end"));
        assert!(name_problem("a_b").unwrap().contains("'_'"));
        assert!(service_problem("tasks").unwrap().contains("reserved"));
        assert!(name_problem("").is_some());
    }

    #[test]
    fn app_id_back_to_names() {
        assert_eq!(
            from_app_id("/dev/ingestor"),
            ("ingestor".into(), s(&["dev"]))
        );
        assert_eq!(
            from_app_id("/hello.ponies/x"),
            ("x".into(), s(&["hello", "ponies"]))
        );
        assert_eq!(from_app_id("/web"), ("web".into(), vec![]));
    }
}
