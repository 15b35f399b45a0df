//! Host port allocation for one task: dynamic ports from the configured
//! range, fixed ports (`requirePorts`, `hostPort`) honoured, conflicts
//! refused. Pure: the caller passes the ports already in use and a probe
//! that says whether the host can bind a port.

use std::collections::BTreeSet;

use marathon::App;

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

/// Whether the host lets us bind this TCP port right now.
pub fn host_can_bind(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
