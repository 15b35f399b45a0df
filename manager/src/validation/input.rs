//! The definition as it comes in: JSON bodies, updates merged over the
//! current definition, and Marathon's normalisation of legacy fields.

use marathon::{
    App, Fetch, HealthCheckProtocol, Network, NetworkMode, PortDefinition, PortMapping,
};
use serde_json::{Map, Value};

use crate::core::CoreError;
use crate::ids;

/// Parses a JSON body; 400 with Marathon's body when it is not JSON.
pub fn parse_json(body: &[u8]) -> Result<Value, CoreError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(CoreError::InvalidJson(
            "No content to map due to end-of-input".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| CoreError::InvalidJson(e.to_string()))
}

/// Turns a JSON object into an [`App`]; wrong JSON types -> 400.
pub fn app_from_value(value: Value) -> Result<App, CoreError> {
    if !value.is_object() {
        return Err(CoreError::InvalidJson("error.expected.jsobject".into()));
    }
    serde_json::from_value::<App>(value).map_err(|e| CoreError::InvalidJson(e.to_string()))
}

/// Applies an update body (AppUpdate) over an existing app: every field the
/// body carries replaces the current one; legacy fields displace the
/// current fields they map to.
pub fn merge_update(existing: &App, update: &Map<String, Value>) -> Result<App, CoreError> {
    let mut base = match serde_json::to_value(existing) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(CoreError::Internal(
                "app does not serialise to an object".into(),
            ))
        }
    };
    for (k, v) in update {
        match k.as_str() {
            "id" | "version" | "versionInfo" => continue,
            "ports" => {
                base.remove("portDefinitions");
            }
            "uris" => {
                base.remove("fetch");
            }
            "ipAddress" => {
                base.remove("networks");
            }
            // A legacy docker.network in the update re-derives networks.
            "container" if v.pointer("/docker/network").is_some() => {
                base.remove("networks");
            }
            _ => {}
        }
        base.insert(k.clone(), v.clone());
    }
    // A network change makes the other side's port fields meaningless.
    let mut app = app_from_value(Value::Object(base))?;
    app.id = existing.id.clone();
    Ok(app)
}

/// Marathon's normalisation: canonical id, legacy fields moved to current
/// ones, defaults for networks / ports / health-check port index.
pub fn normalise(app: &mut App) {
    app.id = ids::canonical(&app.id);
    if let Some(ports) = app.ports.take() {
        if app.port_definitions.is_none() {
            app.port_definitions = Some(
                ports
                    .into_iter()
                    .map(|p| PortDefinition {
                        port: p,
                        name: None,
                        ..PortDefinition::default()
                    })
                    .collect(),
            );
        }
    }
    if let Some(uris) = app.uris.take() {
        if app.fetch.is_empty() {
            app.fetch = uris.into_iter().map(Fetch::from_uri).collect();
        }
    }
    let ip_network_name = app
        .ip_address
        .as_ref()
        .and_then(|ip| ip.get("networkName"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(container) = app.container.as_mut() {
        if let Some(docker) = container.docker.as_mut() {
            if let Some(net) = docker.network.take() {
                if app.networks.is_empty() {
                    let mut n = match net.to_ascii_uppercase().as_str() {
                        "HOST" => Network::host(),
                        "BRIDGE" => Network::bridge(),
                        _ => Network {
                            mode: NetworkMode::Container,
                            name: ip_network_name.clone(),
                            ..Network::default()
                        },
                    };
                    if n.mode == NetworkMode::Container && n.name.is_none() {
                        n.name = ip_network_name.clone();
                    }
                    app.networks = vec![n];
                }
            }
            if let Some(pm) = docker.port_mappings.take() {
                if container.port_mappings.is_none() {
                    container.port_mappings = Some(pm);
                }
            }
        }
    }
    if let Some(_ip) = app.ip_address.take() {
        if app.networks.is_empty() {
            app.networks = vec![Network {
                mode: NetworkMode::Container,
                name: ip_network_name,
                ..Network::default()
            }];
        }
    }
    if app.networks.is_empty() {
        app.networks = vec![Network::host()];
    }
    let host = app.is_host_network();
    if host {
        if app.port_definitions.is_none() {
            app.port_definitions = Some(vec![PortDefinition::default()]);
        }
    } else {
        app.require_ports = false;
        let bridge = app
            .networks
            .iter()
            .any(|n| n.mode == NetworkMode::ContainerBridge);
        if let Some(c) = app.container.as_mut() {
            if c.port_mappings.is_none() && app.port_definitions.is_none() {
                c.port_mappings = Some(vec![PortMapping {
                    name: Some("default".into()),
                    host_port: bridge.then_some(0),
                    ..PortMapping::default()
                }]);
            }
            if bridge {
                for pm in c.port_mappings.iter_mut().flatten() {
                    if pm.host_port.is_none() {
                        pm.host_port = Some(0);
                    }
                }
            }
        }
    }
    let nports = super::port_count(app);
    for hc in app.health_checks.iter_mut() {
        if hc.protocol != HealthCheckProtocol::Command
            && hc.port.is_none()
            && hc.port_index.is_none()
            && nports > 0
        {
            hc.port_index = Some(0);
        }
    }
    if app.role.is_none() {
        app.role = Some("*".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::is_upgrade;
    use crate::validation::test_app as app;
    use serde_json::json;

    #[test]
    fn legacy_inputs_are_normalised() {
        let a = app(json!({"id":"web","cmd":"x","ports":[0, 8080],"uris":["http://a/b.tgz"]}));
        assert_eq!(a.id, "/web");
        let pd = a.port_definitions.clone().unwrap();
        assert_eq!(pd.iter().map(|p| p.port).collect::<Vec<_>>(), vec![0, 8080]);
        assert_eq!(a.fetch[0].uri, "http://a/b.tgz");
        let out = serde_json::to_value(&a).unwrap();
        assert!(out.get("ports").is_none() && out.get("uris").is_none());

        let d = app(
            json!({"id":"d","container":{"type":"DOCKER","docker":{"image":"x","network":"BRIDGE",
            "portMappings":[{"containerPort":80}]}}}),
        );
        assert_eq!(d.networks[0].mode, NetworkMode::ContainerBridge);
        let pm = d.container.as_ref().unwrap().port_mappings.clone().unwrap();
        assert_eq!(pm[0].container_port, 80);
        assert_eq!(pm[0].host_port, Some(0));
        assert!(d.port_definitions.is_none());
        let out = serde_json::to_value(&d).unwrap();
        assert!(out["container"]["docker"].get("network").is_none());
        assert!(out.get("portDefinitions").is_none());
    }

    #[test]
    fn updates_and_upgrades() {
        let a = app(json!({"id":"/x","cmd":"a","instances":1}));
        let scaled = merge_update(&a, json!({"instances":3}).as_object().unwrap()).unwrap();
        assert_eq!(scaled.instances, 3);
        assert_eq!(scaled.cmd.as_deref(), Some("a"));
        assert!(!is_upgrade(&a, &scaled));
        let changed = merge_update(&a, json!({"cmd":"b"}).as_object().unwrap()).unwrap();
        assert!(is_upgrade(&a, &changed));
    }
}
