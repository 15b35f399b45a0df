//! Port definitions and mappings, and the service ports assigned to them.

use std::collections::BTreeSet;

use marathon::{App, NetworkMode};

use crate::core::{CoreError, Violation};

pub(super) fn validate_ports(app: &App, v: &mut Vec<Violation>) {
    let host = app.is_host_network();
    let exclusive = app
        .networks
        .iter()
        .any(|n| matches!(n.mode, NetworkMode::Host | NetworkMode::ContainerBridge));
    if app.networks.len() > 1 && exclusive {
        v.push(Violation::new(
            "/networks",
            "host or container/bridge networking must be the only network",
        ));
    }
    let mappings = app
        .container
        .as_ref()
        .and_then(|c| c.port_mappings.as_ref());
    if host && mappings.is_some_and(|m| !m.is_empty()) {
        v.push(Violation::new(
            "/container/portMappings",
            "portMappings are not allowed with host-networking",
        ));
    }
    if !host && app.port_definitions.as_ref().is_some_and(|p| !p.is_empty()) {
        v.push(Violation::new(
            "/portDefinitions",
            "portDefinitions are only allowed with host-networking",
        ));
    }
    if !host && app.container.is_none() {
        v.push(Violation::new(
            "/networks",
            "container networking requires a container",
        ));
    }
    let mut names = BTreeSet::new();
    let mut fixed = BTreeSet::new();
    for (i, pd) in app.port_definitions.iter().flatten().enumerate() {
        if pd.port > 65535 {
            v.push(Violation::new(
                format!("/portDefinitions({i})/port"),
                format!("got {}, expected between 0 and 65535", pd.port),
            ));
        }
        if let Some(n) = &pd.name {
            if !names.insert(n.clone()) {
                v.push(Violation::new(
                    "/portDefinitions",
                    "Port names must be unique.",
                ));
            }
        }
        if pd.port != 0 && !fixed.insert(pd.port) {
            v.push(Violation::new("/portDefinitions", "Ports must be unique."));
        }
        if !valid_protocol(&pd.protocol) {
            v.push(Violation::new(
                format!("/portDefinitions({i})/protocol"),
                "is invalid. Only tcp, udp and udp,tcp are allowed.",
            ));
        }
    }
    let mut host_ports = BTreeSet::new();
    for (i, pm) in mappings.into_iter().flatten().enumerate() {
        for (field, value) in [
            ("containerPort", Some(pm.container_port)),
            ("hostPort", pm.host_port),
            ("servicePort", Some(pm.service_port)),
        ] {
            if value.is_some_and(|p| p > 65535) {
                v.push(Violation::new(
                    format!("/container/portMappings({i})/{field}"),
                    format!("got {}, expected between 0 and 65535", value.unwrap_or(0)),
                ));
            }
        }
        if let Some(n) = &pm.name {
            if !names.insert(n.clone()) {
                v.push(Violation::new(
                    "/container/portMappings",
                    "Port names must be unique.",
                ));
            }
        }
        if let Some(hp) = pm.host_port.filter(|p| *p != 0) {
            if !host_ports.insert(hp) {
                v.push(Violation::new(
                    "/container/portMappings",
                    "Host ports must be unique.",
                ));
            }
        }
        if !valid_protocol(&pm.protocol) {
            v.push(Violation::new(
                format!("/container/portMappings({i})/protocol"),
                "is invalid. Only tcp, udp and udp,tcp are allowed.",
            ));
        }
    }
}

fn valid_protocol(p: &str) -> bool {
    matches!(p, "tcp" | "udp" | "udp,tcp" | "tcp,udp")
}

/// Replaces every 0 service port with a free one from `range`, reusing the
/// previous definition's ports first. `used` = service ports of other apps.
pub fn assign_service_ports(
    app: &mut App,
    previous: Option<&App>,
    used: &BTreeSet<u32>,
    range: (u16, u16),
) -> Result<(), CoreError> {
    let mut taken: BTreeSet<u32> = used.clone();
    let prev: Vec<u32> = previous.map(|p| p.service_ports()).unwrap_or_default();
    let current = app.service_ports();
    taken.extend(current.iter().copied().filter(|p| *p != 0));
    let next = |i: usize, taken: &mut BTreeSet<u32>| -> Result<u32, CoreError> {
        if let Some(p) = prev
            .get(i)
            .copied()
            .filter(|p| *p != 0 && !taken.contains(p))
        {
            taken.insert(p);
            return Ok(p);
        }
        let p = (u32::from(range.0)..=u32::from(range.1))
            .find(|p| !taken.contains(p))
            .ok_or_else(|| {
                CoreError::invalid(
                    "/",
                    &format!(
                        "All ports in the range [{}-{}) are already in use",
                        range.0, range.1
                    ),
                )
            })?;
        taken.insert(p);
        Ok(p)
    };
    if app.is_host_network() {
        for (i, pd) in app.port_definitions.iter_mut().flatten().enumerate() {
            if pd.port == 0 {
                pd.port = next(i, &mut taken)?;
            }
        }
    } else if let Some(pms) = app
        .container
        .as_mut()
        .and_then(|c| c.port_mappings.as_mut())
    {
        for (i, pm) in pms.iter_mut().enumerate() {
            if pm.service_port == 0 {
                pm.service_port = next(i, &mut taken)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::test_app as app;
    use serde_json::json;

    #[test]
    fn service_ports_assigned_and_reused() {
        let mut a = app(
            json!({"id":"/x","cmd":"a","portDefinitions":[{"port":0},{"port":0},{"port":12000}]}),
        );
        let used: BTreeSet<u32> = [10000].into_iter().collect();
        assign_service_ports(&mut a, None, &used, (10000, 20000)).unwrap();
        assert_eq!(a.service_ports(), vec![10001, 10002, 12000]);
        let mut b = app(json!({"id":"/x","cmd":"b","portDefinitions":[{"port":0},{"port":0}]}));
        assign_service_ports(&mut b, Some(&a), &used, (10000, 20000)).unwrap();
        assert_eq!(b.service_ports(), vec![10001, 10002]);
        let mut full = app(json!({"id":"/y","cmd":"a"}));
        assert!(assign_service_ports(&mut full, None, &[5].into_iter().collect(), (5, 5)).is_err());
    }
}
