//! Registry records for tests: one sample instance record, changed per test
//! with struct update syntax (`Instance { host: .., ..instance(..) }`).

use std::collections::BTreeMap;

use registry::{Instance, Port};

/// A running instance record: `container` of `service` in `group` (its
/// labels from the group, app `/<group>/<service>`), on node `node-1`, host
/// `10.0.0.5` (internal address `172.17.0.3`), port `api` 31001 -> 5000,
/// health unknown.
pub fn instance(service: &str, group: &str, container: &str) -> Instance {
    Instance {
        schema: 1,
        service: service.into(),
        group: group.into(),
        labels: registry::naming::labels_from_group(group),
        container: container.into(),
        app_id: format!("/{group}/{service}"),
        app_version: "2026-11-22T10:00:00.000Z".into(),
        node: "node-1".into(),
        host: "10.0.0.5".into(),
        internal_address: Some("172.17.0.3".into()),
        ports: ports(&[("api", 31001, 5000)]),
        state: "TASK_RUNNING".into(),
        healthy: None,
        started_at: "2026-11-22T10:00:01.000Z".into(),
        owner: "default".into(),
    }
}

/// TCP ports from `(name, external, exposed)`.
pub fn ports(list: &[(&str, u16, u16)]) -> BTreeMap<String, Port> {
    list.iter()
        .map(|&(name, external, exposed)| (name.to_string(), Port::tcp(external, exposed)))
        .collect()
}
