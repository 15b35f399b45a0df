//! Command-line and environment configuration of the manager, parsed and
//! validated before anything binds. Nothing below `main` reads the
//! environment: tests build [`Config`] values directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// When to use the Docker runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DockerMode {
    /// Use Docker when the engine answers at start.
    Auto,
    /// Require Docker: fail to start without it.
    On,
    /// Never use Docker (DOCKER apps wait in the queue).
    Off,
}

pub use daemon::LogFormat;

/// The manager's command line (every flag also reads an environment variable).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "manager",
    version,
    about = "mdo's built-in, Marathon-compatible manager"
)]
pub struct Cli {
    /// Address the Marathon API listens on.
    #[arg(long, env = "MANAGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// etcd endpoints, credentials and TLS (the same flags in every binary).
    #[command(flatten)]
    pub etcd: daemon::EtcdArgs,
    /// etcd key prefix of the manager's own state (apps, versions, tasks, deployments).
    #[arg(long, env = "MANAGER_INTERNAL_PREFIX", default_value = "/mdo/manager")]
    pub internal_prefix: String,
    /// Versions kept per app (1-1000, like Marathon's max_versions): each
    /// change stores a version and drops the oldest beyond this, in the same
    /// etcd transaction.
    #[arg(long, env = "MANAGER_MAX_VERSIONS", default_value_t = crate::state_store::DEFAULT_MAX_VERSIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_VERSIONS_LIMIT))]
    pub max_versions: u64,
    /// Name of this node: the tasks' `slaveId` (the registry record's `node`), the
    /// `hostname` constraint attribute, `/v2/nodes` and `/v2/info`; default: the
    /// machine's hostname. (The tasks' `host` is --advertise-address.)
    #[arg(long, env = "MANAGER_NODE_NAME")]
    pub node_name: Option<String>,
    /// Address other containers use to reach published ports (CONTAINER_HOST_ADDRESS, HOST).
    #[arg(long, env = "MANAGER_ADVERTISE_ADDRESS", default_value = "127.0.0.1")]
    pub advertise_address: String,
    /// etcd endpoints handed to tasks as ETCD_ENDPOINTS (default:
    /// --etcd-endpoints). MANAGER_CONTAINER_ETCD_ENDPOINTS is also accepted.
    #[arg(long, env = "CONTAINER_ETCD_ENDPOINTS")]
    pub container_etcd_endpoints: Option<String>,
    /// etcd user handed to tasks as ETCD_USER, for reading the registry
    /// (give it a read-only role on the registry prefix). Default: none.
    #[arg(long, env = "MANAGER_CONTAINER_ETCD_USER")]
    pub container_etcd_user: Option<String>,
    /// Password of --container-etcd-user, handed to tasks as ETCD_PASSWORD.
    /// Never logged; prefer the environment variable to the flag.
    #[arg(long, env = "MANAGER_CONTAINER_ETCD_PASSWORD", hide_env_values = true)]
    pub container_etcd_password: Option<String>,
    /// Host port range for dynamic task ports, `MIN-MAX` inclusive.
    #[arg(long, env = "MANAGER_PORT_RANGE", default_value = "31000-32000")]
    pub port_range: String,
    /// Directory for runtime state and task logs.
    #[arg(long, env = "MANAGER_DATA_DIR", default_value = "/tmp/mdo-manager")]
    pub data_dir: PathBuf,
    /// Docker runtime: auto (when the engine answers), on, off.
    #[arg(long, env = "MANAGER_DOCKER", value_enum, default_value = "auto")]
    pub docker: DockerMode,
    /// The Docker engine's socket: a path or `unix:///path` (`tcp://host:port`
    /// works too). Default: DOCKER_HOST, else /var/run/docker.sock.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_socket: Option<String>,
    /// containerd's socket, followed for container exits as soon as they
    /// happen (Docker's own `die` event comes 15-50 ms later): `auto` (the
    /// engine's containerd under /run/docker/containerd, else
    /// /run/containerd, when the engine is local), `off`, or a path.
    #[arg(long, env = "MANAGER_CONTAINERD_SOCKET", default_value = "auto")]
    pub containerd_socket: String,
    /// Allow apps to reach into the host: privileged containers, the Docker
    /// parameters cap-add, device, security-opt (but no-new-privileges),
    /// volumes-from and pid/ipc/uts/userns/network set to host or
    /// container:<name>, and host-path volumes of protected paths (/, the
    /// Docker socket, /etc, /proc, /sys, /dev, /boot, /root, --data-dir,
    /// --protected-host-paths, what is below them and the folders above
    /// them). Without it such apps get 422. Alias: --allow-privileged.
    #[arg(
        long,
        visible_alias = "allow-privileged",
        env = "MANAGER_ALLOW_HOST_ACCESS",
        value_parser = daemon::parse_bool
    )]
    pub allow_host_access: bool,
    /// More host paths apps may not mount without --allow-host-access, comma
    /// separated or repeated (e.g. etcd's data folder).
    #[arg(long, env = "MANAGER_PROTECTED_HOST_PATHS", value_delimiter = ',')]
    pub protected_host_paths: Vec<PathBuf>,
    /// Seconds between announcing TASK_KILLING and stopping a task, so
    /// registries drop the instance before it stops answering.
    #[arg(long, env = "MANAGER_DRAIN_DELAY", default_value_t = 1)]
    pub drain_delay: u64,
    /// Node attribute for constraints, `key=value` (repeatable or comma separated).
    #[arg(long, env = "MANAGER_NODE_ATTRIBUTE", value_delimiter = ',')]
    pub node_attribute: Vec<String>,
    /// Bearer token required on every route except /ping and /health.
    #[arg(long, env = "MDO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    #[command(flatten)]
    pub log: daemon::LogArgs,
    /// Largest accepted request body, in bytes (larger -> 413). Also
    /// accepted: --max-body, MANAGER_MAX_BODY.
    #[arg(long, visible_alias = "max-body", env = "MANAGER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Node CPUs offered to tasks (default: what the runtime reports).
    #[arg(long, env = "MANAGER_NODE_CPUS")]
    pub node_cpus: Option<f64>,
    /// Node memory in MiB offered to tasks (default: what the runtime reports).
    #[arg(long, env = "MANAGER_NODE_MEM")]
    pub node_mem: Option<f64>,
    /// Upper bound, in seconds (1-300), on the whole shutdown after SIGTERM
    /// or SIGINT. Open /v2/events streams end at once; in-flight requests and
    /// work get the rest of this time, then remaining connections are closed
    /// and the manager exits 0. Tasks keep running: the next manager on the
    /// same etcd state adopts them.
    #[arg(long, env = "MANAGER_SHUTDOWN_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SHUTDOWN_TIMEOUT_SECS))]
    pub shutdown_timeout: u64,
    /// Event callback targets allowed although refused by default (comma
    /// separated or repeated): CIDRs (`169.254.0.0/16`, `fe80::/10`),
    /// addresses, or host names (allowed whatever they resolve to).
    /// Refused by default: link-local and metadata addresses and the
    /// manager's own etcd endpoints.
    #[arg(long, env = "MANAGER_CALLBACK_ALLOW", value_delimiter = ',')]
    pub callback_allow: Vec<String>,
    /// Most event callback URLs (`/v2/eventSubscriptions`) subscribed at
    /// once; one more gets 422.
    #[arg(long, env = "MANAGER_MAX_EVENT_SUBSCRIPTIONS",
          default_value_t = crate::events::DEFAULT_MAX_SUBSCRIPTIONS as u64,
          value_parser = clap::value_parser!(u64).range(0..=MAX_EVENT_SUBSCRIPTIONS_LIMIT))]
    pub max_event_subscriptions: u64,
    /// Most event callback POSTs in flight at once on one plain `http`
    /// callback URL's connection (HTTP/1.1 pipelining; responses are read in
    /// order). 1 sends one at a time.
    #[arg(long, env = "MANAGER_CALLBACK_PIPELINE",
          default_value_t = crate::events::DEFAULT_CALLBACK_PIPELINE as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CALLBACK_PIPELINE))]
    pub callback_pipeline: u64,
}

/// Largest accepted `--callback-pipeline`.
pub const MAX_CALLBACK_PIPELINE: u64 = 1024;

/// Largest accepted `--max-event-subscriptions`.
pub const MAX_EVENT_SUBSCRIPTIONS_LIMIT: u64 = 10_000;

/// Largest accepted `--max-versions`.
pub const MAX_VERSIONS_LIMIT: u64 = 1000;

/// Largest accepted `--shutdown-timeout`, seconds.
pub const MAX_SHUTDOWN_TIMEOUT_SECS: u64 = 300;

/// The etcd user and password handed to tasks. `Debug` never shows the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerEtcdAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ContainerEtcdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerEtcdAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// etcd endpoints, user/password and TLS; the key prefix used is
    /// [`Config::internal_prefix`].
    pub etcd: registry::Settings,
    pub internal_prefix: String,
    /// Versions kept per app (see `--max-versions`).
    pub max_versions: usize,
    pub node_name: String,
    pub advertise_address: String,
    pub container_etcd_endpoints: String,
    /// Whether `--container-etcd-endpoints` was given (else loopback
    /// endpoints are rewritten to the Docker bridge gateway for containers
    /// with their own network).
    pub container_etcd_endpoints_explicit: bool,
    /// User and password handed to tasks (ETCD_USER / ETCD_PASSWORD).
    pub container_etcd_auth: Option<ContainerEtcdAuth>,
    pub port_range: (u16, u16),
    pub data_dir: PathBuf,
    pub docker: DockerMode,
    /// `--docker-socket` (None: bollard's defaults).
    pub docker_socket: Option<String>,
    /// `--containerd-socket`, resolved (None: off, or auto found none).
    pub containerd_socket: Option<PathBuf>,
    /// `--allow-host-access` (see [`crate::validation::Limits`]).
    pub allow_host_access: bool,
    /// `--protected-host-paths` (absolute).
    pub protected_host_paths: Vec<PathBuf>,
    /// Delay between TASK_KILLING and the actual stop (see `--drain-delay`).
    pub drain_delay: Duration,
    /// Bound on the whole shutdown (see `--shutdown-timeout`).
    pub shutdown_timeout: Duration,
    pub node_attributes: BTreeMap<String, String>,
    pub auth_token: Option<String>,
    pub log_format: LogFormat,
    pub max_body: usize,
    pub node_cpus: Option<f64>,
    pub node_mem: Option<f64>,
    /// Service port range (Marathon's local_port_min/max).
    pub service_port_range: (u16, u16),
    /// Interval of the reconcile loop's safety tick.
    pub reconcile_interval: Duration,
    /// `--callback-allow` entries (validated).
    pub callback_allow: Vec<String>,
    /// `--max-event-subscriptions`.
    pub max_event_subscriptions: usize,
    /// `--callback-pipeline`.
    pub callback_pipeline: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// A config for tests: listen on 127.0.0.1:0, these etcd endpoints.
    pub fn for_tests(etcd_endpoint: &str, data_dir: PathBuf) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            etcd: registry::Settings::new([etcd_endpoint.to_string()]),
            internal_prefix: "/mdo/manager".into(),
            max_versions: crate::state_store::DEFAULT_MAX_VERSIONS,
            node_name: "node-1".into(),
            advertise_address: "127.0.0.1".into(),
            container_etcd_endpoints: etcd_endpoint.to_string(),
            container_etcd_endpoints_explicit: false,
            container_etcd_auth: None,
            port_range: (31000, 32000),
            data_dir,
            docker: DockerMode::Off,
            docker_socket: None,
            containerd_socket: None,
            allow_host_access: false,
            protected_host_paths: Vec::new(),
            drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(10),
            node_attributes: BTreeMap::new(),
            auth_token: None,
            log_format: LogFormat::Text,
            max_body: 1024 * 1024,
            node_cpus: None,
            node_mem: None,
            service_port_range: (10000, 20000),
            reconcile_interval: Duration::from_millis(500),
            callback_allow: Vec::new(),
            max_event_subscriptions: crate::events::DEFAULT_MAX_SUBSCRIPTIONS,
            callback_pipeline: crate::events::DEFAULT_CALLBACK_PIPELINE,
        }
    }
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Config, ConfigError> {
        let listen: SocketAddr = cli
            .listen
            .parse()
            .map_err(|_| ConfigError(format!("--listen {:?} is not host:port", cli.listen)))?;
        if !cli.internal_prefix.starts_with('/') {
            return Err(ConfigError("--internal-prefix must start with '/'".into()));
        }
        let etcd = cli
            .etcd
            .settings(&cli.internal_prefix)
            .map_err(|e| ConfigError(format!("etcd settings: {e}")))?;
        let endpoints = etcd.endpoints.join(",");
        let container_etcd_endpoints_explicit = cli.container_etcd_endpoints.is_some();
        let container_etcd_endpoints = match cli.container_etcd_endpoints {
            Some(c) => registry::parse_endpoints(&c)
                .map_err(|e| ConfigError(format!("--container-etcd-endpoints: {e}")))?
                .join(","),
            None => endpoints.clone(),
        };
        let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let container_etcd_auth = match (
            nonempty(cli.container_etcd_user),
            nonempty(cli.container_etcd_password),
        ) {
            (Some(user), Some(password)) => Some(ContainerEtcdAuth { user, password }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError(
                    "--container-etcd-user needs --container-etcd-password (or MANAGER_CONTAINER_ETCD_PASSWORD)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "--container-etcd-password was given without --container-etcd-user".into(),
                ))
            }
        };
        let port_range = parse_range(&cli.port_range).ok_or_else(|| {
            ConfigError(format!("--port-range {:?} is not MIN-MAX", cli.port_range))
        })?;
        let mut node_attributes = BTreeMap::new();
        for attr in cli.node_attribute.iter().filter(|a| !a.trim().is_empty()) {
            let (k, v) = attr.split_once('=').ok_or_else(|| {
                ConfigError(format!("--node-attribute {attr:?} is not key=value"))
            })?;
            node_attributes.insert(k.trim().to_string(), v.trim().to_string());
        }
        let node_name = cli
            .node_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "localhost".into())
            });
        let data_dir = absolute_data_dir(&cli.data_dir)?;
        let protected_host_paths = cli
            .protected_host_paths
            .into_iter()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| {
                if p.is_absolute() {
                    Ok(p)
                } else {
                    Err(ConfigError(format!(
                        "--protected-host-paths {}: must be an absolute path",
                        p.display()
                    )))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let docker_socket = cli.docker_socket.filter(|s| !s.trim().is_empty());
        let containerd_socket = match cli.containerd_socket.trim() {
            "auto" | "" => {
                crate::runtime::docker::containerd::detect_socket(docker_socket.as_deref())
            }
            "off" => None,
            path if path.starts_with('/') => Some(PathBuf::from(path)),
            other => {
                return Err(ConfigError(format!(
                    "--containerd-socket {other:?} is not auto, off or an absolute path"
                )))
            }
        };
        Ok(Config {
            listen,
            internal_prefix: etcd.prefix.clone(),
            etcd,
            max_versions: usize::try_from(cli.max_versions).unwrap_or(usize::MAX),
            node_name,
            advertise_address: cli.advertise_address,
            container_etcd_endpoints,
            container_etcd_endpoints_explicit,
            container_etcd_auth,
            port_range,
            data_dir,
            docker: cli.docker,
            docker_socket,
            containerd_socket,
            allow_host_access: cli.allow_host_access,
            protected_host_paths,
            drain_delay: Duration::from_secs(cli.drain_delay),
            shutdown_timeout: Duration::from_secs(cli.shutdown_timeout),
            node_attributes,
            auth_token: cli.auth_token.filter(|t| !t.is_empty()),
            log_format: cli.log.log_format,
            max_body: cli.max_body_bytes,
            node_cpus: cli.node_cpus,
            node_mem: cli.node_mem,
            service_port_range: (10000, 20000),
            reconcile_interval: Duration::from_millis(500),
            callback_allow: checked_callback_allow(cli.callback_allow)?,
            max_event_subscriptions: usize::try_from(cli.max_event_subscriptions)
                .unwrap_or(usize::MAX),
            callback_pipeline: usize::try_from(cli.callback_pipeline).unwrap_or(1),
        })
    }
}

/// `--callback-allow` entries, each a CIDR, an address or a host name.
fn checked_callback_allow(entries: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let entries: Vec<String> = entries
        .into_iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    crate::events::CallbackPolicy::new(&entries, &[])
        .map_err(|e| ConfigError(format!("--callback-allow: {e}")))?;
    Ok(entries)
}

/// `--data-dir` as an absolute, canonical path (created when missing, mode
/// 0700): task processes run in their own directories, so a relative path
/// would resolve against the wrong working directory. Its task markers
/// decide which processes the manager kills, so a folder owned by another
/// user or writable by group or others is refused.
fn absolute_data_dir(dir: &std::path::Path) -> Result<PathBuf, ConfigError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if dir.as_os_str().is_empty() {
        return Err(ConfigError("--data-dir must not be empty".into()));
    }
    let fail = |e: std::io::Error| ConfigError(format!("--data-dir {}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let dir = dir.canonicalize().map_err(fail)?;
    let meta = std::fs::metadata(&dir).map_err(fail)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(ConfigError(format!(
            "--data-dir {} is owned by uid {}, not by this user (uid {me}): use a folder of your own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(ConfigError(format!(
            "--data-dir {} is writable by group or others (mode {:o}): chmod go-w it or use another folder",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(dir)
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("31000-32000"), Some((31000, 32000)));
        assert_eq!(parse_range("5-5"), Some((5, 5)));
        assert_eq!(parse_range("6-5"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn cli_defaults_and_compat() {
        let cli = Cli::parse_from([
            "manager",
            "--etcd-host-address",
            "10.0.0.1",
            "--etcd-port",
            "4001",
        ]);
        let cfg = Config::try_from(cli).unwrap();
        assert_eq!(cfg.etcd.endpoints, vec!["http://10.0.0.1:4001".to_string()]);
        assert_eq!(cfg.etcd.prefix, "/mdo/manager");
        assert_eq!(cfg.internal_prefix, "/mdo/manager");
        assert!(cfg.etcd.auth.is_none() && cfg.etcd.tls.is_none());
        assert_eq!(cfg.max_versions, 50);
        assert_eq!(cfg.container_etcd_endpoints, "http://10.0.0.1:4001");
        assert_eq!(cfg.port_range, (31000, 32000));
        assert!(cfg.data_dir.is_absolute());
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(10));
        let bad = Cli::parse_from(["manager", "--listen", "nope"]);
        assert!(Config::try_from(bad).is_err());
    }

    #[test]
    fn etcd_auth_tls_and_max_versions() {
        let cli = Cli::parse_from([
            "manager",
            "--etcd-endpoints",
            "e1:2379,e2:2379",
            "--etcd-user",
            "mgr",
            "--etcd-password",
            "pw-123",
            "--etcd-ca",
            "/ca.pem",
            "--etcd-cert",
            "/c.pem",
            "--etcd-key",
            "/k.pem",
            "--internal-prefix",
            "/mdo/node-2/",
            "--max-versions",
            "7",
        ]);
        assert!(!format!("{cli:?}").contains("pw-123"));
        let cfg = Config::try_from(cli).unwrap();
        assert_eq!(
            cfg.etcd.endpoints,
            vec!["https://e1:2379", "https://e2:2379"]
        );
        assert_eq!(
            cfg.container_etcd_endpoints,
            "https://e1:2379,https://e2:2379"
        );
        assert_eq!(cfg.etcd.auth, Some(("mgr".into(), "pw-123".into())));
        assert_eq!(cfg.etcd.prefix, "/mdo/node-2");
        assert_eq!(cfg.internal_prefix, "/mdo/node-2");
        assert_eq!(cfg.max_versions, 7);
        for bad in ["0", "1001", "-1", "many"] {
            let err = Cli::try_parse_from(["manager", "--max-versions", bad]).unwrap_err();
            assert!(err.use_stderr(), "{bad}: {err}");
        }
        for bad in [
            &["manager", "--etcd-password", "x"][..],
            &["manager", "--etcd-cert", "/c.pem"],
            &["manager", "--internal-prefix", "/a/../b"],
            &["manager", "--internal-prefix", "mdo"],
        ] {
            let err = Config::try_from(Cli::parse_from(bad))
                .unwrap_err()
                .to_string();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
    }

    #[test]
    fn shutdown_timeout_is_bounded() {
        let cli = Cli::parse_from(["manager", "--shutdown-timeout", "3"]);
        assert_eq!(
            Config::try_from(cli).unwrap().shutdown_timeout,
            Duration::from_secs(3)
        );
        for bad in ["0", "301", "-1", "ten"] {
            let err = Cli::try_parse_from(["manager", "--shutdown-timeout", bad]).unwrap_err();
            assert!(err.use_stderr(), "{bad}: {err}");
        }
    }

    #[test]
    fn relative_data_dir_becomes_absolute_and_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let rel = tmp.path().join("a/../b/data");
        let dir = absolute_data_dir(&rel).unwrap();
        assert!(dir.is_absolute() && dir.is_dir());
        assert_eq!(dir, tmp.path().canonicalize().unwrap().join("b/data"));
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(absolute_data_dir(&file.join("sub")).is_err());
        assert!(absolute_data_dir(std::path::Path::new("")).is_err());
    }

    #[test]
    fn data_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let fresh = absolute_data_dir(&tmp.path().join("new/data")).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        for (bits, ok) in [
            (0o755, true),
            (0o770, false),
            (0o757, false),
            (0o1777, false),
        ] {
            let dir = tmp.path().join(format!("d{bits:o}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).unwrap();
            let got = absolute_data_dir(&dir);
            assert_eq!(got.is_ok(), ok, "{bits:o}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("writable by group or others"), "{e}");
                assert!(!e.to_string().contains('\n'));
            }
        }
        // Owned by someone else (root's / when not root; a nobody-owned
        // folder needs root to make).
        if nix::unistd::geteuid().is_root() {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            let err = absolute_data_dir(&theirs).unwrap_err().to_string();
            assert!(err.contains("owned by uid 65534"), "{err}");
        }
    }

    #[test]
    fn host_access_flag_and_alias() {
        for flag in ["--allow-host-access", "--allow-privileged"] {
            let cfg = Config::try_from(Cli::parse_from(["manager", flag])).unwrap();
            assert!(cfg.allow_host_access, "{flag}");
        }
        let cfg = Config::try_from(Cli::parse_from([
            "manager",
            "--protected-host-paths",
            "/var/lib/etcd,/srv/secrets",
        ]))
        .unwrap();
        assert!(!cfg.allow_host_access);
        assert_eq!(
            cfg.protected_host_paths,
            vec![
                PathBuf::from("/var/lib/etcd"),
                PathBuf::from("/srv/secrets")
            ]
        );
        let bad = Cli::parse_from(["manager", "--protected-host-paths", "rel/path"]);
        assert!(Config::try_from(bad).is_err());
    }

    #[test]
    fn callback_allow_and_subscription_cap() {
        let cfg = Config::try_from(Cli::parse_from(["manager"])).unwrap();
        assert!(cfg.callback_allow.is_empty());
        assert_eq!(cfg.max_event_subscriptions, 100);
        assert_eq!(cfg.callback_pipeline, 32);
        let cfg = Config::try_from(Cli::parse_from([
            "manager",
            "--callback-allow",
            "169.254.0.0/16, fe80::/10,metadata.internal",
            "--callback-allow",
            "127.0.0.1",
            "--max-event-subscriptions",
            "3",
            "--callback-pipeline",
            "1",
        ]))
        .unwrap();
        assert_eq!(
            cfg.callback_allow,
            [
                "169.254.0.0/16",
                "fe80::/10",
                "metadata.internal",
                "127.0.0.1"
            ]
        );
        assert_eq!(cfg.max_event_subscriptions, 3);
        assert_eq!(cfg.callback_pipeline, 1);
        for bad in ["10.0.0.0/33", "not a host", "1.2.3.4/x"] {
            let err = Config::try_from(Cli::parse_from(["manager", "--callback-allow", bad]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("--callback-allow"), "{bad}: {err}");
        }
        for bad in ["-1", "10001", "many"] {
            let err =
                Cli::try_parse_from(["manager", "--max-event-subscriptions", bad]).unwrap_err();
            assert!(err.use_stderr(), "{bad}: {err}");
        }
        for bad in ["0", "1025", "-1"] {
            let err = Cli::try_parse_from(["manager", "--callback-pipeline", bad]).unwrap_err();
            assert!(err.use_stderr(), "{bad}: {err}");
        }
    }
}
