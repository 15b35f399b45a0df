//! The upper bounds of every duration, count and length an app definition
//! may carry, in one place, and the clamps that apply them where values meet
//! the clock.
//!
//! The API refuses a definition beyond these bounds (422 with the JSON path,
//! see [`crate::validation`]). Definitions stored before the bounds existed
//! (or planted in etcd by hand) may still carry anything a `u64` holds: the
//! long-lived loops (health checks, runtime events, reconcile) read every
//! duration through the clamps below, so no stored value can overflow a
//! `Duration` or an `Instant`. Pure functions, table-tested.

use std::time::{Duration, Instant};

use marathon::{App, HealthCheck};

/// Health checks: `intervalSeconds` at most one day (Marathon's default is 60).
pub const MAX_HEALTH_INTERVAL_SECS: u64 = 86_400;
/// Health checks: `timeoutSeconds` at most one day (Marathon's default is 20).
pub const MAX_HEALTH_TIMEOUT_SECS: u64 = 86_400;
/// Health checks: `gracePeriodSeconds` at most one day (Marathon's default is 300).
pub const MAX_HEALTH_GRACE_SECS: u64 = 86_400;
/// Health checks: `delaySeconds` at most one day (Marathon's default is 15).
pub const MAX_HEALTH_DELAY_SECS: u64 = 86_400;
/// Health checks: `maxConsecutiveFailures` (0 = never kill); a million
/// failures at one check a second is eleven days.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 1_000_000;
/// Health checks per app: each one is a probe per task and interval.
pub const MAX_HEALTH_CHECKS: usize = 100;
/// Readiness checks: `intervalSeconds` and `timeoutSeconds` at most one day.
pub const MAX_READINESS_SECS: u64 = 86_400;
/// `backoffSeconds`: the first relaunch delay, at most one hour (default 1).
pub const MAX_BACKOFF_SECS: u64 = 3_600;
/// `backoffFactor`: finite, at least 1 (Marathon's rule), at most 100 (default 1.15).
pub const MAX_BACKOFF_FACTOR: f64 = 100.0;
/// `maxLaunchDelaySeconds`: the longest relaunch delay, at most one day
/// (Marathon's default is 300; 3600 up to 1.7).
pub const MAX_LAUNCH_DELAY_SECS: u64 = 86_400;
/// `taskKillGracePeriodSeconds`: SIGTERM to SIGKILL, at most one hour.
pub const MAX_KILL_GRACE_SECS: u64 = 3_600;
/// `instances` of one app on this node (the deployer's own limit too).
pub const MAX_INSTANCES: u32 = 10_000;
/// Longest task id: the command runtime's directory names and the
/// registry's container names (`CONTAINER_NAME`, etcd keys) stay within it.
pub const MAX_TASK_ID_LEN: usize = 200;
/// Longest app id (canonical, with its leading `/`): chosen so that every
/// task id built from it ([`crate::ids::new_task_id`]) is at most
/// [`MAX_TASK_ID_LEN`] long. The safe id is the app id without its leading
/// `/`, hence the `+ 1`.
pub const MAX_APP_ID_LEN: usize = MAX_TASK_ID_LEN - crate::ids::TASK_ID_EXTRA_LEN + 1;
/// Declared ports of one app (`portDefinitions` or `container.portMappings`).
pub const MAX_PORTS: usize = 1_000;
/// `constraints` of one app.
pub const MAX_CONSTRAINTS: usize = 100;
/// Entries of `env`.
pub const MAX_ENV_VARS: usize = 1_000;
/// Entries of `labels` (each also becomes a `MARATHON_APP_LABEL_*` variable).
pub const MAX_LABELS: usize = 1_000;
/// Elements of `args`.
pub const MAX_ARGS: usize = 1_000;
/// Longest env name or label key, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest `cmd`, `args` element, env value or label value, in bytes: half
/// of Linux's limit of one exec argument or variable (`MAX_ARG_STRLEN`,
/// 128 KiB), so a task's command line and environment can always start.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Cap of any delay handed to the clock from app data (one year), whatever
/// the definition says: keeps `Instant + Duration` far from overflowing.
pub const MAX_CLOCK_SECS: u64 = 365 * 86_400;

/// Seconds (possibly NaN, negative or huge) as a `Duration` that never
/// panics: NaN and negative values are 0, values beyond [`MAX_CLOCK_SECS`]
/// are [`MAX_CLOCK_SECS`].
pub fn bounded_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(secs.min(MAX_CLOCK_SECS as f64))
}

/// `now + delay`, never overflowing: the delay is capped at
/// [`MAX_CLOCK_SECS`], and an `Instant` that still cannot hold it is `now`.
pub fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay.min(Duration::from_secs(MAX_CLOCK_SECS)))
        .unwrap_or(now)
}

/// A check's interval: at least 1 s, at most [`MAX_HEALTH_INTERVAL_SECS`].
pub fn health_interval(hc: &HealthCheck) -> Duration {
    Duration::from_secs(hc.interval_seconds.clamp(1, MAX_HEALTH_INTERVAL_SECS))
}

/// A check's timeout: at least 1 s, at most [`MAX_HEALTH_TIMEOUT_SECS`].
pub fn health_timeout(hc: &HealthCheck) -> Duration {
    Duration::from_secs(hc.timeout_seconds.clamp(1, MAX_HEALTH_TIMEOUT_SECS))
}

/// A check's grace period, at most [`MAX_HEALTH_GRACE_SECS`].
pub fn health_grace(hc: &HealthCheck) -> Duration {
    Duration::from_secs(hc.grace_period_seconds.min(MAX_HEALTH_GRACE_SECS))
}

/// A kill grace in seconds, at most [`MAX_KILL_GRACE_SECS`].
pub fn kill_grace_secs(secs: u64) -> u64 {
    secs.min(MAX_KILL_GRACE_SECS)
}

/// Instances the scheduler aims for, at most [`MAX_INSTANCES`].
pub fn instances(app: &App) -> usize {
    app.instances.min(MAX_INSTANCES) as usize
}

/// An `upgradeStrategy` capacity in `[0, 1]` (NaN = `default`).
pub fn capacity(value: f64, default: f64) -> f64 {
    if value.is_nan() {
        default
    } else {
        value.clamp(0.0, 1.0)
    }
}

/// The relaunch delay after `failures` failures, in seconds:
/// `backoffSeconds * backoffFactor^(failures-1)`, capped by
/// `maxLaunchDelaySeconds`, with every input clamped to its bound first.
/// Always finite, never negative.
pub fn backoff_delay(app: &App, failures: u32) -> f64 {
    let base = app.backoff_seconds.min(MAX_BACKOFF_SECS) as f64;
    let factor = if app.backoff_factor.is_finite() {
        app.backoff_factor.clamp(1.0, MAX_BACKOFF_FACTOR)
    } else {
        1.0
    };
    let cap = app.max_launch_delay_seconds.min(MAX_LAUNCH_DELAY_SECS) as f64;
    let exp = failures.saturating_sub(1).min(1000) as i32;
    let d = base * factor.powi(exp);
    if d.is_nan() {
        return 0.0;
    }
    d.clamp(0.0, cap)
}

/// "got 7, expected 5 or less" when `value > max` (Marathon's wording).
pub fn at_most<T: PartialOrd + std::fmt::Display>(value: T, max: T) -> Option<String> {
    (value > max).then(|| format!("got {value}, expected {max} or less"))
}

/// "must have at most 5 elements, got 7" for a collection too long.
pub fn at_most_items(len: usize, max: usize) -> Option<String> {
    (len > max).then(|| format!("must have at most {max} elements, got {len}"))
}

/// "must be at most 5 bytes long, got 7" for a string too long.
pub fn at_most_bytes(len: usize, max: usize) -> Option<String> {
    (len > max).then(|| format!("must be at most {max} bytes long, got {len}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_secs_never_panics() {
        let max = Duration::from_secs(MAX_CLOCK_SECS);
        let cases = [
            (f64::NAN, Duration::ZERO),
            (-1.0, Duration::ZERO),
            (f64::NEG_INFINITY, Duration::ZERO),
            (0.0, Duration::ZERO),
            (1.5, Duration::from_millis(1500)),
            (MAX_CLOCK_SECS as f64, max),
            (1e19, max),
            (1e300, max),
            (f64::INFINITY, max),
        ];
        for (input, want) in cases {
            assert_eq!(bounded_secs(input), want, "{input}");
        }
    }

    #[test]
    fn later_never_overflows() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(2)),
            now + Duration::from_secs(2)
        );
        let far = later(now, Duration::MAX);
        assert_eq!(far, now + Duration::from_secs(MAX_CLOCK_SECS));
        assert_eq!(
            later(now, Duration::from_secs(u64::MAX)),
            now + Duration::from_secs(MAX_CLOCK_SECS)
        );
    }

    #[test]
    fn health_durations_are_clamped() {
        let check = |interval, timeout, grace| HealthCheck {
            interval_seconds: interval,
            timeout_seconds: timeout,
            grace_period_seconds: grace,
            ..HealthCheck::default()
        };
        // (check, interval, timeout, grace) in seconds
        let cases = [
            (check(0, 0, 0), 1, 1, 0),
            (check(5, 3, 30), 5, 3, 30),
            (check(86_400, 86_400, 86_400), 86_400, 86_400, 86_400),
            (check(u64::MAX, u64::MAX, u64::MAX), 86_400, 86_400, 86_400),
        ];
        for (hc, interval, timeout, grace) in cases {
            assert_eq!(health_interval(&hc).as_secs(), interval, "{hc:?}");
            assert_eq!(health_timeout(&hc).as_secs(), timeout, "{hc:?}");
            assert_eq!(health_grace(&hc).as_secs(), grace, "{hc:?}");
            // What the loop computes from them never panics.
            let _ = later(Instant::now(), health_interval(&hc));
        }
    }

    #[test]
    fn counts_and_capacities_are_clamped() {
        assert_eq!(kill_grace_secs(3), 3);
        assert_eq!(kill_grace_secs(u64::MAX), MAX_KILL_GRACE_SECS);
        let mut app = App::new("/a");
        app.instances = 3;
        assert_eq!(instances(&app), 3);
        app.instances = u32::MAX;
        assert_eq!(instances(&app), MAX_INSTANCES as usize);
        let cases = [
            (0.5, 0.5),
            (-1.0, 0.0),
            (1e300, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
        ];
        for (input, want) in cases {
            assert_eq!(capacity(input, 1.0), want, "{input}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_stays_finite() {
        let app = |base: u64, factor: f64, max: u64| {
            let mut a = App::new("/a");
            a.backoff_seconds = base;
            a.backoff_factor = factor;
            a.max_launch_delay_seconds = max;
            a
        };
        // (app, failures, delay)
        let cases = [
            (app(2, 2.0, 10), 1, 2.0),
            (app(2, 2.0, 10), 2, 4.0),
            (app(2, 2.0, 10), 3, 8.0),
            (app(2, 2.0, 10), 4, 10.0),
            (app(2, 2.0, 10), u32::MAX, 10.0),
            (app(0, 1e300, 10), 50, 0.0),
            (app(u64::MAX, 1.15, u64::MAX), 1, MAX_BACKOFF_SECS as f64),
            (
                app(u64::MAX, 1e300, u64::MAX),
                1000,
                MAX_LAUNCH_DELAY_SECS as f64,
            ),
            (app(1, f64::NAN, 100), 5, 1.0),
            (app(1, f64::INFINITY, 100), 5, 1.0),
            (app(1, 0.5, 100), 5, 1.0),
        ];
        for (a, failures, want) in cases {
            let got = backoff_delay(&a, failures);
            assert_eq!(got, want, "{failures} failures");
            // Reaches the clock without a panic.
            let _ = later(Instant::now(), bounded_secs(got));
        }
    }

    #[test]
    fn app_id_bound_fits_the_task_id() {
        let id = format!("/{}", "a".repeat(MAX_APP_ID_LEN - 1));
        assert_eq!(id.len(), MAX_APP_ID_LEN);
        let task = crate::ids::new_task_id(&id);
        assert_eq!(task.len(), MAX_TASK_ID_LEN);
        assert!(crate::runtime::command::valid_task_id(&task), "{task}");
        assert!(
            registry::naming::validate_container(&task).is_ok(),
            "{task}"
        );
        // One more character and it would not fit.
        let over = crate::ids::new_task_id(&format!("{id}b"));
        assert!(!crate::runtime::command::valid_task_id(&over), "{over}");
    }

    #[test]
    fn messages() {
        assert_eq!(at_most(7u64, 5), Some("got 7, expected 5 or less".into()));
        assert_eq!(at_most(5u64, 5), None);
        assert_eq!(
            at_most_items(7, 5),
            Some("must have at most 5 elements, got 7".into())
        );
        assert_eq!(at_most_items(5, 5), None);
        assert_eq!(
            at_most_bytes(7, 5),
            Some("must be at most 5 bytes long, got 7".into())
        );
    }
}
