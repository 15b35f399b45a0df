//! Apps with their tasks as read by the lean decoder
//! ([`marathon::lean`], [`marathon::Client::apps_with_tasks`]), turned
//! into [`AppSpec`] / [`TaskInfo`].
//!
//! The lean types read only the fields that shape records; the leaf types
//! (timestamps, task states, port mappings, networks) are the `marathon`
//! crate's own, so values read the same as through [`crate::convert`]; a
//! test checks both paths agree.

use marathon::lean::LeanApp;

use crate::model::{AppSpec, TaskInfo};

/// Mirrors [`crate::convert::app_spec`] on the lean types.
pub fn spec(app: LeanApp) -> (AppSpec, Vec<TaskInfo>) {
    let network = crate::convert::network_mode(&app.networks);
    let mappings = app.container.and_then(|c| c.into_port_mappings());
    let ports = crate::convert::port_specs(
        network,
        app.port_definitions.as_deref(),
        app.ports.as_deref(),
        mappings.as_deref(),
    );
    let tasks = app
        .tasks
        .unwrap_or_default()
        .into_iter()
        .map(|t| TaskInfo {
            healthy: if t.health_check_results.is_empty() {
                None
            } else {
                Some(t.health_check_results.iter().all(|r| r.alive))
            },
            id: t.id,
            app_id: t.app_id,
            app_version: t.version.map(|v| v.to_string()),
            host: t.host,
            node: t.slave_id.filter(|s| !s.is_empty()),
            state: t.state.as_str().to_string(),
            ports: t.ports,
            ip_addresses: t.ip_addresses.into_iter().map(|i| i.ip_address).collect(),
            started_at: t.started_at.map(|s| s.to_string()),
        })
        .collect();
    (
        AppSpec {
            id: app.id,
            version: app.version.map(|v| v.to_string()).unwrap_or_default(),
            labels: app.labels,
            network,
            ports,
            has_health_checks: app.health_checks > 0,
        },
        tasks,
    )
}

/// Decodes a `/v2/apps?embed=apps.tasks` body.
pub fn decode(body: &[u8]) -> Result<Vec<(AppSpec, Vec<TaskInfo>)>, serde_json::Error> {
    Ok(marathon::lean::decode(body)?
        .into_iter()
        .map(spec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{app_spec, task_info};

    /// The lean decoder and the `marathon` crate's types agree.
    #[test]
    fn agrees_with_the_full_types() {
        let body = r#"{"apps": [
          {"id": "/dev/web", "version": "2026-11-22T10:00:00.000Z", "instances": 2,
           "labels": {"SERVICE_GROUP": "dev"}, "networks": [{"mode": "container/bridge"}],
           "container": {"type": "DOCKER", "docker": {"image": "busybox"}, "volumes": [],
             "portMappings": [{"containerPort": 5000, "hostPort": 0, "protocol": "tcp", "name": "api"},
                              {"containerPort": 0, "protocol": "udp"}]},
           "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}],
           "tasksRunning": 2, "deployments": [],
           "tasks": [
             {"id": "dev_web.instance-1._app.1", "appId": "/dev/web", "host": "10.0.0.5",
              "slaveId": "node-1", "state": "TASK_RUNNING", "stagedAt": "2026-11-22T10:00:01.000Z",
              "startedAt": "2026-11-22T10:00:02.5+00:00", "version": "2026-11-22T10:00:00.000Z",
              "ports": [31001, 31002], "servicePorts": [],
              "ipAddresses": [{"ipAddress": "172.17.0.3", "protocol": "IPv4"}],
              "healthCheckResults": [{"alive": true, "consecutiveFailures": 0}],
              "localVolumes": [], "checkResult": {"x": 1}},
             {"id": "dev_web.instance-2._app.1", "appId": "/dev/web", "host": "10.0.0.6",
              "slaveId": "", "state": "TASK_STAGING", "ports": []}
           ]},
          {"id": "/cache", "version": "2026-11-22T10:00:00.000Z", "labels": null,
           "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "redis"}, {"port": 0}],
           "healthChecks": null, "tasks": []},
          {"id": "/legacy", "ports": [0, 0], "networks": [{"mode": "host"}]},
          {"id": "/overlay", "networks": [{"mode": "container", "name": "dcos"}],
           "container": {"type": "MESOS", "portMappings": [{"containerPort": 80, "name": "http"}]}}
        ]}"#;
        #[derive(serde::Deserialize)]
        struct Full {
            apps: Vec<marathon::AppInfo>,
        }
        let full: Full = serde_json::from_str(body).unwrap();
        let want: Vec<(AppSpec, Vec<TaskInfo>)> = full
            .apps
            .iter()
            .map(|a| {
                (
                    app_spec(&a.app),
                    a.tasks.iter().flatten().map(task_info).collect(),
                )
            })
            .collect();
        let got = decode(body.as_bytes()).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].1.len(), 2);
        assert_eq!(got[0].1[0].healthy, Some(true));
        assert_eq!(got[0].1[1].node, None);
    }
}
