//! One service of `deploy:`, read section by section: command, ports,
//! environment, resources, volumes, constraints, health checks, upgrade,
//! network and the `marathon:` passthrough. Each section records its own
//! problems; the sections run in the document's field order so problems are
//! reported in a stable order.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::{
    as_list, as_map, as_number, as_scalar_text, as_string, as_uint, check_fields, escape,
    labels_at, suggest, Fields, Problems,
};
use super::health::health_check;
use super::types::{HealthCheckSpec, Network, PortSpec, ServiceSpec, UpgradeSpec, VolumeSpec};
use registry::naming;

/// Every field a service spec may have (anything else is refused).
pub const SERVICE_FIELDS: &[&str] = &[
    "image",
    "cmd",
    "args",
    "labels",
    "ports",
    "ports-hard",
    "environment",
    "instances",
    "cpus",
    "mem",
    "disk",
    "volumes",
    "constraints",
    "custom_constraints",
    "health_checks",
    "upgrade",
    "network",
    "marathon",
];
const UPGRADE_FIELDS: &[&str] = &["minimum_health_capacity", "maximum_over_capacity"];
const CUSTOM_CONSTRAINTS: &[&str] = &["fixed-host"];
const OPERATORS: &[&str] = &[
    "UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS",
];
/// Env names the deployer sets itself from the document's names.
const RESERVED_ENV: &[&str] = &["SERVICE_NAME", "SERVICE_GROUP", "LABELS"];

pub(super) fn service(
    name: &str,
    spec: &Value,
    path: &str,
    p: &mut Problems,
) -> Option<ServiceSpec> {
    let empty = Map::new();
    let m = match spec {
        Value::Null => &empty,
        other => as_map(other, path, p)?,
    };
    let before = p.0.len();
    check_fields(m, SERVICE_FIELDS, path, p);
    let f = Fields { map: m, path };

    let Command { image, cmd, args } = command(f, p);
    let labels = labels_at(m.get("labels"), &f.at("labels"), p);
    let ports = ports(f, p);
    let environment = environment(f, p);
    let Resources {
        instances,
        cpus,
        mem,
        disk,
    } = resources(f, p);
    let volumes = volumes(f, p);
    let constraints = constraints(f, p);
    let fixed_host = fixed_host(f, p);
    let health_checks = health_checks(f, &ports, p);
    let upgrade = upgrade(f, p);
    let network = network(f, image.is_some(), p);
    if image.is_none() && !volumes.is_empty() {
        p.add(&f.at("volumes"), "volumes need an image");
    }
    let marathon = marathon(f, p);

    if p.0.len() > before {
        return None;
    }
    Some(ServiceSpec {
        service: name.to_string(),
        labels,
        image,
        cmd,
        args,
        ports,
        environment,
        instances,
        cpus,
        mem,
        disk,
        volumes,
        constraints,
        fixed_host,
        health_checks,
        upgrade,
        network,
        marathon,
    })
}

/// What the service runs: `image`, `cmd`, `args`.
struct Command {
    image: Option<String>,
    cmd: Option<String>,
    args: Vec<String>,
}

fn command(f: Fields, p: &mut Problems) -> Command {
    let image = f
        .field("image")
        .and_then(|v| as_string(v, &f.at("image"), p));
    if let Some(img) = &image {
        if img.chars().any(char::is_whitespace) {
            p.add(
                &f.at("image"),
                format!("image \"{img}\" contains whitespace"),
            );
        }
    }
    let cmd = f.field("cmd").and_then(|v| as_string(v, &f.at("cmd"), p));
    let args: Vec<String> = f
        .field("args")
        .and_then(|v| as_list(v, &f.at("args"), p))
        .map(|items| {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, a)| as_scalar_text(a, &format!("{}/args/{i}", f.path), p))
                .collect()
        })
        .unwrap_or_default();
    if image.is_none() && cmd.is_none() && f.field("image").is_none() && f.field("cmd").is_none() {
        p.add(f.path, "a service needs an image or a cmd");
    }
    if cmd.is_some() && !args.is_empty() {
        p.add(
            &f.at("args"),
            "cmd and args cannot both be set (args go to the image's entrypoint)",
        );
    }
    if image.is_none() && !args.is_empty() && f.field("image").is_none() {
        p.add(
            &f.at("args"),
            "args need an image (a command task takes cmd)",
        );
    }
    Command { image, cmd, args }
}

/// `ports` and `ports-hard`, sorted by name (the app's port index order).
fn ports(f: Fields, p: &mut Problems) -> Vec<PortSpec> {
    let mut ports: Vec<PortSpec> = Vec::new();
    for (key, hard) in [("ports", false), ("ports-hard", true)] {
        let Some(v) = f.field(key) else { continue };
        let Some(pm) = as_map(v, &f.at(key), p) else {
            continue;
        };
        for (pname, pv) in pm {
            let ppath = format!("{}/{key}/{}", f.path, escape(pname));
            if let Some(problem) = naming::name_problem(pname) {
                p.add(&ppath, format!("port name {problem}"));
            }
            let Some(n) = as_uint(pv, &ppath, p) else {
                continue;
            };
            if n == 0 || n > 65535 {
                p.add(&ppath, format!("port must be between 1 and 65535, got {n}"));
                continue;
            }
            if ports.iter().any(|o| o.name == *pname) {
                p.add(
                    &ppath,
                    format!("port name \"{pname}\" is declared in both ports and ports-hard"),
                );
                continue;
            }
            if let Some(other) = ports.iter().find(|o| o.port == n as u16) {
                p.add(
                    &ppath,
                    format!("port {n} is already used by \"{}\"", other.name),
                );
                continue;
            }
            ports.push(PortSpec {
                name: pname.clone(),
                port: n as u16,
                hard,
            });
        }
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

fn environment(f: Fields, p: &mut Problems) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    let Some(env) = f
        .field("environment")
        .and_then(|v| as_map(v, &f.at("environment"), p))
    else {
        return environment;
    };
    for (k, v) in env {
        let epath = format!("{}/environment/{}", f.path, escape(k));
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            p.add(
                &epath,
                format!("\"{k}\" is not a valid environment variable name"),
            );
            continue;
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            p.add(
                &epath,
                format!("{k} is set by the deployer from the service name and labels"),
            );
            continue;
        }
        if let Some(text) = as_scalar_text(v, &epath, p) {
            environment.insert(k.clone(), text);
        }
    }
    environment
}

/// `instances`, `cpus`, `mem`, `disk`, with their defaults.
struct Resources {
    instances: u64,
    cpus: f64,
    mem: f64,
    disk: Option<f64>,
}

fn resources(f: Fields, p: &mut Problems) -> Resources {
    let instances = match f.field("instances") {
        Some(v) => as_uint(v, &f.at("instances"), p).unwrap_or(1),
        None => 1,
    };
    if instances > 10_000 {
        p.add(
            &f.at("instances"),
            format!("at most 10000 instances, got {instances}"),
        );
    }
    let cpus = number(f, "cpus", Some(0.1), true, p).unwrap_or(0.1);
    let mem = number(f, "mem", Some(128.0), true, p).unwrap_or(128.0);
    let disk = number(f, "disk", None, false, p);
    Resources {
        instances,
        cpus,
        mem,
        disk,
    }
}

/// A non-negative number field (positive when `min_exclusive`); `default`
/// when it is out of range, `None` when absent or not a number.
fn number(
    f: Fields,
    name: &str,
    default: Option<f64>,
    min_exclusive: bool,
    p: &mut Problems,
) -> Option<f64> {
    let v = f.field(name)?;
    let n = as_number(v, &f.at(name), p)?;
    if n < 0.0 || (min_exclusive && n == 0.0) {
        let rule = if min_exclusive {
            "greater than 0"
        } else {
            "0 or more"
        };
        p.add(&f.at(name), format!("must be {rule}, got {n}"));
        return default;
    }
    Some(n)
}

fn volumes(f: Fields, p: &mut Problems) -> Vec<VolumeSpec> {
    let mut volumes = Vec::new();
    if let Some(items) = f
        .field("volumes")
        .and_then(|v| as_list(v, &f.at("volumes"), p))
    {
        for (i, item) in items.iter().enumerate() {
            let vpath = format!("{}/volumes/{i}", f.path);
            if let Some(s) = as_string(item, &vpath, p) {
                match volume(&s) {
                    Ok(v) => volumes.push(v),
                    Err(e) => p.add(&vpath, e),
                }
            }
        }
    }
    volumes
}

fn constraints(f: Fields, p: &mut Problems) -> Vec<Vec<String>> {
    let mut constraints = Vec::new();
    if let Some(items) = f
        .field("constraints")
        .and_then(|v| as_list(v, &f.at("constraints"), p))
    {
        for (i, item) in items.iter().enumerate() {
            let cpath = format!("{}/constraints/{i}", f.path);
            if let Some(c) = constraint(item, &cpath, p) {
                constraints.push(c);
            }
        }
    }
    constraints
}

/// `custom_constraints`: one name or a list; `fixed-host` is the only one.
fn fixed_host(f: Fields, p: &mut Problems) -> bool {
    let mut fixed_host = false;
    let Some(v) = f.field("custom_constraints") else {
        return fixed_host;
    };
    let cpath = f.at("custom_constraints");
    let items: Vec<(String, Value)> = match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (format!("{cpath}/{i}"), x.clone()))
            .collect(),
        other => vec![(cpath.clone(), other.clone())],
    };
    for (ipath, item) in items {
        if let Some(s) = as_string(&item, &ipath, p) {
            if s == "fixed-host" {
                fixed_host = true;
            } else {
                let hint = suggest(&s, CUSTOM_CONSTRAINTS)
                    .map(|x| format!("; did you mean \"{x}\"?"))
                    .unwrap_or_else(|| "; known: fixed-host".into());
                p.add(&ipath, format!("unknown custom constraint \"{s}\"{hint}"));
            }
        }
    }
    fixed_host
}

fn health_checks(f: Fields, ports: &[PortSpec], p: &mut Problems) -> Vec<HealthCheckSpec> {
    let mut health_checks = Vec::new();
    if let Some(items) = f
        .field("health_checks")
        .and_then(|v| as_list(v, &f.at("health_checks"), p))
    {
        for (i, item) in items.iter().enumerate() {
            let hpath = format!("{}/health_checks/{i}", f.path);
            if let Some(hc) = health_check(item, &hpath, ports, p) {
                health_checks.push(hc);
            }
        }
    }
    health_checks
}

fn upgrade(f: Fields, p: &mut Problems) -> Option<UpgradeSpec> {
    let v = f.field("upgrade")?;
    let upath = f.at("upgrade");
    let um = as_map(v, &upath, p)?;
    check_fields(um, UPGRADE_FIELDS, &upath, p);
    let mut frac = |name: &str| -> f64 {
        let Some(v) = um.get(name).filter(|v| !v.is_null()) else {
            return 1.0;
        };
        let fpath = format!("{upath}/{name}");
        match as_number(v, &fpath, p) {
            Some(n) if (0.0..=1.0).contains(&n) => n,
            Some(n) => {
                p.add(&fpath, format!("must be between 0 and 1, got {n}"));
                1.0
            }
            None => 1.0,
        }
    };
    let minimum_health_capacity = frac("minimum_health_capacity");
    let maximum_over_capacity = frac("maximum_over_capacity");
    Some(UpgradeSpec {
        minimum_health_capacity,
        maximum_over_capacity,
    })
}

/// `network`: bridge for images, host for commands unless set.
fn network(f: Fields, has_image: bool, p: &mut Problems) -> Network {
    let Some(v) = f.field("network") else {
        return if has_image {
            Network::Bridge
        } else {
            Network::Host
        };
    };
    match as_string(v, &f.at("network"), p).map(|s| s.to_ascii_lowercase()) {
        Some(s) if s == "bridge" => {
            if !has_image {
                p.add(
                    &f.at("network"),
                    "bridge networking needs an image (command tasks use the host network)",
                );
            }
            Network::Bridge
        }
        Some(s) if s == "host" => Network::Host,
        Some(s) => {
            p.add(
                &f.at("network"),
                format!("unknown network \"{s}\"; use bridge or host"),
            );
            Network::Host
        }
        None => Network::Host,
    }
}

/// `marathon:`, passed through except for what the deployer sets itself.
fn marathon(f: Fields, p: &mut Problems) -> Map<String, Value> {
    let Some(v) = f.field("marathon") else {
        return Map::new();
    };
    let mpath = f.at("marathon");
    let Some(mm) = as_map(v, &mpath, p) else {
        return Map::new();
    };
    if mm.contains_key("id") {
        p.add(
            &format!("{mpath}/id"),
            "the app id is set by the deployer from the service name and labels",
        );
    }
    if let Some(Value::Object(l)) = mm.get("labels") {
        for k in l.keys() {
            if crate::translate::RESERVED_LABELS.contains(&k.as_str()) {
                p.add(
                    &format!("{mpath}/labels/{}", escape(k)),
                    format!("{k} is set by the deployer"),
                );
            }
        }
    }
    mm.clone()
}

fn volume(s: &str) -> Result<VolumeSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, "rw"),
        [h, c, m] => (*h, *c, *m),
        _ => {
            return Err(format!(
                "volume \"{s}\" must look like /host/path:/container/path[:ro]"
            ))
        }
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(format!("volume \"{s}\": both paths must be absolute"));
    }
    let read_only = match mode.to_ascii_lowercase().as_str() {
        "ro" => true,
        "rw" => false,
        other => return Err(format!("volume \"{s}\": mode \"{other}\" must be ro or rw")),
    };
    Ok(VolumeSpec {
        host: host.to_string(),
        container: container.to_string(),
        read_only,
    })
}

fn constraint(item: &Value, path: &str, p: &mut Problems) -> Option<Vec<String>> {
    let parts = as_list(item, path, p)?;
    if parts.len() != 2 && parts.len() != 3 {
        p.add(path, "Each constraint must have either 2 or 3 fields");
        return None;
    }
    let texts: Vec<String> = parts
        .iter()
        .enumerate()
        .filter_map(|(i, x)| as_scalar_text(x, &format!("{path}/{i}"), p))
        .collect();
    if texts.len() != parts.len() {
        return None;
    }
    let op = texts[1].to_ascii_uppercase();
    let value = texts.get(2);
    let error = match op.as_str() {
        "UNIQUE" if value.is_some() => Some("UNIQUE does not accept a value"),
        "GROUP_BY" if value.is_some_and(|v| v.parse::<u64>().is_err()) => {
            Some("GROUP BY must define an integer value or else no value at all")
        }
        "LIKE" | "UNLIKE" if value.is_none_or(|v| v.is_empty() || regex::Regex::new(v).is_err()) => {
            Some("LIKE and UNLIKE require a non-empty, regular expression value")
        }
        "MAX_PER" if value.is_none_or(|v| v.parse::<u64>().is_err()) => Some("MAX_PER requires an integer value"),
        "IS" if value.is_none_or(|v| !v.chars().all(|c| c.is_ascii_alphanumeric() || "_/.-".contains(c))) => {
            Some("IS requires a text or number value")
        }
        o if !OPERATORS.contains(&o) => {
            Some("operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS")
        }
        _ => None,
    };
    if let Some(e) = error {
        p.add(path, e);
        return None;
    }
    let mut out = vec![texts[0].clone(), op];
    out.extend(value.cloned());
    Some(out)
}
