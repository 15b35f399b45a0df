//! Keys of the manager's own state, under its internal prefix (default
//! `/mdo/manager`). One JSON value per key:
//!
//! ```text
//! <prefix>/apps/<safe id>                     current app definition
//! <prefix>/versions/<safe id>/<version>       every kept version of an app
//! <prefix>/tasks/<task id>                    task records (with runtime handles)
//! <prefix>/deployments/<deployment id>        deployments in progress
//! <prefix>/subscriptions/<urlencoded url>     event callback subscriptions
//! <prefix>/meta/manager-id                    this manager's stable id
//! ```
//!
//! The safe id is Marathon's "safe path" of an app id (`/prod/web` ->
//! `prod_web`), unambiguous because app ids never hold `_`. Every id is
//! checked before it becomes part of a key: nothing can name a key outside
//! its own folder (no `/`, no `.` or `..` segment, no `_` in app ids).

use crate::error::{Error, NameKind, Result};
use crate::keys::normalize_prefix;
use crate::naming::validate_container;

const APPS: &str = "apps";
const VERSIONS: &str = "versions";
const TASKS: &str = "tasks";
const DEPLOYMENTS: &str = "deployments";
const SUBSCRIPTIONS: &str = "subscriptions";
const MANAGER_ID: &str = "meta/manager-id";

/// The folders of the state the manager loads at start-up.
pub const STATE_FOLDERS: [&str; 4] = [APPS, VERSIONS, TASKS, DEPLOYMENTS];

fn invalid(kind: NameKind, value: &str, reason: &'static str) -> Error {
    Error::InvalidName {
        kind,
        value: value.to_string(),
        reason,
    }
}

/// Marathon's safe path of an app id (`/prod/web` -> `prod_web`), after
/// checking every segment: lowercase letters, digits, `-` and `.`, never
/// empty, `.` or `..`.
pub fn safe_app_id(app_id: &str) -> Result<String> {
    let body = app_id.strip_prefix('/').unwrap_or(app_id);
    if body.is_empty() {
        return Err(invalid(NameKind::AppId, app_id, "must not be empty"));
    }
    for segment in body.split('/') {
        let reason = if segment.is_empty() {
            Some("must not have empty segments")
        } else if segment == "." || segment == ".." {
            Some("must not have '.' or '..' segments")
        } else if !segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        {
            Some("only lowercase letters, digits, '-', '.' and '/' are allowed")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(invalid(NameKind::AppId, app_id, reason));
        }
    }
    Ok(body.replace('/', "_"))
}

/// Inverse of [`safe_app_id`].
pub fn app_id_from_safe(safe: &str) -> String {
    format!("/{}", safe.replace('_', "/"))
}

/// Same rule as a registry container name (`[A-Za-z0-9_.-]+`, not `.` or
/// `..`), reported as `kind`.
fn check_id(kind: NameKind, id: &str) -> Result<()> {
    validate_container(id).map_err(|e| match e {
        Error::InvalidName { reason, .. } => invalid(kind, id, reason),
        other => other,
    })
}

/// An app version as written in keys (`2026-11-22T10:00:00.000Z`): RFC 3339
/// characters only.
fn check_version(version: &str) -> Result<()> {
    let reason = if version.is_empty() {
        Some("must not be empty")
    } else if version == "." || version == ".." {
        Some("must not be '.' or '..'")
    } else if !version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'-' | b'+'))
    {
        Some("only letters, digits, ':', '.', '-' and '+' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(invalid(NameKind::Version, version, reason)),
        None => Ok(()),
    }
}

/// `application/x-www-form-urlencoded` bytes: ASCII alphanumerics and
/// `*-._` stay, space becomes `+`, everything else `%XX`. A URL becomes one
/// key segment (no `/`), and the same URL always the same key.
fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The key builder of one manager's state. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerKeys {
    prefix: String,
}

impl ManagerKeys {
    /// Keys under `internal_prefix` (normalised: leading `/`, no trailing
    /// `/`; `..` and empty segments are refused).
    pub fn new(internal_prefix: &str) -> Result<ManagerKeys> {
        Ok(ManagerKeys {
            prefix: normalize_prefix(internal_prefix)?,
        })
    }

    /// The normalised internal prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/<folder>/`, for one of [`STATE_FOLDERS`] or `subscriptions`.
    fn folder(&self, folder: &str) -> String {
        format!("{}/{folder}/", self.prefix)
    }

    /// `<prefix>/apps/`
    pub fn apps_prefix(&self) -> String {
        self.folder(APPS)
    }

    /// `<prefix>/versions/`
    pub fn versions_prefix(&self) -> String {
        self.folder(VERSIONS)
    }

    /// `<prefix>/tasks/`
    pub fn tasks_prefix(&self) -> String {
        self.folder(TASKS)
    }

    /// `<prefix>/deployments/`
    pub fn deployments_prefix(&self) -> String {
        self.folder(DEPLOYMENTS)
    }

    /// `<prefix>/subscriptions/`
    pub fn subscriptions_prefix(&self) -> String {
        self.folder(SUBSCRIPTIONS)
    }

    /// `<prefix>/<folder>/` for a name of [`STATE_FOLDERS`].
    pub fn state_prefix(&self, folder: &str) -> Result<String> {
        if !STATE_FOLDERS.contains(&folder) {
            return Err(Error::InvalidSettings(format!(
                "{folder:?} is not a state folder of the manager"
            )));
        }
        Ok(self.folder(folder))
    }

    /// `<prefix>/apps/<safe id>`
    pub fn app(&self, app_id: &str) -> Result<String> {
        Ok(format!("{}{}", self.apps_prefix(), safe_app_id(app_id)?))
    }

    /// `<prefix>/versions/<safe id>/`: every version of one app.
    pub fn app_versions_prefix(&self, app_id: &str) -> Result<String> {
        Ok(format!(
            "{}{}/",
            self.versions_prefix(),
            safe_app_id(app_id)?
        ))
    }

    /// `<prefix>/versions/<safe id>/<version>`
    pub fn version(&self, app_id: &str, version: &str) -> Result<String> {
        check_version(version)?;
        Ok(format!("{}{version}", self.app_versions_prefix(app_id)?))
    }

    /// `<prefix>/tasks/<task id>`
    pub fn task(&self, task_id: &str) -> Result<String> {
        check_id(NameKind::TaskId, task_id)?;
        Ok(format!("{}{task_id}", self.tasks_prefix()))
    }

    /// `<prefix>/deployments/<id>`
    pub fn deployment(&self, id: &str) -> Result<String> {
        check_id(NameKind::Deployment, id)?;
        Ok(format!("{}{id}", self.deployments_prefix()))
    }

    /// `<prefix>/subscriptions/<url, form-urlencoded>`
    pub fn subscription(&self, callback_url: &str) -> String {
        format!(
            "{}{}",
            self.subscriptions_prefix(),
            form_urlencode(callback_url)
        )
    }

    /// `<prefix>/meta/manager-id`
    pub fn manager_id(&self) -> String {
        format!("{}/{MANAGER_ID}", self.prefix)
    }

    /// `(safe id, version)` of a key built by [`ManagerKeys::version`];
    /// `None` for anything else.
    pub fn parse_version(&self, key: &str) -> Option<(String, String)> {
        let rest = key.strip_prefix(&self.versions_prefix())?;
        let (safe, version) = rest.split_once('/')?;
        if version.contains('/') || check_version(version).is_err() {
            return None;
        }
        let safe_again = safe_app_id(&app_id_from_safe(safe)).ok()?;
        (safe_again == safe).then(|| (safe.to_string(), version.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_historic_layout() {
        let k = ManagerKeys::new("/mdo/manager").unwrap();
        let cases: Vec<(Result<String>, &str)> = vec![
            (k.app("/prod/web"), "/mdo/manager/apps/prod_web"),
            (k.app("web"), "/mdo/manager/apps/web"),
            (k.app("/a.b/c-d"), "/mdo/manager/apps/a.b_c-d"),
            (
                k.version("/prod/web", "2026-11-22T10:00:00.000Z"),
                "/mdo/manager/versions/prod_web/2026-11-22T10:00:00.000Z",
            ),
            (
                k.app_versions_prefix("/prod/web"),
                "/mdo/manager/versions/prod_web/",
            ),
            (
                k.task("prod_web.instance-0f7e._app.1"),
                "/mdo/manager/tasks/prod_web.instance-0f7e._app.1",
            ),
            (
                k.deployment("5ad2c0e4-4a4c-4c39-9b0a-54c5a1c3e8f1"),
                "/mdo/manager/deployments/5ad2c0e4-4a4c-4c39-9b0a-54c5a1c3e8f1",
            ),
            (k.state_prefix("tasks"), "/mdo/manager/tasks/"),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap(), want);
        }
        assert_eq!(k.apps_prefix(), "/mdo/manager/apps/");
        assert_eq!(k.versions_prefix(), "/mdo/manager/versions/");
        assert_eq!(k.deployments_prefix(), "/mdo/manager/deployments/");
        assert_eq!(k.manager_id(), "/mdo/manager/meta/manager-id");
        assert_eq!(
            k.subscription("http://u:p@h:1/cb?x=a b&t=é"),
            "/mdo/manager/subscriptions/http%3A%2F%2Fu%3Ap%40h%3A1%2Fcb%3Fx%3Da+b%26t%3D%C3%A9"
        );
        assert!(k.state_prefix("meta").is_err());
    }

    #[test]
    fn prefixes_are_normalised_or_refused() {
        let cases = [
            ("/mdo/manager", Some("/mdo/manager/apps/x")),
            ("/mdo/manager/", Some("/mdo/manager/apps/x")),
            ("mdo", Some("/mdo/apps/x")),
            ("/", Some("/apps/x")),
            ("/mdo/../x", None),
            ("/mdo//x", None),
        ];
        for (prefix, want) in cases {
            let got = ManagerKeys::new(prefix).and_then(|k| k.app("/x")).ok();
            assert_eq!(got.as_deref(), want, "{prefix:?}");
        }
    }

    #[test]
    fn ids_that_could_escape_are_refused() {
        let k = ManagerKeys::new("/mdo/manager").unwrap();
        for id in [
            "", "/", "/a//b", "/a/../b", "/..", "/.", "/a/./b", "/a_b", "/A", "/a b", "/a\0",
            "/a%2f",
        ] {
            assert!(k.app(id).is_err(), "app {id:?}");
            assert!(k.version(id, "2026-01-01T00:00:00.000Z").is_err(), "{id:?}");
            assert!(k.app_versions_prefix(id).is_err(), "{id:?}");
        }
        for v in ["", ".", "..", "a/b", "../x", "2026 01"] {
            assert!(k.version("/web", v).is_err(), "version {v:?}");
        }
        for id in ["", ".", "..", "a/b", "../x", "a b", "a\n"] {
            assert!(k.task(id).is_err(), "task {id:?}");
            assert!(k.deployment(id).is_err(), "deployment {id:?}");
        }
        let err = k.task("../x").unwrap_err().to_string();
        assert!(err.contains("task id"), "{err}");
    }

    #[test]
    fn version_keys_parse_back() {
        let k = ManagerKeys::new("/m").unwrap();
        let key = k.version("/prod/web", "2026-11-22T10:00:00.000Z").unwrap();
        assert_eq!(
            k.parse_version(&key),
            Some(("prod_web".into(), "2026-11-22T10:00:00.000Z".into()))
        );
        for other in [
            "/m/versions/prod_web",
            "/m/versions/prod_web/",
            "/m/versions/prod_web/a/b",
            "/m/versions/prod__web/v1",
            "/m/apps/prod_web",
            "/x/versions/prod_web/v1",
        ] {
            assert_eq!(k.parse_version(other), None, "{other}");
        }
        assert_eq!(app_id_from_safe("prod_web"), "/prod/web");
    }
}
