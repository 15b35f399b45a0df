use super::*;
use serde_json::json;

fn errors(doc: Value) -> Vec<Detail> {
    validate(&doc).expect_err("expected problems")
}

fn has(details: &[Detail], path: &str, needle: &str) -> bool {
    details
        .iter()
        .any(|d| d.path == path && d.errors.iter().any(|e| e.contains(needle)))
}

#[test]
fn the_design_example_is_valid_with_defaults() {
    let doc = validate(&json!({
        "deploy": {"ingestor": {"image": "example/flask", "labels": ["dev"],
            "ports": {"api": 5000, "ssh": 22}, "environment": {"APP_NAME": "Ingestor"},
            "instances": 4, "cpus": 0.1, "mem": 128}},
        "remove": {"ingestor": {"labels": ["dev"]}, "old": null}
    }));
    // deploy and remove of the same app is refused
    assert!(doc.is_err());
    let doc = validate(&json!({
        "deploy": {"ingestor": {"image": "example/flask", "labels": ["dev"],
            "ports": {"api": 5000, "ssh": 22}, "environment": {"APP_NAME": "Ingestor", "N": 3}}},
        "remove": {"old": null}
    }))
    .unwrap();
    let s = &doc.deploy[0];
    assert_eq!(s.app_id(), "/dev/ingestor");
    assert_eq!(s.instances, 1);
    assert_eq!(s.cpus, 0.1);
    assert_eq!(s.mem, 128.0);
    assert_eq!(s.network, Network::Bridge);
    assert_eq!(s.environment["N"], "3");
    assert_eq!(
        s.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["api", "ssh"]
    );
    assert_eq!(doc.remove[0].app_id(), "/old");
}

#[test]
fn unknown_fields_get_a_path_and_a_suggestion() {
    let d = errors(
        json!({"deploy": {"web": {"imgae": "nginx", "cmd": "x", "port": {"a": 1}}}, "remov": {}}),
    );
    assert!(
        has(&d, "/deploy/web/imgae", "did you mean \"image\""),
        "{d:?}"
    );
    assert!(
        has(&d, "/deploy/web/port", "did you mean \"ports\""),
        "{d:?}"
    );
    assert!(has(&d, "/remov", "did you mean \"remove\""), "{d:?}");
    let d = errors(
        json!({"deploy": {"web": {"cmd": "x", "ports_hard": {"a": 1}, "healthchecks": []}}}),
    );
    assert!(has(&d, "/deploy/web/ports_hard", "\"ports-hard\""), "{d:?}");
    assert!(
        has(&d, "/deploy/web/healthchecks", "\"health_checks\""),
        "{d:?}"
    );
    let d = errors(json!({"deploy": {"web": {"cmd": "x", "zzzzzz": 1}}}));
    assert!(has(&d, "/deploy/web/zzzzzz", "known fields"), "{d:?}");
}

#[test]
fn wrong_types_and_values_name_the_path() {
    let d = errors(
        json!({"deploy": {"web": {"cmd": "x", "instances": -1, "cpus": "lots", "mem": 0,
        "ports": {"api": 70000}, "labels": "dev", "environment": {"A": null}}}}),
    );
    assert!(has(&d, "/deploy/web/instances", "negative"), "{d:?}");
    assert!(has(&d, "/deploy/web/cpus", "expected a number"), "{d:?}");
    assert!(has(&d, "/deploy/web/mem", "greater than 0"), "{d:?}");
    assert!(
        has(&d, "/deploy/web/ports/api", "between 1 and 65535"),
        "{d:?}"
    );
    assert!(has(&d, "/deploy/web/labels", "expected a list"), "{d:?}");
    assert!(
        has(&d, "/deploy/web/environment/A", "expected a string"),
        "{d:?}"
    );
}

#[test]
fn invalid_names_say_why() {
    let d = errors(
        json!({"deploy": {"Web_1": {"cmd": "x", "labels": ["Dev", "a.b"]}, "tasks": {"cmd": "x"}}}),
    );
    assert!(
        has(&d, "/deploy/Web_1", "not a valid Marathon id segment"),
        "{d:?}"
    );
    assert!(has(&d, "/deploy/Web_1/labels/0", "lowercase"), "{d:?}");
    assert!(has(&d, "/deploy/Web_1/labels/1", "dots"), "{d:?}");
    assert!(has(&d, "/deploy/tasks", "reserved"), "{d:?}");
}

#[test]
fn service_shape_rules() {
    let d = errors(json!({"deploy": {
        "a": {"labels": ["x"]},
        "b": {"cmd": "x", "args": ["y"]},
        "c": {"cmd": "x", "network": "bridge", "volumes": ["/a:/b"]},
        "d": {"image": "i", "volumes": ["a:/b", "/a:/b:rx"], "network": "overlay"},
        "e": {"image": "i", "ports": {"a": 80}, "ports-hard": {"a": 81}},
        "f": {"image": "i", "ports": {"a": 80, "b": 80}},
    }}));
    assert!(has(&d, "/deploy/a", "needs an image or a cmd"), "{d:?}");
    assert!(has(&d, "/deploy/b/args", "cannot both be set"), "{d:?}");
    assert!(has(&d, "/deploy/c/network", "needs an image"), "{d:?}");
    assert!(has(&d, "/deploy/c/volumes", "need an image"), "{d:?}");
    assert!(has(&d, "/deploy/d/volumes/0", "absolute"), "{d:?}");
    assert!(has(&d, "/deploy/d/volumes/1", "ro or rw"), "{d:?}");
    assert!(has(&d, "/deploy/d/network", "bridge or host"), "{d:?}");
    assert!(
        has(&d, "/deploy/e/ports-hard/a", "both ports and ports-hard"),
        "{d:?}"
    );
    assert!(has(&d, "/deploy/f/ports/b", "already used"), "{d:?}");
}

#[test]
fn constraints_follow_marathon_rules() {
    let d = errors(json!({"deploy": {"a": {"cmd": "x", "constraints": [
        ["hostname", "UNIQUE", "x"], ["hostname"], ["rack", "NEAR", "1"], ["hostname", "MAX_PER", "two"], ["h", "LIKE"]
    ], "custom_constraints": "fixed-hots"}}}));
    assert!(
        has(&d, "/deploy/a/constraints/0", "does not accept a value"),
        "{d:?}"
    );
    assert!(has(&d, "/deploy/a/constraints/1", "2 or 3 fields"), "{d:?}");
    assert!(
        has(&d, "/deploy/a/constraints/2", "operator must be"),
        "{d:?}"
    );
    assert!(has(&d, "/deploy/a/constraints/3", "integer"), "{d:?}");
    assert!(
        has(&d, "/deploy/a/constraints/4", "regular expression"),
        "{d:?}"
    );
    assert!(
        has(
            &d,
            "/deploy/a/custom_constraints",
            "did you mean \"fixed-host\""
        ),
        "{d:?}"
    );
    let ok = validate(
        &json!({"deploy": {"a": {"cmd": "x", "constraints": [["hostname", "max_per", 2]],
        "custom_constraints": ["fixed-host"]}}}),
    )
    .unwrap();
    assert_eq!(
        ok.deploy[0].constraints,
        vec![vec!["hostname".to_string(), "MAX_PER".into(), "2".into()]]
    );
    assert!(ok.deploy[0].fixed_host);
}

#[test]
fn health_checks_by_port_name() {
    let ok = validate(
        &json!({"deploy": {"a": {"image": "i", "ports": {"web": 80, "admin": 81},
        "health_checks": [{"port": "web", "path": "/health"}, {"protocol": "tcp", "port": "admin"},
                          {"protocol": "COMMAND", "command": "true"}]}}}),
    )
    .unwrap();
    let hc = &ok.deploy[0].health_checks;
    assert_eq!(hc[0].port_index, Some(1)); // sorted: admin, web
    assert_eq!(hc[0].path.as_deref(), Some("/health"));
    assert_eq!(hc[1].protocol, CheckProtocol::Tcp);
    assert_eq!(hc[1].port_index, Some(0));
    assert_eq!(hc[2].command.as_deref(), Some("true"));
    let d = errors(
        json!({"deploy": {"a": {"image": "i", "ports": {"web": 80, "admin": 81},
        "health_checks": [{"port": "api"}, {}, {"protocol": "COMMAND"}, {"protocol": "SMTP", "port": "web", "grace": 1}]}}}),
    );
    assert!(
        has(
            &d,
            "/deploy/a/health_checks/0/port",
            "unknown port name \"api\""
        ),
        "{d:?}"
    );
    assert!(
        has(&d, "/deploy/a/health_checks/1", "needs a port name"),
        "{d:?}"
    );
    assert!(
        has(&d, "/deploy/a/health_checks/2", "needs a command"),
        "{d:?}"
    );
    assert!(
        has(&d, "/deploy/a/health_checks/3/protocol", "unknown protocol"),
        "{d:?}"
    );
    assert!(
        has(&d, "/deploy/a/health_checks/3/grace", "unknown field"),
        "{d:?}"
    );
}

#[test]
fn upgrade_and_marathon_map() {
    let d = errors(
        json!({"deploy": {"a": {"cmd": "x", "upgrade": {"minimumHealthCapacity": 0.5, "maximum_over_capacity": 2},
        "marathon": {"id": "/x", "labels": {"SERVICE_NAME": "y"}}}}}),
    );
    assert!(
        has(
            &d,
            "/deploy/a/upgrade/minimumHealthCapacity",
            "\"minimum_health_capacity\""
        ),
        "{d:?}"
    );
    assert!(
        has(
            &d,
            "/deploy/a/upgrade/maximum_over_capacity",
            "between 0 and 1"
        ),
        "{d:?}"
    );
    assert!(
        has(&d, "/deploy/a/marathon/id", "set by the deployer"),
        "{d:?}"
    );
    assert!(
        has(
            &d,
            "/deploy/a/marathon/labels/SERVICE_NAME",
            "set by the deployer"
        ),
        "{d:?}"
    );
}

#[test]
fn clashing_app_ids_are_refused() {
    let d =
        errors(json!({"deploy": {"dev": {"cmd": "x"}, "api": {"cmd": "x", "labels": ["dev"]}}}));
    assert!(has(&d, "/deploy/dev", "clashes with the group"), "{d:?}");
}

#[test]
fn empty_and_non_mapping_documents() {
    assert!(has(&errors(Value::Null), "/", "empty"));
    assert!(has(&errors(json!([1])), "/", "expected a mapping"));
    assert_eq!(
        validate(&json!({"deploy": null})).unwrap(),
        Document::default()
    );
}

#[test]
fn suggestions() {
    assert_eq!(suggest("imgae", SERVICE_FIELDS), Some("image"));
    assert_eq!(suggest("enviroment", SERVICE_FIELDS), Some("environment"));
    assert_eq!(
        suggest("customconstraints", SERVICE_FIELDS),
        Some("custom_constraints")
    );
    assert_eq!(suggest("banana", SERVICE_FIELDS), None);
}
