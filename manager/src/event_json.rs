//! Builders of the Marathon events the control plane publishes (reference
//! §5): one JSON object each, with `eventType` and `timestamp`.

use marathon::{App, Timestamp};
use serde_json::{json, Value};

use crate::ids;
use crate::state::{DeploymentRecord, TaskRecord};

fn base(event_type: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("eventType".into(), json!(event_type));
    m.insert("timestamp".into(), json!(Timestamp::now().to_string()));
    m
}

fn with(event_type: &str, fields: Value) -> Value {
    let mut m = base(event_type);
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

/// `status_update_event` for a task in its current state.
pub fn status_update(t: &TaskRecord, message: &str) -> Value {
    let ips: Vec<Value> = if t.ip_addresses.is_empty() {
        vec![json!({"ipAddress": t.host, "protocol": "IPv4"})]
    } else {
        t.ip_addresses
            .iter()
            .map(|ip| json!({"ipAddress": ip, "protocol": "IPv4"}))
            .collect()
    };
    with(
        "status_update_event",
        json!({
            "slaveId": t.node,
            "taskId": t.id,
            "taskStatus": t.state.as_str(),
            "message": message,
            "appId": t.app_id,
            "host": t.host,
            "ipAddresses": ips,
            "ports": t.ports,
            "version": t.version.to_string(),
        }),
    )
}

/// Marathon's instance condition for a task state.
fn condition(state: &str) -> &'static str {
    match state {
        "TASK_STAGING" => "Staging",
        "TASK_STARTING" => "Starting",
        "TASK_RUNNING" => "Running",
        "TASK_KILLING" => "Killing",
        "TASK_FINISHED" => "Finished",
        "TASK_FAILED" => "Failed",
        "TASK_KILLED" => "Killed",
        "TASK_LOST" => "Gone",
        _ => "Unknown",
    }
}

/// `instance_changed_event`, published right after `status_update_event`.
pub fn instance_changed(t: &TaskRecord) -> Value {
    with(
        "instance_changed_event",
        json!({
            "instanceId": ids::instance_id(&t.id),
            "condition": condition(t.state.as_str()),
            "runSpecId": t.app_id,
            "agentId": t.node,
            "host": t.host,
            "runSpecVersion": t.version.to_string(),
        }),
    )
}

fn plan(d: &DeploymentRecord) -> Value {
    json!({
        "id": d.id,
        "steps": d.steps,
        "version": d.version.to_string(),
        // marathon-python needs these keys (light format drops them).
        "original": {"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []},
        "target": {"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []},
    })
}

pub fn deployment_info(d: &DeploymentRecord) -> Value {
    with(
        "deployment_info",
        json!({"plan": plan(d), "currentStep": d.steps.first()}),
    )
}

pub fn deployment_step_success(d: &DeploymentRecord) -> Value {
    with(
        "deployment_step_success",
        json!({"plan": plan(d), "currentStep": d.steps.first()}),
    )
}

pub fn deployment_success(d: &DeploymentRecord) -> Value {
    with("deployment_success", json!({"id": d.id, "plan": plan(d)}))
}

pub fn deployment_failed(d: &DeploymentRecord, reason: &str) -> Value {
    with(
        "deployment_failed",
        json!({"id": d.id, "plan": plan(d), "reason": reason}),
    )
}

pub fn group_change_success(version: Timestamp) -> Value {
    with(
        "group_change_success",
        json!({"groupId": "/", "version": version.to_string()}),
    )
}

pub fn api_post(client_ip: &str, uri: &str, app: &App) -> Value {
    with(
        "api_post_event",
        json!({"clientIp": client_ip, "uri": uri, "appDefinition": app}),
    )
}

pub fn app_terminated(app_id: &str) -> Value {
    with("app_terminated_event", json!({"appId": app_id}))
}

pub fn health_status_changed(t: &TaskRecord, alive: bool) -> Value {
    with(
        "health_status_changed_event",
        json!({
            "appId": t.app_id,
            "instanceId": ids::instance_id(&t.id),
            "taskId": t.id,
            "version": t.version.to_string(),
            "alive": alive,
        }),
    )
}

pub fn instance_health_changed(t: &TaskRecord, healthy: Option<bool>) -> Value {
    with(
        "instance_health_changed_event",
        json!({
            "instanceId": ids::instance_id(&t.id),
            "runSpecId": t.app_id,
            "runSpecVersion": t.version.to_string(),
            "healthy": healthy,
        }),
    )
}

pub fn failed_health_check(t: &TaskRecord, check: &marathon::HealthCheck) -> Value {
    with(
        "failed_health_check_event",
        json!({"appId": t.app_id, "taskId": ids::instance_id(&t.id), "instanceId": ids::instance_id(&t.id), "healthCheck": check}),
    )
}

pub fn unhealthy_instance_kill(t: &TaskRecord, reason: &str) -> Value {
    with(
        "unhealthy_instance_kill_event",
        json!({
            "appId": t.app_id,
            "taskId": t.id,
            "instanceId": ids::instance_id(&t.id),
            "version": t.version.to_string(),
            "reason": reason,
            "host": t.host,
            "slaveId": t.node,
        }),
    )
}
