//! One entry of a service's `health_checks:`.

use serde_json::Value;

use super::fields::{as_map, as_scalar_text, as_string, as_uint, check_fields, Problems};
use super::types::{CheckProtocol, HealthCheckSpec, PortSpec};

const CHECK_FIELDS: &[&str] = &[
    "protocol",
    "port",
    "path",
    "command",
    "grace_period_seconds",
    "interval_seconds",
    "timeout_seconds",
    "max_consecutive_failures",
];

pub(super) fn health_check(
    item: &Value,
    path: &str,
    ports: &[PortSpec],
    p: &mut Problems,
) -> Option<HealthCheckSpec> {
    let m = as_map(item, path, p)?;
    let before = p.0.len();
    check_fields(m, CHECK_FIELDS, path, p);
    let at = |f: &str| format!("{path}/{f}");
    let field = |f: &str| m.get(f).filter(|v| !v.is_null());
    let protocol = match field("protocol").and_then(|v| as_string(v, &at("protocol"), p)) {
        None => CheckProtocol::Http,
        Some(s) => match s.to_ascii_uppercase().as_str() {
            "HTTP" => CheckProtocol::Http,
            "HTTPS" => CheckProtocol::Https,
            "TCP" => CheckProtocol::Tcp,
            "COMMAND" => CheckProtocol::Command,
            _ => {
                p.add(
                    &at("protocol"),
                    format!("unknown protocol \"{s}\"; use HTTP, HTTPS, TCP or COMMAND"),
                );
                CheckProtocol::Http
            }
        },
    };
    let mut port_index = None;
    let mut command = None;
    if protocol == CheckProtocol::Command {
        command = match field("command") {
            Some(v) => as_string(v, &at("command"), p),
            None => {
                p.add(path, "a COMMAND health check needs a command");
                None
            }
        };
        if field("port").is_some() {
            p.add(&at("port"), "a COMMAND health check takes no port");
        }
    } else {
        let names: Vec<&str> = ports.iter().map(|x| x.name.as_str()).collect();
        match field("port") {
            Some(v) => {
                if let Some(name) = as_scalar_text(v, &at("port"), p) {
                    match names.iter().position(|n| *n == name) {
                        Some(i) => port_index = Some(i),
                        None => p.add(
                            &at("port"),
                            format!(
                                "unknown port name \"{name}\"; the service's ports are: {}",
                                names.join(", ")
                            ),
                        ),
                    }
                }
            }
            None if ports.len() == 1 => port_index = Some(0),
            None => p.add(
                path,
                "a health check needs a port name (the service has several ports or none)",
            ),
        }
        if field("command").is_some() {
            p.add(&at("command"), "command is only for COMMAND health checks");
        }
    }
    let path_value = match (protocol, field("path")) {
        (CheckProtocol::Http | CheckProtocol::Https, Some(v)) => as_string(v, &at("path"), p),
        (CheckProtocol::Http | CheckProtocol::Https, None) => Some("/".to_string()),
        (_, Some(_)) => {
            p.add(&at("path"), "path is only for HTTP and HTTPS health checks");
            None
        }
        (_, None) => None,
    };
    let mut secs = |f: &str, default: u64| {
        field(f)
            .and_then(|v| as_uint(v, &at(f), p))
            .unwrap_or(default)
    };
    let grace_period_seconds = secs("grace_period_seconds", 300);
    let interval_seconds = secs("interval_seconds", 60);
    let timeout_seconds = secs("timeout_seconds", 20);
    let max_consecutive_failures = secs("max_consecutive_failures", 3);
    if interval_seconds == 0 {
        p.add(&at("interval_seconds"), "must be greater than 0");
    }
    if timeout_seconds == 0 {
        p.add(&at("timeout_seconds"), "must be greater than 0");
    }
    if p.0.len() > before {
        return None;
    }
    Some(HealthCheckSpec {
        protocol,
        port_index,
        path: path_value,
        command,
        grace_period_seconds,
        interval_seconds,
        timeout_seconds,
        max_consecutive_failures,
    })
}
