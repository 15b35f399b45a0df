//! The task environment: Marathon's variables (reference §4) plus mdo's
//! (`CONTAINER_NAME`, `CONTAINER_HOST_ADDRESS`, `SERVICE_NAME`,
//! `SERVICE_GROUP`, `ETCD_ENDPOINTS`). A pure function, table-tested.

use std::collections::BTreeMap;

use marathon::{App, ContainerType};

/// Node-level inputs of the environment.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    /// The advertised address (`HOST`, `CONTAINER_HOST_ADDRESS`).
    pub host: String,
    /// `ETCD_ENDPOINTS` as seen from inside the task.
    pub etcd_endpoints: String,
    /// `ETCD_USER` / `ETCD_PASSWORD` for reading the registry, when set.
    pub etcd_auth: Option<crate::config::ContainerEtcdAuth>,
}

/// Endpoints as seen from a container with its own network namespace:
/// loopback hosts (`127.0.0.1`, `localhost`, `[::1]`) become `gateway`.
pub fn rewrite_loopback(endpoints: &str, gateway: &str) -> String {
    endpoints
        .split(',')
        .map(|e| {
            let (scheme, rest) = match e.split_once("://") {
                Some((s, r)) => (format!("{s}://"), r),
                None => (String::new(), e),
            };
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) if !p.contains(']') => (h, format!(":{p}")),
                _ => (rest, String::new()),
            };
            if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                format!("{scheme}{gateway}{port}")
            } else {
                e.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Scala's `Double.toString` for the resource variables (`0.1`, `128.0`).
fn scala_double(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn sanitise_label(key: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_uppercase());
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// The environment of one task. `ports[i]` is the effective port of the
/// app's i-th declared port (the host port, or the container port when the
/// mapping publishes none).
pub fn task_env(
    app: &App,
    task_id: &str,
    ports: &[u32],
    node: &NodeEnv,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("MESOS_TASK_ID".into(), task_id.to_string());
    env.insert("MARATHON_APP_ID".into(), app.id.clone());
    env.insert(
        "MARATHON_APP_VERSION".into(),
        app.version.map(|v| v.to_string()).unwrap_or_default(),
    );
    if let Some(c) = &app.container {
        if c.kind == ContainerType::Docker {
            if let Some(image) = app.docker_image() {
                env.insert("MARATHON_APP_DOCKER_IMAGE".into(), image.to_string());
            }
        }
    }
    env.insert("MARATHON_APP_RESOURCE_CPUS".into(), scala_double(app.cpus));
    env.insert("MARATHON_APP_RESOURCE_MEM".into(), scala_double(app.mem));
    env.insert("MARATHON_APP_RESOURCE_DISK".into(), scala_double(app.disk));
    env.insert("MARATHON_APP_RESOURCE_GPUS".into(), app.gpus.to_string());
    let mut label_names = Vec::new();
    for (k, v) in &app.labels {
        if k.len() >= 493 || v.len() >= 512 {
            continue;
        }
        let name = sanitise_label(k);
        env.insert(format!("MARATHON_APP_LABEL_{name}"), v.clone());
        label_names.push(name);
    }
    env.insert("MARATHON_APP_LABELS".into(), label_names.join(" "));

    // Ports: by index, named, and by requested port.
    let requested: Vec<u32> = if app.is_host_network() {
        app.port_definitions
            .iter()
            .flatten()
            .map(|p| p.port)
            .collect()
    } else {
        app.container
            .iter()
            .flat_map(|c| c.port_mappings.iter().flatten())
            .map(|p| p.container_port)
            .collect()
    };
    let names: Vec<Option<String>> = if app.is_host_network() {
        app.port_definitions
            .iter()
            .flatten()
            .map(|p| p.name.clone())
            .collect()
    } else {
        app.container
            .iter()
            .flat_map(|c| c.port_mappings.iter().flatten())
            .map(|p| p.name.clone())
            .collect()
    };
    for (i, port) in ports.iter().enumerate() {
        env.insert(format!("PORT{i}"), port.to_string());
        if let Some(Some(name)) = names.get(i) {
            env.insert(format!("PORT_{}", name.to_uppercase()), port.to_string());
        }
        let req = requested
            .get(i)
            .copied()
            .filter(|r| *r != 0)
            .unwrap_or(*port);
        env.insert(format!("PORT_{req}"), port.to_string());
    }
    if let Some(first) = ports.first() {
        env.insert("PORT".into(), first.to_string());
        env.insert(
            "PORTS".into(),
            ports
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    env.insert("HOST".into(), node.host.clone());

    // mdo's own variables.
    env.insert("CONTAINER_NAME".into(), task_id.to_string());
    env.insert("CONTAINER_HOST_ADDRESS".into(), node.host.clone());
    env.insert("ETCD_ENDPOINTS".into(), node.etcd_endpoints.clone());
    if let Some(auth) = &node.etcd_auth {
        env.insert("ETCD_USER".into(), auth.user.clone());
        env.insert("ETCD_PASSWORD".into(), auth.password.clone());
    }
    if let Ok(names) = registry::naming::names_from_app(&app.id, &app.labels) {
        env.insert("SERVICE_NAME".into(), names.service);
        env.insert("SERVICE_GROUP".into(), names.group);
    }

    // The user's env wins (secret references are not resolved).
    for (k, v) in &app.env {
        if let Some(s) = v.as_str() {
            env.insert(k.clone(), s.to_string());
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> NodeEnv {
        NodeEnv {
            host: "10.0.0.5".into(),
            etcd_endpoints: "http://10.0.0.5:2379".into(),
            etcd_auth: None,
        }
    }

    fn app(v: serde_json::Value) -> App {
        let mut a: App = serde_json::from_value(v).unwrap();
        crate::validation::normalise(&mut a);
        a
    }

    #[test]
    fn loopback_rewrite() {
        let cases = [
            ("http://127.0.0.1:2379", "http://172.17.0.1:2379"),
            (
                "http://localhost:2379,http://10.0.0.2:2379",
                "http://172.17.0.1:2379,http://10.0.0.2:2379",
            ),
            ("127.0.0.1:2379", "172.17.0.1:2379"),
            ("http://etcd:2379", "http://etcd:2379"),
        ];
        for (input, want) in cases {
            assert_eq!(rewrite_loopback(input, "172.17.0.1"), want, "{input}");
        }
    }

    #[test]
    fn host_mode_ports_and_names() {
        let a = app(json!({"id":"/dev/ingestor","cmd":"x","cpus":0.1,"mem":128,
            "version":"2026-11-22T10:00:00.000Z",
            "portDefinitions":[{"port":10000,"name":"api"},{"port":0}],
            "labels":{"HAPROXY_GROUP":"ext","a.b-c":"v"},
            "env":{"HOST":"mine"}}));
        let env = task_env(
            &a,
            "dev_ingestor.instance-u._app.1",
            &[31001, 31002],
            &node(),
        );
        let want = [
            ("PORT0", "31001"),
            ("PORT1", "31002"),
            ("PORT", "31001"),
            ("PORTS", "31001,31002"),
            ("PORT_API", "31001"),
            ("PORT_10000", "31001"),
            ("PORT_31002", "31002"),
            ("HOST", "mine"),
            ("MESOS_TASK_ID", "dev_ingestor.instance-u._app.1"),
            ("CONTAINER_NAME", "dev_ingestor.instance-u._app.1"),
            ("CONTAINER_HOST_ADDRESS", "10.0.0.5"),
            ("MARATHON_APP_ID", "/dev/ingestor"),
            ("MARATHON_APP_VERSION", "2026-11-22T10:00:00.000Z"),
            ("MARATHON_APP_RESOURCE_CPUS", "0.1"),
            ("MARATHON_APP_RESOURCE_MEM", "128.0"),
            ("MARATHON_APP_RESOURCE_DISK", "0.0"),
            ("MARATHON_APP_RESOURCE_GPUS", "0"),
            ("MARATHON_APP_LABELS", "HAPROXY_GROUP A_B_C"),
            ("MARATHON_APP_LABEL_HAPROXY_GROUP", "ext"),
            ("MARATHON_APP_LABEL_A_B_C", "v"),
            ("SERVICE_NAME", "ingestor"),
            ("SERVICE_GROUP", "dev"),
            ("ETCD_ENDPOINTS", "http://10.0.0.5:2379"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(!env.contains_key("MARATHON_APP_DOCKER_IMAGE"));
    }

    #[test]
    fn bridge_mode_and_docker_image_and_no_ports() {
        let a = app(
            json!({"id":"/web","container":{"type":"DOCKER","docker":{"image":"nginx"}},
            "networks":[{"mode":"container/bridge"}],
            "container":{"type":"DOCKER","docker":{"image":"nginx"},"portMappings":[{"containerPort":80,"name":"http"}]},
            "labels":{"SERVICE_NAME":"front"}}),
        );
        let env = task_env(&a, "web.instance-u._app.1", &[31005], &node());
        assert_eq!(env["PORT_80"], "31005");
        assert_eq!(env["PORT_HTTP"], "31005");
        assert_eq!(env["MARATHON_APP_DOCKER_IMAGE"], "nginx");
        assert_eq!(env["SERVICE_NAME"], "front");
        assert_eq!(env["SERVICE_GROUP"], "default");

        let none = app(json!({"id":"/n","cmd":"x","portDefinitions":[]}));
        let env = task_env(&none, "n.instance-u._app.1", &[], &node());
        assert!(
            !env.contains_key("PORT") && !env.contains_key("PORTS") && !env.contains_key("PORT0")
        );
        assert_eq!(env["HOST"], "10.0.0.5");
    }

    #[test]
    fn registry_credentials_only_when_configured() {
        let a = app(json!({"id":"/dev/web","cmd":"x"}));
        let env = task_env(&a, "dev_web.instance-u._app.1", &[], &node());
        assert!(!env.contains_key("ETCD_USER") && !env.contains_key("ETCD_PASSWORD"));

        let mut n = node();
        n.etcd_auth = Some(crate::config::ContainerEtcdAuth {
            user: "mdo-guest".into(),
            password: "s3cret".into(),
        });
        let env = task_env(&a, "dev_web.instance-u._app.1", &[], &n);
        assert_eq!(env["ETCD_USER"], "mdo-guest");
        assert_eq!(env["ETCD_PASSWORD"], "s3cret");
        assert!(!format!("{:?}", n.etcd_auth).contains("s3cret"));
    }
}
