//! App ids (Marathon's PathId rules) and task ids (current and historic
//! formats). Pure functions.

use std::sync::OnceLock;

use regex::Regex;

/// Marathon's segment pattern, as quoted in its error message.
pub const SEGMENT_PATTERN: &str = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$";

fn segment_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^((([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.))$")
            .expect("static regex")
    })
}

/// Makes an id absolute and resolves `.`/`..` (relative to the root).
pub fn canonical(id: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in id.split('/').filter(|s| !s.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Checks an app id's syntax; returns the error message Marathon gives.
pub fn validate_app_id(raw: &str) -> Result<(), String> {
    for seg in raw.split('/').filter(|s| !s.is_empty()) {
        if !segment_re().is_match(seg) {
            return Err(format!(
                "must fully match regular expression '{SEGMENT_PATTERN}'"
            ));
        }
    }
    let id = canonical(raw);
    if id == "/" {
        return Err("Path must contain at least one path element".into());
    }
    let max = crate::bounds::MAX_APP_ID_LEN;
    if id.len() > max {
        return Err(format!(
            "must be at most {max} characters long, got {} (task ids are built from it)",
            id.len()
        ));
    }
    let last = id.rsplit('/').next().unwrap_or_default();
    if matches!(last, "restart" | "tasks" | "versions") {
        return Err(format!("must not end with {last}"));
    }
    Ok(())
}

/// Marathon's "safe path": segments joined with `_` (`/prod/web` -> `prod_web`).
pub fn safe_id(app_id: &str) -> String {
    app_id.trim_start_matches('/').replace('/', "_")
}

/// Inverse of [`safe_id`] (ids never contain `_`).
pub fn app_id_from_safe(safe: &str) -> String {
    format!("/{}", safe.replace('_', "/"))
}

const INSTANCE_PREFIX: &str = ".instance-";
const TASK_SUFFIX: &str = "._app.1";
/// Characters of a hyphenated UUID.
const UUID_LEN: usize = 36;

/// What [`new_task_id`] adds to the safe id: the length of a task id is
/// `safe_id(app_id).len() + TASK_ID_EXTRA_LEN`.
pub const TASK_ID_EXTRA_LEN: usize = INSTANCE_PREFIX.len() + UUID_LEN + TASK_SUFFIX.len();

/// A new task id in the current format.
pub fn new_task_id(app_id: &str) -> String {
    format!(
        "{}{INSTANCE_PREFIX}{}{TASK_SUFFIX}",
        safe_id(app_id),
        uuid::Uuid::new_v4()
    )
}

/// The instance id of a task id (`<safe>.instance-<uuid>`), if current format.
pub fn instance_id(task_id: &str) -> String {
    match task_id.find("._app") {
        Some(i) => task_id[..i].to_string(),
        None => task_id.to_string(),
    }
}

/// The parts of a task id in any of Marathon's historic formats: the app id
/// and the instance uuid. `None` = not a task id at all.
pub fn parse_task_id(id: &str) -> Option<(String, String)> {
    static RES: OnceLock<Vec<Regex>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            // <safe>.instance-<uuid>._app.<n>, <safe>.instance-<uuid>._app, <safe>.marathon-<uuid>._app
            r"^(.+)\.(?:instance|marathon)-([^.]+)(?:\._app(?:\.\d+)?)?$",
            // legacy <safe>.<uuid> or <safe>_<uuid>
            r"^(.+)[._]([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$",
        ]
        .iter()
        .map(|r| Regex::new(r).expect("static regex"))
        .collect()
    });
    res.iter().find_map(|re| {
        re.captures(id)
            .map(|c| (app_id_from_safe(&c[1]), c[2].to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids() {
        let cases = [
            ("/web", true),
            ("web", true),
            ("/prod/web-1", true),
            ("/a.b/c", true),
            ("/Web", false),
            ("/-web", false),
            ("/web_1", false),
            ("/", false),
            ("/x/tasks", false),
            ("/x/restart", false),
        ];
        let max = crate::bounds::MAX_APP_ID_LEN;
        let long = |n: usize| format!("/{}", "a".repeat(n - 1));
        let cases = [
            (long(max), true),
            (long(max + 1), false),
            (long(300), false),
            (
                format!("/{}/{}", "a".repeat(70), "b".repeat(max - 72)),
                true,
            ),
            (
                format!("/{}/{}", "a".repeat(70), "b".repeat(max - 71)),
                false,
            ),
        ]
        .into_iter()
        .chain(cases.map(|(id, ok)| (id.to_string(), ok)));
        for (id, ok) in cases {
            assert_eq!(validate_app_id(&id).is_ok(), ok, "{id}");
        }
        assert!(validate_app_id(&long(300))
            .unwrap_err()
            .starts_with(&format!("must be at most {max} characters long, got 300")));
        assert_eq!(canonical("a/./b/../c"), "/a/c");
        assert_eq!(safe_id("/prod/web"), "prod_web");
        assert_eq!(app_id_from_safe("prod_web"), "/prod/web");
    }

    #[test]
    fn task_ids() {
        let id = new_task_id("/prod/web");
        assert!(id.starts_with("prod_web.instance-") && id.ends_with("._app.1"));
        let uuid = "564bd685-4c30-11e5-98c1-be5b2935a987";
        let cases = [
            format!("prod_web.instance-{uuid}._app.1"),
            format!("prod_web.instance-{uuid}._app"),
            format!("prod_web.marathon-{uuid}._app"),
            format!("prod_web.{uuid}"),
            format!("prod_web_{uuid}"),
            format!("prod_web.instance-{uuid}"),
        ];
        for c in &cases {
            let (app, u) = parse_task_id(c).unwrap_or_else(|| panic!("{c}"));
            assert_eq!(u, uuid, "{c}");
            assert_eq!(app, "/prod/web", "{c}");
        }
        assert_eq!(parse_task_id("garbage"), None);
        assert_eq!(
            instance_id(&format!("a.instance-{uuid}._app.1")),
            format!("a.instance-{uuid}")
        );
    }
}
