//! Parsing, normalisation (legacy inputs -> current fields, defaults) and
//! validation of app definitions, with Marathon's paths and messages.
//! Pure functions: the API layer calls them before anything is stored.
//!
//! By section of the definition: `input` (JSON bodies, updates, legacy
//! normalisation), `bounded` (durations, counts, lengths), `container`
//! (Docker), `ports` (port fields and service ports), `labels` (label
//! selectors); this module validates a whole definition.

mod bounded;
mod container;
mod input;
mod labels;
mod ports;

pub use input::{app_from_value, merge_update, normalise, parse_json};
pub use labels::label_selector_matches;
pub use ports::assign_service_ports;

use bounded::validate_bounds;
use container::validate_docker;
use ports::validate_ports;

use marathon::{App, HealthCheckProtocol};
use serde_json::{json, Value};

use crate::core::Violation;
use crate::ids;
use crate::runtime::docker::HOST_ACCESS_HINT;

/// What validation needs to know about the manager.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// `--allow-host-access`: privileged containers, capabilities, devices,
    /// security options, host namespaces and protected host paths.
    pub allow_host_access: bool,
    /// Host paths guarded beyond the built-in list (the data folder,
    /// `--protected-host-paths`).
    pub protected_paths: Vec<std::path::PathBuf>,
}

impl Limits {
    /// The limits of a manager started with `cfg`.
    pub fn from_config(cfg: &crate::config::Config) -> Limits {
        let mut protected_paths = vec![cfg.data_dir.clone()];
        protected_paths.extend(cfg.protected_host_paths.iter().cloned());
        Limits {
            allow_host_access: cfg.allow_host_access,
            protected_paths,
        }
    }
}

/// Validates again what start-up loaded from etcd, as the API would (a
/// definition written to etcd directly does not bypass the API's checks):
/// an app that fails is dropped from the running state (its definition
/// stays in etcd, nothing of it is launched and its tasks count as
/// orphans), as are failing versions and failing rollback targets of
/// deployments. Each refusal is logged at error level; the refused app ids
/// are returned.
pub fn refuse_invalid_loaded(state: &mut crate::state::State, limits: &Limits) -> Vec<String> {
    let problems = |app: &App| -> Vec<Violation> {
        let mut a = app.clone();
        normalise(&mut a);
        validate(&a, limits)
    };
    let describe = |violations: &[Violation]| -> String {
        violations
            .iter()
            .map(|v| format!("{}: {}", v.path, v.errors.join("; ")))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut refused = Vec::new();
    state.apps.retain(|id, app| {
        let violations = problems(app);
        if violations.is_empty() {
            return true;
        }
        tracing::error!(app = %id, problems = %describe(&violations),
            "app definition in etcd fails validation: not run (fix it through the API, or start the manager with the options it needs)");
        refused.push(id.clone());
        false
    });
    for (id, versions) in state.versions.iter_mut() {
        versions.retain(|ts, app| {
            let violations = problems(app);
            if !violations.is_empty() {
                tracing::error!(app = %id, version = %ts, problems = %describe(&violations),
                    "app version in etcd fails validation: it cannot be restored");
            }
            violations.is_empty()
        });
    }
    for d in state.deployments.values_mut() {
        d.original.retain(|id, original| {
            let violations = original.as_ref().map(&problems).unwrap_or_default();
            if !violations.is_empty() {
                tracing::error!(deployment = %d.id, app = %id, problems = %describe(&violations),
                    "rollback target in etcd fails validation: a rollback leaves this app as it is");
            }
            violations.is_empty()
        });
    }
    refused
}

/// Number of declared ports (mappings for non-host, definitions for host).
pub fn port_count(app: &App) -> usize {
    if app.is_host_network() {
        app.port_definitions.as_ref().map_or(0, Vec::len)
    } else {
        app.container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref())
            .map_or(0, Vec::len)
    }
}

const CMD_ARGS_CONTAINER: &str =
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.";

/// Validates a normalised app; empty = valid.
pub fn validate(app: &App, limits: &Limits) -> Vec<Violation> {
    let mut v = Vec::new();
    if let Err(e) = ids::validate_app_id(&app.id) {
        v.push(Violation::new("/id", e));
    }
    let has_cmd = app.cmd.is_some();
    let has_args = !app.args.is_empty();
    if (has_cmd && has_args) || (!has_cmd && !has_args && app.container.is_none()) {
        v.push(Violation::new("/", CMD_ARGS_CONTAINER));
    }
    if let Some(cmd) = &app.cmd {
        if cmd.trim().is_empty() {
            v.push(Violation::new("/cmd", "must not be empty"));
        }
    }
    for (field, value) in [("cpus", app.cpus), ("mem", app.mem), ("disk", app.disk)] {
        // NaN is refused too.
        if value.is_nan() || value < 0.0 {
            v.push(Violation::new(
                format!("/{field}"),
                format!("got {value}, expected 0.0 or more"),
            ));
        }
    }
    let us = &app.upgrade_strategy;
    for (field, value) in [
        ("minimumHealthCapacity", us.minimum_health_capacity),
        ("maximumOverCapacity", us.maximum_over_capacity),
    ] {
        let path = format!("/upgradeStrategy/{field}");
        if value > 1.0 {
            v.push(Violation::new(path, "is greater than 1"));
        } else if value.is_nan() || value < 0.0 {
            v.push(Violation::new(path, "is less than 0"));
        }
    }
    if app.backoff_factor.is_nan() || app.backoff_factor < 1.0 {
        v.push(Violation::new(
            "/backoffFactor",
            format!("got {}, expected 1.0 or more", app.backoff_factor),
        ));
    }
    validate_bounds(app, &mut v);
    for (i, c) in app.constraints.iter().enumerate() {
        if let Err(msg) = crate::constraints::validate(c) {
            v.push(Violation::new(format!("/constraints({i})"), msg));
        }
    }
    validate_ports(app, &mut v);
    if let Some(c) = &app.container {
        if !limits.allow_host_access {
            for (i, vol) in c.volumes.iter().enumerate() {
                let problem = vol.host_path.as_deref().and_then(|hp| {
                    crate::runtime::docker::protected_host_path(hp, &limits.protected_paths)
                });
                if let Some(problem) = problem {
                    v.push(Violation::new(
                        format!("/container/volumes({i})/hostPath"),
                        format!("{problem}; {HOST_ACCESS_HINT}"),
                    ));
                }
            }
        }
        match &c.docker {
            Some(d) => validate_docker(d, limits, &mut v),
            None if c.kind == marathon::ContainerType::Docker => {
                v.push(Violation::new("/container/docker", "must not be empty"))
            }
            None => {}
        }
    }
    let nports = port_count(app);
    for (i, hc) in app.health_checks.iter().enumerate() {
        let path = format!("/healthChecks({i})");
        match hc.protocol {
            HealthCheckProtocol::Command => {
                if hc
                    .command
                    .as_ref()
                    .is_none_or(|c| c.value.trim().is_empty())
                {
                    v.push(Violation::new(
                        format!("{path}/command"),
                        "must not be empty",
                    ));
                }
            }
            _ => {
                if let Some(port) = hc.port.filter(|p| *p > 65535) {
                    v.push(Violation::new(
                        format!("{path}/port"),
                        format!("got {port}, expected between 0 and 65535"),
                    ));
                }
                if hc.port.is_none() && hc.port_index.is_none_or(|p| p as usize >= nports) {
                    v.push(Violation::new(
                        path,
                        "Health check port indices must address an element of the ports array or container port mappings.",
                    ));
                }
            }
        }
    }
    v
}

/// Whether a change from `old` to `new` is a config change (rolling
/// restart) rather than a pure scale.
pub fn is_upgrade(old: &App, new: &App) -> bool {
    let strip = |a: &App| {
        let mut a = a.clone();
        a.instances = 0;
        a.version = None;
        a.version_info = None;
        a
    };
    strip(old) != strip(new)
}

/// A compact JSON used in tests.
pub fn sample(id: &str) -> Value {
    json!({"id": id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 16})
}

/// A normalised app from JSON (tests).
#[cfg(test)]
fn test_app(v: Value) -> App {
    let mut a = app_from_value(v).unwrap();
    normalise(&mut a);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds;
    use serde_json::Map;
    use test_app as app;

    fn paths(v: Vec<Violation>) -> Vec<String> {
        v.into_iter()
            .map(|v| format!("{} {}", v.path, v.errors.join("|")))
            .collect()
    }

    #[test]
    fn validation_messages() {
        let limits = Limits::default();
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"id":"/ok","cmd":"x"}), vec![]),
            (json!({"id":"/Bad","cmd":"x"}), vec!["/id"]),
            (json!({"id":"/x"}), vec!["/ AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."]),
            (json!({"id":"/x","cmd":"a","args":["b"]}), vec!["/ AppDefinition"]),
            (json!({"id":"/x","cmd":"a","upgradeStrategy":{"minimumHealthCapacity":1.5}}), vec!["/upgradeStrategy/minimumHealthCapacity is greater than 1"]),
            (json!({"id":"/x","cmd":"a","constraints":[["hostname","UNIQUE","x"]]}), vec!["/constraints(0) UNIQUE does not accept a value"]),
            (json!({"id":"/x","cmd":"a","cpus":-1}), vec!["/cpus"]),
            (json!({"id":"/x","cmd":"a","portDefinitions":[{"port":80,"name":"a"},{"port":81,"name":"a"}]}), vec!["/portDefinitions Port names must be unique."]),
            (json!({"id":"/x","cmd":"a","healthChecks":[{"protocol":"HTTP","portIndex":3}]}), vec!["/healthChecks(0) Health check port indices"]),
            (json!({"id":"/x","container":{"docker":{"image":"i","privileged":true}}}), vec!["/container/docker/privileged"]),
            (json!({"id":"/x","container":{"docker":{"image":"i","parameters":[{"key":"no-such-flag","value":"x"},{"key":"hostname","value":"h"},{"key":"ulimit","value":"nofile"}]}}}),
                vec!["/container/docker/parameters docker parameter 'no-such-flag': unknown parameter", "/container/docker/parameters docker parameter 'ulimit'"]),
            (json!({"id":"/x","container":{"docker":{"image":"i","parameters":[{"key":"privileged","value":"true"}]}}}),
                vec!["/container/docker/parameters(0) docker parameter 'privileged': privileged containers are not allowed"]),
            (json!({"id":"/x","container":{"docker":{"image":"i","parameters":[{"key":"privileged","value":"false"},{"key":"add-host","value":"a:1.2.3.4"}]}}}), vec![]),
            (json!({"id":"/x","cmd":"a","healthChecks":[{"protocol":"TCP","port":70000}]}), vec!["/healthChecks(0)/port got 70000, expected between 0 and 65535"]),
        ];
        for (input, expected) in cases {
            let got = paths(validate(&app(input.clone()), &limits));
            assert_eq!(got.len(), expected.len(), "{input}: {got:?}");
            for (g, e) in got.iter().zip(expected) {
                assert!(g.starts_with(e), "{input}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn bounds_of_durations_counts_and_lengths() {
        let limits = Limits::default();
        let max = u64::MAX;
        let hc = |field: &str, value: u64| json!({"id":"/x","cmd":"a","healthChecks":[{"protocol":"COMMAND","command":{"value":"true"}, field: value}]});
        let many = |n: usize| {
            (0..n)
                .map(|i| (format!("K{i}"), json!("v")))
                .collect::<Map<String, Value>>()
        };
        let long = "x".repeat(bounds::MAX_VALUE_LEN + 1);
        let long_name = "N".repeat(bounds::MAX_NAME_LEN + 1);
        // (input, expected "path message" prefixes)
        let cases: Vec<(Value, Vec<String>)> = vec![
            // At the bounds: accepted.
            (json!({"id":"/x","cmd":"a","instances":10000,"backoffSeconds":3600,"backoffFactor":100.0,
                "maxLaunchDelaySeconds":86400,"taskKillGracePeriodSeconds":3600,
                "healthChecks":[{"protocol":"COMMAND","command":{"value":"true"},"intervalSeconds":86400,
                    "timeoutSeconds":86400,"gracePeriodSeconds":86400,"delaySeconds":86400,"maxConsecutiveFailures":1000000}]}), vec![]),
            (json!({"id":"/x","cmd":"a","instances":10001}), vec!["/instances got 10001, expected 10000 or less".into()]),
            (json!({"id":"/x","cmd":"a","backoffSeconds":max}), vec![format!("/backoffSeconds got {max}, expected 3600 or less")]),
            (json!({"id":"/x","cmd":"a","backoffFactor":1e300}), vec!["/backoffFactor got 1000000".into()]),
            (json!({"id":"/x","cmd":"a","backoffFactor":0.5}), vec!["/backoffFactor got 0.5, expected 1.0 or more".into()]),
            (json!({"id":"/x","cmd":"a","maxLaunchDelaySeconds":1e19 as u64}), vec!["/maxLaunchDelaySeconds got 10000000000000000000, expected 86400 or less".into()]),
            (json!({"id":"/x","cmd":"a","taskKillGracePeriodSeconds":max}), vec!["/taskKillGracePeriodSeconds got".into()]),
            (hc("intervalSeconds", max), vec!["/healthChecks(0)/intervalSeconds got 18446744073709551615, expected 86400 or less".into()]),
            (hc("timeoutSeconds", 86401), vec!["/healthChecks(0)/timeoutSeconds got 86401".into()]),
            (hc("gracePeriodSeconds", max), vec!["/healthChecks(0)/gracePeriodSeconds".into()]),
            (hc("delaySeconds", max), vec!["/healthChecks(0)/delaySeconds".into()]),
            (hc("maxConsecutiveFailures", u32::MAX as u64), vec!["/healthChecks(0)/maxConsecutiveFailures".into()]),
            (json!({"id":"/x","cmd":"a","readinessChecks":[{"intervalSeconds":max,"timeoutSeconds":1}]}), vec!["/readinessChecks(0)/intervalSeconds".into()]),
            (json!({"id":"/x","cmd":"a","constraints":vec![json!(["hostname","CLUSTER","a"]); 101]}), vec!["/constraints must have at most 100 elements, got 101".into()]),
            (json!({"id":"/x","cmd":"a","portDefinitions":vec![json!({"port":0}); 1001]}), vec!["/portDefinitions must have at most 1000 elements".into()]),
            (json!({"id":"/x","cmd":long}), vec![format!("/cmd must be at most {} bytes long", bounds::MAX_VALUE_LEN)]),
            (json!({"id":"/x","cmd":"a\u{0}b"}), vec!["/cmd must not contain a NUL".into()]),
            (json!({"id":"/x","args":["a", long]}), vec!["/args(1) must be at most".into()]),
            (json!({"id":"/x","args":vec!["a"; 1001]}), vec!["/args must have at most 1000 elements".into()]),
            (json!({"id":"/x","cmd":"a","env":many(1001)}), vec!["/env must have at most 1000 elements".into()]),
            (json!({"id":"/x","cmd":"a","env":{"A": long}}), vec!["/env/A must be at most".into()]),
            (json!({"id":"/x","cmd":"a","env":{long_name.clone(): "v"}}), vec!["/env name 'NNNN".into()]),
            (json!({"id":"/x","cmd":"a","env":{"A=B": "v"}}), vec!["/env name 'A=B': must not contain '='".into()]),
            (json!({"id":"/x","cmd":"a","env":{"": "v"}}), vec!["/env a variable name must not be empty".into()]),
            (json!({"id":"/x","cmd":"a","env":{"S": {"secret": "s"}}}), vec![]),
            (json!({"id":"/x","cmd":"a","labels":many(1001)}), vec!["/labels must have at most 1000 elements".into()]),
            (json!({"id":"/x","cmd":"a","labels":{"k": long}}), vec!["/labels/k must be at most".into()]),
            (json!({"id":"/x","cmd":"a","labels":{long_name: "v"}}), vec!["/labels key 'NNNN".into()]),
            (json!({"id": format!("/{}", "a".repeat(299)),"cmd":"a"}), vec![format!("/id must be at most {} characters long, got 300", bounds::MAX_APP_ID_LEN)]),
        ];
        for (input, expected) in cases {
            let shown: String = input.to_string().chars().take(200).collect();
            let got = paths(validate(&app(input), &limits));
            assert_eq!(got.len(), expected.len(), "{shown}: {got:?}");
            for (g, e) in got.iter().zip(expected) {
                assert!(g.starts_with(&e), "{shown}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn host_access_allowed_by_the_manager_flag() {
        let input = json!({"id":"/x","container":{"docker":{"image":"i","privileged":true,
            "parameters":[{"key":"privileged","value":"true"},{"key":"cap-add","value":"ALL"}]},
            "volumes":[{"containerPath":"/d","hostPath":"/srv/d","mode":"RW"},
                {"containerPath":"/s","hostPath":"/var/run/docker.sock","mode":"RW"}]}});
        let refused = paths(validate(&app(input.clone()), &Limits::default()));
        let want = [
            "/container/volumes(1)/hostPath the host path '/var/run/docker.sock' exposes",
            "/container/docker/privileged privileged containers are not allowed",
            "/container/docker/parameters(0) docker parameter 'privileged'",
            "/container/docker/parameters(1) docker parameter 'cap-add'",
        ];
        assert_eq!(refused.len(), want.len(), "{refused:?}");
        for (g, w) in refused.iter().zip(want) {
            assert!(g.starts_with(w), "{g} vs {w}");
        }
        let limits = Limits {
            allow_host_access: true,
            protected_paths: vec![],
        };
        assert_eq!(paths(validate(&app(input), &limits)), Vec::<String>::new());
        // The data folder given in the limits is guarded too.
        let limits = Limits {
            allow_host_access: false,
            protected_paths: vec!["/srv".into()],
        };
        let input = json!({"id":"/x","container":{"docker":{"image":"i"},
            "volumes":[{"containerPath":"/d","hostPath":"/srv/d"}]}});
        assert_eq!(paths(validate(&app(input), &limits)).len(), 1);
    }

    #[test]
    fn loaded_state_is_validated_again() {
        let mut state = crate::state::State::default();
        let ok = app(json!({"id":"/ok","cmd":"sleep 1"}));
        let bad = app(json!({"id":"/bad","container":{"docker":{"image":"i"},
            "volumes":[{"containerPath":"/s","hostPath":"/run/docker.sock"}]}}));
        for a in [&ok, &bad] {
            state.apps.insert(a.id.clone(), a.clone());
            state
                .versions
                .entry(a.id.clone())
                .or_default()
                .insert(marathon::Timestamp::from_millis(1).unwrap(), a.clone());
        }
        let refused = refuse_invalid_loaded(&mut state, &Limits::default());
        assert_eq!(refused, vec!["/bad".to_string()]);
        assert_eq!(state.apps.keys().collect::<Vec<_>>(), vec!["/ok"]);
        assert!(state.versions["/bad"].is_empty());
        assert_eq!(state.versions["/ok"].len(), 1);
        let mut allowed = crate::state::State::default();
        allowed.apps.insert(bad.id.clone(), bad);
        let limits = Limits {
            allow_host_access: true,
            protected_paths: vec![],
        };
        assert!(refuse_invalid_loaded(&mut allowed, &limits).is_empty());
        assert_eq!(allowed.apps.len(), 1);
    }
}
