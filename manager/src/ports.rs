//! Host port allocation for one task: dynamic ports from the configured
//! range, fixed ports (`requirePorts`, `hostPort`) honoured, conflicts
//! refused. Pure: the caller passes the ports already in use and a probe
//! that says whether the host can bind a port.

use std::collections::{BTreeMap, BTreeSet};

use marathon::App;

use crate::core::{CoreError, Violation};

/// The ports of one task, by the app's port index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    /// The effective port per index (host port, or container port when the
    /// mapping publishes none): `ports` in the task JSON and `PORT<n>`.
    pub ports: Vec<u32>,
    /// Host ports reserved on the node (subset of `ports`).
    pub host_ports: Vec<u16>,
    /// Per index: the host port (None = not published) and container port.
    pub bindings: Vec<(Option<u16>, u16, String)>,
}

/// Why ports could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortProblem {
    /// A fixed port is taken (by another task or on the host).
    Taken(u32),
    /// The dynamic range has no free port left.
    Exhausted,
}

impl std::fmt::Display for PortProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Taken(p) => write!(f, "host port {p} is already in use"),
            Self::Exhausted => f.write_str("no free host port left in the range"),
        }
    }
}

/// Allocates the ports of one task of `app`. `start` rotates where the
/// dynamic search begins (so a freed port is not reused at once).
pub fn allocate(
    app: &App,
    used: &BTreeSet<u16>,
    range: (u16, u16),
    start: u16,
    bindable: &dyn Fn(u16) -> bool,
) -> Result<Allocation, PortProblem> {
    let mut taken = used.clone();
    let mut out = Allocation::default();
    let dynamic = |taken: &mut BTreeSet<u16>| -> Result<u16, PortProblem> {
        let width = u32::from(range.1 - range.0) + 1;
        let offset = u32::from(start.saturating_sub(range.0)) % width;
        for i in 0..width {
            let p = (u32::from(range.0) + (offset + i) % width) as u16;
            if !taken.contains(&p) && bindable(p) {
                taken.insert(p);
                return Ok(p);
            }
        }
        Err(PortProblem::Exhausted)
    };
    let fixed = |p: u32, taken: &mut BTreeSet<u16>| -> Result<u16, PortProblem> {
        let port = u16::try_from(p).map_err(|_| PortProblem::Taken(p))?;
        if taken.contains(&port) || !bindable(port) {
            return Err(PortProblem::Taken(p));
        }
        taken.insert(port);
        Ok(port)
    };
    if app.is_host_network() {
        for pd in app.port_definitions.iter().flatten() {
            let hp = if app.require_ports && pd.port != 0 {
                fixed(pd.port, &mut taken)?
            } else {
                dynamic(&mut taken)?
            };
            out.ports.push(u32::from(hp));
            out.host_ports.push(hp);
            out.bindings.push((Some(hp), hp, pd.protocol.clone()));
        }
    } else {
        for pm in app
            .container
            .iter()
            .flat_map(|c| c.port_mappings.iter().flatten())
        {
            let hp = match pm.host_port {
                Some(0) => Some(dynamic(&mut taken)?),
                Some(p) => Some(fixed(p, &mut taken)?),
                None => None,
            };
            let container_port = match (pm.container_port, hp) {
                (0, Some(h)) => h,
                (c, _) => c as u16,
            };
            if let Some(h) = hp {
                out.host_ports.push(h);
            }
            out.ports.push(u32::from(hp.unwrap_or(container_port)));
            out.bindings.push((hp, container_port, pm.protocol.clone()));
        }
    }
    Ok(out)
}

/// Who holds a fixed host port on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// An app definition that requires the port (`requirePorts` or a fixed `hostPort`).
    App(String),
    /// A live task that has the port reserved.
    Task { app_id: String, task_id: String },
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::App(id) => write!(f, "app '{id}'"),
            Self::Task { app_id, task_id } => write!(f, "task '{task_id}' of app '{app_id}'"),
        }
    }
}

/// The fixed host ports a (normalised, service-port-assigned) app requires
/// on its node, each with the JSON path that declares it: host networking
/// with `requirePorts` (every non-zero `portDefinitions[].port`), otherwise
/// every non-zero `portMappings[].hostPort`. Mirrors [`allocate`].
pub fn required_host_ports(app: &App) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    if app.is_host_network() {
        if app.require_ports {
            for (i, pd) in app.port_definitions.iter().flatten().enumerate() {
                if let Ok(p) = u16::try_from(pd.port) {
                    if p != 0 {
                        out.push((p, format!("/portDefinitions({i})/port")));
                    }
                }
            }
        }
    } else {
        for (i, pm) in app
            .container
            .iter()
            .flat_map(|c| c.port_mappings.iter().flatten())
            .enumerate()
        {
            if let Some(p) = pm.host_port.and_then(|p| u16::try_from(p).ok()) {
                if p != 0 {
                    out.push((p, format!("/container/portMappings({i})/hostPort")));
                }
            }
        }
    }
    out
}

/// The fixed host ports held on this node by apps other than those in
/// `except`: the definitions that require them and the host ports reserved
/// by live tasks of existing apps. Tasks being killed (`TASK_KILLING`) and
/// tasks of deleted apps are on their way out and do not count: a launch
/// that needs their port waits in the queue until it is free.
pub fn held_ports<'a>(
    apps: impl IntoIterator<Item = &'a App>,
    tasks: impl IntoIterator<Item = &'a crate::state::TaskRecord>,
    except: &BTreeSet<String>,
) -> BTreeMap<u16, Holder> {
    let apps: Vec<&App> = apps
        .into_iter()
        .filter(|a| !except.contains(&a.id))
        .collect();
    let mut held = BTreeMap::new();
    for t in tasks {
        let live = t.is_active() && t.state != marathon::TaskState::Killing;
        if live && apps.iter().any(|a| a.id == t.app_id) {
            for p in &t.host_ports {
                held.insert(
                    *p,
                    Holder::Task {
                        app_id: t.app_id.clone(),
                        task_id: t.id.clone(),
                    },
                );
            }
        }
    }
    // A definition is the more lasting reason: it wins over its own tasks.
    for a in apps {
        for (p, _) in required_host_ports(a) {
            held.insert(p, Holder::App(a.id.clone()));
        }
    }
    held
}

/// The decision for a new or changed definition on this single node: each
/// fixed host port must not be held by anyone else, and an app with fixed
/// host ports can run at most one instance here. `held` excludes the app
/// itself (an update that keeps its own port does not conflict with
/// itself). Empty = accepted.
pub fn fixed_port_violations(app: &App, held: &BTreeMap<u16, Holder>) -> Vec<Violation> {
    let required = required_host_ports(app);
    let mut out = Vec::new();
    for (port, path) in &required {
        if let Some(holder) = held.get(port) {
            out.push(Violation::new(
                path.clone(),
                format!("host port {port} is already reserved on this node by {holder}"),
            ));
        }
    }
    if app.instances > 1 && !required.is_empty() {
        let list: Vec<String> = required.iter().map(|(p, _)| p.to_string()).collect();
        out.push(Violation::new(
            "/instances",
            format!(
                "got {}, but an app with fixed host ports ({}) can run at most 1 instance on this single-node manager",
                app.instances,
                list.join(", ")
            ),
        ));
    }
    out
}

/// Checks the new definitions of one change (in request order) against
/// the node and against each other; `batch` = `PUT /v2/apps` with an
/// array, whose paths get the item index (`/1/portDefinitions(0)/port`).
pub fn check_fixed_ports(
    state: &crate::state::State,
    apps: &[&App],
    batch: bool,
) -> Result<(), CoreError> {
    let changed: BTreeSet<String> = apps.iter().map(|a| a.id.clone()).collect();
    let mut held = held_ports(state.apps.values(), state.tasks.values(), &changed);
    let mut violations = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        for mut v in fixed_port_violations(app, &held) {
            if batch {
                v.path = format!("/{i}{}", v.path);
            }
            violations.push(v);
        }
        for (p, _) in required_host_ports(app) {
            held.entry(p).or_insert_with(|| Holder::App(app.id.clone()));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(CoreError::Invalid(violations))
    }
}

/// Whether the host lets us bind this TCP port right now.
pub fn host_can_bind(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use crate::state::TaskRecord;
    use actix_web::ResponseError;
    use serde_json::json;

    fn app(v: serde_json::Value) -> App {
        let mut a: App = serde_json::from_value(v).unwrap();
        crate::validation::normalise(&mut a);
        a
    }

    #[test]
    fn table() {
        let always = |_p: u16| true;
        let used: BTreeSet<u16> = [100].into_iter().collect();
        let dyn2 = app(json!({"id":"/a","cmd":"x","portDefinitions":[{"port":10001},{"port":0}]}));
        let got = allocate(&dyn2, &used, (100, 103), 100, &always).unwrap();
        assert_eq!(got.ports, vec![101, 102]);
        let req =
            app(json!({"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":102}]}));
        assert_eq!(
            allocate(&req, &used, (100, 103), 100, &always)
                .unwrap()
                .ports,
            vec![102]
        );
        let clash =
            app(json!({"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":100}]}));
        assert_eq!(
            allocate(&clash, &used, (100, 103), 100, &always),
            Err(PortProblem::Taken(100))
        );
        let many = app(
            json!({"id":"/a","cmd":"x","portDefinitions":[{"port":0},{"port":0},{"port":0},{"port":0}]}),
        );
        assert_eq!(
            allocate(&many, &used, (100, 103), 100, &always),
            Err(PortProblem::Exhausted)
        );
        let none = app(json!({"id":"/a","cmd":"x","portDefinitions":[]}));
        assert_eq!(
            allocate(&none, &used, (100, 103), 100, &always).unwrap(),
            Allocation::default()
        );
        // Rotation and the host probe.
        let one = app(json!({"id":"/a","cmd":"x"}));
        assert_eq!(
            allocate(&one, &used, (100, 103), 103, &always)
                .unwrap()
                .ports,
            vec![103]
        );
        assert_eq!(
            allocate(&one, &used, (100, 103), 100, &|p| p != 101)
                .unwrap()
                .ports,
            vec![102]
        );
        // Bridge: containerPort 0 = host port; container mode without host port.
        let bridge = app(json!({"id":"/b","networks":[{"mode":"container/bridge"}],
            "container":{"docker":{"image":"i"},"portMappings":[{"containerPort":80},{"containerPort":0,"hostPort":0}]}}));
        let got = allocate(&bridge, &BTreeSet::new(), (200, 210), 200, &always).unwrap();
        assert_eq!(
            got.bindings,
            vec![
                (Some(200), 80, "tcp".into()),
                (Some(201), 201, "tcp".into())
            ]
        );
        let cont = app(
            json!({"id":"/c","networks":[{"mode":"container","name":"n"}],
            "container":{"docker":{"image":"i"},"portMappings":[{"containerPort":8080}]}}),
        );
        let got = allocate(&cont, &BTreeSet::new(), (200, 210), 200, &always).unwrap();
        assert_eq!(got.ports, vec![8080]);
        assert!(got.host_ports.is_empty());
    }

    fn task(id: &str, app_id: &str, state: marathon::TaskState, ports: &[u16]) -> TaskRecord {
        TaskRecord {
            ports: ports.iter().map(|p| u32::from(*p)).collect(),
            host_ports: ports.to_vec(),
            ..TaskRecord::test(id, app_id, state)
        }
    }

    #[test]
    fn required_host_ports_by_network() {
        let cases: Vec<(serde_json::Value, Vec<(u16, &str)>)> = vec![
            // requirePorts=false: the port is a service port, the host port is dynamic.
            (
                json!({"id":"/a","cmd":"x","portDefinitions":[{"port":5000}]}),
                vec![],
            ),
            (
                json!({"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":0},{"port":5001}]}),
                vec![(5001, "/portDefinitions(1)/port")],
            ),
            (
                json!({"id":"/b","networks":[{"mode":"container/bridge"}],"container":{"docker":{"image":"i"},
                    "portMappings":[{"containerPort":80,"hostPort":0},{"containerPort":81,"hostPort":6000}]}}),
                vec![(6000, "/container/portMappings(1)/hostPort")],
            ),
            // Legacy docker.portMappings are normalised first.
            (
                json!({"id":"/b","container":{"type":"DOCKER","docker":{"image":"i","network":"BRIDGE",
                    "portMappings":[{"containerPort":80,"hostPort":6001}]}}}),
                vec![(6001, "/container/portMappings(0)/hostPort")],
            ),
        ];
        for (input, want) in cases {
            let got = required_host_ports(&app(input.clone()));
            let want: Vec<(u16, String)> = want.into_iter().map(|(p, s)| (p, s.into())).collect();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn held_ports_skip_the_changed_app_killing_tasks_and_deleted_apps() {
        use marathon::TaskState::*;
        let apps = [
            app(
                json!({"id":"/other","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5000}]}),
            ),
            app(
                json!({"id":"/self","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5001}]}),
            ),
            app(json!({"id":"/dyn","cmd":"x"})),
        ];
        let tasks = [
            task("o.1", "/other", Running, &[5000]),
            task("s.1", "/self", Running, &[5001]),
            task("d.1", "/dyn", Staging, &[31000]),
            task("d.2", "/dyn", Killing, &[31001]),
            task("d.3", "/dyn", Killed, &[31002]),
            task("g.1", "/gone", Running, &[31003]),
        ];
        let except: BTreeSet<String> = ["/self".to_string()].into();
        let held = held_ports(&apps, &tasks, &except);
        let want: BTreeMap<u16, Holder> = [
            (5000, Holder::App("/other".into())),
            (
                31000,
                Holder::Task {
                    app_id: "/dyn".into(),
                    task_id: "d.1".into(),
                },
            ),
        ]
        .into();
        assert_eq!(held, want);
    }

    #[test]
    fn fixed_port_decision_table() {
        let held: BTreeMap<u16, Holder> = [
            (5000, Holder::App("/other".into())),
            (
                31000,
                Holder::Task {
                    app_id: "/dyn".into(),
                    task_id: "dyn.instance-1._app.1".into(),
                },
            ),
        ]
        .into();
        let cases: Vec<(serde_json::Value, Vec<(&str, &str)>)> = vec![
            // Free fixed port, one instance: accepted.
            (json!({"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5001}]}), vec![]),
            // Not required: port 5000 is only a service port.
            (json!({"id":"/a","cmd":"x","instances":3,"portDefinitions":[{"port":5000}]}), vec![]),
            // Dynamic host ports never conflict, whatever the instances.
            (json!({"id":"/a","cmd":"x","instances":5,"requirePorts":true,"portDefinitions":[]}), vec![]),
            (
                json!({"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5001},{"port":5000}]}),
                vec![("/portDefinitions(1)/port", "host port 5000 is already reserved on this node by app '/other'")],
            ),
            (
                json!({"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":31000}]}),
                vec![("/portDefinitions(0)/port", "host port 31000 is already reserved on this node by task 'dyn.instance-1._app.1' of app '/dyn'")],
            ),
            (
                json!({"id":"/a","cmd":"x","instances":2,"requirePorts":true,"portDefinitions":[{"port":5001}]}),
                vec![("/instances", "got 2, but an app with fixed host ports (5001) can run at most 1 instance on this single-node manager")],
            ),
            (
                json!({"id":"/b","instances":3,"networks":[{"mode":"container/bridge"}],"container":{"docker":{"image":"i"},
                    "portMappings":[{"containerPort":80,"hostPort":5000},{"containerPort":81,"hostPort":5002}]}}),
                vec![
                    ("/container/portMappings(0)/hostPort", "host port 5000 is already reserved on this node by app '/other'"),
                    ("/instances", "got 3, but an app with fixed host ports (5000, 5002) can run at most 1 instance on this single-node manager"),
                ],
            ),
            // Bridge with dynamic host ports only: any number of instances.
            (
                json!({"id":"/b","instances":3,"networks":[{"mode":"container/bridge"}],"container":{"docker":{"image":"i"},
                    "portMappings":[{"containerPort":5000,"hostPort":0}]}}),
                vec![],
            ),
        ];
        for (input, want) in cases {
            let got: Vec<(String, Vec<String>)> = fixed_port_violations(&app(input.clone()), &held)
                .into_iter()
                .map(|v| (v.path, v.errors))
                .collect();
            let want: Vec<(String, Vec<String>)> = want
                .into_iter()
                .map(|(p, e)| (p.to_string(), vec![e.to_string()]))
                .collect();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn batch_items_conflict_with_each_other_and_paths_carry_the_index() {
        let mut state = crate::state::State::default();
        let existing =
            app(json!({"id":"/x","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5000}]}));
        state.apps.insert(existing.id.clone(), existing.clone());
        // The same app keeping its own port: no conflict with itself.
        assert_eq!(
            check_fixed_ports(&state, &[&existing], false).ok(),
            Some(())
        );
        let a =
            app(json!({"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5001}]}));
        let b =
            app(json!({"id":"/b","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5001}]}));
        // As the API answers it.
        let err = ApiError::from(check_fixed_ports(&state, &[&a, &b], true).unwrap_err());
        assert_eq!(
            err.body(),
            json!({"message":"Object is not valid","details":[{"path":"/1/portDefinitions(0)/port",
                "errors":["host port 5001 is already reserved on this node by app '/a'"]}]})
        );
        // /x moving off 5000 frees it for another item of the same batch.
        let x2 =
            app(json!({"id":"/x","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5002}]}));
        let c =
            app(json!({"id":"/c","cmd":"x","requirePorts":true,"portDefinitions":[{"port":5000}]}));
        assert_eq!(check_fixed_ports(&state, &[&x2, &c], true).ok(), Some(()));
        let err = ApiError::from(check_fixed_ports(&state, &[&c], false).unwrap_err());
        assert_eq!(
            err.status_code(),
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
