//! Command line and environment: parsed by clap, then validated into a
//! [`Config`] before anything starts. Nothing below `main` reads the
//! environment; tests build [`Config`] values directly.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::template::TemplateSpec;

/// What the command line could not be turned into. `main` prints it as one
/// line and exits with 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid watch {entry:?}: {reason}")]
    Watch { entry: String, reason: String },
    #[error("invalid duration {value:?} for {flag}: use e.g. 250ms, 2s, 1m or 0")]
    Duration { flag: &'static str, value: String },
    #[error("--exec and --methods cannot be used together")]
    ExecAndMethods,
    #[error("the Python callback mode is not built in (watcher built without the `python` feature): use --exec")]
    NoPython,
    #[error("the callback file {0} does not exist (give --methods PATH, or --exec CMD)")]
    MissingMethods(PathBuf),
    #[error("nothing to do: no service to watch (--watch / WATCHES) and no command after --")]
    NothingToDo,
    #[error("invalid template {spec:?}: {reason}")]
    Template { spec: String, reason: String },
    #[error("--template needs a service to watch (--watch / WATCHES)")]
    TemplateWithoutWatch,
    #[error("two templates write {0}")]
    TemplateSameDest(PathBuf),
    #[error("{0}")]
    Registry(#[from] registry::Error),
    #[error("{0}")]
    Etcd(#[from] daemon::EtcdArgsError),
}

pub use daemon::LogFormat;

/// Watches services in the mdo registry (etcd) and calls user code when the
/// set of their instances changes: `service_change(service, delta)` from
/// watch_methods.py, or a shell command; and/or renders configuration files
/// from templates (`--template`). Optionally runs the application as its
/// child (`watcher [OPTIONS] -- CMD...`), forwarding signals and the exit
/// code, so one entrypoint serves an image.
#[derive(Debug, Parser)]
#[command(name = "watcher", version, about, long_about = None)]
pub struct Cli {
    /// Services to watch, comma separated. `svc.label` restricts the watch to
    /// the instances of `svc` whose labels include `label`.
    #[arg(long = "watch", env = "WATCHES", value_name = "SVC[.LABEL],...")]
    pub watch: Option<String>,

    /// Python file defining `service_change(service, delta)` (and optionally
    /// `added`, `removed`, `nodes` parameters or `**kwargs`). Default
    /// ./watch_methods.py when neither --exec nor --template is given.
    #[arg(long, env = "WATCH_METHODS", value_name = "PATH")]
    pub methods: Option<PathBuf>,

    /// Run Python's full `site` initialisation in the embedded interpreter
    /// (`.pth` import lines, sitecustomize, usercustomize). By default the
    /// watcher only puts the site-packages folders (and the paths listed in
    /// their `.pth` files) on sys.path, which keeps its memory small.
    #[arg(
        long,
        env = "WATCH_PYTHON_SITE",
        value_parser = daemon::parse_bool
    )]
    pub python_site: bool,

    /// Shell command (run with `sh -c`) to run on every change instead of
    /// Python. It gets WATCH_SERVICE, WATCH_DELTA, WATCH_ADDED, WATCH_REMOVED
    /// and WATCH_NODES (JSON arrays of instance records) in its environment;
    /// a list over 64 KiB comes as a file named by WATCH_<NAME>_FILE instead.
    #[arg(long, env = "WATCH_EXEC", value_name = "CMD")]
    pub exec: Option<String>,

    /// Template mode (repeatable): render the minijinja template SRC into
    /// DEST at start (before the child starts) and after every change of
    /// the watched records; DEST is replaced atomically, and only when its
    /// bytes change, then COMMAND (optional, may contain `:`) runs with
    /// `sh -c` and WATCH_TEMPLATE_DEST set. Context: `services["ingestor"]` (or `service("ingestor")`),
    /// the instance records of each WATCHES entry, sorted by container.
    /// WATCH_TEMPLATES: one spec per line. Alone (without --exec/--methods)
    /// no callback runs.
    #[arg(
        long = "template",
        env = "WATCH_TEMPLATES",
        value_name = "SRC:DEST[:COMMAND]",
        value_delimiter = '\n'
    )]
    pub templates: Vec<String>,

    /// Debounce window: the first change fires at once, the changes that
    /// follow within the window are reported together as one net change
    /// when it ends. 0 reports every change.
    #[arg(long, env = "WATCH_DEBOUNCE", value_name = "DUR", default_value = "0")]
    pub debounce: String,

    /// Random delay in [0, DUR) before each callback, so that instances
    /// watching the same service do not all react at the same moment.
    #[arg(long, env = "WATCH_SPLAY", value_name = "DUR", default_value = "0")]
    pub splay: String,

    /// Longest run of an --exec callback: past it the callback's whole
    /// process group is killed (logged) and the next change is delivered.
    /// 0 = no limit.
    #[arg(
        long,
        env = "WATCH_HOOK_TIMEOUT",
        value_name = "DUR",
        default_value = "60s"
    )]
    pub hook_timeout: String,

    /// etcd endpoints, credentials and TLS (the same flags in every binary).
    #[command(flatten)]
    pub etcd: daemon::EtcdArgs,

    /// Registry key prefix.
    #[arg(long, env = "REGISTRY_PREFIX", value_name = "PREFIX", default_value = registry::DEFAULT_PREFIX)]
    pub prefix: String,

    #[command(flatten)]
    pub log: daemon::LogArgs,

    /// The application to run as a child: signals (TERM, INT, HUP) are
    /// forwarded to it and the watcher exits with its exit code when it ends.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// One entry of WATCHES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    /// The entry as written (`ingestor.testing`): what callbacks receive as
    /// the service, so two watches on one service stay distinguishable.
    pub name: String,
    pub service: String,
    /// Only instances whose labels include this one.
    pub label: Option<String>,
}

/// What runs on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// `service_change` from this Python file.
    Python {
        path: PathBuf,
        /// Run Python's full `site` initialisation (`--python-site`).
        full_site: bool,
    },
    /// This shell command.
    Exec(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub watches: Vec<WatchSpec>,
    /// None in template mode without --exec / --methods.
    pub hook: Option<Hook>,
    pub templates: Vec<TemplateSpec>,
    pub debounce: Duration,
    pub splay: Duration,
    /// `--hook-timeout` (zero: none).
    pub hook_timeout: Duration,
    pub registry: registry::Settings,
    pub log_format: LogFormat,
    /// argv of the child application, empty for none.
    pub command: Vec<String>,
}

impl Cli {
    /// Validates everything; no I/O beyond checking the methods file exists.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let watches = parse_watches(self.watch.as_deref().unwrap_or(""))?;
        if watches.is_empty() && self.command.is_empty() {
            return Err(ConfigError::NothingToDo);
        }
        let templates = parse_templates(&self.templates)?;
        if !templates.is_empty() && watches.is_empty() {
            return Err(ConfigError::TemplateWithoutWatch);
        }
        let hook = match (self.exec, self.methods) {
            (Some(_), Some(_)) => return Err(ConfigError::ExecAndMethods),
            (Some(cmd), None) => Some(Hook::Exec(cmd)),
            (None, None) if !templates.is_empty() => None,
            (None, methods) => {
                let path = methods.unwrap_or_else(|| PathBuf::from("./watch_methods.py"));
                if !watches.is_empty() {
                    if !cfg!(feature = "python") {
                        return Err(ConfigError::NoPython);
                    }
                    if !path.is_file() {
                        return Err(ConfigError::MissingMethods(path));
                    }
                }
                Some(Hook::Python {
                    path,
                    full_site: self.python_site,
                })
            }
        };
        let registry = self.etcd.settings(&self.prefix)?;
        Ok(Config {
            watches,
            hook,
            templates,
            debounce: parse_duration("--debounce", &self.debounce)?,
            splay: parse_duration("--splay", &self.splay)?,
            hook_timeout: parse_duration("--hook-timeout", &self.hook_timeout)?,
            registry,
            log_format: self.log.log_format,
            command: self.command,
        })
    }
}

/// Parses WATCHES: comma separated `service` or `service.label` entries;
/// blanks are skipped, duplicates dropped (first kept).
pub fn parse_watches(list: &str) -> Result<Vec<WatchSpec>, ConfigError> {
    let mut out: Vec<WatchSpec> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |reason: String| ConfigError::Watch {
            entry: entry.to_string(),
            reason,
        };
        let (service, label) = match entry.split_once('.') {
            Some((s, l)) => (s, Some(l)),
            None => (entry, None),
        };
        registry::naming::validate_service(service).map_err(|e| bad(e.to_string()))?;
        if let Some(label) = label {
            // A label is one segment of a group name: the service pattern.
            registry::naming::validate_service(label).map_err(|_| {
                bad(format!(
                    "label {label:?} must match [a-z0-9]([a-z0-9-]*[a-z0-9])?"
                ))
            })?;
        }
        if out.iter().any(|w| w.name == entry) {
            continue;
        }
        out.push(WatchSpec {
            name: entry.to_string(),
            service: service.to_string(),
            label: label.map(str::to_string),
        });
    }
    Ok(out)
}

/// Parses the `--template` / WATCH_TEMPLATES entries (blank ones skipped).
pub fn parse_templates(entries: &[String]) -> Result<Vec<TemplateSpec>, ConfigError> {
    let mut out: Vec<TemplateSpec> = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let spec = TemplateSpec::parse(entry).map_err(|reason| ConfigError::Template {
            spec: entry.to_string(),
            reason,
        })?;
        if out.iter().any(|t| t.dest == spec.dest) {
            return Err(ConfigError::TemplateSameDest(spec.dest));
        }
        out.push(spec);
    }
    Ok(out)
}

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h` or a bare number of seconds.
pub fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::Duration {
        flag,
        value: value.to_string(),
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = number * scale;
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, service: &str, label: Option<&str>) -> WatchSpec {
        WatchSpec {
            name: name.into(),
            service: service.into(),
            label: label.map(Into::into),
        }
    }

    #[test]
    fn watches_table() {
        let cases: Vec<(&str, Option<Vec<WatchSpec>>)> = vec![
            ("", Some(vec![])),
            (" , ", Some(vec![])),
            ("ingestor", Some(vec![spec("ingestor", "ingestor", None)])),
            (
                "ingestor.testing, proxy",
                Some(vec![
                    spec("ingestor.testing", "ingestor", Some("testing")),
                    spec("proxy", "proxy", None),
                ]),
            ),
            ("a,a", Some(vec![spec("a", "a", None)])),
            (
                "a,a.x",
                Some(vec![spec("a", "a", None), spec("a.x", "a", Some("x"))]),
            ),
            ("Ingestor", None),
            ("ingestor.", None),
            (".testing", None),
            ("ingestor.test.ing", None),
            ("ingestor/x", None),
            ("-a", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_watches(input).ok(), expected, "{input:?}");
        }
    }

    #[test]
    fn durations_table() {
        let ms = Duration::from_millis;
        let cases = [
            ("0", Some(ms(0))),
            ("250ms", Some(ms(250))),
            ("2s", Some(ms(2000))),
            ("1.5s", Some(ms(1500))),
            ("3", Some(ms(3000))),
            ("1m", Some(ms(60_000))),
            (" 100ms ", Some(ms(100))),
            ("", None),
            ("ms", None),
            ("-1s", None),
            ("5 parsecs", None),
            ("1e9h", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_duration("--debounce", input).ok(),
                expected,
                "{input:?}"
            );
        }
    }

    fn cli(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["watcher"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .into_config()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn modes_and_conflicts() {
        let c = cli(&["--watch", "a", "--exec", "true"]).unwrap();
        assert_eq!(c.hook, Some(Hook::Exec("true".into())));
        assert!(c.command.is_empty());

        let c = cli(&["--exec", "true", "--", "sleep", "1"]).unwrap();
        assert_eq!(c.command, vec!["sleep", "1"]);
        assert!(c.watches.is_empty());

        for (args, full_site) in [
            (&["--", "sleep", "1"][..], false),
            (&["--python-site", "--", "sleep", "1"][..], true),
        ] {
            assert_eq!(
                cli(args).unwrap().hook,
                Some(Hook::Python {
                    path: "./watch_methods.py".into(),
                    full_site
                }),
                "{args:?}"
            );
        }

        assert!(cli(&["--watch", "a", "--exec", "x", "--methods", "m.py"])
            .unwrap_err()
            .contains("together"));
        assert!(cli(&["--exec", "x"]).unwrap_err().contains("nothing to do"));
        assert!(cli(&["--watch", "a", "--methods", "/nonexistent/w.py"])
            .unwrap_err()
            .contains(if cfg!(feature = "python") {
                "does not exist"
            } else {
                "not built in"
            }));
        assert!(cli(&["--watch", "a", "--exec", "x", "--debounce", "soon"])
            .unwrap_err()
            .contains("--debounce"));
        assert!(cli(&["--watch", "a", "--exec", "x", "--etcd-endpoints", "ftp://x"]).is_err());
    }

    #[test]
    fn templates_flags_and_env() {
        let c = cli(&[
            "--watch",
            "a",
            "--template",
            "a.j2:a.cfg",
            "--template",
            "b.j2:/etc/b.cfg:kill -HUP $(cat /run/b.pid)",
        ])
        .unwrap();
        assert_eq!(c.hook, None, "template mode alone runs no callback");
        assert_eq!(c.templates.len(), 2);
        assert_eq!(
            c.templates[1].command.as_deref(),
            Some("kill -HUP $(cat /run/b.pid)")
        );
        // With --exec both run.
        let c = cli(&["--watch", "a", "--template", "a.j2:a.cfg", "--exec", "x"]).unwrap();
        assert_eq!(c.hook, Some(Hook::Exec("x".into())));

        assert!(cli(&["--watch", "a", "--template", "a.j2"])
            .unwrap_err()
            .contains("SRC:DEST"));
        assert!(cli(&["--template", "a.j2:a.cfg", "--", "true"])
            .unwrap_err()
            .contains("needs a service"));
        assert!(cli(&[
            "--watch",
            "a",
            "--template",
            "a.j2:x.cfg",
            "--template",
            "b.j2:x.cfg"
        ])
        .unwrap_err()
        .contains("two templates"));
    }

    #[test]
    fn registry_settings() {
        let c = cli(&[
            "--watch",
            "a",
            "--exec",
            "x",
            "--etcd-endpoints",
            "http://10.0.0.1:2379,10.0.0.2:2379",
            "--prefix",
            "/reg/",
        ])
        .unwrap();
        assert_eq!(
            c.registry.endpoints,
            vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(c.registry.prefix, "/reg");

        let c = cli(&[
            "--watch",
            "a",
            "--exec",
            "x",
            "--etcd-host-address",
            "10.0.0.9",
            "--etcd-port",
            "4001",
        ])
        .unwrap();
        assert_eq!(c.registry.endpoints, vec!["http://10.0.0.9:4001"]);
    }
}
