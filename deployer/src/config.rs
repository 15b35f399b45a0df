//! Command line and environment (clap), resolved into validated settings
//! before anything binds or connects. `main` parses; nothing below reads the
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::parse::Limits;
use crate::translate::TranslateConfig;
use crate::upstream::MarathonConfig;

#[derive(Debug, Parser)]
#[command(
    name = "deployer",
    version,
    about = "Theseus: deploy services from a YAML (or JSON) document through the Marathon API",
    long_about = "Theseus: deploy services from a YAML (or JSON) document through the Marathon API \
(the built-in manager or a real Marathon).\n\nThe document has `deploy:` (service -> spec) and \
`remove:` (service -> {labels}). `serve` runs the HTTP API (POST /deploy, GET /services, GET /); \
apply, render, status and remove talk to the Marathon API directly.",
    after_long_help = spec_fields_help()
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The list of a service spec's fields shown by `deployer --help`, taken
/// from the parser's own list so the two cannot differ.
fn spec_fields_help() -> String {
    format!(
        "Fields of a service spec under `deploy:` (deployer/README.md describes each one; \
examples/everything.yaml uses them all): {}.\n\n`deployer render FILE` prints the Marathon app \
JSON a document becomes.",
        crate::spec::SERVICE_FIELDS.join(", ")
    )
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Marathon API base URL (the built-in manager or a real Marathon). Basic-auth
    /// userinfo in the URL is sent as basic auth. [default: http://127.0.0.1:8080]
    #[arg(long, env = "MARATHON_URL", global = true)]
    pub marathon_url: Option<String>,
    /// Compatibility: Marathon host, used with --marathon-port when --marathon-url is absent.
    #[arg(long, env = "MARATHON_HOST", global = true)]
    pub marathon_host: Option<String>,
    /// Compatibility: Marathon port, used with --marathon-host. [default: 8080]
    #[arg(long, env = "MARATHON_PORT", global = true)]
    pub marathon_port: Option<u16>,
    /// Bearer token sent to the Marathon API.
    #[arg(long, env = "MARATHON_TOKEN", global = true, hide_env_values = true)]
    pub marathon_token: Option<String>,
    /// Timeout of each Marathon API request, in seconds.
    #[arg(long, env = "MARATHON_TIMEOUT", global = true, default_value_t = 30)]
    pub marathon_timeout: u64,
    /// etcd endpoints, comma separated. The deployer itself does not talk to etcd: the
    /// value goes into every app's env as ETCD_ENDPOINTS unless
    /// --container-etcd-endpoints is given. [default: http://127.0.0.1:2379]
    #[arg(long, env = "ETCD_ENDPOINTS", global = true)]
    pub etcd_endpoints: Option<String>,
    /// Compatibility: etcd host, used with --etcd-port when --etcd-endpoints is absent.
    #[arg(long, env = "ETCD_HOST_ADDRESS", global = true)]
    pub etcd_host_address: Option<String>,
    /// Compatibility: etcd client port, used with --etcd-host-address. [default: 2379]
    #[arg(long, env = "ETCD_PORT", global = true)]
    pub etcd_port: Option<u16>,
    /// etcd endpoints as reachable from inside the containers (not loopback for bridge
    /// networking), put into every app's env as ETCD_ENDPOINTS. [default: --etcd-endpoints]
    #[arg(long, env = "CONTAINER_ETCD_ENDPOINTS", global = true)]
    pub container_etcd_endpoints: Option<String>,
    #[command(flatten)]
    pub log: daemon::LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API: POST /deploy, GET /services, GET / (viewer), /health, /metrics.
    Serve(ServeArgs),
    /// Apply a document (file, or - for stdin) through the Marathon API.
    Apply {
        /// The document (YAML or JSON); - reads stdin.
        file: PathBuf,
        /// Wait for the deployments to finish, with a progress bar.
        #[arg(long, env = "DEPLOYER_WAIT", value_parser = daemon::parse_bool)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, env = "DEPLOYER_WAIT_TIMEOUT", default_value_t = 300)]
        wait_timeout: u64,
    },
    /// Print the Marathon app JSON of a document; touches nothing.
    Render {
        /// The document (YAML or JSON); - reads stdin.
        file: PathBuf,
    },
    /// Show the services the Marathon API runs, as a table.
    Status {
        /// Print JSON instead of a table.
        #[arg(long, env = "DEPLOYER_STATUS_JSON", value_parser = daemon::parse_bool)]
        json: bool,
    },
    /// Remove one service's labeled group.
    Remove {
        /// The service name.
        service: String,
        /// The group's labels, comma separated (none = the default group).
        #[arg(long, env = "DEPLOYER_REMOVE_LABELS", value_delimiter = ',')]
        labels: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DEPLOYER_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// When set, every route except /ping and /health needs `Authorization: Bearer <token>`.
    #[arg(long, env = "MDO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Largest deploy document accepted, in bytes (larger: 413).
    #[arg(long, env = "DEPLOYER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest wait of POST /deploy?wait=true, in seconds (a `timeout` query parameter may ask for less).
    #[arg(long, env = "DEPLOYER_WAIT_TIMEOUT", default_value_t = 120)]
    pub wait_timeout: u64,
    /// Where the dashboard links to the registry's own view (the subscriber's /info).
    #[arg(
        long,
        env = "DEPLOYER_REGISTRY_VIEW_URL",
        default_value = "http://127.0.0.1:5001/info"
    )]
    pub registry_view_url: String,
    /// Do not read the registry: the dashboard shows endpoints from the Marathon API only.
    #[arg(long, env = "DEPLOYER_NO_REGISTRY", value_parser = daemon::parse_bool)]
    pub no_registry: bool,
    /// Registry prefix in etcd the dashboard reads records from (at --etcd-endpoints).
    #[arg(long, env = "REGISTRY_PREFIX", default_value = "/services")]
    pub prefix: String,
    // How the dashboard connects to etcd (user, password, TLS) at
    // --etcd-endpoints; read access to the prefix is enough.
    #[command(flatten)]
    pub etcd: daemon::EtcdAccessArgs,
}

/// Settings shared by every command, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub marathon: MarathonConfig,
    pub translate: TranslateConfig,
}

/// Settings of `serve`, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub auth_token: Option<String>,
    pub limits: Limits,
    pub wait_timeout: Duration,
    pub settings: Settings,
    /// Where the dashboard reads the registry (`None`: it does not).
    pub registry: Option<registry::Settings>,
    /// The registry's own view, linked from the dashboard.
    pub registry_view_url: Option<String>,
}

/// A configuration mistake: one line for stderr, exit 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl CommonArgs {
    /// The etcd endpoints as given (comma separated), with the compatibility
    /// names and the default filled in.
    pub fn etcd_endpoints_list(&self) -> String {
        match (&self.etcd_endpoints, &self.etcd_host_address) {
            (Some(e), _) => e.clone(),
            (None, Some(h)) => format!("http://{h}:{}", self.etcd_port.unwrap_or(2379)),
            (None, None) => "http://127.0.0.1:2379".to_string(),
        }
    }

    /// The endpoints the deployer itself reads the registry at, schemes
    /// not yet settled ([`registry::resolve_endpoints`]: https with TLS).
    fn etcd_endpoints_raw(&self) -> Result<String, ConfigError> {
        let port = self.etcd_port.map(|p| p.to_string());
        registry::resolve_endpoints(
            self.etcd_endpoints.as_deref(),
            self.etcd_host_address.as_deref(),
            port.as_deref(),
        )
        .map_err(|e| ConfigError(format!("etcd endpoints: {e}")))
    }

    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let port = self.marathon_port.map(|p| p.to_string());
        let url = daemon::marathon_url(
            self.marathon_url.as_deref(),
            self.marathon_host.as_deref(),
            port.as_deref(),
        )
        .map_err(|e| ConfigError(format!("--marathon-url: {e}")))?;
        let etcd = self.etcd_endpoints_list();
        let container = self.container_etcd_endpoints.clone().unwrap_or(etcd);
        for e in container.split(',') {
            let e = e.trim();
            let with_scheme = if e.contains("://") {
                e.to_string()
            } else {
                format!("http://{e}")
            };
            if e.is_empty() || reqwest::Url::parse(&with_scheme).is_err() {
                return Err(ConfigError(format!(
                    "etcd endpoints: \"{e}\" is not a valid endpoint"
                )));
            }
        }
        if self.marathon_timeout == 0 {
            return Err(ConfigError(
                "--marathon-timeout must be at least 1 second".into(),
            ));
        }
        Ok(Settings {
            marathon: MarathonConfig {
                url,
                token: self.marathon_token.clone().filter(|t| !t.is_empty()),
                timeout: Duration::from_secs(self.marathon_timeout),
            },
            translate: TranslateConfig {
                container_etcd_endpoints: container,
            },
        })
    }
}

impl ServeArgs {
    pub fn config(&self, common: &CommonArgs) -> Result<ServeConfig, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            ConfigError(format!(
                "--listen: \"{}\" is not an address like 127.0.0.1:5000",
                self.listen
            ))
        })?;
        if self.max_body_bytes < 64 {
            return Err(ConfigError("--max-body-bytes must be at least 64".into()));
        }
        let registry = if self.no_registry {
            None
        } else {
            Some(
                self.etcd
                    .settings(&common.etcd_endpoints_raw()?, &self.prefix)
                    .map_err(|e| ConfigError(format!("registry (etcd) settings: {e}")))?,
            )
        };
        let registry_view_url =
            Some(self.registry_view_url.trim().to_string()).filter(|u| !u.is_empty());
        if let Some(u) = &registry_view_url {
            match reqwest::Url::parse(u) {
                Ok(p) if p.scheme() == "http" || p.scheme() == "https" => {}
                _ => {
                    return Err(ConfigError(format!(
                        "--registry-view-url: \"{u}\" is not an http(s) URL"
                    )))
                }
            }
        }
        Ok(ServeConfig {
            listen,
            registry,
            registry_view_url,
            auth_token: self.auth_token.clone().filter(|t| !t.is_empty()),
            limits: Limits {
                max_bytes: self.max_body_bytes,
                ..Limits::default()
            },
            wait_timeout: Duration::from_secs(self.wait_timeout),
            settings: common.settings()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("deployer").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn compat_names_fill_in_when_new_ones_are_absent() {
        // (command line, Marathon URL, endpoints handed to the containers)
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["--marathon-host", "m1", "--etcd-host-address", "10.0.0.1"],
                "http://m1:8080",
                "http://10.0.0.1:2379",
            ),
            (
                &["--etcd-host-address", "10.0.0.1", "--etcd-port", "4001"],
                "http://127.0.0.1:8080",
                "http://10.0.0.1:4001",
            ),
            (
                &["--marathon-url", "http://a:1", "--marathon-host", "m1"],
                "http://a:1",
                "http://127.0.0.1:2379",
            ),
            (
                &[
                    "--etcd-endpoints",
                    "http://e:2379",
                    "--etcd-host-address",
                    "10.0.0.1",
                    "--container-etcd-endpoints",
                    "http://172.17.0.1:2379",
                ],
                "http://127.0.0.1:8080",
                "http://172.17.0.1:2379",
            ),
        ];
        for (args, marathon, container) in cases {
            // The common flags are global: before and after the command.
            let before: Vec<&str> = args.iter().copied().chain(["status"]).collect();
            let after: Vec<&str> = ["status"].into_iter().chain(args.iter().copied()).collect();
            for line in [before, after] {
                let s = parse(&line).common.settings().unwrap();
                assert_eq!(s.marathon.url, *marathon, "{line:?}");
                assert_eq!(s.translate.container_etcd_endpoints, *container, "{line:?}");
            }
        }
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let cli = parse(&["--marathon-url", "ftp://x", "status"]);
        assert!(cli
            .common
            .settings()
            .unwrap_err()
            .to_string()
            .contains("--marathon-url"));
        let cli = parse(&["serve", "--listen", "nope"]);
        let Command::Serve(s) = &cli.command else {
            panic!()
        };
        assert!(s
            .config(&cli.common)
            .unwrap_err()
            .to_string()
            .contains("--listen"));
    }

    #[test]
    fn remove_takes_comma_separated_labels() {
        let cli = parse(&["remove", "web", "--labels", "a,b"]);
        let Command::Remove { service, labels } = cli.command else {
            panic!()
        };
        assert_eq!(
            (service.as_str(), labels),
            ("web", vec!["a".to_string(), "b".to_string()])
        );
    }
}
