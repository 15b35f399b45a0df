//! Translation of a validated service spec into a Marathon app definition
//! (plain JSON, so the `marathon:` map can carry anything a Marathon app takes).
//! Pure: no I/O.

use serde_json::{json, Map, Value};

use crate::spec::{CheckProtocol, Network, ServiceSpec};

/// App label marking an app as managed by the deployer.
pub const MANAGED_BY_LABEL: &str = "MDO_MANAGED_BY";
pub const MANAGED_BY_VALUE: &str = "deployer";
/// App label remembering `custom_constraints: fixed-host`.
pub const FIXED_HOST_LABEL: &str = "MDO_FIXED_HOST";
/// Labels the deployer owns (the `marathon:` map may not set them).
pub const RESERVED_LABELS: &[&str] = &[
    "SERVICE_NAME",
    "SERVICE_GROUP",
    "SERVICE_LABELS",
    MANAGED_BY_LABEL,
    FIXED_HOST_LABEL,
];

/// What translation needs from the deployer's configuration.
#[derive(Debug, Clone, Default)]
pub struct TranslateConfig {
    /// etcd endpoints reachable from inside the containers (comma separated),
    /// put into every app's env as `ETCD_ENDPOINTS`.
    pub container_etcd_endpoints: String,
}

/// The Marathon app JSON for one service.
pub fn app_json(spec: &ServiceSpec, config: &TranslateConfig) -> Value {
    let group = registry::naming::group_from_labels(&spec.labels);
    let labels_csv = spec.labels.join(",");

    let mut env = Map::new();
    if !config.container_etcd_endpoints.is_empty() {
        env.insert(
            "ETCD_ENDPOINTS".into(),
            json!(config.container_etcd_endpoints),
        );
    }
    for (k, v) in &spec.environment {
        env.insert(k.clone(), json!(v));
    }
    env.insert("SERVICE_NAME".into(), json!(spec.service));
    env.insert("SERVICE_GROUP".into(), json!(group));
    env.insert("LABELS".into(), json!(labels_csv));

    let mut labels = Map::new();
    labels.insert("SERVICE_NAME".into(), json!(spec.service));
    labels.insert("SERVICE_GROUP".into(), json!(group));
    labels.insert("SERVICE_LABELS".into(), json!(labels_csv));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY_VALUE));
    if spec.fixed_host {
        labels.insert(FIXED_HOST_LABEL.into(), json!("true"));
    }

    let mut app = Map::new();
    app.insert("id".into(), json!(spec.app_id()));
    if let Some(cmd) = &spec.cmd {
        app.insert("cmd".into(), json!(cmd));
    }
    if !spec.args.is_empty() {
        app.insert("args".into(), json!(spec.args));
    }
    app.insert("instances".into(), json!(spec.instances));
    app.insert("cpus".into(), json!(spec.cpus));
    app.insert("mem".into(), json!(spec.mem));
    if let Some(disk) = spec.disk {
        app.insert("disk".into(), json!(disk));
    }
    app.insert("env".into(), Value::Object(env));
    app.insert("labels".into(), Value::Object(labels));

    let any_hard = spec.ports.iter().any(|p| p.hard);
    match spec.network {
        Network::Bridge => {
            app.insert("networks".into(), json!([{"mode": "container/bridge"}]));
        }
        Network::Host => {
            app.insert("networks".into(), json!([{"mode": "host"}]));
            let defs: Vec<Value> = spec
                .ports
                .iter()
                .map(|p| json!({"port": if p.hard { p.port } else { 0 }, "protocol": "tcp", "name": p.name}))
                .collect();
            // An empty list (not an absent one) means "no ports" to Marathon.
            app.insert("portDefinitions".into(), Value::Array(defs));
            app.insert("requirePorts".into(), json!(any_hard));
        }
    }
    if let Some(image) = &spec.image {
        let mut container = Map::new();
        container.insert("type".into(), json!("DOCKER"));
        container.insert("docker".into(), json!({"image": image}));
        if spec.network == Network::Bridge {
            let mappings: Vec<Value> = spec
                .ports
                .iter()
                .map(|p| {
                    json!({"name": p.name, "containerPort": p.port,
                           "hostPort": if p.hard { p.port } else { 0 }, "protocol": "tcp"})
                })
                .collect();
            container.insert("portMappings".into(), Value::Array(mappings));
        }
        if !spec.volumes.is_empty() {
            let vols: Vec<Value> = spec
                .volumes
                .iter()
                .map(|v| {
                    json!({"containerPath": v.container, "hostPath": v.host,
                           "mode": if v.read_only { "RO" } else { "RW" }})
                })
                .collect();
            container.insert("volumes".into(), Value::Array(vols));
        }
        app.insert("container".into(), Value::Object(container));
    }

    let mut constraints: Vec<Value> = spec.constraints.iter().map(|c| json!(c)).collect();
    if spec.fixed_host {
        let unique = json!(["hostname", "UNIQUE"]);
        if !constraints.contains(&unique) {
            constraints.push(unique);
        }
    }
    if !constraints.is_empty() {
        app.insert("constraints".into(), Value::Array(constraints));
    }

    if !spec.health_checks.is_empty() {
        let checks: Vec<Value> = spec
            .health_checks
            .iter()
            .map(|h| {
                let protocol = match h.protocol {
                    CheckProtocol::Http => "HTTP",
                    CheckProtocol::Https => "HTTPS",
                    CheckProtocol::Tcp => "TCP",
                    CheckProtocol::Command => "COMMAND",
                };
                let mut c = Map::new();
                c.insert("protocol".into(), json!(protocol));
                if let Some(i) = h.port_index {
                    c.insert("portIndex".into(), json!(i));
                }
                if let Some(p) = &h.path {
                    c.insert("path".into(), json!(p));
                }
                if let Some(cmd) = &h.command {
                    c.insert("command".into(), json!({"value": cmd}));
                }
                c.insert("gracePeriodSeconds".into(), json!(h.grace_period_seconds));
                c.insert("intervalSeconds".into(), json!(h.interval_seconds));
                c.insert("timeoutSeconds".into(), json!(h.timeout_seconds));
                c.insert(
                    "maxConsecutiveFailures".into(),
                    json!(h.max_consecutive_failures),
                );
                Value::Object(c)
            })
            .collect();
        app.insert("healthChecks".into(), Value::Array(checks));
    }

    // One instance per host cannot be rolled by starting new beside old on the
    // same host: replace in place unless the user chose otherwise.
    let (min_health, max_over) = match (&spec.upgrade, spec.fixed_host) {
        (Some(u), _) => (u.minimum_health_capacity, u.maximum_over_capacity),
        (None, true) => (0.0, 0.0),
        (None, false) => (1.0, 1.0),
    };
    app.insert(
        "upgradeStrategy".into(),
        json!({"minimumHealthCapacity": min_health, "maximumOverCapacity": max_over}),
    );

    let mut app = Value::Object(app);
    merge(&mut app, &Value::Object(spec.marathon.clone()));
    app
}

/// Deep merge: objects merge key by key, anything else replaces.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::validate;

    fn app(doc: Value) -> Value {
        let d = validate(&doc).unwrap();
        let cfg = TranslateConfig {
            container_etcd_endpoints: "http://172.17.0.1:2379".into(),
        };
        app_json(&d.deploy[0], &cfg)
    }

    #[test]
    fn docker_service_with_named_ports() {
        let a = app(
            json!({"deploy": {"ingestor": {"image": "example/flask", "labels": ["ponies", "hello"],
            "ports": {"api": 5000, "ssh": 22}, "ports-hard": {"admin": 8081},
            "environment": {"APP_NAME": "Ingestor"}, "instances": 4}}}),
        );
        assert_eq!(a["id"], "/hello.ponies/ingestor");
        assert_eq!(a["instances"], 4);
        assert_eq!(a["container"]["docker"]["image"], "example/flask");
        assert_eq!(
            a["container"]["portMappings"],
            json!([
                {"name": "admin", "containerPort": 8081, "hostPort": 8081, "protocol": "tcp"},
                {"name": "api", "containerPort": 5000, "hostPort": 0, "protocol": "tcp"},
                {"name": "ssh", "containerPort": 22, "hostPort": 0, "protocol": "tcp"},
            ])
        );
        assert_eq!(a["networks"], json!([{"mode": "container/bridge"}]));
        assert!(a.get("portDefinitions").is_none());
        assert_eq!(
            a["env"],
            json!({"APP_NAME": "Ingestor", "SERVICE_NAME": "ingestor", "SERVICE_GROUP": "hello.ponies",
                   "LABELS": "hello,ponies", "ETCD_ENDPOINTS": "http://172.17.0.1:2379"})
        );
        assert_eq!(
            a["labels"],
            json!({"SERVICE_NAME": "ingestor", "SERVICE_GROUP": "hello.ponies",
                   "SERVICE_LABELS": "hello,ponies", "MDO_MANAGED_BY": "deployer"})
        );
        assert_eq!(
            a["upgradeStrategy"],
            json!({"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0})
        );
    }

    #[test]
    fn command_task_gets_named_port_definitions() {
        let a = app(
            json!({"deploy": {"web": {"cmd": "busybox httpd -f -p $PORT_HTTP", "ports": {"http": 8080}}}}),
        );
        assert_eq!(a["id"], "/web");
        assert_eq!(a["cmd"], "busybox httpd -f -p $PORT_HTTP");
        assert!(a.get("container").is_none());
        assert_eq!(a["networks"], json!([{"mode": "host"}]));
        assert_eq!(
            a["portDefinitions"],
            json!([{"port": 0, "protocol": "tcp", "name": "http"}])
        );
        assert_eq!(a["requirePorts"], false);
        assert_eq!(a["env"]["SERVICE_GROUP"], "default");
        assert_eq!(a["env"]["LABELS"], "");
        let b = app(json!({"deploy": {"web": {"cmd": "x"}}}));
        assert_eq!(b["portDefinitions"], json!([]));
        let c = app(json!({"deploy": {"web": {"cmd": "x", "ports-hard": {"http": 8080}}}}));
        assert_eq!(
            c["portDefinitions"],
            json!([{"port": 8080, "protocol": "tcp", "name": "http"}])
        );
        assert_eq!(c["requirePorts"], true);
    }

    #[test]
    fn fixed_host_health_checks_volumes_and_marathon_merge() {
        let a = app(
            json!({"deploy": {"db": {"image": "postgres", "ports": {"pg": 5432},
            "custom_constraints": "fixed-host", "constraints": [["rack", "GROUP_BY"]],
            "volumes": ["/data:/var/lib/pg", "/etc/x:/x:ro"],
            "health_checks": [{"protocol": "TCP", "port": "pg", "grace_period_seconds": 30}],
            "network": "host", "disk": 512,
            "marathon": {"backoffSeconds": 5, "container": {"docker": {"forcePullImage": true}}, "labels": {"team": "a"}}}}}),
        );
        assert_eq!(
            a["constraints"],
            json!([["rack", "GROUP_BY"], ["hostname", "UNIQUE"]])
        );
        assert_eq!(a["labels"]["MDO_FIXED_HOST"], "true");
        assert_eq!(a["labels"]["team"], "a");
        assert_eq!(a["labels"]["SERVICE_NAME"], "db");
        assert_eq!(
            a["upgradeStrategy"],
            json!({"minimumHealthCapacity": 0.0, "maximumOverCapacity": 0.0})
        );
        assert_eq!(
            a["container"]["volumes"],
            json!([{"containerPath": "/var/lib/pg", "hostPath": "/data", "mode": "RW"},
                   {"containerPath": "/x", "hostPath": "/etc/x", "mode": "RO"}])
        );
        assert_eq!(
            a["container"]["docker"],
            json!({"image": "postgres", "forcePullImage": true})
        );
        assert!(a["container"].get("portMappings").is_none());
        assert_eq!(
            a["portDefinitions"],
            json!([{"port": 0, "protocol": "tcp", "name": "pg"}])
        );
        assert_eq!(
            a["healthChecks"],
            json!([{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 60,
                    "timeoutSeconds": 20, "maxConsecutiveFailures": 3}])
        );
        assert_eq!(a["backoffSeconds"], 5);
        assert_eq!(a["disk"], 512.0);
    }

    #[test]
    fn translation_is_deterministic_for_reordered_labels() {
        let a = app(json!({"deploy": {"x": {"cmd": "c", "labels": ["b", "a"]}}}));
        let b = app(json!({"deploy": {"x": {"cmd": "c", "labels": ["a", "b"]}}}));
        assert_eq!(a, b);
    }
}
