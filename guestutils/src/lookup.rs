//! Pure lookups over registry records (maestro-ng's formatting rules).

use registry::{Instance, Port};
use tracing::warn;

use crate::error::{Error, Result};

/// Which side of a port mapping a lookup answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The host side, where peers connect (maestro's `get_specific_port`).
    External,
    /// The container side, where the service listens
    /// (maestro's `get_specific_exposed_port`).
    Exposed,
}

impl Side {
    /// This side's number of `port`.
    pub fn of(self, port: &Port) -> u16 {
        match self {
            Side::External => port.external,
            Side::Exposed => port.exposed,
        }
    }
}

/// Instances usable by peers: carrying every label in `labels`, not
/// reported unhealthy (`healthy: false`), sorted by container name.
pub fn select<'a, S: AsRef<str>>(
    instances: impl IntoIterator<Item = &'a Instance>,
    labels: &[S],
) -> Vec<&'a Instance> {
    let mut out: Vec<&Instance> = instances
        .into_iter()
        .filter(|i| i.healthy != Some(false) && i.has_labels(labels))
        .collect();
    out.sort_by(|a, b| a.container.cmp(&b.container));
    out
}

/// A port by name: exact, else case-insensitive (Marathon upper-cases
/// names in `PORT_<NAME>`, users often ask in lower case).
pub fn find_port<'a>(instance: &'a Instance, name: &str) -> Option<&'a Port> {
    instance.ports.get(name).or_else(|| {
        instance
            .ports
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, p)| p)
    })
}

/// Port `name` of `instance` on `side`, else `default`; an error naming the
/// container when neither is there.
pub fn port_or_default(
    instance: &Instance,
    name: &str,
    side: Side,
    default: Option<u16>,
) -> Result<u16> {
    match (find_port(instance, name), default) {
        (Some(p), _) => Ok(side.of(p)),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(Error::UnknownPort {
            service: instance.service.clone(),
            container: instance.container.clone(),
            port: name.to_string(),
        }),
    }
}

/// maestro's node list: `host[:port1[:port2...]]` with external ports,
/// sorted by container name, filtered by labels. An instance lacking one of
/// the requested ports is left out (and logged).
pub fn node_list<'a, P: AsRef<str>, L: AsRef<str>>(
    instances: impl IntoIterator<Item = &'a Instance>,
    ports: &[P],
    labels: &[L],
) -> Vec<String> {
    let mut out = Vec::new();
    'instances: for instance in select(instances, labels) {
        let mut node = instance.host.clone();
        for name in ports {
            match find_port(instance, name.as_ref()) {
                Some(p) => {
                    node.push(':');
                    node.push_str(&p.external.to_string());
                }
                None => {
                    warn!(
                        container = %instance.container,
                        port = name.as_ref(),
                        "instance has no such port, left out of the node list"
                    );
                    continue 'instances;
                }
            }
        }
        out.push(node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(container: &str, host: &str, labels: &[&str], ports: &[(&str, u16, u16)]) -> Instance {
        let group = registry::naming::group_from_labels(labels);
        Instance {
            host: host.into(),
            ports: testkit::records::ports(ports),
            ..testkit::records::instance("web", &group, container)
        }
    }

    #[test]
    fn node_lists() {
        let mut unhealthy = inst("t0", "h0", &[], &[("api", 1, 2)]);
        unhealthy.healthy = Some(false);
        let mut healthy = inst("t5", "h5", &["dev"], &[("api", 51, 5000)]);
        healthy.healthy = Some(true);
        let all = vec![
            inst("t3", "h3", &["dev"], &[("api", 31, 5000), ("ssh", 32, 22)]),
            inst(
                "t1",
                "h1",
                &["dev", "eu"],
                &[("api", 11, 5000), ("ssh", 12, 22)],
            ),
            inst("t2", "h2", &["prod"], &[("api", 21, 5000)]),
            unhealthy,
            healthy,
        ];
        let none: [&str; 0] = [];
        let cases: Vec<(Vec<&str>, Vec<&str>, Vec<&str>)> = vec![
            (vec![], vec![], vec!["h1", "h2", "h3", "h5"]),
            (
                vec!["api"],
                vec![],
                vec!["h1:11", "h2:21", "h3:31", "h5:51"],
            ),
            (vec!["api", "ssh"], vec![], vec!["h1:11:12", "h3:31:32"]),
            (
                vec!["ssh", "api"],
                vec!["dev"],
                vec!["h1:12:11", "h3:32:31"],
            ),
            (vec!["API"], vec!["dev", "eu"], vec!["h1:11"]),
            (vec![], vec!["nope"], vec![]),
        ];
        for (ports, labels, expected) in cases {
            assert_eq!(
                node_list(&all, &ports, &labels),
                expected,
                "{ports:?} {labels:?}"
            );
        }
        assert_eq!(node_list(&all, &none, &none).len(), 4);
    }
}
