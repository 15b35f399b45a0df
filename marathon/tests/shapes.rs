//! JSON shapes of apps, tasks and deployments (no network).

use std::collections::BTreeSet;

use marathon::{
    App, AppInfo, Deployment, DeploymentResult, EnvValue, Info, KillSelection, NetworkMode,
    TaskState, Timestamp, UnreachableStrategy,
};
use serde_json::{json, Value};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn default_app_writes_exactly_the_always_present_keys() {
    let mut app = App::new("/web");
    app.version = Some("2026-11-22T10:00:00.000Z".parse().unwrap());
    app.role = Some("*".into());
    let v = serde_json::to_value(&app).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "id",
            "backoffFactor",
            "backoffSeconds",
            "cpus",
            "disk",
            "executor",
            "instances",
            "labels",
            "maxLaunchDelaySeconds",
            "mem",
            "gpus",
            "networks",
            "requirePorts",
            "upgradeStrategy",
            "version",
            "killSelection",
            "unreachableStrategy",
            "role",
            "portDefinitions",
        ])
    );
    assert_eq!(v["labels"], json!({}));
    assert_eq!(v["networks"], json!([{"mode": "host"}]));
    assert_eq!(
        v["portDefinitions"],
        json!([{"port": 0, "protocol": "tcp", "name": "default"}])
    );
    assert_eq!(
        v["upgradeStrategy"],
        json!({"minimumHealthCapacity": 1, "maximumOverCapacity": 1})
    );
    assert_eq!(
        v["unreachableStrategy"],
        json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    );
    assert_eq!(v["killSelection"], "YOUNGEST_FIRST");
    assert_eq!(v["maxLaunchDelaySeconds"], 300);
    assert_eq!(v["backoffFactor"], 1.15);
    assert_eq!(v["mem"], 128);
    assert_eq!(v["cpus"], 1);
    // Whole numbers are written as integers, as Marathon does.
    let text = serde_json::to_string(&app).unwrap();
    assert!(
        text.contains(r#""mem":128,"#) && text.contains(r#""disk":0,"#),
        "{text}"
    );
}

#[test]
fn minimal_input_gets_marathon_defaults() {
    let app: App = serde_json::from_value(json!({"id": "/x", "cmd": "sleep 1"})).unwrap();
    assert_eq!(app.instances, 1);
    assert_eq!(app.cpus, 1.0);
    assert_eq!(app.mem, 128.0);
    assert_eq!(app.backoff_seconds, 1);
    assert_eq!(app.kill_selection, KillSelection::YoungestFirst);
    // Not given: the manager decides (host networking, one dynamic port).
    assert!(app.networks.is_empty());
    assert!(app.port_definitions.is_none());
    assert!(app.is_host_network());
}

#[test]
fn legacy_input_is_read_but_never_written() {
    let text = include_str!("fixtures/app_legacy_input.json");
    let app: App = serde_json::from_str(text).unwrap();
    assert_eq!(app.ports, Some(vec![0, 8080]));
    assert_eq!(
        app.uris.as_deref(),
        Some(&["http://example.com/x.tar.gz".to_string()][..])
    );
    assert_eq!(app.ip_address, Some(json!({"networkName": "dev"})));
    let docker = app.container.as_ref().unwrap().docker.as_ref().unwrap();
    assert_eq!(docker.network.as_deref(), Some("BRIDGE"));
    assert_eq!(docker.port_mappings.as_ref().unwrap()[0].container_port, 80);
    // Unknown fields survive.
    assert_eq!(app.extra["tty"], json!(true));
    assert_eq!(
        app.extra["residency"],
        json!({"taskLostBehavior": "WAIT_FOREVER"})
    );

    let out = serde_json::to_value(&app).unwrap();
    for legacy in ["ports", "uris", "ipAddress"] {
        assert!(out.get(legacy).is_none(), "{legacy} written");
    }
    let docker_out = &out["container"]["docker"];
    assert!(docker_out.get("network").is_none());
    assert!(docker_out.get("portMappings").is_none());
    assert_eq!(out["tty"], json!(true));
    assert_eq!(out["residency"]["taskLostBehavior"], "WAIT_FOREVER");
}

#[test]
fn full_app_info_round_trips() {
    let text = include_str!("fixtures/app_bridge.json");
    let info: AppInfo = serde_json::from_str(text).unwrap();
    assert_eq!(info.app.id, "/dev/ingestor");
    assert_eq!(info.app.instances, 2);
    assert_eq!(info.app.env["APP_NAME"], EnvValue::from("Ingestor"));
    assert_eq!(
        info.app.env["DB_PASSWORD"],
        EnvValue::Secret {
            secret: "db".into()
        }
    );
    assert_eq!(info.app.constraints[1], ["rack", "GROUP_BY", "2"]);
    assert_eq!(info.app.unreachable_strategy, UnreachableStrategy::Disabled);
    assert_eq!(info.app.kill_selection, KillSelection::OldestFirst);
    assert_eq!(info.app.networks[0].mode, NetworkMode::ContainerBridge);
    assert_eq!(info.app.docker_image(), Some("example/flask:1"));
    assert_eq!(
        info.app.canonical_ports(),
        [("api".to_string(), 10001), ("port1".to_string(), 10002)]
    );
    assert_eq!(info.tasks_running, 1);
    assert_eq!(
        info.deployments[0].id,
        "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"
    );
    let task = &info.tasks.as_ref().unwrap()[0];
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.healthy(), Some(true));
    assert_eq!(task.ports, [31001, 31002]);
    assert_eq!(
        info.last_task_failure.as_ref().unwrap().state,
        TaskState::Failed
    );
    // AppInfo fields do not leak into the app's unknown-field bag.
    assert_eq!(
        keys(&Value::Object(info.app.extra.clone())),
        set(&["storeUrls"])
    );

    let out = serde_json::to_value(&info).unwrap();
    let mut expected: Value = serde_json::from_str(text).unwrap();
    // Canonical output drops nulls and empty omitEmpty lists.
    let obj = expected.as_object_mut().unwrap();
    for dropped in ["user", "args", "readinessChecks", "dependencies"] {
        obj.remove(dropped);
    }
    assert_eq!(out, expected);
    let again: AppInfo = serde_json::from_value(out).unwrap();
    assert_eq!(again, info);
}

#[test]
fn host_app_omits_port_mappings_and_unset_fields() {
    let mut app = App::new("/cmd");
    app.cmd = Some("sleep 10".into());
    let v = serde_json::to_value(&app).unwrap();
    for absent in [
        "container",
        "args",
        "env",
        "constraints",
        "fetch",
        "healthChecks",
        "readinessChecks",
        "dependencies",
        "secrets",
        "user",
        "taskKillGracePeriodSeconds",
        "versionInfo",
        "acceptedResourceRoles",
        "tty",
        "check",
        "resourceLimits",
        "executorResources",
    ] {
        assert!(v.get(absent).is_none(), "{absent} written");
    }
    assert_eq!(v["cmd"], "sleep 10");
}

#[test]
fn deployment_shapes() {
    let d: Deployment = serde_json::from_value(json!({
        "id": "97c136bf-5a28-4821-9d94-480d9fbb01c8",
        "version": "2015-09-30T09:09:17.614Z",
        "affectedApps": ["/foo"],
        "affectedPods": [],
        "steps": [{"actions": [{"action": "ScaleApplication", "app": "/foo"}]}],
        "currentActions": [{"action": "ScaleApplication", "app": "/foo", "readinessCheckResults": []}],
        "currentStep": 1,
        "totalSteps": 1
    }))
    .unwrap();
    assert_eq!(d.current_step, 1);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v["steps"][0]["actions"][0],
        json!({"action": "ScaleApplication", "app": "/foo"})
    );
    assert_eq!(v["currentActions"][0]["readinessCheckResults"], json!([]));
    assert_eq!(v["version"], "2015-09-30T09:09:17.614Z");

    let r = DeploymentResult {
        deployment_id: "abc".into(),
        version: Timestamp::from_millis(1_443_604_157_614).unwrap(),
    };
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"deploymentId":"abc","version":"2015-09-30T09:09:17.614Z"}"#
    );
}

#[test]
fn info_always_has_the_three_config_objects() {
    let info = Info {
        name: "marathon".into(),
        version: "1.11.0".into(),
        elected: true,
        leader: Some("127.0.0.1:8080".into()),
        ..Info::default()
    };
    let v = serde_json::to_value(&info).unwrap();
    assert_eq!(v["marathon_config"], json!({}));
    assert_eq!(v["zookeeper_config"], json!({}));
    assert_eq!(v["http_config"], json!({}));
    assert_eq!(v["leader"], "127.0.0.1:8080");
}

#[test]
fn null_collections_read_as_empty() {
    let app: App = serde_json::from_value(json!({
        "id": "/n", "cmd": "x", "args": null, "env": null, "constraints": null, "labels": null,
        "healthChecks": null, "portDefinitions": null, "networks": null, "user": null,
        "container": {"type": "DOCKER", "docker": {"image": "i", "parameters": null},
            "volumes": null, "portMappings": [{"containerPort": 80, "labels": null}]}
    }))
    .unwrap();
    assert!(app.args.is_empty() && app.env.is_empty() && app.labels.is_empty());
    assert!(app.port_definitions.is_none() && app.networks.is_empty());
    let c = app.container.unwrap();
    assert!(c.volumes.is_empty() && c.docker.unwrap().parameters.is_empty());
    assert_eq!(c.port_mappings.unwrap()[0].container_port, 80);
}
