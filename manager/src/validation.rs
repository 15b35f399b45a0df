//! Parsing, normalisation (legacy inputs -> current fields, defaults) and
//! validation of app definitions, with Marathon's paths and messages.
//! Pure functions: the API layer calls them before anything is stored.

use std::collections::{BTreeMap, BTreeSet};

use marathon::{
    App, Fetch, HealthCheckProtocol, Network, NetworkMode, PortDefinition, PortMapping,
};
use serde_json::{json, Map, Value};

use crate::bounds::{self, at_most, at_most_bytes, at_most_items};
use crate::error::{ApiError, Violation};
use crate::ids;

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

/// Parses a JSON body; 400 with Marathon's body when it is not JSON.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::InvalidJson(
            "No content to map due to end-of-input".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Turns a JSON object into an [`App`]; wrong JSON types -> 400.
pub fn app_from_value(value: Value) -> Result<App, ApiError> {
    if !value.is_object() {
        return Err(ApiError::InvalidJson("error.expected.jsobject".into()));
    }
    serde_json::from_value::<App>(value).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Applies an update body (AppUpdate) over an existing app: every field the
/// body carries replaces the current one; legacy fields displace the
/// current fields they map to.
pub fn merge_update(existing: &App, update: &Map<String, Value>) -> Result<App, ApiError> {
    let mut base = match serde_json::to_value(existing) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(ApiError::Internal(
                "app does not serialise to an object".into(),
            ))
        }
    };
    for (k, v) in update {
        match k.as_str() {
            "id" | "version" | "versionInfo" => continue,
            "ports" => {
                base.remove("portDefinitions");
            }
            "uris" => {
                base.remove("fetch");
            }
            "ipAddress" => {
                base.remove("networks");
            }
            // A legacy docker.network in the update re-derives networks.
            "container" if v.pointer("/docker/network").is_some() => {
                base.remove("networks");
            }
            _ => {}
        }
        base.insert(k.clone(), v.clone());
    }
    // A network change makes the other side's port fields meaningless.
    let mut app = app_from_value(Value::Object(base))?;
    app.id = existing.id.clone();
    Ok(app)
}

/// Marathon's normalisation: canonical id, legacy fields moved to current
/// ones, defaults for networks / ports / health-check port index.
pub fn normalise(app: &mut App) {
    app.id = ids::canonical(&app.id);
    if let Some(ports) = app.ports.take() {
        if app.port_definitions.is_none() {
            app.port_definitions = Some(
                ports
                    .into_iter()
                    .map(|p| PortDefinition {
                        port: p,
                        name: None,
                        ..PortDefinition::default()
                    })
                    .collect(),
            );
        }
    }
    if let Some(uris) = app.uris.take() {
        if app.fetch.is_empty() {
            app.fetch = uris.into_iter().map(Fetch::from_uri).collect();
        }
    }
    let ip_network_name = app
        .ip_address
        .as_ref()
        .and_then(|ip| ip.get("networkName"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(container) = app.container.as_mut() {
        if let Some(docker) = container.docker.as_mut() {
            if let Some(net) = docker.network.take() {
                if app.networks.is_empty() {
                    let mut n = match net.to_ascii_uppercase().as_str() {
                        "HOST" => Network::host(),
                        "BRIDGE" => Network::bridge(),
                        _ => Network {
                            mode: NetworkMode::Container,
                            name: ip_network_name.clone(),
                            ..Network::default()
                        },
                    };
                    if n.mode == NetworkMode::Container && n.name.is_none() {
                        n.name = ip_network_name.clone();
                    }
                    app.networks = vec![n];
                }
            }
            if let Some(pm) = docker.port_mappings.take() {
                if container.port_mappings.is_none() {
                    container.port_mappings = Some(pm);
                }
            }
        }
    }
    if let Some(_ip) = app.ip_address.take() {
        if app.networks.is_empty() {
            app.networks = vec![Network {
                mode: NetworkMode::Container,
                name: ip_network_name,
                ..Network::default()
            }];
        }
    }
    if app.networks.is_empty() {
        app.networks = vec![Network::host()];
    }
    let host = app.is_host_network();
    if host {
        if app.port_definitions.is_none() {
            app.port_definitions = Some(vec![PortDefinition::default()]);
        }
    } else {
        app.require_ports = false;
        let bridge = app
            .networks
            .iter()
            .any(|n| n.mode == NetworkMode::ContainerBridge);
        if let Some(c) = app.container.as_mut() {
            if c.port_mappings.is_none() && app.port_definitions.is_none() {
                c.port_mappings = Some(vec![PortMapping {
                    name: Some("default".into()),
                    host_port: bridge.then_some(0),
                    ..PortMapping::default()
                }]);
            }
            if bridge {
                for pm in c.port_mappings.iter_mut().flatten() {
                    if pm.host_port.is_none() {
                        pm.host_port = Some(0);
                    }
                }
            }
        }
    }
    let nports = port_count(app);
    for hc in app.health_checks.iter_mut() {
        if hc.protocol != HealthCheckProtocol::Command
            && hc.port.is_none()
            && hc.port_index.is_none()
            && nports > 0
        {
            hc.port_index = Some(0);
        }
    }
    if app.role.is_none() {
        app.role = Some("*".into());
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

/// The bounds of [`crate::bounds`]: every duration, count and length a
/// definition carries, one violation per value beyond its bound.
fn validate_bounds(app: &App, v: &mut Vec<Violation>) {
    let mut check = |path: String, problem: Option<String>| {
        if let Some(p) = problem {
            v.push(Violation::new(path, p));
        }
    };
    check(
        "/instances".into(),
        at_most(app.instances, bounds::MAX_INSTANCES),
    );
    check(
        "/backoffSeconds".into(),
        at_most(app.backoff_seconds, bounds::MAX_BACKOFF_SECS),
    );
    check(
        "/backoffFactor".into(),
        at_most(app.backoff_factor, bounds::MAX_BACKOFF_FACTOR),
    );
    check(
        "/maxLaunchDelaySeconds".into(),
        at_most(app.max_launch_delay_seconds, bounds::MAX_LAUNCH_DELAY_SECS),
    );
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

use crate::runtime::docker::HOST_ACCESS_HINT;

/// `container.docker`: image, `privileged`, every `parameters` problem
/// (unknown key, bad value) and, without `--allow-host-access`, every
/// parameter that reaches into the host; one violation each.
fn validate_docker(d: &marathon::Docker, limits: &Limits, v: &mut Vec<Violation>) {
    if d.image.trim().is_empty() {
        v.push(Violation::new(
            "/container/docker/image",
            "must not be empty",
        ));
    }
    if d.privileged && !limits.allow_host_access {
        v.push(Violation::new(
            "/container/docker/privileged",
            format!("privileged containers are not allowed; {HOST_ACCESS_HINT}"),
        ));
    }
    let params: Vec<(String, String)> = d
        .parameters
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    if let Err(problems) = crate::runtime::docker::validate_parameters(&params) {
        for problem in problems {
            v.push(Violation::new("/container/docker/parameters", problem));
        }
    }
    if !limits.allow_host_access {
        for (i, problem) in
            crate::runtime::docker::host_access_problems(&params, &limits.protected_paths)
        {
            v.push(Violation::new(
                format!("/container/docker/parameters({i})"),
                problem,
            ));
        }
    }
}

fn validate_ports(app: &App, v: &mut Vec<Violation>) {
    let host = app.is_host_network();
    let exclusive = app
        .networks
        .iter()
        .any(|n| matches!(n.mode, NetworkMode::Host | NetworkMode::ContainerBridge));
    if app.networks.len() > 1 && exclusive {
        v.push(Violation::new(
            "/networks",
            "host or container/bridge networking must be the only network",
        ));
    }
    let mappings = app
        .container
        .as_ref()
        .and_then(|c| c.port_mappings.as_ref());
    if host && mappings.is_some_and(|m| !m.is_empty()) {
        v.push(Violation::new(
            "/container/portMappings",
            "portMappings are not allowed with host-networking",
        ));
    }
    if !host && app.port_definitions.as_ref().is_some_and(|p| !p.is_empty()) {
        v.push(Violation::new(
            "/portDefinitions",
            "portDefinitions are only allowed with host-networking",
        ));
    }
    if !host && app.container.is_none() {
        v.push(Violation::new(
            "/networks",
            "container networking requires a container",
        ));
    }
    let mut names = BTreeSet::new();
    let mut fixed = BTreeSet::new();
    for (i, pd) in app.port_definitions.iter().flatten().enumerate() {
        if pd.port > 65535 {
            v.push(Violation::new(
                format!("/portDefinitions({i})/port"),
                format!("got {}, expected between 0 and 65535", pd.port),
            ));
        }
        if let Some(n) = &pd.name {
            if !names.insert(n.clone()) {
                v.push(Violation::new(
                    "/portDefinitions",
                    "Port names must be unique.",
                ));
            }
        }
        if pd.port != 0 && !fixed.insert(pd.port) {
            v.push(Violation::new("/portDefinitions", "Ports must be unique."));
        }
        if !valid_protocol(&pd.protocol) {
            v.push(Violation::new(
                format!("/portDefinitions({i})/protocol"),
                "is invalid. Only tcp, udp and udp,tcp are allowed.",
            ));
        }
    }
    let mut host_ports = BTreeSet::new();
    for (i, pm) in mappings.into_iter().flatten().enumerate() {
        for (field, value) in [
            ("containerPort", Some(pm.container_port)),
            ("hostPort", pm.host_port),
            ("servicePort", Some(pm.service_port)),
        ] {
            if value.is_some_and(|p| p > 65535) {
                v.push(Violation::new(
                    format!("/container/portMappings({i})/{field}"),
                    format!("got {}, expected between 0 and 65535", value.unwrap_or(0)),
                ));
            }
        }
        if let Some(n) = &pm.name {
            if !names.insert(n.clone()) {
                v.push(Violation::new(
                    "/container/portMappings",
                    "Port names must be unique.",
                ));
            }
        }
        if let Some(hp) = pm.host_port.filter(|p| *p != 0) {
            if !host_ports.insert(hp) {
                v.push(Violation::new(
                    "/container/portMappings",
                    "Host ports must be unique.",
                ));
            }
        }
        if !valid_protocol(&pm.protocol) {
            v.push(Violation::new(
                format!("/container/portMappings({i})/protocol"),
                "is invalid. Only tcp, udp and udp,tcp are allowed.",
            ));
        }
    }
}

fn valid_protocol(p: &str) -> bool {
    matches!(p, "tcp" | "udp" | "udp,tcp" | "tcp,udp")
}

/// Replaces every 0 service port with a free one from `range`, reusing the
/// previous definition's ports first. `used` = service ports of other apps.
pub fn assign_service_ports(
    app: &mut App,
    previous: Option<&App>,
    used: &BTreeSet<u32>,
    range: (u16, u16),
) -> Result<(), ApiError> {
    let mut taken: BTreeSet<u32> = used.clone();
    let prev: Vec<u32> = previous.map(|p| p.service_ports()).unwrap_or_default();
    let current = app.service_ports();
    taken.extend(current.iter().copied().filter(|p| *p != 0));
    let next = |i: usize, taken: &mut BTreeSet<u32>| -> Result<u32, ApiError> {
        if let Some(p) = prev
            .get(i)
            .copied()
            .filter(|p| *p != 0 && !taken.contains(p))
        {
            taken.insert(p);
            return Ok(p);
        }
        let p = (u32::from(range.0)..=u32::from(range.1))
            .find(|p| !taken.contains(p))
            .ok_or_else(|| {
                ApiError::invalid(
                    "/",
                    &format!(
                        "All ports in the range [{}-{}) are already in use",
                        range.0, range.1
                    ),
                )
            })?;
        taken.insert(p);
        Ok(p)
    };
    if app.is_host_network() {
        for (i, pd) in app.port_definitions.iter_mut().flatten().enumerate() {
            if pd.port == 0 {
                pd.port = next(i, &mut taken)?;
            }
        }
    } else if let Some(pms) = app
        .container
        .as_mut()
        .and_then(|c| c.port_mappings.as_mut())
    {
        for (i, pm) in pms.iter_mut().enumerate() {
            if pm.service_port == 0 {
                pm.service_port = next(i, &mut taken)?;
            }
        }
    }
    Ok(())
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

/// Labels filter (`label` query): comma = AND; `k`, `k==v`, `k!=v`,
/// `k in (a,b)`, `k notin (a,b)`.
pub fn label_selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    split_selector(selector).iter().all(|term| {
        let term = term.trim();
        if term.is_empty() {
            return true;
        }
        if let Some((k, v)) = term.split_once("==") {
            return labels.get(&unescape(k.trim())) == Some(&unescape(v.trim()));
        }
        if let Some((k, v)) = term.split_once("!=") {
            return labels.get(&unescape(k.trim())) != Some(&unescape(v.trim()));
        }
        for (op, negate) in [(" notin ", true), (" in ", false)] {
            if let Some((k, set)) = term.split_once(op) {
                let set = set.trim().trim_start_matches('(').trim_end_matches(')');
                let values: Vec<String> = set.split(',').map(|s| unescape(s.trim())).collect();
                let hit = labels
                    .get(&unescape(k.trim()))
                    .is_some_and(|v| values.contains(v));
                return hit != negate;
            }
        }
        labels.contains_key(&unescape(term))
    })
}

fn split_selector(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    let mut escaped = false;
    for c in s.chars() {
        let cur = out.last_mut().expect("non-empty");
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(String::new()),
            _ => cur.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// A compact JSON used in tests.
pub fn sample(id: &str) -> Value {
    json!({"id": id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 16})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(v: Value) -> App {
        let mut a = app_from_value(v).unwrap();
        normalise(&mut a);
        a
    }

    fn paths(v: Vec<Violation>) -> Vec<String> {
        v.into_iter()
            .map(|v| format!("{} {}", v.path, v.errors.join("|")))
            .collect()
    }

    #[test]
    fn legacy_inputs_are_normalised() {
        let a = app(json!({"id":"web","cmd":"x","ports":[0, 8080],"uris":["http://a/b.tgz"]}));
        assert_eq!(a.id, "/web");
        let pd = a.port_definitions.clone().unwrap();
        assert_eq!(pd.iter().map(|p| p.port).collect::<Vec<_>>(), vec![0, 8080]);
        assert_eq!(a.fetch[0].uri, "http://a/b.tgz");
        let out = serde_json::to_value(&a).unwrap();
        assert!(out.get("ports").is_none() && out.get("uris").is_none());

        let d = app(
            json!({"id":"d","container":{"type":"DOCKER","docker":{"image":"x","network":"BRIDGE",
            "portMappings":[{"containerPort":80}]}}}),
        );
        assert_eq!(d.networks[0].mode, NetworkMode::ContainerBridge);
        let pm = d.container.as_ref().unwrap().port_mappings.clone().unwrap();
        assert_eq!(pm[0].container_port, 80);
        assert_eq!(pm[0].host_port, Some(0));
        assert!(d.port_definitions.is_none());
        let out = serde_json::to_value(&d).unwrap();
        assert!(out["container"]["docker"].get("network").is_none());
        assert!(out.get("portDefinitions").is_none());
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

    #[test]
    fn service_ports_assigned_and_reused() {
        let mut a = app(
            json!({"id":"/x","cmd":"a","portDefinitions":[{"port":0},{"port":0},{"port":12000}]}),
        );
        let used: BTreeSet<u32> = [10000].into_iter().collect();
        assign_service_ports(&mut a, None, &used, (10000, 20000)).unwrap();
        assert_eq!(a.service_ports(), vec![10001, 10002, 12000]);
        let mut b = app(json!({"id":"/x","cmd":"b","portDefinitions":[{"port":0},{"port":0}]}));
        assign_service_ports(&mut b, Some(&a), &used, (10000, 20000)).unwrap();
        assert_eq!(b.service_ports(), vec![10001, 10002]);
        let mut full = app(json!({"id":"/y","cmd":"a"}));
        assert!(assign_service_ports(&mut full, None, &[5].into_iter().collect(), (5, 5)).is_err());
    }

    #[test]
    fn updates_and_upgrades() {
        let a = app(json!({"id":"/x","cmd":"a","instances":1}));
        let scaled = merge_update(&a, json!({"instances":3}).as_object().unwrap()).unwrap();
        assert_eq!(scaled.instances, 3);
        assert_eq!(scaled.cmd.as_deref(), Some("a"));
        assert!(!is_upgrade(&a, &scaled));
        let changed = merge_update(&a, json!({"cmd":"b"}).as_object().unwrap()).unwrap();
        assert!(is_upgrade(&a, &changed));
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> = [
            ("env".to_string(), "prod".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]
        .into();
        let cases = [
            ("env", true),
            ("missing", false),
            ("env==prod", true),
            ("env==dev", false),
            ("env!=dev", true),
            ("env in (dev, prod)", true),
            ("env notin (dev, prod)", false),
            ("env==prod,tier==web", true),
            ("env==prod,tier==db", false),
        ];
        for (sel, want) in cases {
            assert_eq!(label_selector_matches(sel, &labels), want, "{sel}");
        }
    }
}
