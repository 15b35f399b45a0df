//! From the `marathon` crate's types to the subscriber's model.

use marathon::{App, Event, Task};

use crate::model::{AppSpec, NetworkMode, PortSpec, TaskEvent, TaskInfo};

/// How an app's tasks are networked, from its `networks` (none = host,
/// as Marathon has it).
pub(crate) fn network_mode(networks: &[marathon::Network]) -> NetworkMode {
    let has = |mode: marathon::NetworkMode| networks.iter().any(|n| n.mode == mode);
    if networks.is_empty() || has(marathon::NetworkMode::Host) {
        NetworkMode::Host
    } else if has(marathon::NetworkMode::ContainerBridge) {
        NetworkMode::Bridge
    } else {
        NetworkMode::Container
    }
}

/// The ports records are built from: a host-networked app's port
/// definitions (else one unnamed port per legacy `ports` entry), any other
/// app's port mappings.
pub(crate) fn port_specs(
    network: NetworkMode,
    definitions: Option<&[marathon::PortDefinition]>,
    legacy: Option<&[u32]>,
    mappings: Option<&[marathon::PortMapping]>,
) -> Vec<PortSpec> {
    match network {
        NetworkMode::Host => match (definitions, legacy) {
            (Some(defs), _) => defs
                .iter()
                .map(|d| PortSpec {
                    name: d.name.clone(),
                    container_port: None,
                    protocol: Some(d.protocol.clone()),
                })
                .collect(),
            (None, Some(legacy)) => legacy
                .iter()
                .map(|_| PortSpec {
                    name: None,
                    container_port: None,
                    protocol: None,
                })
                .collect(),
            (None, None) => Vec::new(),
        },
        NetworkMode::Bridge | NetworkMode::Container => mappings
            .unwrap_or_default()
            .iter()
            .map(|p| PortSpec {
                name: p.name.clone(),
                container_port: Some(p.container_port),
                protocol: Some(p.protocol.clone()),
            })
            .collect(),
    }
}

pub fn app_spec(app: &App) -> AppSpec {
    let network = network_mode(&app.networks);
    let mappings = app.container.as_ref().and_then(|c| {
        c.port_mappings
            .as_ref()
            .or_else(|| c.docker.as_ref().and_then(|d| d.port_mappings.as_ref()))
    });
    let ports = port_specs(
        network,
        app.port_definitions.as_deref(),
        app.ports.as_deref(),
        mappings.map(Vec::as_slice),
    );
    AppSpec {
        id: app.id.clone(),
        version: app.version.map(|v| v.to_string()).unwrap_or_default(),
        labels: app.labels.clone(),
        network,
        ports,
        has_health_checks: !app.health_checks.is_empty(),
    }
}

pub fn task_info(task: &Task) -> TaskInfo {
    TaskInfo {
        id: task.id.clone(),
        app_id: task.app_id.clone(),
        app_version: task.version.map(|v| v.to_string()),
        host: task.host.clone(),
        node: task.slave_id.clone().filter(|s| !s.is_empty()),
        state: task.state.as_str().to_string(),
        ports: task.ports.clone(),
        ip_addresses: task
            .ip_addresses
            .iter()
            .map(|i| i.ip_address.clone())
            .collect(),
        started_at: task.started_at.map(|t| t.to_string()),
        healthy: task.healthy(),
    }
}

/// The subscriber's view of one event.
pub fn task_event(ev: &Event) -> TaskEvent {
    match ev {
        Event::StatusUpdate(e) => TaskEvent::Status(TaskInfo {
            id: e.task_id.clone(),
            app_id: e.app_id.clone(),
            app_version: Some(e.version.to_string()),
            host: e.host.clone(),
            node: Some(e.slave_id.clone()).filter(|s| !s.is_empty()),
            state: e.task_status.as_str().to_string(),
            ports: e.ports.clone(),
            ip_addresses: e
                .ip_addresses
                .iter()
                .map(|i| i.ip_address.clone())
                .collect(),
            started_at: Some(e.timestamp.to_string()),
            healthy: None,
        }),
        Event::InstanceHealthChanged(e) => TaskEvent::Health {
            app_id: Some(e.run_spec_id.clone()),
            id: e.instance_id.clone(),
            healthy: e.healthy,
        },
        Event::HealthStatusChanged(e) => TaskEvent::Health {
            app_id: Some(e.app_id.clone()),
            id: e.instance_id.clone(),
            healthy: Some(e.alive),
        },
        _ => TaskEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_app_ports_and_task() {
        let app: App = serde_json::from_value(serde_json::json!({
            "id": "/dev/ingestor",
            "version": "2026-11-22T10:00:00.000Z",
            "labels": {"SERVICE_NAME": "ingestor"},
            "networks": [{"mode": "container/bridge"}],
            "container": {"type": "DOCKER", "docker": {"image": "x"},
              "portMappings": [{"containerPort": 5000, "hostPort": 0, "name": "api"},
                               {"containerPort": 22, "protocol": "udp"}]},
            "healthChecks": [{"protocol": "TCP", "portIndex": 0}]
        }))
        .unwrap();
        let spec = app_spec(&app);
        assert_eq!(spec.network, NetworkMode::Bridge);
        assert!(spec.has_health_checks);
        assert_eq!(spec.ports[0].name.as_deref(), Some("api"));
        assert_eq!(spec.ports[1].container_port, Some(22));
        assert_eq!(spec.ports[1].protocol.as_deref(), Some("udp"));
        assert_eq!(spec.version, "2026-11-22T10:00:00.000Z");

        let task: Task = serde_json::from_value(serde_json::json!({
            "id": "dev_ingestor.instance-1._app.1", "appId": "/dev/ingestor", "host": "10.0.0.5",
            "slaveId": "node-1", "state": "TASK_RUNNING", "startedAt": "2026-11-22T10:00:01.000Z",
            "version": "2026-11-22T10:00:00.000Z", "ports": [31001, 31002], "servicePorts": [],
            "ipAddresses": [{"ipAddress": "172.17.0.3", "protocol": "IPv4"}],
            "healthCheckResults": [{"alive": true, "consecutiveFailures": 0, "instanceId": "dev_ingestor.instance-1"}]
        }))
        .unwrap();
        let t = task_info(&task);
        assert_eq!(t.node.as_deref(), Some("node-1"));
        assert_eq!(t.healthy, Some(true));
        assert_eq!(t.ip_addresses, vec!["172.17.0.3"]);
        let r = crate::record::record_from_task(&spec, &t, "default", "node-1").unwrap();
        assert_eq!(r.ports["api"].external, 31001);
        assert_eq!(r.ports["api"].exposed, 5000);
        assert_eq!(r.ports["port1"].exposed, 22);
        assert_eq!(r.internal_address.as_deref(), Some("172.17.0.3"));
    }

    #[test]
    fn host_app_and_events() {
        let app: App = serde_json::from_value(serde_json::json!({
            "id": "/web", "cmd": "sleep 1",
            "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}]
        }))
        .unwrap();
        let spec = app_spec(&app);
        assert_eq!(spec.network, NetworkMode::Host);
        assert_eq!(spec.ports.len(), 2);
        assert_eq!(spec.ports[0].name.as_deref(), Some("http"));

        let ev = Event::from_json(r#"{"eventType":"status_update_event","timestamp":"2026-11-22T10:00:01.000Z","slaveId":"n1","taskId":"web.instance-1._app.1","taskStatus":"TASK_KILLING","message":"","appId":"/web","host":"h","ipAddresses":[],"ports":[31000],"version":"2026-11-22T10:00:00.000Z"}"#).unwrap();
        match task_event(&ev) {
            TaskEvent::Status(t) => {
                assert_eq!(t.state, "TASK_KILLING");
                assert_eq!(t.node.as_deref(), Some("n1"));
            }
            other => panic!("{other:?}"),
        }
        let ev = Event::from_json(r#"{"eventType":"instance_health_changed_event","timestamp":"2026-11-22T10:00:01.000Z","instanceId":"web.instance-1","runSpecId":"/web","runSpecVersion":"2026-11-22T10:00:00.000Z","healthy":true}"#).unwrap();
        assert_eq!(
            task_event(&ev),
            TaskEvent::Health {
                app_id: Some("/web".into()),
                id: "web.instance-1".into(),
                healthy: Some(true)
            }
        );
        let ev = Event::from_json(
            r#"{"eventType":"something_new","timestamp":"2026-11-22T10:00:01.000Z"}"#,
        )
        .unwrap();
        assert_eq!(task_event(&ev), TaskEvent::Other);
    }
}
