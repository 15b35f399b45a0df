//! Event JSON: every known type parses and writes `eventType` + `timestamp`;
//! unknown types never fail.

use marathon::event::{DeploymentStepEvent, StatusUpdateEvent};
use marathon::{
    sse, DeploymentAction, DeploymentPlan, DeploymentStep, Event, IpAddress, TaskState,
};
use serde_json::{json, Value};

const TS: &str = "2026-11-22T10:00:00.123Z";

fn status_update() -> Event {
    Event::StatusUpdate(StatusUpdateEvent {
        slave_id: "node-1".into(),
        task_id: "web.instance-1._app.1".into(),
        task_status: TaskState::Running,
        message: String::new(),
        app_id: "/web".into(),
        host: "10.0.0.5".into(),
        ip_addresses: vec![IpAddress::v4("172.17.0.3")],
        ports: vec![31001],
        version: "2026-11-22T09:00:00.000Z".parse().unwrap(),
        timestamp: TS.parse().unwrap(),
    })
}

#[test]
fn status_update_event_shape() {
    let e = status_update();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(
        v,
        json!({
            "eventType": "status_update_event",
            "timestamp": TS,
            "slaveId": "node-1",
            "taskId": "web.instance-1._app.1",
            "taskStatus": "TASK_RUNNING",
            "message": "",
            "appId": "/web",
            "host": "10.0.0.5",
            "ipAddresses": [{"ipAddress": "172.17.0.3", "protocol": "IPv4"}],
            "ports": [31001],
            "version": "2026-11-22T09:00:00.000Z"
        })
    );
    assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
    assert_eq!(e.event_type(), "status_update_event");
    assert_eq!(e.app_id(), Some("/web"));
    assert_eq!(e.timestamp().unwrap().to_string(), TS);
}

/// One sample per known type, in Marathon's field layout.
fn samples() -> Vec<Value> {
    let plan = json!({"id": "d1", "version": TS,
        "steps": [{"actions": [{"action": "StartApplication", "app": "/web"}]}]});
    let hc = json!({"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
        "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15});
    let t = |et: &str, mut fields: Value| {
        let o = fields.as_object_mut().unwrap();
        o.insert("eventType".into(), json!(et));
        o.insert("timestamp".into(), json!(TS));
        fields
    };
    vec![
        t(
            "event_stream_attached",
            json!({"remoteAddress": "127.0.0.1"}),
        ),
        t(
            "event_stream_detached",
            json!({"remoteAddress": "127.0.0.1"}),
        ),
        t(
            "api_post_event",
            json!({"clientIp": "127.0.0.1", "uri": "/v2/apps/web",
            "appDefinition": {"id": "/web", "cmd": "sleep 1", "labels": {}}}),
        ),
        serde_json::to_value(status_update()).unwrap(),
        t(
            "instance_changed_event",
            json!({"instanceId": "web.instance-1", "condition": "Running",
            "runSpecId": "/web", "agentId": "node-1", "host": "h", "runSpecVersion": TS}),
        ),
        t(
            "unknown_instance_terminated_event",
            json!({"instanceId": "i", "runSpecId": "/web",
            "condition": "Killed"}),
        ),
        t(
            "instance_health_changed_event",
            json!({"instanceId": "i", "runSpecId": "/web",
            "runSpecVersion": TS, "healthy": null}),
        ),
        t(
            "health_status_changed_event",
            json!({"appId": "/web", "instanceId": "i",
            "version": TS, "alive": true}),
        ),
        t(
            "failed_health_check_event",
            json!({"appId": "/web", "taskId": "i", "healthCheck": hc}),
        ),
        t(
            "unhealthy_instance_kill_event",
            json!({"appId": "/web", "taskId": "t", "instanceId": "i",
            "version": TS, "reason": "failed", "host": "h", "slaveId": "n"}),
        ),
        t(
            "unhealthy_task_kill_event",
            json!({"appId": "/web", "taskId": "t",
            "version": TS, "reason": "failed", "host": "h"}),
        ),
        t(
            "add_health_check_event",
            json!({"appId": "/web", "version": TS, "healthCheck": hc}),
        ),
        t("remove_health_check_event", json!({"appId": "/web"})),
        t("app_terminated_event", json!({"appId": "/web"})),
        t(
            "deployment_info",
            json!({"plan": plan, "currentStep": plan["steps"][0]}),
        ),
        t(
            "deployment_step_success",
            json!({"plan": plan, "currentStep": plan["steps"][0]}),
        ),
        t(
            "deployment_step_failure",
            json!({"plan": plan, "currentStep": plan["steps"][0]}),
        ),
        t("deployment_success", json!({"id": "d1", "plan": plan})),
        t(
            "deployment_failed",
            json!({"id": "d1", "plan": plan, "reason": "cancelled"}),
        ),
        t(
            "group_change_success",
            json!({"groupId": "/", "version": TS}),
        ),
        t(
            "group_change_failed",
            json!({"groupId": "/", "version": TS, "reason": "no"}),
        ),
        t(
            "pod_created_event",
            json!({"clientIp": "1.2.3.4", "uri": "/v2/pods/p"}),
        ),
        t(
            "pod_updated_event",
            json!({"clientIp": "1.2.3.4", "uri": "/v2/pods/p"}),
        ),
        t(
            "pod_deleted_event",
            json!({"clientIp": "1.2.3.4", "uri": "/v2/pods/p"}),
        ),
        t(
            "subscribe_event",
            json!({"clientIp": "1.2.3.4", "callbackUrl": "http://h/cb"}),
        ),
        t(
            "unsubscribe_event",
            json!({"clientIp": "1.2.3.4", "callbackUrl": "http://h/cb"}),
        ),
        t(
            "framework_message_event",
            json!({"executorId": "e", "slaveId": "s", "message": "aGk="}),
        ),
        t(
            "scheduler_registered_event",
            json!({"frameworkId": "f", "master": "m"}),
        ),
        t("scheduler_reregistered_event", json!({"master": "m"})),
        t("scheduler_disconnected_event", json!({})),
    ]
}

#[test]
fn every_known_type_parses_and_round_trips() {
    let samples = samples();
    let mut seen: Vec<&str> = Vec::new();
    for s in &samples {
        let e: Event = serde_json::from_value(s.clone()).unwrap_or_else(|err| panic!("{s}: {err}"));
        assert!(!matches!(e, Event::Unknown(_)), "{s}");
        assert_eq!(e.event_type(), s["eventType"]);
        seen.push(
            Event::KNOWN_TYPES
                .iter()
                .find(|t| **t == e.event_type())
                .unwrap(),
        );
        let out = serde_json::to_value(&e).unwrap();
        assert_eq!(out["eventType"], s["eventType"]);
        assert_eq!(out["timestamp"], TS);
        let again: Event = serde_json::from_value(out).unwrap();
        assert_eq!(again, e);
    }
    seen.sort();
    let mut known = Event::KNOWN_TYPES.to_vec();
    known.sort();
    assert_eq!(seen, known, "a sample for every known type");
}

#[test]
fn light_plan_omits_original_and_target() {
    let plan = DeploymentPlan {
        id: "d1".into(),
        steps: vec![DeploymentStep {
            actions: vec![DeploymentAction::app("StartApplication", "/web")],
        }],
        version: TS.parse().unwrap(),
        original: None,
        target: None,
    };
    let e = Event::DeploymentInfo(DeploymentStepEvent {
        current_step: plan.steps[0].clone(),
        plan,
        timestamp: TS.parse().unwrap(),
    });
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(
        v,
        json!({"eventType": "deployment_info", "timestamp": TS,
            "plan": {"id": "d1", "version": TS,
                "steps": [{"actions": [{"action": "StartApplication", "app": "/web"}]}]},
            "currentStep": {"actions": [{"action": "StartApplication", "app": "/web"}]}})
    );
}

#[test]
fn unknown_event_type_is_kept_raw() {
    let text =
        r#"{"eventType":"brand_new_event","timestamp":"2026-11-22T10:00:00.123Z","x":[1,2]}"#;
    let e = Event::from_json(text).unwrap();
    assert_eq!(e.event_type(), "brand_new_event");
    assert_eq!(e.timestamp().unwrap().to_string(), TS);
    assert_eq!(e.app_id(), None);
    match &e {
        Event::Unknown(u) => assert_eq!(u.raw["x"], json!([1, 2])),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.to_json(), text);
    // Even without a timestamp.
    let e = Event::from_json(r#"{"eventType":"odd"}"#).unwrap();
    assert_eq!(e.timestamp(), None);
}

#[test]
fn malformed_known_event_and_missing_type_are_errors() {
    let err =
        Event::from_json(r#"{"eventType":"status_update_event","timestamp":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("status_update_event"), "{err}");
    assert!(Event::from_json(r#"{"timestamp":"2026-11-22T10:00:00.123Z"}"#).is_err());
}

#[test]
fn health_status_changed_accepts_legacy_task_id() {
    let e = Event::from_json(
        &json!({"eventType": "health_status_changed_event", "timestamp": TS,
        "appId": "/web", "taskId": "web.1", "version": TS, "alive": false})
        .to_string(),
    )
    .unwrap();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["instanceId"], "web.1");
}

#[test]
fn event_frame_is_one_sse_message() {
    let e = status_update();
    let frame = sse::event_frame(&e);
    assert!(frame.starts_with("event: status_update_event\r\ndata: {"));
    assert!(frame.ends_with("}\r\n\r\n"));
    assert_eq!(frame.matches("\r\n").count(), 3);
    let mut p = sse::Parser::new();
    let msgs = p.push(frame.as_bytes());
    assert_eq!(msgs.len(), 1);
    assert_eq!(Event::from_json(&msgs[0].data).unwrap(), e);
}

#[test]
fn health_events_keep_task_and_instance_ids_both_ways() {
    // The manager writes both ids in these two events; they read back and
    // write out unchanged.
    let hc = json!({"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
        "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15});
    for v in [
        json!({"eventType": "health_status_changed_event", "timestamp": TS, "appId": "/web",
            "instanceId": "web.marathon-1", "taskId": "web.marathon-1._app.1", "version": TS,
            "alive": true}),
        json!({"eventType": "failed_health_check_event", "timestamp": TS, "appId": "/web",
            "taskId": "web.marathon-1", "instanceId": "web.marathon-1", "healthCheck": hc}),
    ] {
        let e = Event::from_json(&v.to_string()).unwrap();
        assert!(!matches!(e, Event::Unknown(_)), "{v}");
        assert_eq!(serde_json::to_value(&e).unwrap(), v);
    }
    let missing = json!({"eventType": "health_status_changed_event", "timestamp": TS,
        "appId": "/web", "version": TS, "alive": true});
    let err = Event::from_json(&missing.to_string()).unwrap_err();
    assert!(err.to_string().contains("instanceId"), "{err}");
}
