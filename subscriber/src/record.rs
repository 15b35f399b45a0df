//! From an app definition and one of its tasks to the instance record of
//! DESIGN.md (schema 1). Pure: no I/O, table-tested below.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::model::{AppSpec, NetworkMode, TaskInfo};
use registry::naming::{
    labels_from_group, names_from_app, validate_container, validate_group, validate_service, Names,
};

use crate::record_store::{Instance, PortRecord};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("app {app_id}: {reason}")]
    InvalidName { app_id: String, reason: String },
    #[error("task id {0:?} is not a valid container name")]
    InvalidContainer(String),
}

/// Builds the record for a running task. Port names come from the app
/// definition (`portMappings[].name` / `portDefinitions[].name`, unnamed ->
/// `port<i>`); external ports from the task; the exposed port is the
/// container port (the host port for host networking or `containerPort: 0`).
pub fn record_from_task(
    app: &AppSpec,
    task: &TaskInfo,
    owner: &str,
    node: &str,
) -> Result<Instance, RecordError> {
    let names = app_names(app)?;
    record_with_names(app, &names, task, owner, node)
}

/// The validated service and group of an app (`SERVICE_NAME` /
/// `SERVICE_GROUP` labels, else its id). An app whose names are invalid
/// gets no record at all.
pub fn app_names(app: &AppSpec) -> Result<Names, RecordError> {
    let names = names_from_app(&app.id, &app.labels).map_err(|e| RecordError::InvalidName {
        app_id: app.id.clone(),
        reason: e.to_string(),
    })?;
    // Belt and braces: whatever names_from_app derives must pass the very
    // checks the registry makes before it builds a key.
    for r in [
        validate_service(&names.service),
        validate_group(&names.group),
    ] {
        r.map_err(|e| RecordError::InvalidName {
            app_id: app.id.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(names)
}

/// [`record_from_task`] with the app's names already worked out (a resync
/// does it once per app, not once per task).
pub fn record_with_names(
    app: &AppSpec,
    names: &Names,
    task: &TaskInfo,
    owner: &str,
    node: &str,
) -> Result<Instance, RecordError> {
    if validate_container(&task.id).is_err() {
        return Err(RecordError::InvalidContainer(task.id.clone()));
    }
    let labels = labels_from_group(&names.group);
    Ok(record_ref(app, names, &labels, task, owner, node).to_instance())
}

/// The record [`record_with_names`] builds, borrowed from the app and the
/// task (`labels`: the group's, [`labels_from_group`]). Serialised, it is
/// that record's JSON byte for byte (the fields in [`Instance`]'s order,
/// the ports by name; tested), so a stored record's JSON can be checked
/// against it without building or parsing either ([`record_json_is`]).
#[derive(serde::Serialize)]
pub struct RecordRef<'a> {
    schema: u32,
    service: &'a str,
    group: &'a str,
    labels: &'a [String],
    container: &'a str,
    app_id: &'a str,
    app_version: &'a str,
    node: &'a str,
    host: &'a str,
    internal_address: Option<&'a str>,
    #[serde(serialize_with = "ports_by_name")]
    ports: Vec<PortEntry<'a>>,
    state: &'a str,
    healthy: Option<bool>,
    started_at: &'a str,
    owner: &'a str,
}

/// `ports` as [`Instance`] serialises its map: by name, one per name (the
/// entries come sorted and deduplicated from [`record_ref`]).
fn ports_by_name<S: serde::Serializer>(ports: &[PortEntry<'_>], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(ports.len()))?;
    for p in ports {
        map.serialize_entry(
            p.name.as_ref(),
            &PortRef {
                external: p.external,
                exposed: p.exposed,
                protocol: p.protocol,
            },
        )?;
    }
    map.end()
}

/// [`PortRecord`] borrowed.
#[derive(serde::Serialize)]
struct PortRef<'a> {
    external: u16,
    exposed: u16,
    protocol: &'a str,
}

/// The record of `task` borrowed ([`RecordRef`]); the container name is not
/// checked here.
pub fn record_ref<'a>(
    app: &'a AppSpec,
    names: &'a Names,
    labels: &'a [String],
    task: &'a TaskInfo,
    owner: &'a str,
    node: &'a str,
) -> RecordRef<'a> {
    let mut ports: Vec<PortEntry<'a>> = Vec::new();
    for p in port_entries(app, task) {
        // A later entry wins a repeated name (as inserting into a map).
        match ports.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p,
            None => ports.push(p),
        }
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    RecordRef {
        schema: 1,
        service: &names.service,
        group: &names.group,
        labels,
        container: &task.id,
        app_id: &app.id,
        app_version: app_version(app, task),
        node,
        host: &task.host,
        internal_address: internal_address(app, task),
        ports,
        state: RUNNING,
        healthy: healthy(app, task),
        started_at: task.started_at.as_deref().unwrap_or_default(),
        owner,
    }
}

impl RecordRef<'_> {
    /// The record, owned.
    pub fn to_instance(&self) -> Instance {
        Instance {
            schema: self.schema,
            service: self.service.to_string(),
            group: self.group.to_string(),
            labels: self.labels.to_vec(),
            container: self.container.to_string(),
            app_id: self.app_id.to_string(),
            app_version: self.app_version.to_string(),
            node: self.node.to_string(),
            host: self.host.to_string(),
            internal_address: self.internal_address.map(str::to_string),
            ports: self
                .ports
                .iter()
                .map(|p| {
                    (
                        p.name.to_string(),
                        PortRecord {
                            external: p.external,
                            exposed: p.exposed,
                            protocol: p.protocol.to_string(),
                        },
                    )
                })
                .collect(),
            state: self.state.to_string(),
            healthy: self.healthy,
            started_at: self.started_at.to_string(),
            owner: self.owner.to_string(),
        }
    }
}

/// Whether `json` is exactly the JSON of this record ([`Instance::to_json`]
/// of [`RecordRef::to_instance`]), compared as it is serialised: nothing is
/// built or parsed, and the first differing byte ends it.
pub fn record_json_is(record: &RecordRef<'_>, json: &[u8]) -> bool {
    /// Takes the serialised bytes while they match `rest`.
    struct Expect<'a> {
        rest: &'a [u8],
    }
    impl std::io::Write for Expect<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.rest.strip_prefix(buf) {
                Some(rest) => {
                    self.rest = rest;
                    Ok(buf.len())
                }
                None => Err(std::io::ErrorKind::InvalidData.into()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Expect { rest: json };
    serde_json::to_writer(&mut w, record).is_ok() && w.rest.is_empty()
}

/// The state every record is written with.
const RUNNING: &str = "TASK_RUNNING";

/// One named port of a record, borrowed from the app and the task.
struct PortEntry<'a> {
    name: Cow<'a, str>,
    external: u16,
    exposed: u16,
    protocol: &'a str,
}

/// A record's ports in index order (a later one wins a repeated name).
/// Port names come from the app definition (`portMappings[].name` /
/// `portDefinitions[].name`, unnamed -> `port<i>`); external ports from the
/// task; the exposed port is the container port (the host port for host
/// networking or `containerPort: 0`).
fn port_entries<'a>(app: &'a AppSpec, task: &'a TaskInfo) -> impl Iterator<Item = PortEntry<'a>> {
    let count = app.ports.len().max(task.ports.len());
    (0..count).filter_map(move |i| {
        let spec = app.ports.get(i);
        // No host port (container networking without hostPort): nothing
        // reachable from other hosts under this name.
        let external = task.ports.get(i).and_then(|p| u16::try_from(*p).ok())?;
        let name = match spec.and_then(|p| p.name.as_deref()) {
            Some(n) if !n.is_empty() => Cow::Borrowed(n),
            _ => Cow::Owned(format!("port{i}")),
        };
        let exposed = match (app.network, spec.and_then(|p| p.container_port)) {
            (NetworkMode::Host, _) => external,
            (_, Some(cp)) if cp != 0 => u16::try_from(cp).ok()?,
            _ => external,
        };
        let protocol = match spec.and_then(|p| p.protocol.as_deref()) {
            Some(p) if !p.is_empty() => p,
            _ => "tcp",
        };
        Some(PortEntry {
            name,
            external,
            exposed,
            protocol,
        })
    })
}

fn app_version<'a>(app: &'a AppSpec, task: &'a TaskInfo) -> &'a str {
    task.app_version.as_deref().unwrap_or(&app.version)
}

fn internal_address<'a>(app: &AppSpec, task: &'a TaskInfo) -> Option<&'a str> {
    match app.network {
        NetworkMode::Host => None,
        NetworkMode::Bridge | NetworkMode::Container => {
            task.ip_addresses.first().map(String::as_str)
        }
    }
}

fn healthy(app: &AppSpec, task: &TaskInfo) -> Option<bool> {
    app.has_health_checks.then(|| task.healthy.unwrap_or(false))
}

/// Whether `stored` already says what [`record_with_names`] would write
/// for this task (`labels`: the group's, [`labels_from_group`]), under the
/// resync's rule (equal, `started_at` as [`started_at_same`] says), without
/// building the record: a resync with
/// nothing to change compares every task this way. The container name is
/// not checked here (the caller checks it once per task).
pub fn record_matches(
    app: &AppSpec,
    names: &Names,
    labels: &[String],
    task: &TaskInfo,
    owner: &str,
    node: &str,
    stored: &Instance,
) -> bool {
    // The exhaustive pattern makes a new record field a compile error here.
    let Instance {
        schema,
        service,
        group,
        labels: stored_labels,
        container,
        app_id,
        app_version: stored_version,
        node: stored_node,
        host,
        internal_address: stored_internal,
        ports,
        state,
        healthy: stored_healthy,
        started_at,
        owner: stored_owner,
    } = stored;
    let started = task.started_at.as_deref().unwrap_or_default();
    started_at_same(started_at, started)
        && *schema == 1
        && *service == names.service
        && *group == names.group
        && stored_labels.as_slice() == labels
        && *container == task.id
        && *app_id == app.id
        && stored_version == app_version(app, task)
        && stored_node == node
        && *host == task.host
        && stored_internal.as_deref() == internal_address(app, task)
        && *state == RUNNING
        && *stored_healthy == healthy(app, task)
        && stored_owner == owner
        && ports_match(app, task, ports)
}

/// The record's ports as [`port_entries`] makes them, a repeated name
/// taken from its last entry.
fn ports_match(app: &AppSpec, task: &TaskInfo, stored: &BTreeMap<String, PortRecord>) -> bool {
    let mut distinct = 0;
    for (i, p) in port_entries(app, task).enumerate() {
        if port_entries(app, task)
            .skip(i + 1)
            .any(|l| l.name == p.name)
        {
            continue;
        }
        distinct += 1;
        let same = stored.get(p.name.as_ref()).is_some_and(|s| {
            s.external == p.external && s.exposed == p.exposed && s.protocol == p.protocol
        });
        if !same {
            return false;
        }
    }
    distinct == stored.len()
}

/// `started_at` written from a status event (the event's time) may differ
/// by milliseconds from the task's `startedAt` in Marathon: the same when
/// both are set, else only when equal.
pub fn started_at_same(stored: &str, desired: &str) -> bool {
    if stored.is_empty() || desired.is_empty() {
        stored == desired
    } else {
        true
    }
}

/// Whether a running task belongs in the registry: with `--require-healthy`,
/// tasks of apps with health checks only once they pass.
pub fn wanted(app: &AppSpec, task: &TaskInfo, require_healthy: bool) -> bool {
    task.state == RUNNING
        && (!require_healthy || !app.has_health_checks || task.healthy == Some(true))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::PortSpec;

    pub fn app(id: &str, network: NetworkMode, ports: &[(Option<&str>, Option<u32>)]) -> AppSpec {
        AppSpec {
            id: id.to_string(),
            version: "2026-11-22T10:00:00.000Z".into(),
            labels: BTreeMap::new(),
            network,
            ports: ports
                .iter()
                .map(|(n, cp)| PortSpec {
                    name: n.map(str::to_string),
                    container_port: *cp,
                    protocol: None,
                })
                .collect(),
            has_health_checks: false,
        }
    }

    pub fn task(id: &str, app_id: &str, ports: &[u32]) -> TaskInfo {
        TaskInfo {
            id: id.to_string(),
            app_id: app_id.to_string(),
            app_version: Some("2026-11-22T10:00:00.000Z".into()),
            host: "10.0.0.5".into(),
            node: Some("node-1".into()),
            state: "TASK_RUNNING".into(),
            ports: ports.to_vec(),
            ip_addresses: vec!["172.17.0.3".into()],
            started_at: Some("2026-11-22T10:00:01.000Z".into()),
            healthy: None,
        }
    }

    fn ports_of(r: &Instance) -> Vec<(String, u16, u16)> {
        r.ports
            .iter()
            .map(|(k, v)| (k.clone(), v.external, v.exposed))
            .collect()
    }

    #[test]
    fn port_naming_table() {
        struct Case {
            what: &'static str,
            network: NetworkMode,
            spec: Vec<(Option<&'static str>, Option<u32>)>,
            task_ports: Vec<u32>,
            want: Vec<(&'static str, u16, u16)>,
            internal: Option<&'static str>,
        }
        let cases = vec![
            Case {
                what: "bridge, named mappings",
                network: NetworkMode::Bridge,
                spec: vec![(Some("api"), Some(5000)), (Some("ssh"), Some(22))],
                task_ports: vec![31001, 31002],
                want: vec![("api", 31001, 5000), ("ssh", 31002, 22)],
                internal: Some("172.17.0.3"),
            },
            Case {
                what: "bridge, unnamed -> port<i>",
                network: NetworkMode::Bridge,
                spec: vec![(None, Some(80)), (Some(""), Some(443))],
                task_ports: vec![31001, 31002],
                want: vec![("port0", 31001, 80), ("port1", 31002, 443)],
                internal: Some("172.17.0.3"),
            },
            Case {
                what: "host networking: exposed is the host port",
                network: NetworkMode::Host,
                spec: vec![(Some("http"), None), (None, None)],
                task_ports: vec![31500, 31501],
                want: vec![("http", 31500, 31500), ("port1", 31501, 31501)],
                internal: None,
            },
            Case {
                what: "containerPort 0 means same as host port",
                network: NetworkMode::Bridge,
                spec: vec![(Some("web"), Some(0))],
                task_ports: vec![31007],
                want: vec![("web", 31007, 31007)],
                internal: Some("172.17.0.3"),
            },
            Case {
                what: "task has more ports than the definition",
                network: NetworkMode::Host,
                spec: vec![],
                task_ports: vec![31000],
                want: vec![("port0", 31000, 31000)],
                internal: None,
            },
            Case {
                what: "container mode without host port: no external port",
                network: NetworkMode::Container,
                spec: vec![(Some("api"), Some(5000))],
                task_ports: vec![],
                want: vec![],
                internal: Some("172.17.0.3"),
            },
        ];
        for c in cases {
            let a = app("/dev/ingestor", c.network, &c.spec);
            let t = task(
                "dev_ingestor.instance-1._app.1",
                "/dev/ingestor",
                &c.task_ports,
            );
            let r = record_from_task(&a, &t, "default", "node-1").expect(c.what);
            let want: Vec<(String, u16, u16)> = c
                .want
                .iter()
                .map(|(n, e, x)| (n.to_string(), *e, *x))
                .collect();
            assert_eq!(ports_of(&r), want, "{}", c.what);
            assert_eq!(r.internal_address.as_deref(), c.internal, "{}", c.what);
            assert_eq!(r.host, "10.0.0.5");
        }
    }

    #[test]
    fn record_fields_and_names() {
        let mut a = app(
            "/dev/ingestor",
            NetworkMode::Bridge,
            &[(Some("api"), Some(5000))],
        );
        let t = task("dev_ingestor.instance-1._app.1", "/dev/ingestor", &[31001]);
        let r = record_from_task(&a, &t, "east", "node-1").unwrap();
        assert_eq!(r.schema, 1);
        assert_eq!((r.service.as_str(), r.group.as_str()), ("ingestor", "dev"));
        assert_eq!(r.container, t.id);
        assert_eq!(r.owner, "east");
        assert_eq!(r.node, "node-1");
        assert_eq!(r.state, "TASK_RUNNING");
        assert_eq!(r.healthy, None);
        assert_eq!(r.ports["api"].protocol, "tcp");

        a.has_health_checks = true;
        assert_eq!(
            record_from_task(&a, &t, "east", "n").unwrap().healthy,
            Some(false)
        );
        let mut th = t.clone();
        th.healthy = Some(true);
        assert_eq!(
            record_from_task(&a, &th, "east", "n").unwrap().healthy,
            Some(true)
        );

        // labels win over the app id
        a.labels.insert("SERVICE_NAME".into(), "api".into());
        a.labels
            .insert("SERVICE_GROUP".into(), "hello.ponies".into());
        let r = record_from_task(&a, &t, "east", "n").unwrap();
        assert_eq!(
            (r.service.as_str(), r.group.as_str()),
            ("api", "hello.ponies")
        );
    }

    #[test]
    fn invalid_names_are_rejected() {
        let a = app("/dev/Bad_Name", NetworkMode::Host, &[]);
        let t = task("x.instance-1._app.1", "/dev/Bad_Name", &[]);
        assert!(matches!(
            record_from_task(&a, &t, "default", "n"),
            Err(RecordError::InvalidName { .. })
        ));
        let a = app("/dev/web", NetworkMode::Host, &[]);
        let t = task("bad/id", "/dev/web", &[]);
        assert!(matches!(
            record_from_task(&a, &t, "default", "n"),
            Err(RecordError::InvalidContainer(_))
        ));
    }

    #[test]
    fn require_healthy_table() {
        let mut a = app("/web", NetworkMode::Host, &[]);
        let mut t = task("web.instance-1._app.1", "/web", &[]);
        // (has checks, task healthy, require) -> wanted
        let cases = [
            (false, None, true, true),
            (true, None, false, true),
            (true, None, true, false),
            (true, Some(false), true, false),
            (true, Some(true), true, true),
        ];
        for (checks, healthy, require, want) in cases {
            a.has_health_checks = checks;
            t.healthy = healthy;
            assert_eq!(
                wanted(&a, &t, require),
                want,
                "{checks} {healthy:?} {require}"
            );
        }
        t.state = "TASK_STAGING".into();
        a.has_health_checks = false;
        assert!(!wanted(&a, &t, false));
    }
}
