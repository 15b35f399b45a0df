//! The bounds of every duration, count and length an app definition
//! carries ([`crate::bounds`]), with env variable names.

use marathon::App;

use crate::bounds::{self, at_most, at_most_bytes, at_most_items};
use crate::core::Violation;

/// The bounds of [`crate::bounds`]: every duration, count and length a
/// definition carries, one violation per value beyond its bound.
pub(super) fn validate_bounds(app: &App, v: &mut Vec<Violation>) {
    let mut check = |path: String, problem: Option<String>| {
        if let Some(p) = problem {
            v.push(Violation::new(path, p));
        }
    };
    for (path, problem) in [
        ("/instances", at_most(app.instances, bounds::MAX_INSTANCES)),
        (
            "/backoffSeconds",
            at_most(app.backoff_seconds, bounds::MAX_BACKOFF_SECS),
        ),
        (
            "/backoffFactor",
            at_most(app.backoff_factor, bounds::MAX_BACKOFF_FACTOR),
        ),
        (
            "/maxLaunchDelaySeconds",
            at_most(app.max_launch_delay_seconds, bounds::MAX_LAUNCH_DELAY_SECS),
        ),
    ] {
        check(path.into(), problem);
    }
    if let Some(grace) = app.task_kill_grace_period_seconds {
        check(
            "/taskKillGracePeriodSeconds".into(),
            at_most(grace, bounds::MAX_KILL_GRACE_SECS),
        );
    }
    check(
        "/healthChecks".into(),
        at_most_items(app.health_checks.len(), bounds::MAX_HEALTH_CHECKS),
    );
    for (i, hc) in app.health_checks.iter().enumerate() {
        for (field, value, max) in [
            (
                "intervalSeconds",
                hc.interval_seconds,
                bounds::MAX_HEALTH_INTERVAL_SECS,
            ),
            (
                "timeoutSeconds",
                hc.timeout_seconds,
                bounds::MAX_HEALTH_TIMEOUT_SECS,
            ),
            (
                "gracePeriodSeconds",
                hc.grace_period_seconds,
                bounds::MAX_HEALTH_GRACE_SECS,
            ),
            (
                "delaySeconds",
                hc.delay_seconds,
                bounds::MAX_HEALTH_DELAY_SECS,
            ),
        ] {
            check(format!("/healthChecks({i})/{field}"), at_most(value, max));
        }
        check(
            format!("/healthChecks({i})/maxConsecutiveFailures"),
            at_most(
                hc.max_consecutive_failures,
                bounds::MAX_CONSECUTIVE_FAILURES,
            ),
        );
    }
    for (i, rc) in app.readiness_checks.iter().enumerate() {
        for (field, value) in [
            ("intervalSeconds", rc.interval_seconds),
            ("timeoutSeconds", rc.timeout_seconds),
        ] {
            check(
                format!("/readinessChecks({i})/{field}"),
                at_most(value, bounds::MAX_READINESS_SECS),
            );
        }
    }
    check(
        "/constraints".into(),
        at_most_items(app.constraints.len(), bounds::MAX_CONSTRAINTS),
    );
    check(
        "/portDefinitions".into(),
        at_most_items(
            app.port_definitions.as_ref().map_or(0, Vec::len),
            bounds::MAX_PORTS,
        ),
    );
    check(
        "/container/portMappings".into(),
        at_most_items(
            app.container
                .as_ref()
                .and_then(|c| c.port_mappings.as_ref())
                .map_or(0, Vec::len),
            bounds::MAX_PORTS,
        ),
    );
    if let Some(cmd) = &app.cmd {
        check(
            "/cmd".into(),
            at_most_bytes(cmd.len(), bounds::MAX_VALUE_LEN),
        );
        if cmd.contains('\0') {
            check("/cmd".into(), Some(NUL_REFUSED.into()));
        }
    }
    check(
        "/args".into(),
        at_most_items(app.args.len(), bounds::MAX_ARGS),
    );
    for (i, arg) in app.args.iter().enumerate() {
        check(
            format!("/args({i})"),
            at_most_bytes(arg.len(), bounds::MAX_VALUE_LEN),
        );
        if arg.contains('\0') {
            check(format!("/args({i})"), Some(NUL_REFUSED.into()));
        }
    }
    check(
        "/env".into(),
        at_most_items(app.env.len(), bounds::MAX_ENV_VARS),
    );
    for (name, value) in &app.env {
        if let Some(problem) = env_name_problem(name) {
            check("/env".into(), Some(problem));
            continue;
        }
        if let Some(value) = value.as_str() {
            let path = format!("/env/{name}");
            check(
                path.clone(),
                at_most_bytes(value.len(), bounds::MAX_VALUE_LEN),
            );
            if value.contains('\0') {
                check(path, Some(NUL_REFUSED.into()));
            }
        }
    }
    check(
        "/labels".into(),
        at_most_items(app.labels.len(), bounds::MAX_LABELS),
    );
    for (key, value) in &app.labels {
        if let Some(problem) = at_most_bytes(key.len(), bounds::MAX_NAME_LEN) {
            check(
                "/labels".into(),
                Some(format!("key '{}…': {problem}", preview(key))),
            );
            continue;
        }
        check(
            format!("/labels/{key}"),
            at_most_bytes(value.len(), bounds::MAX_VALUE_LEN),
        );
        if key.contains('\0') || value.contains('\0') {
            check(format!("/labels/{key}"), Some(NUL_REFUSED.into()));
        }
    }
}

const NUL_REFUSED: &str = "must not contain a NUL character";

/// What is wrong with an env variable name, if anything (the message names it).
fn env_name_problem(name: &str) -> Option<String> {
    if let Some(problem) = at_most_bytes(name.len(), bounds::MAX_NAME_LEN) {
        return Some(format!("name '{}…': {problem}", preview(name)));
    }
    if name.is_empty() {
        return Some("a variable name must not be empty".into());
    }
    if name.contains(['=', '\0']) {
        return Some(format!(
            "name '{}': must not contain '=' or a NUL character",
            name.escape_debug()
        ));
    }
    None
}

/// The first characters of a long name, for a message.
fn preview(s: &str) -> String {
    s.chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .to_string()
}
