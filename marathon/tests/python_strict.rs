//! Strict clients parse our output: serialises fully populated values with
//! this crate and builds marathon-python models from them (`cls(**json)`
//! raises on any key it does not know). Needs `python3` with the PyPI
//! `marathon` package (installed by .ci/run); fails, never skips, without it.

use std::io::Write;
use std::process::{Command, Stdio};

use marathon::{
    App, AppInfo, Deployment, Event, Group, Info, MarathonConfig, Queue, QueueDelay, QueueItem,
    Task, Timestamp,
};
use serde_json::{json, Value};

const CHECK: &str = r#"
import json, sys
from marathon.models import (MarathonApp, MarathonTask, MarathonDeployment, MarathonInfo,
    MarathonQueueItem, MarathonGroup)
from marathon.models.events import EventFactory
d = json.load(sys.stdin)
n = 0
for a in d["apps"]:
    app = MarathonApp.from_json(a); n += 1
    assert app.id == a["id"], app.id
    for t in a.get("tasks", []):
        assert t["id"] in [x.id for x in app.tasks]
for t in d["tasks"]:
    task = MarathonTask.from_json(t); n += 1
    assert task.id == t["id"]
for x in d["deployments"]:
    MarathonDeployment.from_json(x); n += 1
MarathonInfo.from_json(d["info"]); n += 1
for q in d["queue"]:
    MarathonQueueItem.from_json(q); n += 1
MarathonGroup.from_json(d["group"]); n += 1
f = EventFactory()
for e in d["events"]:
    ev = f.process(e); n += 1
    assert ev.event_type == e["eventType"]
print("parsed", n)
"#;

fn heavy_plan_events() -> Vec<Value> {
    // marathon-python needs plan.original/target (heavy format) for these.
    let group = json!({"id": "/", "apps": [], "groups": [], "pods": [], "dependencies": [],
        "version": "2026-11-22T10:00:00.000Z"});
    let plan = json!({"id": "d1", "version": "2026-11-22T10:00:00.000Z",
        "steps": [{"actions": [{"action": "StartApplication", "app": "/web"}]}],
        "original": group, "target": group});
    let ts = "2026-11-22T10:00:00.123Z";
    vec![
        json!({"eventType": "deployment_info", "timestamp": ts, "plan": plan,
            "currentStep": plan["steps"][0]}),
        json!({"eventType": "deployment_step_success", "timestamp": ts, "plan": plan,
            "currentStep": plan["steps"][0]}),
        json!({"eventType": "deployment_success", "timestamp": ts, "id": "d1", "plan": plan}),
    ]
}

fn light_events() -> Vec<Value> {
    let ts = "2026-11-22T10:00:00.123Z";
    let app = serde_json::to_value(App::new("/web")).unwrap();
    [
        json!({"eventType": "event_stream_attached", "timestamp": ts, "remoteAddress": "127.0.0.1"}),
        json!({"eventType": "api_post_event", "timestamp": ts, "clientIp": "127.0.0.1",
            "uri": "/v2/apps/web", "appDefinition": app}),
        json!({"eventType": "status_update_event", "timestamp": ts, "slaveId": "n", "taskId": "t",
            "taskStatus": "TASK_RUNNING", "message": "", "appId": "/web", "host": "h",
            "ipAddresses": [{"ipAddress": "10.0.0.1", "protocol": "IPv4"}], "ports": [31000],
            "version": ts}),
        json!({"eventType": "instance_changed_event", "timestamp": ts, "instanceId": "i",
            "condition": "Running", "runSpecId": "/web", "agentId": "n", "host": "h",
            "runSpecVersion": ts}),
        json!({"eventType": "health_status_changed_event", "timestamp": ts, "appId": "/web",
            "instanceId": "i", "version": ts, "alive": true}),
        json!({"eventType": "failed_health_check_event", "timestamp": ts, "appId": "/web",
            "taskId": "i", "healthCheck": serde_json::to_value(marathon::HealthCheck::default()).unwrap()}),
        json!({"eventType": "unhealthy_instance_kill_event", "timestamp": ts, "appId": "/web",
            "taskId": "t", "instanceId": "i", "version": ts, "reason": "r", "host": "h"}),
        json!({"eventType": "instance_health_changed_event", "timestamp": ts, "instanceId": "i",
            "runSpecId": "/web", "runSpecVersion": ts, "healthy": true}),
        json!({"eventType": "app_terminated_event", "timestamp": ts, "appId": "/web"}),
        json!({"eventType": "group_change_success", "timestamp": ts, "groupId": "/", "version": ts}),
        json!({"eventType": "subscribe_event", "timestamp": ts, "clientIp": "1.2.3.4",
            "callbackUrl": "http://h/cb"}),
    ]
    .into_iter()
    .collect()
}

/// Round-trips through this crate's types so the output is ours, not the input.
fn ours<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Value {
    let t: T = serde_json::from_value(v).expect("our types parse the sample");
    serde_json::to_value(t).unwrap()
}

#[test]
fn marathon_python_parses_our_output() {
    let full: Value = serde_json::from_str(include_str!("fixtures/app_bridge.json")).unwrap();
    let full_app = ours::<AppInfo>(full);
    let mut plain = App::new("/cmd");
    plain.cmd = Some("sleep 100".into());
    plain.version = Some(Timestamp::now());
    plain.role = Some("*".into());
    let plain_app = serde_json::to_value(AppInfo {
        tasks: Some(vec![]),
        ..AppInfo::new(plain.clone())
    })
    .unwrap();

    let mut tasks: Vec<Value> = full_app["tasks"].as_array().unwrap().clone();
    tasks.push(
        serde_json::to_value(Task {
            id: "cmd.instance-1._app.1".into(),
            app_id: "/cmd".into(),
            host: "h".into(),
            ..Task::default()
        })
        .unwrap(),
    );
    let tasks: Vec<Value> = tasks.into_iter().map(ours::<Task>).collect();

    let deployment = ours::<Deployment>(json!({
        "id": "d1", "version": "2026-11-22T10:00:00.000Z", "affectedApps": ["/cmd"],
        "affectedPods": [], "steps": [{"actions": [{"action": "RestartApplication", "app": "/cmd"}]}],
        "currentActions": [{"action": "RestartApplication", "app": "/cmd", "readinessCheckResults": []}],
        "currentStep": 1, "totalSteps": 1}));

    let info = serde_json::to_value(Info {
        name: "marathon".into(),
        version: "1.11.0".into(),
        buildref: Some("mdo".into()),
        elected: true,
        leader: Some("127.0.0.1:8080".into()),
        framework_id: Some("mdo".into()),
        marathon_config: MarathonConfig {
            master: Some("local".into()),
            hostname: Some("h".into()),
            framework_name: Some("marathon".into()),
            ha: Some(false),
            checkpoint: Some(true),
            executor: Some("//cmd".into()),
            failover_timeout: Some(604800),
            features: Some(vec![]),
            local_port_min: Some(10000),
            local_port_max: Some(20000),
            mesos_role: Some("*".into()),
            mesos_user: Some("root".into()),
            env_vars_prefix: Some(String::new()),
            default_network_name: None,
            webui_url: None,
            task_launch_timeout: Some(300000),
            maintenance_mode: Some(false),
            extra: Default::default(),
        },
        ..Info::default()
    })
    .unwrap();

    let queue = serde_json::to_value(Queue {
        queue: vec![QueueItem {
            app: plain.clone(),
            count: 2,
            delay: QueueDelay {
                time_left_seconds: 3,
                overdue: false,
            },
            since: Timestamp::now(),
            processed_offers_summary: None,
            last_unused_offers: None,
        }],
    })
    .unwrap();
    let group = serde_json::to_value(Group {
        id: "/".into(),
        apps: vec![plain],
        version: Some(Timestamp::now()),
        ..Group::default()
    })
    .unwrap();

    let events: Vec<Value> = light_events()
        .into_iter()
        .chain(heavy_plan_events())
        .map(ours::<Event>)
        .collect();

    let input = json!({
        "apps": [full_app, plain_app],
        "tasks": tasks,
        "deployments": [deployment],
        "info": info,
        "queue": queue["queue"],
        "group": group,
        "events": events,
    });
    // The test tools' interpreter (scripts/install-deps.sh), else python3.
    let python = std::env::var("MDO_TOOLS_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{python} must be installed (with `pip install marathon`): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "marathon-python rejected our JSON:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdout
    );
    let expected = 2 + tasks_len(&input) + 1 + 1 + 1 + 1 + events_len(&input);
    assert_eq!(stdout.trim(), format!("parsed {expected}"));
}

fn tasks_len(v: &Value) -> usize {
    v["tasks"].as_array().unwrap().len()
}

fn events_len(v: &Value) -> usize {
    v["events"].as_array().unwrap().len()
}
