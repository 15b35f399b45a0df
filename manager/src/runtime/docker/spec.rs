//! From a [`LaunchSpec`] to the Docker API's create-container request. Pure.

use std::collections::{BTreeMap, HashMap};

use bollard::container::Config;
use bollard::models::{HostConfig, PortBinding as DockerPortBinding};

use super::params::apply_parameters;
use crate::runtime::{DockerNetwork, DockerSpec, LaunchSpec};

/// Label of every container the manager creates: the task id.
pub const LABEL_TASK_ID: &str = "mdo.task-id";
/// Label: the app id of the task.
pub const LABEL_APP_ID: &str = "mdo.app-id";
/// Label: the manager's identity (`/mdo/manager/meta/manager-id`); only
/// containers with our value are ever adopted or removed.
pub const LABEL_MANAGER: &str = "mdo.manager";
/// Label: the app version the container was created from.
pub const LABEL_APP_VERSION: &str = "mdo.app-version";

/// Knobs of the manager that shape every container.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanOptions {
    pub allow_privileged: bool,
    /// Also cap CPU time (NanoCpus) instead of only weighting it (CpuShares).
    pub cpu_hard_limit: bool,
}

/// A create-container request, ready for bollard.
#[derive(Debug)]
pub(crate) struct ContainerPlan {
    pub name: String,
    pub config: Config<String>,
}

/// `mdo-<task id>` with anything Docker rejects in a name replaced by `_`.
pub(crate) fn container_name(task_id: &str) -> String {
    let safe: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("mdo-{safe}")
}

pub(crate) fn container_plan(
    spec: &LaunchSpec,
    docker: &DockerSpec,
    manager_id: &str,
    opts: PlanOptions,
) -> Result<ContainerPlan, String> {
    let mut config = Config::<String> {
        image: Some(docker.image.clone()),
        ..Default::default()
    };
    let mut host = HostConfig::default();

    // Marathon over Docker (the Mesos docker executor): `cmd` runs through
    // the shell as the entrypoint; `args` replace the image's CMD and keep
    // its ENTRYPOINT; neither leaves the image's defaults.
    if let Some(cmd) = docker.cmd.as_deref().filter(|c| !c.trim().is_empty()) {
        config.entrypoint = Some(vec!["/bin/sh".into()]);
        config.cmd = Some(vec!["-c".into(), cmd.to_string()]);
    } else if !docker.args.is_empty() {
        config.cmd = Some(docker.args.clone());
    }

    config.env = Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect());
    config.labels = Some(docker.labels.clone().into_iter().collect());

    // Resources: memory is a hard limit with no extra swap (so an OOM is an
    // OOM); CPU is a weight like Mesos' default, optionally a hard cap.
    if spec.mem_mib > 0.0 {
        let bytes = (spec.mem_mib * 1024.0 * 1024.0).round() as i64;
        host.memory = Some(bytes);
        host.memory_swap = Some(bytes);
    }
    if spec.cpus > 0.0 {
        host.cpu_shares = Some(((spec.cpus * 1024.0).round() as i64).max(2));
        if opts.cpu_hard_limit {
            host.nano_cpus = Some((spec.cpus * 1e9).round() as i64);
        }
    }
    config.stop_timeout = Some(i64::try_from(spec.kill_grace.as_secs().max(1)).unwrap_or(i64::MAX));

    host.privileged = Some(docker.privileged);
    host.binds = Some(
        docker
            .volumes
            .iter()
            .map(|v| {
                let mode = if v.read_only { "ro" } else { "rw" };
                format!("{}:{}:{mode}", v.host_path, v.container_path)
            })
            .collect(),
    );

    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    match &docker.network {
        DockerNetwork::Host => host.network_mode = Some("host".into()),
        DockerNetwork::Bridge | DockerNetwork::User(_) => {
            host.network_mode = Some(match &docker.network {
                DockerNetwork::User(name) => name.clone(),
                _ => "bridge".into(),
            });
            for port in &docker.ports {
                let container_port = match (port.container_port, port.host_port) {
                    (0, Some(h)) => h,
                    (0, None) => {
                        return Err(
                            "a port mapping has neither a container port nor a host port".into(),
                        )
                    }
                    (c, _) => c,
                };
                for proto in port
                    .protocol
                    .split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                {
                    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(format!("unsupported port protocol '{proto}'"));
                    }
                    let key = format!("{container_port}/{proto}");
                    exposed.insert(key.clone(), HashMap::new());
                    if let Some(h) = port.host_port {
                        bindings
                            .entry(key)
                            .or_insert_with(|| Some(Vec::new()))
                            .get_or_insert_with(Vec::new)
                            .push(DockerPortBinding {
                                host_ip: None,
                                host_port: Some(h.to_string()),
                            });
                    }
                }
            }
        }
    }
    if !exposed.is_empty() {
        config.exposed_ports = Some(exposed);
    }
    if !bindings.is_empty() {
        host.port_bindings = Some(bindings);
    }

    apply_parameters(&docker.parameters, &mut config, &mut host).map_err(|e| e.join("; "))?;

    if host.privileged == Some(true) && !opts.allow_privileged {
        return Err("privileged containers are not allowed on this manager (start it with privileged containers allowed)".into());
    }

    // Our labels last: nothing the app says can hide a container from us.
    let labels = config.labels.get_or_insert_with(HashMap::new);
    let ours: BTreeMap<&str, &str> = [
        (LABEL_TASK_ID, spec.task_id.as_str()),
        (LABEL_APP_ID, spec.app_id.as_str()),
        (LABEL_MANAGER, manager_id),
        (LABEL_APP_VERSION, spec.app_version.as_str()),
    ]
    .into_iter()
    .collect();
    for (k, v) in ours {
        labels.insert(k.to_string(), v.to_string());
    }

    config.host_config = Some(host);
    Ok(ContainerPlan {
        name: container_name(&spec.task_id),
        config,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runtime::{PortBinding, VolumeMount, Workload};

    fn spec(docker: DockerSpec) -> (LaunchSpec, DockerSpec) {
        let launch = LaunchSpec {
            task_id: "dev_web.instance-1._app.1".into(),
            app_id: "/dev/web".into(),
            app_version: "2026-11-22T10:00:00.000Z".into(),
            env: [("A".to_string(), "1".to_string())].into_iter().collect(),
            cpus: 0.5,
            mem_mib: 64.0,
            kill_grace: Duration::from_secs(3),
            workload: Workload::Docker(docker.clone()),
        };
        (launch, docker)
    }

    fn docker() -> DockerSpec {
        DockerSpec::bridged("img:1")
    }

    const OPTS: PlanOptions = PlanOptions {
        allow_privileged: false,
        cpu_hard_limit: false,
    };

    #[test]
    fn names_are_sanitised() {
        assert_eq!(
            container_name("a_b.instance-1._app.1"),
            "mdo-a_b.instance-1._app.1"
        );
        assert_eq!(container_name("a/b c"), "mdo-a_b_c");
    }

    #[test]
    fn command_modes_follow_marathon() {
        type Row<'a> = (
            Option<&'a str>,
            Vec<&'a str>,
            Option<Vec<&'a str>>,
            Option<Vec<&'a str>>,
        );
        let table: [Row; 3] = [
            (
                Some("echo hi"),
                vec![],
                Some(vec!["/bin/sh"]),
                Some(vec!["-c", "echo hi"]),
            ),
            (None, vec!["httpd", "-f"], None, Some(vec!["httpd", "-f"])),
            (None, vec![], None, None),
        ];
        for (cmd, args, entry, command) in table {
            let mut d = docker();
            d.cmd = cmd.map(str::to_string);
            d.args = args.iter().map(|s| s.to_string()).collect();
            let (l, d) = spec(d);
            let plan = container_plan(&l, &d, "m1", OPTS).unwrap();
            let own = |v: Option<Vec<&str>>| {
                v.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
            };
            assert_eq!(plan.config.entrypoint, own(entry), "{cmd:?} {args:?}");
            assert_eq!(plan.config.cmd, own(command), "{cmd:?} {args:?}");
        }
    }

    #[test]
    fn bridge_ports_labels_limits_and_volumes() {
        let mut d = docker();
        d.ports = vec![
            PortBinding {
                host_port: Some(31000),
                container_port: 80,
                protocol: "tcp".into(),
            },
            PortBinding {
                host_port: Some(31001),
                container_port: 0,
                protocol: "udp,tcp".into(),
            },
            PortBinding {
                host_port: None,
                container_port: 9000,
                protocol: "tcp".into(),
            },
        ];
        d.volumes = vec![VolumeMount {
            host_path: "/h".into(),
            container_path: "/c".into(),
            read_only: true,
        }];
        d.labels.insert("mdo.manager".into(), "spoofed".into());
        d.labels.insert("team".into(), "core".into());
        let (l, d) = spec(d);
        let plan = container_plan(&l, &d, "m1", OPTS).unwrap();
        let host = plan.config.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        let b = host.port_bindings.as_ref().unwrap();
        let hp = |k: &str| b[k].as_ref().unwrap()[0].host_port.clone().unwrap();
        assert_eq!(hp("80/tcp"), "31000");
        assert_eq!(hp("31001/udp"), "31001");
        assert_eq!(hp("31001/tcp"), "31001");
        assert!(!b.contains_key("9000/tcp"));
        assert!(plan
            .config
            .exposed_ports
            .as_ref()
            .unwrap()
            .contains_key("9000/tcp"));
        let labels = plan.config.labels.as_ref().unwrap();
        assert_eq!(labels["mdo.manager"], "m1");
        assert_eq!(labels["mdo.task-id"], "dev_web.instance-1._app.1");
        assert_eq!(labels["mdo.app-id"], "/dev/web");
        assert_eq!(labels["mdo.app-version"], "2026-11-22T10:00:00.000Z");
        assert_eq!(labels["team"], "core");
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.nano_cpus, None);
        assert_eq!(host.binds, Some(vec!["/h:/c:ro".to_string()]));
        assert_eq!(plan.config.env, Some(vec!["A=1".to_string()]));
        assert_eq!(plan.name, "mdo-dev_web.instance-1._app.1");
    }

    #[test]
    fn host_and_user_networks() {
        let mut d = docker();
        d.network = DockerNetwork::Host;
        d.ports = vec![PortBinding {
            host_port: Some(31000),
            container_port: 0,
            protocol: "tcp".into(),
        }];
        let (l, d) = spec(d);
        let plan = container_plan(&l, &d, "m1", OPTS).unwrap();
        let host = plan.config.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert!(host.port_bindings.is_none());

        let mut d = docker();
        d.network = DockerNetwork::User("backend".into());
        let (l, d) = spec(d);
        let plan = container_plan(&l, &d, "m1", OPTS).unwrap();
        assert_eq!(
            plan.config.host_config.unwrap().network_mode.as_deref(),
            Some("backend")
        );
    }

    #[test]
    fn privileged_needs_permission() {
        for (flag, param, allowed, ok) in [
            (true, false, false, false),
            (false, true, false, false),
            (true, false, true, true),
            (false, false, false, true),
        ] {
            let mut d = docker();
            d.privileged = flag;
            if param {
                d.parameters = vec![("privileged".into(), "true".into())];
            }
            let (l, d) = spec(d);
            let opts = PlanOptions {
                allow_privileged: allowed,
                cpu_hard_limit: false,
            };
            assert_eq!(
                container_plan(&l, &d, "m1", opts).is_ok(),
                ok,
                "{flag} {param} {allowed}"
            );
        }
    }

    #[test]
    fn parameters_override_and_bad_ones_fail() {
        let mut d = docker();
        d.parameters = vec![
            ("env".into(), "A=2".into()),
            ("memory-swap".into(), "-1".into()),
        ];
        let (l, d) = spec(d);
        let plan = container_plan(&l, &d, "m1", OPTS).unwrap();
        assert_eq!(plan.config.env, Some(vec!["A=2".to_string()]));
        assert_eq!(plan.config.host_config.unwrap().memory_swap, Some(-1));

        let mut d = docker();
        d.parameters = vec![("bogus".into(), "x".into())];
        let (l, d) = spec(d);
        assert!(container_plan(&l, &d, "m1", OPTS)
            .unwrap_err()
            .contains("bogus"));
    }
}
