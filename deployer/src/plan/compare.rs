//! The field comparison rules: which fields count, and which values the
//! server's normalised output may fill in without that being a difference.

use serde_json::{json, Map, Value};

/// Top-level app fields the deployer controls: a field it does not set must
/// be absent (or a default) on the server, so removing a setting from the
/// document is a change.
const CONTROLLED: &[&str] = &[
    "cmd",
    "args",
    "instances",
    "cpus",
    "mem",
    "disk",
    "env",
    "labels",
    "container",
    "networks",
    "portDefinitions",
    "requirePorts",
    "constraints",
    "healthChecks",
    "upgradeStrategy",
];

/// Paths where the server's app differs from the desired one.
pub fn diff(desired: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(d), Some(a)) = (desired.as_object(), actual.as_object()) else {
        return vec!["/".into()];
    };
    let mut keys: Vec<&str> = CONTROLLED.to_vec();
    keys.extend(
        d.keys()
            .map(String::as_str)
            .filter(|k| !CONTROLLED.contains(k)),
    );
    for k in keys {
        if k == "id" {
            continue;
        }
        let path = format!("/{k}");
        match (d.get(k), a.get(k)) {
            (Some(dv), Some(av)) => compare(&path, k, dv, av, &mut out),
            (Some(dv), None) if default_like(k, dv) => {}
            (None, Some(av)) if default_like(k, av) => {}
            (None, None) => {}
            _ => out.push(path),
        }
    }
    out
}

fn compare(path: &str, key: &str, d: &Value, a: &Value, out: &mut Vec<String>) {
    match (d, a) {
        (Value::Object(dm), Value::Object(am)) => {
            // env and labels are the user's data: exact, no defaults.
            let exact = path == "/env" || path == "/labels";
            compare_maps(path, dm, am, exact, out)
        }
        (Value::Array(da), Value::Array(aa)) => {
            if da.len() != aa.len() {
                out.push(path.to_string());
                return;
            }
            for (i, (dv, av)) in da.iter().zip(aa).enumerate() {
                compare(&format!("{path}/{i}"), key, dv, av, out);
            }
        }
        (Value::Number(dn), Value::Number(an)) => {
            if dynamic_port(key) && dn.as_f64() == Some(0.0) {
                return;
            }
            let (x, y) = (
                dn.as_f64().unwrap_or(f64::NAN),
                an.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() > 1e-9 * x.abs().max(1.0) {
                out.push(path.to_string());
            }
        }
        (Value::Number(dn), _) if dynamic_port(key) && dn.as_f64() == Some(0.0) => {}
        (dv, av) if default_like(key, dv) && default_like(key, av) => {}
        (dv, av) => {
            if dv != av {
                out.push(path.to_string());
            }
        }
    }
}

fn compare_maps(
    path: &str,
    d: &Map<String, Value>,
    a: &Map<String, Value>,
    exact: bool,
    out: &mut Vec<String>,
) {
    for (k, dv) in d {
        let p = format!("{path}/{k}");
        match a.get(k) {
            Some(av) => compare(&p, k, dv, av, out),
            None if !exact && default_like(k, dv) => {}
            None => out.push(p),
        }
    }
    for (k, av) in a {
        if !d.contains_key(k) && (exact || !default_like(k, av)) {
            out.push(format!("{path}/{k}"));
        }
    }
}

/// Ports the server assigns when asked for 0.
fn dynamic_port(key: &str) -> bool {
    matches!(key, "port" | "hostPort" | "servicePort")
}

/// Values the Marathon API fills in by default: not differences.
fn default_like(key: &str, v: &Value) -> bool {
    let empty = match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    };
    if empty || key == "servicePort" {
        return true;
    }
    let known = match key {
        "gracePeriodSeconds" => json!(300),
        "intervalSeconds" => json!(60),
        "timeoutSeconds" => json!(20),
        "maxConsecutiveFailures" => json!(3),
        "delaySeconds" => json!(15),
        "ipProtocol" => json!("IPv4"),
        "protocol" => json!("tcp"),
        "type" => json!("DOCKER"),
        "mode" => json!("RW"),
        _ => return false,
    };
    match (&known, v) {
        (Value::Number(k), Value::Number(n)) => k.as_f64() == n.as_f64(),
        _ => &known == v,
    }
}
