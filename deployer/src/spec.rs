//! The deploy document: `deploy:` (service -> spec) and `remove:` (service ->
//! `{labels}`), validated from a parsed JSON value into typed specs.
//!
//! Validation collects every problem with its path (`/deploy/web/instances`)
//! so one 422 tells the user everything; unknown fields get a suggestion when
//! they look like a typo of a known one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

/// One problem at one place in the document (Marathon's error detail shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub path: String,
    pub errors: Vec<String>,
}

/// A validated document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub deploy: Vec<ServiceSpec>,
    pub remove: Vec<RemoveSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoveSpec {
    pub service: String,
    /// Canonical (sorted, deduplicated).
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Bridge,
    Host,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    pub name: String,
    pub port: u16,
    /// `ports-hard`: the same fixed port on the host.
    pub hard: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    pub host: String,
    pub container: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckProtocol {
    Http,
    Https,
    Tcp,
    Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub protocol: CheckProtocol,
    /// Index into the app's ports (HTTP/HTTPS/TCP).
    pub port_index: Option<usize>,
    pub path: Option<String>,
    pub command: Option<String>,
    pub grace_period_seconds: u64,
    pub interval_seconds: u64,
    pub timeout_seconds: u64,
    pub max_consecutive_failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpgradeSpec {
    pub minimum_health_capacity: f64,
    pub maximum_over_capacity: f64,
}

/// One service of `deploy:`, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub service: String,
    /// Canonical (sorted, deduplicated).
    pub labels: Vec<String>,
    pub image: Option<String>,
    pub cmd: Option<String>,
    pub args: Vec<String>,
    /// Sorted by name: the port index order of the app.
    pub ports: Vec<PortSpec>,
    pub environment: BTreeMap<String, String>,
    pub instances: u64,
    pub cpus: f64,
    pub mem: f64,
    pub disk: Option<f64>,
    pub volumes: Vec<VolumeSpec>,
    pub constraints: Vec<Vec<String>>,
    pub fixed_host: bool,
    pub health_checks: Vec<HealthCheckSpec>,
    pub upgrade: Option<UpgradeSpec>,
    pub network: Network,
    pub marathon: Map<String, Value>,
}

impl ServiceSpec {
    pub fn app_id(&self) -> String {
        registry::naming::app_id(&self.service, &self.labels)
    }
}

impl RemoveSpec {
    pub fn app_id(&self) -> String {
        registry::naming::app_id(&self.service, &self.labels)
    }
}

const TOP_FIELDS: &[&str] = &["deploy", "remove"];
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
const REMOVE_FIELDS: &[&str] = &["labels"];
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
const UPGRADE_FIELDS: &[&str] = &["minimum_health_capacity", "maximum_over_capacity"];
const CUSTOM_CONSTRAINTS: &[&str] = &["fixed-host"];
const OPERATORS: &[&str] = &[
    "UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS",
];
/// Env names the deployer sets itself from the document's names.
const RESERVED_ENV: &[&str] = &["SERVICE_NAME", "SERVICE_GROUP", "LABELS"];

/// Collects problems while walking the document.
#[derive(Default)]
struct Problems(Vec<Detail>);

impl Problems {
    fn add(&mut self, path: &str, error: impl Into<String>) {
        let error = error.into();
        match self.0.iter_mut().find(|d| d.path == path) {
            Some(d) => d.errors.push(error),
            None => self.0.push(Detail {
                path: path.to_string(),
                errors: vec![error],
            }),
        }
    }
}

/// The closest known name to `unknown`, when it is close enough to be a typo.
pub fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    let u = norm(unknown);
    if let Some(k) = known.iter().find(|k| norm(k) == u) {
        return Some(k);
    }
    let (best, dist) = known
        .iter()
        .map(|k| (*k, levenshtein(&u, &norm(k))))
        .min_by_key(|(_, d)| *d)?;
    let allowed = if u.len() <= 4 {
        1
    } else if u.len() <= 8 {
        2
    } else {
        3
    };
    (dist <= allowed).then_some(best)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check_fields(obj: &Map<String, Value>, known: &[&str], path: &str, p: &mut Problems) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            let msg = match suggest(key, known) {
                Some(s) => format!("unknown field \"{key}\"; did you mean \"{s}\"?"),
                None => format!(
                    "unknown field \"{key}\"; known fields: {}",
                    known.join(", ")
                ),
            };
            p.add(&format!("{path}/{}", escape(key)), msg);
        }
    }
}

/// JSON-pointer escaping of one path segment.
fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn as_map<'a>(v: &'a Value, path: &str, p: &mut Problems) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            p.add(
                path,
                format!("expected a mapping, got {}", type_name(other)),
            );
            None
        }
    }
}

fn as_string(v: &Value, path: &str, p: &mut Problems) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::String(_) => {
            p.add(path, "must not be empty");
            None
        }
        other => {
            p.add(path, format!("expected a string, got {}", type_name(other)));
            None
        }
    }
}

/// Strings, numbers and booleans as text (YAML users write `PORT: 80`).
fn as_scalar_text(v: &Value, path: &str, p: &mut Problems) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            p.add(
                path,
                format!(
                    "expected a string, number or boolean, got {}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

fn as_number(v: &Value, path: &str, p: &mut Problems) -> Option<f64> {
    match v.as_f64() {
        Some(n) => Some(n),
        None => {
            p.add(path, format!("expected a number, got {}", type_name(v)));
            None
        }
    }
}

fn as_uint(v: &Value, path: &str, p: &mut Problems) -> Option<u64> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => Some(u),
            None if n.as_i64().is_some() => {
                p.add(path, format!("must not be negative, got {n}"));
                None
            }
            None => {
                p.add(path, format!("expected a whole number, got {n}"));
                None
            }
        },
        other => {
            p.add(
                path,
                format!("expected a whole number, got {}", type_name(other)),
            );
            None
        }
    }
}

fn as_list<'a>(v: &'a Value, path: &str, p: &mut Problems) -> Option<&'a Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        other => {
            p.add(path, format!("expected a list, got {}", type_name(other)));
            None
        }
    }
}

fn labels_at(v: Option<&Value>, path: &str, p: &mut Problems) -> Vec<String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(items) = as_list(v, path, p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}/{i}");
        if let Some(s) = as_scalar_text(item, &ipath, p) {
            match registry::naming::name_problem(&s) {
                Some(problem) => p.add(&ipath, format!("label {problem}")),
                None if out.contains(&s) => p.add(&ipath, format!("duplicate label \"{s}\"")),
                None => out.push(s),
            }
        }
    }
    registry::naming::canonical_labels(&out)
}

/// Validates a parsed document. Every problem is reported, with its path.
pub fn validate(doc: &Value) -> Result<Document, Vec<Detail>> {
    let mut p = Problems::default();
    let mut out = Document::default();
    let Some(top) = (match doc {
        Value::Null => {
            p.add(
                "/",
                "the document is empty: expected a mapping with deploy and/or remove",
            );
            None
        }
        other => as_map(other, "/", &mut p),
    }) else {
        return Err(p.0);
    };
    check_fields(top, TOP_FIELDS, "", &mut p);
    if let Some(deploy) = top.get("deploy").filter(|v| !v.is_null()) {
        if let Some(services) = as_map(deploy, "/deploy", &mut p) {
            for (name, spec) in services {
                let path = format!("/deploy/{}", escape(name));
                if let Some(problem) = registry::naming::service_problem(name) {
                    p.add(&path, format!("service name {problem}"));
                }
                if let Some(s) = service(name, spec, &path, &mut p) {
                    out.deploy.push(s);
                }
            }
        }
    }
    if let Some(remove) = top.get("remove").filter(|v| !v.is_null()) {
        if let Some(services) = as_map(remove, "/remove", &mut p) {
            for (name, spec) in services {
                let path = format!("/remove/{}", escape(name));
                if let Some(problem) = registry::naming::service_problem(name) {
                    p.add(&path, format!("service name {problem}"));
                }
                let labels = match spec {
                    Value::Null => Vec::new(),
                    other => match as_map(other, &path, &mut p) {
                        Some(m) => {
                            check_fields(m, REMOVE_FIELDS, &path, &mut p);
                            labels_at(m.get("labels"), &format!("{path}/labels"), &mut p)
                        }
                        None => Vec::new(),
                    },
                };
                out.remove.push(RemoveSpec {
                    service: name.clone(),
                    labels,
                });
            }
        }
    }
    cross_checks(&out, &mut p);
    if p.0.is_empty() {
        Ok(out)
    } else {
        Err(p.0)
    }
}

/// App ids must not collide with each other or with a group (`/web` beside
/// `/web/x`), and one document may not both deploy and remove an app.
fn cross_checks(doc: &Document, p: &mut Problems) {
    let deploy_ids: BTreeSet<String> = doc.deploy.iter().map(|s| s.app_id()).collect();
    let all: Vec<(String, String)> = doc
        .deploy
        .iter()
        .map(|s| (s.app_id(), format!("/deploy/{}", escape(&s.service))))
        .collect();
    // Sorted ids: an app `/a` clashes with the first id after `/a/` when that one starts with it.
    for (id, path) in &all {
        let prefix = format!("{id}/");
        if let Some(other) = deploy_ids
            .range(prefix.clone()..)
            .next()
            .filter(|o| o.starts_with(&prefix))
        {
            p.add(
                path,
                format!("app id {id} clashes with the group of app {other}"),
            );
        }
    }
    for r in &doc.remove {
        if deploy_ids.contains(&r.app_id()) {
            p.add(
                &format!("/remove/{}", escape(&r.service)),
                format!(
                    "{} is both deployed and removed by this document",
                    r.app_id()
                ),
            );
        }
    }
}

fn service(name: &str, spec: &Value, path: &str, p: &mut Problems) -> Option<ServiceSpec> {
    let empty = Map::new();
    let m = match spec {
        Value::Null => &empty,
        other => as_map(other, path, p)?,
    };
    let before = p.0.len();
    check_fields(m, SERVICE_FIELDS, path, p);
    let at = |f: &str| format!("{path}/{f}");
    let field = |f: &str| m.get(f).filter(|v| !v.is_null());

    let image = field("image").and_then(|v| as_string(v, &at("image"), p));
    if let Some(img) = &image {
        if img.chars().any(char::is_whitespace) {
            p.add(&at("image"), format!("image \"{img}\" contains whitespace"));
        }
    }
    let cmd = field("cmd").and_then(|v| as_string(v, &at("cmd"), p));
    let args: Vec<String> = field("args")
        .and_then(|v| as_list(v, &at("args"), p))
        .map(|items| {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, a)| as_scalar_text(a, &format!("{path}/args/{i}"), p))
                .collect()
        })
        .unwrap_or_default();
    if image.is_none() && cmd.is_none() && field("image").is_none() && field("cmd").is_none() {
        p.add(path, "a service needs an image or a cmd");
    }
    if cmd.is_some() && !args.is_empty() {
        p.add(
            &at("args"),
            "cmd and args cannot both be set (args go to the image's entrypoint)",
        );
    }
    if image.is_none() && !args.is_empty() && field("image").is_none() {
        p.add(&at("args"), "args need an image (a command task takes cmd)");
    }
    let labels = labels_at(m.get("labels"), &at("labels"), p);

    let mut ports = Vec::new();
    for (key, hard) in [("ports", false), ("ports-hard", true)] {
        let Some(v) = field(key) else { continue };
        let Some(pm) = as_map(v, &at(key), p) else {
            continue;
        };
        for (pname, pv) in pm {
            let ppath = format!("{path}/{key}/{}", escape(pname));
            if let Some(problem) = registry::naming::name_problem(pname) {
                p.add(&ppath, format!("port name {problem}"));
            }
            let Some(n) = as_uint(pv, &ppath, p) else {
                continue;
            };
            if n == 0 || n > 65535 {
                p.add(&ppath, format!("port must be between 1 and 65535, got {n}"));
                continue;
            }
            if let Some(other) = ports.iter().find(|o: &&PortSpec| o.name == *pname) {
                let _ = other;
                p.add(
                    &ppath,
                    format!("port name \"{pname}\" is declared in both ports and ports-hard"),
                );
                continue;
            }
            if let Some(other) = ports.iter().find(|o: &&PortSpec| o.port == n as u16) {
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

    let mut environment = BTreeMap::new();
    if let Some(env) = field("environment").and_then(|v| as_map(v, &at("environment"), p)) {
        for (k, v) in env {
            let epath = format!("{path}/environment/{}", escape(k));
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
    }

    let instances = match field("instances") {
        Some(v) => as_uint(v, &at("instances"), p).unwrap_or(1),
        None => 1,
    };
    if instances > 10_000 {
        p.add(
            &at("instances"),
            format!("at most 10000 instances, got {instances}"),
        );
    }
    let mut number = |f: &str, default: Option<f64>, min_exclusive: bool| -> Option<f64> {
        let v = field(f)?;
        let n = as_number(v, &at(f), p)?;
        if n < 0.0 || (min_exclusive && n == 0.0) {
            let rule = if min_exclusive {
                "greater than 0"
            } else {
                "0 or more"
            };
            p.add(&at(f), format!("must be {rule}, got {n}"));
            return default;
        }
        Some(n)
    };
    let cpus = number("cpus", Some(0.1), true).unwrap_or(0.1);
    let mem = number("mem", Some(128.0), true).unwrap_or(128.0);
    let disk = number("disk", None, false);

    let mut volumes = Vec::new();
    if let Some(items) = field("volumes").and_then(|v| as_list(v, &at("volumes"), p)) {
        for (i, item) in items.iter().enumerate() {
            let vpath = format!("{path}/volumes/{i}");
            if let Some(s) = as_string(item, &vpath, p) {
                match volume(&s) {
                    Ok(v) => volumes.push(v),
                    Err(e) => p.add(&vpath, e),
                }
            }
        }
    }

    let mut constraints = Vec::new();
    if let Some(items) = field("constraints").and_then(|v| as_list(v, &at("constraints"), p)) {
        for (i, item) in items.iter().enumerate() {
            let cpath = format!("{path}/constraints/{i}");
            if let Some(c) = constraint(item, &cpath, p) {
                constraints.push(c);
            }
        }
    }

    let mut fixed_host = false;
    if let Some(v) = field("custom_constraints") {
        let cpath = at("custom_constraints");
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
    }

    let mut health_checks = Vec::new();
    if let Some(items) = field("health_checks").and_then(|v| as_list(v, &at("health_checks"), p)) {
        for (i, item) in items.iter().enumerate() {
            let hpath = format!("{path}/health_checks/{i}");
            if let Some(hc) = health_check(item, &hpath, &ports, p) {
                health_checks.push(hc);
            }
        }
    }

    let upgrade = field("upgrade").and_then(|v| {
        let upath = at("upgrade");
        let um = as_map(v, &upath, p)?;
        check_fields(um, UPGRADE_FIELDS, &upath, p);
        let mut frac = |f: &str| -> f64 {
            let Some(v) = um.get(f).filter(|v| !v.is_null()) else {
                return 1.0;
            };
            let fpath = format!("{upath}/{f}");
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
    });

    let network = match field("network") {
        None => {
            if image.is_some() {
                Network::Bridge
            } else {
                Network::Host
            }
        }
        Some(v) => match as_string(v, &at("network"), p).map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == "bridge" => {
                if image.is_none() {
                    p.add(
                        &at("network"),
                        "bridge networking needs an image (command tasks use the host network)",
                    );
                }
                Network::Bridge
            }
            Some(s) if s == "host" => Network::Host,
            Some(s) => {
                p.add(
                    &at("network"),
                    format!("unknown network \"{s}\"; use bridge or host"),
                );
                Network::Host
            }
            None => Network::Host,
        },
    };
    if image.is_none() && !volumes.is_empty() {
        p.add(&at("volumes"), "volumes need an image");
    }

    let marathon = match field("marathon") {
        Some(v) => {
            let mpath = at("marathon");
            match as_map(v, &mpath, p) {
                Some(mm) => {
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
                None => Map::new(),
            }
        }
        None => Map::new(),
    };

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

fn health_check(
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(doc: Value) -> Vec<Detail> {
        validate(&doc).expect_err("expected problems")
    }

    fn has(details: &[Detail], path: &str, needle: &str) -> bool {
        details
            .iter()
            .any(|d| d.path == path && d.errors.iter().any(|e| e.contains(needle)))
    }

    #[test]
    fn the_design_example_is_valid_with_defaults() {
        let doc = validate(&json!({
            "deploy": {"ingestor": {"image": "example/flask", "labels": ["dev"],
                "ports": {"api": 5000, "ssh": 22}, "environment": {"APP_NAME": "Ingestor"},
                "instances": 4, "cpus": 0.1, "mem": 128}},
            "remove": {"ingestor": {"labels": ["dev"]}, "old": null}
        }));
        // deploy and remove of the same app is refused
        assert!(doc.is_err());
        let doc = validate(&json!({
            "deploy": {"ingestor": {"image": "example/flask", "labels": ["dev"],
                "ports": {"api": 5000, "ssh": 22}, "environment": {"APP_NAME": "Ingestor", "N": 3}}},
            "remove": {"old": null}
        }))
        .unwrap();
        let s = &doc.deploy[0];
        assert_eq!(s.app_id(), "/dev/ingestor");
        assert_eq!(s.instances, 1);
        assert_eq!(s.cpus, 0.1);
        assert_eq!(s.mem, 128.0);
        assert_eq!(s.network, Network::Bridge);
        assert_eq!(s.environment["N"], "3");
        assert_eq!(
            s.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["api", "ssh"]
        );
        assert_eq!(doc.remove[0].app_id(), "/old");
    }

    #[test]
    fn unknown_fields_get_a_path_and_a_suggestion() {
        let d = errors(
            json!({"deploy": {"web": {"imgae": "nginx", "cmd": "x", "port": {"a": 1}}}, "remov": {}}),
        );
        assert!(
            has(&d, "/deploy/web/imgae", "did you mean \"image\""),
            "{d:?}"
        );
        assert!(
            has(&d, "/deploy/web/port", "did you mean \"ports\""),
            "{d:?}"
        );
        assert!(has(&d, "/remov", "did you mean \"remove\""), "{d:?}");
        let d = errors(
            json!({"deploy": {"web": {"cmd": "x", "ports_hard": {"a": 1}, "healthchecks": []}}}),
        );
        assert!(has(&d, "/deploy/web/ports_hard", "\"ports-hard\""), "{d:?}");
        assert!(
            has(&d, "/deploy/web/healthchecks", "\"health_checks\""),
            "{d:?}"
        );
        let d = errors(json!({"deploy": {"web": {"cmd": "x", "zzzzzz": 1}}}));
        assert!(has(&d, "/deploy/web/zzzzzz", "known fields"), "{d:?}");
    }

    #[test]
    fn wrong_types_and_values_name_the_path() {
        let d = errors(
            json!({"deploy": {"web": {"cmd": "x", "instances": -1, "cpus": "lots", "mem": 0,
            "ports": {"api": 70000}, "labels": "dev", "environment": {"A": null}}}}),
        );
        assert!(has(&d, "/deploy/web/instances", "negative"), "{d:?}");
        assert!(has(&d, "/deploy/web/cpus", "expected a number"), "{d:?}");
        assert!(has(&d, "/deploy/web/mem", "greater than 0"), "{d:?}");
        assert!(
            has(&d, "/deploy/web/ports/api", "between 1 and 65535"),
            "{d:?}"
        );
        assert!(has(&d, "/deploy/web/labels", "expected a list"), "{d:?}");
        assert!(
            has(&d, "/deploy/web/environment/A", "expected a string"),
            "{d:?}"
        );
    }

    #[test]
    fn invalid_names_say_why() {
        let d = errors(
            json!({"deploy": {"Web_1": {"cmd": "x", "labels": ["Dev", "a.b"]}, "tasks": {"cmd": "x"}}}),
        );
        assert!(
            has(&d, "/deploy/Web_1", "not a valid Marathon id segment"),
            "{d:?}"
        );
        assert!(has(&d, "/deploy/Web_1/labels/0", "lowercase"), "{d:?}");
        assert!(has(&d, "/deploy/Web_1/labels/1", "dots"), "{d:?}");
        assert!(has(&d, "/deploy/tasks", "reserved"), "{d:?}");
    }

    #[test]
    fn service_shape_rules() {
        let d = errors(json!({"deploy": {
            "a": {"labels": ["x"]},
            "b": {"cmd": "x", "args": ["y"]},
            "c": {"cmd": "x", "network": "bridge", "volumes": ["/a:/b"]},
            "d": {"image": "i", "volumes": ["a:/b", "/a:/b:rx"], "network": "overlay"},
            "e": {"image": "i", "ports": {"a": 80}, "ports-hard": {"a": 81}},
            "f": {"image": "i", "ports": {"a": 80, "b": 80}},
        }}));
        assert!(has(&d, "/deploy/a", "needs an image or a cmd"), "{d:?}");
        assert!(has(&d, "/deploy/b/args", "cannot both be set"), "{d:?}");
        assert!(has(&d, "/deploy/c/network", "needs an image"), "{d:?}");
        assert!(has(&d, "/deploy/c/volumes", "need an image"), "{d:?}");
        assert!(has(&d, "/deploy/d/volumes/0", "absolute"), "{d:?}");
        assert!(has(&d, "/deploy/d/volumes/1", "ro or rw"), "{d:?}");
        assert!(has(&d, "/deploy/d/network", "bridge or host"), "{d:?}");
        assert!(
            has(&d, "/deploy/e/ports-hard/a", "both ports and ports-hard"),
            "{d:?}"
        );
        assert!(has(&d, "/deploy/f/ports/b", "already used"), "{d:?}");
    }

    #[test]
    fn constraints_follow_marathon_rules() {
        let d = errors(json!({"deploy": {"a": {"cmd": "x", "constraints": [
            ["hostname", "UNIQUE", "x"], ["hostname"], ["rack", "NEAR", "1"], ["hostname", "MAX_PER", "two"], ["h", "LIKE"]
        ], "custom_constraints": "fixed-hots"}}}));
        assert!(
            has(&d, "/deploy/a/constraints/0", "does not accept a value"),
            "{d:?}"
        );
        assert!(has(&d, "/deploy/a/constraints/1", "2 or 3 fields"), "{d:?}");
        assert!(
            has(&d, "/deploy/a/constraints/2", "operator must be"),
            "{d:?}"
        );
        assert!(has(&d, "/deploy/a/constraints/3", "integer"), "{d:?}");
        assert!(
            has(&d, "/deploy/a/constraints/4", "regular expression"),
            "{d:?}"
        );
        assert!(
            has(
                &d,
                "/deploy/a/custom_constraints",
                "did you mean \"fixed-host\""
            ),
            "{d:?}"
        );
        let ok = validate(
            &json!({"deploy": {"a": {"cmd": "x", "constraints": [["hostname", "max_per", 2]],
            "custom_constraints": ["fixed-host"]}}}),
        )
        .unwrap();
        assert_eq!(
            ok.deploy[0].constraints,
            vec![vec!["hostname".to_string(), "MAX_PER".into(), "2".into()]]
        );
        assert!(ok.deploy[0].fixed_host);
    }

    #[test]
    fn health_checks_by_port_name() {
        let ok = validate(&json!({"deploy": {"a": {"image": "i", "ports": {"web": 80, "admin": 81},
            "health_checks": [{"port": "web", "path": "/health"}, {"protocol": "tcp", "port": "admin"},
                              {"protocol": "COMMAND", "command": "true"}]}}})).unwrap();
        let hc = &ok.deploy[0].health_checks;
        assert_eq!(hc[0].port_index, Some(1)); // sorted: admin, web
        assert_eq!(hc[0].path.as_deref(), Some("/health"));
        assert_eq!(hc[1].protocol, CheckProtocol::Tcp);
        assert_eq!(hc[1].port_index, Some(0));
        assert_eq!(hc[2].command.as_deref(), Some("true"));
        let d = errors(
            json!({"deploy": {"a": {"image": "i", "ports": {"web": 80, "admin": 81},
            "health_checks": [{"port": "api"}, {}, {"protocol": "COMMAND"}, {"protocol": "SMTP", "port": "web", "grace": 1}]}}}),
        );
        assert!(
            has(
                &d,
                "/deploy/a/health_checks/0/port",
                "unknown port name \"api\""
            ),
            "{d:?}"
        );
        assert!(
            has(&d, "/deploy/a/health_checks/1", "needs a port name"),
            "{d:?}"
        );
        assert!(
            has(&d, "/deploy/a/health_checks/2", "needs a command"),
            "{d:?}"
        );
        assert!(
            has(&d, "/deploy/a/health_checks/3/protocol", "unknown protocol"),
            "{d:?}"
        );
        assert!(
            has(&d, "/deploy/a/health_checks/3/grace", "unknown field"),
            "{d:?}"
        );
    }

    #[test]
    fn upgrade_and_marathon_map() {
        let d = errors(
            json!({"deploy": {"a": {"cmd": "x", "upgrade": {"minimumHealthCapacity": 0.5, "maximum_over_capacity": 2},
            "marathon": {"id": "/x", "labels": {"SERVICE_NAME": "y"}}}}}),
        );
        assert!(
            has(
                &d,
                "/deploy/a/upgrade/minimumHealthCapacity",
                "\"minimum_health_capacity\""
            ),
            "{d:?}"
        );
        assert!(
            has(
                &d,
                "/deploy/a/upgrade/maximum_over_capacity",
                "between 0 and 1"
            ),
            "{d:?}"
        );
        assert!(
            has(&d, "/deploy/a/marathon/id", "set by the deployer"),
            "{d:?}"
        );
        assert!(
            has(
                &d,
                "/deploy/a/marathon/labels/SERVICE_NAME",
                "set by the deployer"
            ),
            "{d:?}"
        );
    }

    #[test]
    fn clashing_app_ids_are_refused() {
        let d = errors(
            json!({"deploy": {"dev": {"cmd": "x"}, "api": {"cmd": "x", "labels": ["dev"]}}}),
        );
        assert!(has(&d, "/deploy/dev", "clashes with the group"), "{d:?}");
    }

    #[test]
    fn empty_and_non_mapping_documents() {
        assert!(has(&errors(Value::Null), "/", "empty"));
        assert!(has(&errors(json!([1])), "/", "expected a mapping"));
        assert_eq!(
            validate(&json!({"deploy": null})).unwrap(),
            Document::default()
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("imgae", SERVICE_FIELDS), Some("image"));
        assert_eq!(suggest("enviroment", SERVICE_FIELDS), Some("environment"));
        assert_eq!(
            suggest("customconstraints", SERVICE_FIELDS),
            Some("custom_constraints")
        );
        assert_eq!(suggest("banana", SERVICE_FIELDS), None);
    }
}
