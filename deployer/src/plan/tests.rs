use super::*;
use crate::spec::validate;
use crate::translate::{app_json, TranslateConfig};

fn desired(doc: Value) -> Desired {
    let d = validate(&doc).unwrap();
    let s = &d.deploy[0];
    Desired {
        service: s.service.clone(),
        labels: s.labels.clone(),
        app: app_json(
            s,
            &TranslateConfig {
                container_etcd_endpoints: "http://e:2379".into(),
            },
        ),
        fixed_host: s.fixed_host,
    }
}

/// What a Marathon-like server returns for a stored app: defaults filled
/// in, service ports assigned, status fields added.
fn as_server_returns(app: &Value) -> Value {
    let mut a = app.clone();
    let o = a.as_object_mut().unwrap();
    o.insert("version".into(), json!("2026-11-22T10:00:00.000Z"));
    o.insert("backoffSeconds".into(), json!(1));
    o.insert("backoffFactor".into(), json!(1.15));
    o.insert("tasksRunning".into(), json!(1));
    o.insert(
        "tasks".into(),
        json!([{"id": "t1", "host": "10.0.0.1", "slaveId": "node-1"}]),
    );
    o.insert("deployments".into(), json!([]));
    o.insert("executor".into(), json!(""));
    o.insert("killSelection".into(), json!("YOUNGEST_FIRST"));
    o.entry("disk").or_insert(json!(0.0));
    o.entry("requirePorts").or_insert(json!(false));
    if let Some(Value::Array(defs)) = o.get_mut("portDefinitions") {
        for (i, d) in defs.iter_mut().enumerate() {
            if d["port"] == 0 {
                d["port"] = json!(10000 + i);
            }
        }
    }
    if let Some(c) = o.get_mut("container") {
        c["docker"]["forcePullImage"] = json!(false);
        c["docker"]["privileged"] = json!(false);
        c["docker"]["parameters"] = json!([]);
        if let Some(Value::Array(pm)) = c.get_mut("portMappings") {
            for (i, m) in pm.iter_mut().enumerate() {
                m["servicePort"] = json!(10100 + i);
                m["labels"] = json!({});
            }
        }
        c["volumes"] = c.get("volumes").cloned().unwrap_or(json!([]));
    }
    if let Some(Value::Array(hcs)) = o.get_mut("healthChecks") {
        for h in hcs {
            h["delaySeconds"] = json!(15);
            h["ipProtocol"] = json!("IPv4");
        }
    }
    a
}

fn actual_of(app: &Value) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    m.insert(
        app["id"].as_str().unwrap().to_string(),
        as_server_returns(app),
    );
    m
}

fn step(doc_now: Value, doc_before: Option<Value>) -> Step {
    let d = desired(doc_now);
    let actual = doc_before
        .map(|b| actual_of(&desired(b).app))
        .unwrap_or_default();
    plan(&[d], &[], &actual).remove(0).step
}

fn base() -> Value {
    json!({"deploy": {"web": {"image": "nginx", "labels": ["dev"], "ports": {"http": 80},
        "environment": {"A": "1"}, "instances": 2,
        "health_checks": [{"port": "http", "path": "/"}]}}})
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut d = base();
    f(&mut d["deploy"]["web"]);
    d
}

#[test]
fn table() {
    struct Case {
        name: &'static str,
        now: Value,
        before: Option<Value>,
        want: Action,
    }
    let cases = vec![
        Case {
            name: "new",
            now: base(),
            before: None,
            want: Action::Created,
        },
        Case {
            name: "same",
            now: base(),
            before: Some(base()),
            want: Action::Unchanged,
        },
        Case {
            name: "more instances",
            now: with(|w| w["instances"] = json!(5)),
            before: Some(base()),
            want: Action::Scaled,
        },
        Case {
            name: "fewer instances",
            now: with(|w| w["instances"] = json!(0)),
            before: Some(base()),
            want: Action::Scaled,
        },
        Case {
            name: "env changed",
            now: with(|w| w["environment"]["A"] = json!("2")),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "env removed",
            now: with(|w| w["environment"] = json!({})),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "image changed",
            now: with(|w| w["image"] = json!("nginx:2")),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "port changed",
            now: with(|w| w["ports"]["http"] = json!(81)),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "cmd added",
            now: with(|w| w["cmd"] = json!("run")),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "instances and env",
            now: with(|w| {
                w["instances"] = json!(3);
                w["environment"]["B"] = json!("x")
            }),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "marathon map added",
            now: with(|w| w["marathon"] = json!({"backoffSeconds": 7})),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "marathon map equal",
            now: with(|w| w["marathon"] = json!({"backoffSeconds": 1})),
            before: Some(base()),
            want: Action::Unchanged,
        },
        Case {
            name: "health check timing",
            now: with(|w| w["health_checks"][0]["interval_seconds"] = json!(5)),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "cpus changed",
            now: with(|w| w["cpus"] = json!(0.5)),
            before: Some(base()),
            want: Action::Updated,
        },
        Case {
            name: "defaults written out",
            now: with(|w| {
                w["cpus"] = json!(0.1);
                w["mem"] = json!(128)
            }),
            before: Some(base()),
            want: Action::Unchanged,
        },
    ];
    for c in cases {
        let got = step(c.now, c.before).action();
        assert_eq!(got, c.want, "case {}", c.name);
    }
}

#[test]
fn command_tasks_with_assigned_service_ports_are_unchanged() {
    let doc =
        json!({"deploy": {"web": {"cmd": "sleep 3600", "ports": {"http": 8080, "admin": 9090}}}});
    assert_eq!(step(doc.clone(), Some(doc)), Step::Unchanged);
}

#[test]
fn scale_carries_the_new_count_and_update_lists_changes() {
    let before = desired(base()).app;
    let s = step(with(|w| w["instances"] = json!(5)), Some(base()));
    let Step::Scale { instances, app } = s else {
        panic!("{s:?}")
    };
    assert_eq!(instances, 5);
    // the server's definition with the new count, without its status
    let mut want = as_server_returns(&before);
    for f in ["version", "tasks", "tasksRunning", "deployments"] {
        want.as_object_mut().unwrap().remove(f);
    }
    want["instances"] = json!(5);
    assert_eq!(app, want);
    match step(with(|w| w["environment"]["A"] = json!("2")), Some(base())) {
        Step::Update { changes, app } => {
            assert_eq!(changes, vec!["/env/A".to_string()]);
            assert_eq!(app["env"]["A"], "2");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn removals() {
    let r = |id: &str| Removal {
        service: "web".into(),
        labels: vec![],
        app_id: id.into(),
    };
    let mut actual = BTreeMap::new();
    actual.insert("/web".to_string(), json!({"id": "/web"}));
    let p = plan(&[], &[r("/web"), r("/gone")], &actual);
    assert_eq!(p[0].step, Step::Delete);
    assert_eq!(p[0].step.action(), Action::Removed);
    assert_eq!(p[1].step, Step::AlreadyAbsent);
    assert_eq!(p[1].step.action(), Action::Unchanged);
}

#[test]
fn fixed_host_pins_an_update_to_the_previous_hosts() {
    let fixed = json!({"deploy": {"db": {"cmd": "run", "custom_constraints": "fixed-host"}}});
    let mut changed = fixed.clone();
    changed["deploy"]["db"]["environment"] = json!({"V": "2"});
    // update: the replacement goes back to node-1
    let s = step(changed.clone(), Some(fixed.clone()));
    let Step::Update { app, .. } = s else {
        panic!("{s:?}")
    };
    assert_eq!(
        app["constraints"],
        json!([
            ["hostname", "UNIQUE"],
            ["hostname", "LIKE", "10\\.0\\.0\\.1|node\\-1"]
        ])
    );
    // posting the changed document again: the pin is not a difference
    let mut actual = actual_of(&app);
    actual.get_mut("/db").unwrap()["constraints"] = app["constraints"].clone();
    let again = plan(&[desired(changed.clone())], &[], &actual)
        .remove(0)
        .step;
    assert_eq!(again, Step::Unchanged);
    // scaling within the pinned hosts is a scale that keeps the pin
    let mut none = changed.clone();
    none["deploy"]["db"]["instances"] = json!(0);
    let s = plan(&[desired(none)], &[], &actual).remove(0).step;
    let Step::Scale {
        instances: 0,
        app: body,
    } = s
    else {
        panic!("{s:?}")
    };
    assert_eq!(body["constraints"], app["constraints"]);
    // scaling beyond the pinned hosts needs an update that drops the pin
    let mut more = changed.clone();
    more["deploy"]["db"]["instances"] = json!(2);
    let s = plan(&[desired(more)], &[], &actual).remove(0).step;
    let Step::Update { app, changes } = s else {
        panic!("{s:?}")
    };
    assert_eq!(changes, vec!["/instances".to_string()]);
    assert_eq!(app["constraints"], json!([["hostname", "UNIQUE"]]));
}

#[test]
fn diff_reports_removed_controlled_fields() {
    let d = json!({"id": "/a", "instances": 1, "cmd": "x"});
    assert_eq!(
        diff(
            &d,
            &json!({"id": "/a", "instances": 1, "cmd": "x", "disk": 0})
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        diff(
            &d,
            &json!({"id": "/a", "instances": 1, "cmd": "x", "args": ["y"]})
        ),
        vec!["/args"]
    );
    assert_eq!(diff(&d, &json!({"id": "/a", "instances": 1})), vec!["/cmd"]);
}

/// Top-level fields of a Marathon app definition (`RAML/v2/types/app.raml`):
/// what a real Marathon accepts in a `PUT /v2/apps` list item.
const MARATHON_APP_FIELDS: &[&str] = &[
    "id",
    "cmd",
    "args",
    "user",
    "env",
    "instances",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "executor",
    "constraints",
    "fetch",
    "acceptedResourceRoles",
    "container",
    "networks",
    "portDefinitions",
    "requirePorts",
    "healthChecks",
    "readinessChecks",
    "check",
    "dependencies",
    "upgradeStrategy",
    "labels",
    "backoffSeconds",
    "backoffFactor",
    "maxLaunchDelaySeconds",
    "taskKillGracePeriodSeconds",
    "killSelection",
    "unreachableStrategy",
    "secrets",
    "role",
    "residency",
    "tty",
    "resourceLimits",
    "executorResources",
];

fn assert_marathon_app(item: &Value) {
    let o = item.as_object().expect("an app is an object");
    assert!(
        o.get("id")
            .and_then(Value::as_str)
            .is_some_and(|i| i.starts_with('/')),
        "every list item names its app: {item}"
    );
    for k in o.keys() {
        assert!(
            MARATHON_APP_FIELDS.contains(&k.as_str()),
            "{k} is not a Marathon app field: {item}"
        );
    }
    serde_json::from_value::<marathon::App>(item.clone())
        .unwrap_or_else(|e| panic!("not an app ({e}): {item}"));
}

#[test]
fn one_put_holds_creates_scales_and_updates_in_order_then_deletes() {
    let doc = json!({"deploy": {
        "new": {"cmd": "sleep 1"},
        "more": {"cmd": "sleep 1", "instances": 3},
        "same": {"cmd": "sleep 1"},
        "changed": {"cmd": "sleep 2"}}});
    let d = validate(&doc).unwrap();
    let config = TranslateConfig::default();
    let desired: Vec<Desired> = d
        .deploy
        .iter()
        .map(|s| Desired {
            service: s.service.clone(),
            labels: s.labels.clone(),
            app: app_json(s, &config),
            fixed_host: s.fixed_host,
        })
        .collect();
    let mut actual = BTreeMap::new();
    for (id, cmd, n) in [
        ("/more", "sleep 1", 1),
        ("/same", "sleep 1", 1),
        ("/changed", "sleep 1", 1),
        ("/old", "sleep 1", 1),
    ] {
        let mut a = desired[0].app.clone();
        a["id"] = json!(id);
        a["cmd"] = json!(cmd);
        a["instances"] = json!(n);
        a["labels"]["SERVICE_NAME"] = json!(&id[1..]);
        a["env"]["SERVICE_NAME"] = json!(&id[1..]);
        actual.insert(id.to_string(), as_server_returns(&a));
    }
    let removals = [
        Removal {
            service: "old".into(),
            labels: vec![],
            app_id: "/old".into(),
        },
        Removal {
            service: "gone".into(),
            labels: vec![],
            app_id: "/gone".into(),
        },
    ];
    let planned = plan(&desired, &removals, &actual);
    let actions: Vec<(&str, Action)> = planned
        .iter()
        .map(|p| (p.app_id.as_str(), p.step.action()))
        .collect();
    let c = calls(&planned);
    let put_ids: Vec<&str> = c.put.iter().map(|a| a["id"].as_str().unwrap()).collect();
    // document order (the validated document sorts services by name)
    let want: Vec<&str> = actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Created | Action::Scaled | Action::Updated))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(put_ids, want, "{actions:?}");
    let mut sorted = put_ids.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["/changed", "/more", "/new"], "{actions:?}");
    assert_eq!(c.delete, vec!["/old".to_string()]);
    for item in &c.put {
        assert_marathon_app(item);
    }
    let more = c.put.iter().find(|a| a["id"] == "/more").unwrap();
    assert_eq!(more["instances"], 3);
    assert_eq!(more["backoffFactor"], 1.15, "the server's own fields stay");
    // nothing to do: nothing to send
    let again = calls(&plan(&[], &[removals[1].clone()], &actual));
    assert_eq!(again, Calls::default());
}

#[test]
fn every_field_and_a_real_marathon_app_make_list_items_marathon_accepts() {
    let body = include_bytes!("../../examples/everything.yaml");
    let doc = crate::apply::load(body, crate::parse::Format::Yaml, &Default::default()).unwrap();
    let (desired, _) = crate::apply::prepare(&doc, &TranslateConfig::default()).unwrap();
    let created = calls(&plan(&desired, &[], &BTreeMap::new()));
    assert_eq!(created.put.len(), desired.len());
    for item in &created.put {
        assert_marathon_app(item);
    }
    // What Marathon 1.11 answers for a bridge Docker app (AppInfo with
    // tasks, counts, deployments and a last failure), and a 1.4-era
    // answer with the legacy fields beside the canonical ones.
    let v111 = json!({"id": "/dev/web", "backoffFactor": 1.15, "backoffSeconds": 1,
        "container": {"type": "DOCKER", "docker": {"image": "nginx", "forcePullImage": false,
            "privileged": false, "parameters": []}, "volumes": [],
            "portMappings": [{"containerPort": 80, "hostPort": 0, "labels": {}, "name": "http",
                "protocol": "tcp", "servicePort": 10002}]},
        "cpus": 0.1, "disk": 0, "executor": "", "instances": 2, "labels": {"SERVICE_NAME": "web"},
        "maxLaunchDelaySeconds": 300, "mem": 128, "gpus": 0,
        "networks": [{"mode": "container/bridge"}], "requirePorts": false,
        "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
        "version": "2026-11-22T10:00:00.000Z",
        "versionInfo": {"lastScalingAt": "2026-11-22T10:00:00.000Z",
            "lastConfigChangeAt": "2026-11-22T10:00:00.000Z"},
        "killSelection": "YOUNGEST_FIRST",
        "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
        "role": "*", "tasksStaged": 0, "tasksRunning": 2, "tasksHealthy": 0, "tasksUnhealthy": 0,
        "deployments": [{"id": "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"}],
        "tasks": [{"id": "dev_web.instance-1._app.1", "host": "10.0.0.1", "state": "TASK_RUNNING"}],
        "lastTaskFailure": {"appId": "/dev/web", "host": "10.0.0.1", "message": "x",
            "state": "TASK_FAILED", "taskId": "t", "timestamp": "2026-11-22T10:00:00.000Z",
            "version": "2026-11-22T10:00:00.000Z"}});
    let v14 = json!({"id": "/web", "cmd": "sleep 1", "instances": 1, "cpus": 0.1, "mem": 128,
        "ports": [10001], "portDefinitions": [{"port": 10001, "protocol": "tcp", "labels": {}}],
        "uris": [], "fetch": [], "labels": {}, "version": "2017-01-01T00:00:00.000Z",
        "tasksRunning": 1, "deployments": []});
    for (server, n) in [(v111, 3), (v14, 0)] {
        let body = scale_body(&server, n);
        assert_marathon_app(&body);
        assert_eq!(body["instances"], n);
        // only the count differs from the server's definition
        let mut same = body.clone();
        same["instances"] = server["instances"].clone();
        assert_eq!(diff(&same, &server), Vec::<String>::new());
    }
}
