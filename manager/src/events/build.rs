//! The Marathon events the control plane publishes, built as typed
//! [`marathon::Event`]s from its own records (reference §5). Each carries the
//! time it is built as its `timestamp`. The JSON every consumer receives is
//! the serialised event (see `frame.rs`); `tests::pinned_json` pins it.

use marathon::event::{
    ApiPostEvent, AppIdEvent, DeploymentDone, DeploymentStepEvent, EventStreamChange,
    FailedHealthCheckEvent, GroupChangeEvent, HealthStatusChangedEvent, InstanceChangedEvent,
    InstanceHealthChangedEvent, StatusUpdateEvent, UnhealthyInstanceKillEvent,
};
use marathon::{App, DeploymentPlan, Event, IpAddress, TaskState, Timestamp};
use serde_json::{json, Value};

use crate::ids;
use crate::state::{DeploymentRecord, TaskRecord};

/// `status_update_event` for a task in its current state.
pub fn status_update(t: &TaskRecord, message: &str) -> Event {
    let ips = if t.ip_addresses.is_empty() {
        vec![IpAddress::v4(t.host.clone())]
    } else {
        t.ip_addresses.iter().cloned().map(IpAddress::v4).collect()
    };
    Event::StatusUpdate(StatusUpdateEvent {
        slave_id: t.node.clone(),
        task_id: t.id.clone(),
        task_status: t.state.clone(),
        message: message.to_string(),
        app_id: t.app_id.clone(),
        host: t.host.clone(),
        ip_addresses: ips,
        ports: t.ports.clone(),
        version: t.version,
        timestamp: Timestamp::now(),
    })
}

/// Marathon's instance condition for a task state.
fn condition(state: &TaskState) -> &'static str {
    match state {
        TaskState::Staging => "Staging",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Killing => "Killing",
        TaskState::Finished => "Finished",
        TaskState::Failed => "Failed",
        TaskState::Killed => "Killed",
        TaskState::Lost => "Gone",
        _ => "Unknown",
    }
}

/// `instance_changed_event`, published right after `status_update_event`.
pub fn instance_changed(t: &TaskRecord) -> Event {
    Event::InstanceChanged(InstanceChangedEvent {
        instance_id: ids::instance_id(&t.id),
        condition: condition(&t.state).to_string(),
        run_spec_id: t.app_id.clone(),
        agent_id: t.node.clone(),
        host: t.host.clone(),
        run_spec_version: t.version,
        timestamp: Timestamp::now(),
    })
}

/// The root group of `original`/`target`: marathon-python needs these keys
/// (the light format drops them).
fn empty_root() -> Value {
    json!({"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": []})
}

fn plan(d: &DeploymentRecord) -> DeploymentPlan {
    DeploymentPlan {
        id: d.id.clone(),
        steps: d.steps.clone(),
        version: d.version,
        original: Some(empty_root()),
        target: Some(empty_root()),
    }
}

fn step_event(d: &DeploymentRecord) -> DeploymentStepEvent {
    DeploymentStepEvent {
        plan: plan(d),
        // Every deployment the manager makes has exactly one step.
        current_step: d.steps.first().cloned().unwrap_or_default(),
        timestamp: Timestamp::now(),
    }
}

pub fn deployment_info(d: &DeploymentRecord) -> Event {
    Event::DeploymentInfo(step_event(d))
}

pub fn deployment_step_success(d: &DeploymentRecord) -> Event {
    Event::DeploymentStepSuccess(step_event(d))
}

pub fn deployment_success(d: &DeploymentRecord) -> Event {
    Event::DeploymentSuccess(DeploymentDone {
        id: d.id.clone(),
        plan: plan(d),
        reason: None,
        timestamp: Timestamp::now(),
    })
}

pub fn deployment_failed(d: &DeploymentRecord, reason: &str) -> Event {
    Event::DeploymentFailed(DeploymentDone {
        id: d.id.clone(),
        plan: plan(d),
        reason: Some(reason.to_string()),
        timestamp: Timestamp::now(),
    })
}

pub fn group_change_success(version: Timestamp) -> Event {
    Event::GroupChangeSuccess(GroupChangeEvent {
        group_id: "/".into(),
        version,
        reason: None,
        timestamp: Timestamp::now(),
    })
}

pub fn api_post(client_ip: &str, uri: &str, app: &App) -> Event {
    Event::ApiPost(ApiPostEvent {
        client_ip: client_ip.to_string(),
        uri: uri.to_string(),
        app_definition: Box::new(app.clone()),
        timestamp: Timestamp::now(),
    })
}

pub fn app_terminated(app_id: &str) -> Event {
    Event::AppTerminated(AppIdEvent {
        app_id: app_id.to_string(),
        timestamp: Timestamp::now(),
    })
}

pub fn health_status_changed(t: &TaskRecord, alive: bool) -> Event {
    Event::HealthStatusChanged(HealthStatusChangedEvent {
        app_id: t.app_id.clone(),
        instance_id: ids::instance_id(&t.id),
        task_id: Some(t.id.clone()),
        version: t.version,
        alive,
        timestamp: Timestamp::now(),
    })
}

pub fn instance_health_changed(t: &TaskRecord, healthy: Option<bool>) -> Event {
    Event::InstanceHealthChanged(InstanceHealthChangedEvent {
        instance_id: ids::instance_id(&t.id),
        run_spec_id: t.app_id.clone(),
        run_spec_version: t.version,
        healthy,
        timestamp: Timestamp::now(),
    })
}

pub fn failed_health_check(t: &TaskRecord, check: &marathon::HealthCheck) -> Event {
    Event::FailedHealthCheck(FailedHealthCheckEvent {
        app_id: t.app_id.clone(),
        task_id: ids::instance_id(&t.id),
        instance_id: Some(ids::instance_id(&t.id)),
        health_check: check.clone(),
        timestamp: Timestamp::now(),
    })
}

pub fn unhealthy_instance_kill(t: &TaskRecord, reason: &str) -> Event {
    Event::UnhealthyInstanceKill(UnhealthyInstanceKillEvent {
        app_id: t.app_id.clone(),
        task_id: t.id.clone(),
        instance_id: ids::instance_id(&t.id),
        version: t.version,
        reason: reason.to_string(),
        host: t.host.clone(),
        slave_id: Some(t.node.clone()),
        timestamp: Timestamp::now(),
    })
}

/// `event_stream_attached` / `event_stream_detached` of an SSE client.
pub fn stream_change(attached: bool, remote: &str) -> Event {
    let change = EventStreamChange {
        remote_address: remote.to_string(),
        timestamp: Timestamp::now(),
    };
    if attached {
        Event::EventStreamAttached(change)
    } else {
        Event::EventStreamDetached(change)
    }
}

/// `subscribe_event` / `unsubscribe_event` of a callback URL.
pub fn subscription(subscribed: bool, callback_url: &str, client_ip: &str) -> Event {
    let change = marathon::event::SubscriptionEvent {
        client_ip: client_ip.to_string(),
        callback_url: callback_url.to_string(),
        timestamp: Timestamp::now(),
    };
    if subscribed {
        Event::Subscribe(change)
    } else {
        Event::Unsubscribe(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use marathon::{DeploymentAction, DeploymentStep};

    const TS: &str = "2026-11-22T10:00:00.123Z";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn task(ips: &[&str]) -> TaskRecord {
        TaskRecord {
            id: "web.marathon-4f0c._app.1".into(),
            app_id: "/web".into(),
            state: TaskState::Running,
            host: "10.0.0.5".into(),
            node: "node-1".into(),
            staged_at: ts("2026-11-22T09:00:00.000Z"),
            started_at: Some(ts("2026-11-22T09:00:01.000Z")),
            version: ts("2026-11-22T08:00:00.000Z"),
            config_version: ts("2026-11-22T08:00:00.000Z"),
            ports: vec![31001, 31002],
            host_ports: vec![31001, 31002],
            cpus: 0.1,
            mem: 32.0,
            runtime: "docker".into(),
            handle: "h".into(),
            ip_addresses: ips.iter().map(|s| s.to_string()).collect(),
            is_docker: true,
            kill_grace: 3,
        }
    }

    fn deployment() -> DeploymentRecord {
        DeploymentRecord {
            id: "d-1".into(),
            version: ts("2026-11-22T08:00:00.000Z"),
            affected_apps: vec!["/web".into()],
            steps: vec![DeploymentStep {
                actions: vec![DeploymentAction::app("StartApplication", "/web")],
            }],
            original: Default::default(),
        }
    }

    fn app() -> App {
        serde_json::from_value(json!({"id": "/web", "cmd": "sleep 100", "instances": 2,
            "labels": {"HAPROXY_GROUP": "external"}}))
        .unwrap()
    }

    fn check() -> marathon::HealthCheck {
        serde_json::from_value(json!({"protocol": "HTTP", "path": "/health", "portIndex": 0}))
            .unwrap()
    }

    /// The event's JSON as consumers get it, with its `timestamp` fixed.
    fn wire(e: &Event) -> String {
        let mut v = serde_json::to_value(e).unwrap();
        v["timestamp"] = json!(TS);
        v.to_string()
    }

    /// The JSON of every event the manager publishes, byte for byte (keys
    /// sorted, as consumers have always received them). These strings are
    /// what the `json!` builders this module replaced produced for the same
    /// records; marathon-lb and marathon-python parse them.
    #[test]
    fn pinned_json() {
        let t = task(&[]);
        let t2 = task(&["172.17.0.3", "172.17.0.4"]);
        let mut killing = task(&[]);
        killing.state = TaskState::Killing;
        let mut lost = task(&[]);
        lost.state = TaskState::Lost;
        let d = deployment();
        let a = app();
        let hc = check();
        let table: Vec<(Event, &str)> = vec![
            (
                status_update(&t, "Task staged"),
                r#"{"appId":"/web","eventType":"status_update_event","host":"10.0.0.5","ipAddresses":[{"ipAddress":"10.0.0.5","protocol":"IPv4"}],"message":"Task staged","ports":[31001,31002],"slaveId":"node-1","taskId":"web.marathon-4f0c._app.1","taskStatus":"TASK_RUNNING","timestamp":"2026-11-22T10:00:00.123Z","version":"2026-11-22T08:00:00.000Z"}"#,
            ),
            (
                status_update(&t2, ""),
                r#"{"appId":"/web","eventType":"status_update_event","host":"10.0.0.5","ipAddresses":[{"ipAddress":"172.17.0.3","protocol":"IPv4"},{"ipAddress":"172.17.0.4","protocol":"IPv4"}],"message":"","ports":[31001,31002],"slaveId":"node-1","taskId":"web.marathon-4f0c._app.1","taskStatus":"TASK_RUNNING","timestamp":"2026-11-22T10:00:00.123Z","version":"2026-11-22T08:00:00.000Z"}"#,
            ),
            (
                instance_changed(&t),
                r#"{"agentId":"node-1","condition":"Running","eventType":"instance_changed_event","host":"10.0.0.5","instanceId":"web.marathon-4f0c","runSpecId":"/web","runSpecVersion":"2026-11-22T08:00:00.000Z","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                instance_changed(&killing),
                r#"{"agentId":"node-1","condition":"Killing","eventType":"instance_changed_event","host":"10.0.0.5","instanceId":"web.marathon-4f0c","runSpecId":"/web","runSpecVersion":"2026-11-22T08:00:00.000Z","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                instance_changed(&lost),
                r#"{"agentId":"node-1","condition":"Gone","eventType":"instance_changed_event","host":"10.0.0.5","instanceId":"web.marathon-4f0c","runSpecId":"/web","runSpecVersion":"2026-11-22T08:00:00.000Z","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                deployment_info(&d),
                r#"{"currentStep":{"actions":[{"action":"StartApplication","app":"/web"}]},"eventType":"deployment_info","plan":{"id":"d-1","original":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"steps":[{"actions":[{"action":"StartApplication","app":"/web"}]}],"target":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"version":"2026-11-22T08:00:00.000Z"},"timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                deployment_step_success(&d),
                r#"{"currentStep":{"actions":[{"action":"StartApplication","app":"/web"}]},"eventType":"deployment_step_success","plan":{"id":"d-1","original":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"steps":[{"actions":[{"action":"StartApplication","app":"/web"}]}],"target":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"version":"2026-11-22T08:00:00.000Z"},"timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                deployment_success(&d),
                r#"{"eventType":"deployment_success","id":"d-1","plan":{"id":"d-1","original":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"steps":[{"actions":[{"action":"StartApplication","app":"/web"}]}],"target":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"version":"2026-11-22T08:00:00.000Z"},"timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                deployment_failed(&d, "cancelled"),
                r#"{"eventType":"deployment_failed","id":"d-1","plan":{"id":"d-1","original":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"steps":[{"actions":[{"action":"StartApplication","app":"/web"}]}],"target":{"apps":[],"dependencies":[],"groups":[],"id":"/","pods":[]},"version":"2026-11-22T08:00:00.000Z"},"reason":"cancelled","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                group_change_success(d.version),
                r#"{"eventType":"group_change_success","groupId":"/","timestamp":"2026-11-22T10:00:00.123Z","version":"2026-11-22T08:00:00.000Z"}"#,
            ),
            (
                api_post("127.0.0.1", "/v2/apps", &a),
                r#"{"appDefinition":{"backoffFactor":1.15,"backoffSeconds":1,"cmd":"sleep 100","cpus":1,"disk":0,"executor":"","gpus":0,"id":"/web","instances":2,"killSelection":"YOUNGEST_FIRST","labels":{"HAPROXY_GROUP":"external"},"maxLaunchDelaySeconds":300,"mem":128,"requirePorts":false,"unreachableStrategy":{"expungeAfterSeconds":0,"inactiveAfterSeconds":0},"upgradeStrategy":{"maximumOverCapacity":1,"minimumHealthCapacity":1}},"clientIp":"127.0.0.1","eventType":"api_post_event","timestamp":"2026-11-22T10:00:00.123Z","uri":"/v2/apps"}"#,
            ),
            (
                app_terminated("/web"),
                r#"{"appId":"/web","eventType":"app_terminated_event","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                health_status_changed(&t, false),
                r#"{"alive":false,"appId":"/web","eventType":"health_status_changed_event","instanceId":"web.marathon-4f0c","taskId":"web.marathon-4f0c._app.1","timestamp":"2026-11-22T10:00:00.123Z","version":"2026-11-22T08:00:00.000Z"}"#,
            ),
            (
                instance_health_changed(&t, None),
                r#"{"eventType":"instance_health_changed_event","healthy":null,"instanceId":"web.marathon-4f0c","runSpecId":"/web","runSpecVersion":"2026-11-22T08:00:00.000Z","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                instance_health_changed(&t, Some(true)),
                r#"{"eventType":"instance_health_changed_event","healthy":true,"instanceId":"web.marathon-4f0c","runSpecId":"/web","runSpecVersion":"2026-11-22T08:00:00.000Z","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                failed_health_check(&t, &hc),
                r#"{"appId":"/web","eventType":"failed_health_check_event","healthCheck":{"delaySeconds":15,"gracePeriodSeconds":300,"intervalSeconds":60,"maxConsecutiveFailures":3,"path":"/health","portIndex":0,"protocol":"HTTP","timeoutSeconds":20},"instanceId":"web.marathon-4f0c","taskId":"web.marathon-4f0c","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                unhealthy_instance_kill(&t, "failed"),
                r#"{"appId":"/web","eventType":"unhealthy_instance_kill_event","host":"10.0.0.5","instanceId":"web.marathon-4f0c","reason":"failed","slaveId":"node-1","taskId":"web.marathon-4f0c._app.1","timestamp":"2026-11-22T10:00:00.123Z","version":"2026-11-22T08:00:00.000Z"}"#,
            ),
        ];
        for (event, want) in table {
            assert_eq!(wire(&event), want, "{}", event.event_type());
        }
    }

    /// The events the bus itself publishes (SSE clients, callback URLs).
    #[test]
    fn pinned_json_of_stream_and_subscription_events() {
        let table: Vec<(Event, &str)> = vec![
            (
                stream_change(true, "127.0.0.1:5555"),
                r#"{"eventType":"event_stream_attached","remoteAddress":"127.0.0.1:5555","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                stream_change(false, "127.0.0.1:5555"),
                r#"{"eventType":"event_stream_detached","remoteAddress":"127.0.0.1:5555","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                subscription(true, "http://127.0.0.1:9090/cb", "127.0.0.1"),
                r#"{"callbackUrl":"http://127.0.0.1:9090/cb","clientIp":"127.0.0.1","eventType":"subscribe_event","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
            (
                subscription(false, "http://127.0.0.1:9090/cb", "127.0.0.1"),
                r#"{"callbackUrl":"http://127.0.0.1:9090/cb","clientIp":"127.0.0.1","eventType":"unsubscribe_event","timestamp":"2026-11-22T10:00:00.123Z"}"#,
            ),
        ];
        for (event, want) in table {
            assert_eq!(wire(&event), want, "{}", event.event_type());
        }
    }
}
