//! Command line and environment: clap parses, [`Cli::into_config`] validates
//! into a [`Config`] before anything is bound. Compatibility variables of the
//! original deployments (`MARATHON_HOST`/`MARATHON_PORT`,
//! `ETCD_HOST_ADDRESS`/`ETCD_PORT`) are plain flags with their own env
//! variables, resolved by pure functions so tests never touch the process env.
//! The etcd flags are [`daemon::EtcdArgs`], the same in every binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid {what}: {value:?} ({why})")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("--callback-url (CALLBACK_URL) is required with --mode callback")]
    MissingCallbackUrl,
    /// The Marathon URL settings ([`daemon::marathon_url`]).
    #[error("{0}")]
    Marathon(String),
}

fn invalid(what: &'static str, value: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        what,
        value: value.to_string(),
        why: why.into(),
    }
}

/// How events reach the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Read the server-sent event stream `/v2/events`.
    Sse,
    /// Subscribe `--callback-url` through `/v2/eventSubscriptions` and receive
    /// events on `POST /callback`.
    Callback,
}

/// subscriber: turns Marathon task events into instance records in etcd, and
/// keeps them right with periodic, race-free resyncs.
#[derive(Debug, Clone, Parser)]
#[command(name = "subscriber", version, about, long_about = None)]
pub struct Cli {
    /// Address the HTTP server (/callback, /cleanup, /info, /health, /metrics) binds to.
    #[arg(long, env = "SUBSCRIBER_LISTEN", default_value = "127.0.0.1:5001")]
    pub listen: String,

    /// Marathon API URL (the built-in manager or a real Marathon); basic-auth
    /// userinfo in the URL is accepted. Default http://127.0.0.1:8080.
    #[arg(long, env = "MARATHON_URL")]
    pub marathon_url: Option<String>,

    /// Legacy: Marathon host, used only when --marathon-url / MARATHON_URL is absent.
    #[arg(long, env = "MARATHON_HOST")]
    pub marathon_host: Option<String>,

    /// Legacy: Marathon port used with --marathon-host (default 8080).
    #[arg(long, env = "MARATHON_PORT")]
    pub marathon_port: Option<String>,

    /// Bearer token sent to the Marathon API.
    #[arg(long, env = "MARATHON_TOKEN", hide_env_values = true)]
    pub marathon_token: Option<String>,

    /// etcd endpoints, credentials and TLS (shared with every binary).
    #[command(flatten)]
    pub etcd: daemon::EtcdArgs,

    /// Registry prefix in etcd.
    #[arg(long, env = "REGISTRY_PREFIX", default_value = "/services")]
    pub prefix: String,

    /// Owner written into every record; a resync only touches records of this owner.
    #[arg(long, env = "SUBSCRIBER_OWNER", default_value = "default")]
    pub owner: String,

    /// Full resync period: `60`, `60s`, `2m`, `500ms`.
    #[arg(long, env = "SUBSCRIBER_RESYNC_INTERVAL", default_value = "60s")]
    pub resync_interval: String,

    /// Event delivery: `sse` reads /v2/events, `callback` subscribes --callback-url.
    #[arg(long, env = "SUBSCRIBER_MODE", value_enum, default_value_t = Mode::Sse)]
    pub mode: Mode,

    /// URL Marathon posts events to in callback mode (this server's /callback).
    #[arg(long, env = "CALLBACK_URL")]
    pub callback_url: Option<String>,

    /// Keep tasks of apps with health checks out of the registry until they are healthy.
    #[arg(long, env = "SUBSCRIBER_REQUIRE_HEALTHY", value_parser = daemon::parse_bool)]
    pub require_healthy: bool,

    /// Events kept in order while etcd is unavailable; beyond it a full resync is scheduled.
    #[arg(long, env = "SUBSCRIBER_QUEUE_CAPACITY", default_value_t = 65536)]
    pub queue_capacity: usize,

    /// Bearer token required on every route except /ping and /health.
    #[arg(long, env = "MDO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// The deployer's dashboard, linked from /info (empty: no link).
    #[arg(
        long,
        env = "SUBSCRIBER_DASHBOARD_URL",
        default_value = "http://127.0.0.1:5000/"
    )]
    pub dashboard_url: String,

    #[command(flatten)]
    pub log: daemon::LogArgs,
}

/// Validated configuration; tests build it directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub marathon_url: String,
    pub marathon_token: Option<String>,
    /// etcd endpoints, prefix, auth and TLS.
    pub etcd: registry::Settings,
    pub owner: String,
    pub resync_interval: Duration,
    pub mode: Mode,
    pub callback_url: Option<String>,
    pub require_healthy: bool,
    pub queue_capacity: usize,
    pub auth_token: Option<String>,
    /// The deployer's dashboard, linked from /info.
    pub dashboard_url: Option<String>,
}

impl Config {
    /// A config for tests: listen on a free port, given Marathon and etcd.
    pub fn for_test(marathon_url: &str, etcd_endpoint: &str) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("valid"),
            marathon_url: marathon_url.to_string(),
            marathon_token: None,
            etcd: registry::Settings::new([etcd_endpoint.to_string()]),
            owner: "default".into(),
            resync_interval: Duration::from_secs(60),
            mode: Mode::Sse,
            callback_url: None,
            require_healthy: false,
            queue_capacity: 65536,
            auth_token: None,
            dashboard_url: None,
        }
    }
}

impl Cli {
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let listen = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| invalid("--listen", &self.listen, e.to_string()))?;
        let marathon_url = daemon::marathon_url(
            self.marathon_url.as_deref(),
            self.marathon_host.as_deref(),
            self.marathon_port.as_deref(),
        )
        .map_err(ConfigError::Marathon)?;
        if !self.prefix.starts_with('/') || self.prefix.len() < 2 || self.prefix.ends_with('/') {
            return Err(invalid(
                "--prefix",
                &self.prefix,
                "must start with '/' and not end with '/'",
            ));
        }
        let etcd = self
            .etcd
            .settings(&self.prefix)
            .map_err(|e| invalid("etcd settings", "", e.to_string()))?;
        if self.owner.is_empty()
            || !self
                .owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid("--owner", &self.owner, "use [A-Za-z0-9_.-]+"));
        }
        let resync_interval = parse_duration(&self.resync_interval).ok_or_else(|| {
            invalid(
                "--resync-interval",
                &self.resync_interval,
                "e.g. 60s, 2m, 500ms",
            )
        })?;
        if resync_interval.is_zero() {
            return Err(invalid(
                "--resync-interval",
                &self.resync_interval,
                "must be > 0",
            ));
        }
        let callback_url = match (&self.mode, self.callback_url) {
            (Mode::Callback, None) => return Err(ConfigError::MissingCallbackUrl),
            (_, Some(u)) => {
                let parsed = url::Url::parse(&u)
                    .map_err(|e| invalid("--callback-url", &u, e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid("--callback-url", &u, "must be http(s)"));
                }
                Some(u)
            }
            (_, None) => None,
        };
        if self.queue_capacity == 0 {
            return Err(invalid("--queue-capacity", "0", "must be > 0"));
        }
        Ok(Config {
            listen,
            marathon_url,
            marathon_token: self.marathon_token.filter(|t| !t.is_empty()),
            etcd,
            owner: self.owner,
            resync_interval,
            mode: self.mode,
            callback_url,
            require_healthy: self.require_healthy,
            queue_capacity: self.queue_capacity,
            auth_token: self.auth_token.filter(|t| !t.is_empty()),
            dashboard_url: non_empty(Some(&self.dashboard_url)).map(str::to_string),
        })
    }
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// `60`, `60s`, `2m`, `1h`, `500ms` -> Duration.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_url_resolution() {
        // The rule is daemon::marathon_url's (tested there in full); the
        // subscriber's flags reach it unchanged.
        let url = |args: &[&str]| cli(args).into_config().map(|c| c.marathon_url);
        assert_eq!(url(&[]).as_deref(), Ok("http://127.0.0.1:8080"));
        assert_eq!(
            url(&["--marathon-host", "https://m"]).as_deref(),
            Ok("https://m:8080")
        );
        assert_eq!(
            url(&["--marathon-host", "m", "--marathon-port", "81"]).as_deref(),
            Ok("http://m:81")
        );
        assert!(url(&["--marathon-host", "m", "--marathon-port", "x"]).is_err());
    }

    #[test]
    fn etcd_endpoint_resolution_table() {
        // The rule is daemon::EtcdArgs's (tested there in full); the
        // subscriber's flags and variables reach it unchanged.
        type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], ()>);
        let cases: &[Case] = &[
            (&[], Ok(&["http://127.0.0.1:2379"])),
            (
                &[
                    "--etcd-endpoints",
                    "http://a:2379, http://b:2379",
                    "--etcd-host-address",
                    "ignored",
                ],
                Ok(&["http://a:2379", "http://b:2379"]),
            ),
            (&["--etcd-endpoints", "a:2379"], Ok(&["http://a:2379"])),
            (
                &["--etcd-host-address", "10.0.0.5"],
                Ok(&["http://10.0.0.5:2379"]),
            ),
            (
                &["--etcd-host-address", "10.0.0.5", "--etcd-port", "4001"],
                Ok(&["http://10.0.0.5:4001"]),
            ),
            (
                &["--etcd-endpoints", " ", "--etcd-host-address", "h"],
                Ok(&["http://h:2379"]),
            ),
            (
                &["--etcd-endpoints", "a:2379", "--etcd-ca", "/ca.pem"],
                Ok(&["https://a:2379"]),
            ),
            (&["--etcd-host-address", "h", "--etcd-port", "x"], Err(())),
            (&["--etcd-endpoints", ","], Err(())),
        ];
        for (args, want) in cases {
            let got = cli(args).into_config().map(|c| c.etcd.endpoints);
            match want {
                Ok(w) => assert_eq!(
                    got,
                    Ok(w.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                    "{args:?}"
                ),
                Err(()) => assert!(got.is_err(), "{args:?} -> {got:?}"),
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5d"), None);
    }

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["subscriber"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses")
    }

    #[test]
    fn callback_mode_needs_url() {
        let c = cli(&["--mode", "callback"]);
        assert_eq!(
            c.into_config().unwrap_err(),
            ConfigError::MissingCallbackUrl
        );
        let c = cli(&[
            "--mode",
            "callback",
            "--callback-url",
            "http://127.0.0.1:5001/callback",
        ]);
        assert!(c.into_config().is_ok());
    }

    #[test]
    fn bad_values_are_rejected() {
        for args in [
            vec!["--listen", "nope"],
            vec!["--prefix", "services"],
            vec!["--prefix", "/services/"],
            vec!["--owner", "a b"],
            vec!["--resync-interval", "0"],
            vec!["--resync-interval", "soon"],
            vec!["--etcd-password", "x"],
            vec!["--etcd-cert", "/c.pem"],
        ] {
            assert!(cli(&args).into_config().is_err(), "{args:?}");
        }
    }
}
