//! The etcd connection flags. Flatten into a binary's clap `Parser`:
//!
//! ```
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     etcd: daemon::EtcdArgs,
//! }
//! ```
//!
//! The key prefix is not here: it is per binary (the manager's internal
//! prefix, the subscriber's registry prefix) and passed to
//! [`EtcdArgs::settings`].

use std::fmt;
use std::path::PathBuf;

use clap::Args;

/// etcd endpoints, credentials and TLS material. Every flag has its
/// environment variable. `Debug` never shows the password.
#[derive(Clone, Debug, Default, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma separated (`http://h:2379`, `https://h:2379` or
    /// `h[:port]`: without a scheme, https when --etcd-ca/--etcd-cert is
    /// given, http otherwise). Falls back to --etcd-host-address; default
    /// http://127.0.0.1:2379.
    #[arg(long, env = "ETCD_ENDPOINTS")]
    pub etcd_endpoints: Option<String>,

    /// Legacy: etcd host, used only when --etcd-endpoints / ETCD_ENDPOINTS is absent.
    #[arg(long, env = "ETCD_HOST_ADDRESS")]
    pub etcd_host_address: Option<String>,

    /// Legacy: etcd port used with --etcd-host-address (default 2379).
    #[arg(long, env = "ETCD_PORT")]
    pub etcd_port: Option<String>,

    #[command(flatten)]
    pub access: EtcdAccessArgs,
}

/// Who connects to etcd and how its certificate is checked: user/password
/// and TLS material, without the endpoints. Part of [`EtcdArgs`]; flattened
/// alone where a binary takes its endpoints its own way (the deployer's
/// dashboard). `Debug` never shows the password.
#[derive(Clone, Default, Args)]
pub struct EtcdAccessArgs {
    /// etcd user name (authentication is off when absent).
    #[arg(long, env = "ETCD_USER")]
    pub etcd_user: Option<String>,

    /// etcd password for --etcd-user (never logged).
    #[arg(long, env = "ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,

    /// CA certificate (PEM) to verify etcd's TLS certificate.
    #[arg(long, env = "ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,

    /// Client certificate (PEM) for etcd TLS client authentication (needs --etcd-key).
    #[arg(long, env = "ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,

    /// Client key (PEM) for --etcd-cert.
    #[arg(long, env = "ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
}

impl fmt::Debug for EtcdAccessArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAccessArgs")
            .field("etcd_user", &self.etcd_user)
            .field(
                "etcd_password",
                &self.etcd_password.as_ref().map(|_| "<redacted>"),
            )
            .field("etcd_ca", &self.etcd_ca)
            .field("etcd_cert", &self.etcd_cert)
            .field("etcd_key", &self.etcd_key)
            .finish()
    }
}

impl EtcdAccessArgs {
    /// Connection settings for `endpoints` (comma separated, schemes not
    /// yet settled: `https://` for bare ones when TLS material is given,
    /// `http://` otherwise) with keys under `prefix`; an explicit `http://`
    /// endpoint with TLS, a password without a user, a certificate without
    /// its key (or the reverse) and a prefix with `..` are refused.
    pub fn settings(
        &self,
        endpoints: &str,
        prefix: &str,
    ) -> Result<registry::Settings, EtcdArgsError> {
        registry::Settings::from_parts(
            Some(endpoints),
            Some(prefix),
            self.etcd_user.as_deref(),
            self.etcd_password.as_deref(),
            self.etcd_ca.clone(),
            self.etcd_cert.clone(),
            self.etcd_key.clone(),
        )
        .map_err(|e| EtcdArgsError(e.to_string()))
    }
}

/// Settings that cannot be used; the message names the flags (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdArgsError(pub String);

impl fmt::Display for EtcdArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EtcdArgsError {}

impl EtcdArgs {
    /// The endpoint list as given, before schemes are settled:
    /// `--etcd-endpoints`, else `--etcd-host-address[:--etcd-port]`, else
    /// `127.0.0.1:2379` ([`registry::resolve_endpoints`]).
    fn raw_endpoints(&self) -> Result<String, EtcdArgsError> {
        registry::resolve_endpoints(
            self.etcd_endpoints.as_deref(),
            self.etcd_host_address.as_deref(),
            self.etcd_port.as_deref(),
        )
        .map_err(|e| {
            EtcdArgsError(format!(
                "--etcd-endpoints / --etcd-host-address / --etcd-port: {e}"
            ))
        })
    }

    /// Connection settings with keys under `prefix`, by the rules of
    /// [`EtcdAccessArgs::settings`].
    pub fn settings(&self, prefix: &str) -> Result<registry::Settings, EtcdArgsError> {
        self.access.settings(&self.raw_endpoints()?, prefix)
    }

    /// The resolved endpoint URLs (what [`EtcdArgs::settings`] connects to).
    pub fn endpoints(&self) -> Result<Vec<String>, EtcdArgsError> {
        Ok(self.settings("/")?.endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        etcd: EtcdArgs,
    }

    fn args(list: &[&str]) -> EtcdArgs {
        let mut all = vec!["test"];
        all.extend_from_slice(list);
        Cli::try_parse_from(all).expect("parses").etcd
    }

    #[test]
    fn endpoint_resolution_table() {
        // (--etcd-endpoints, --etcd-host-address, --etcd-port) without TLS:
        // the subscriber's rules, unchanged.
        let cases: &[crate::fallback_table::Row<Vec<&str>>] = &[
            (None, None, None, Ok(vec!["http://127.0.0.1:2379"])),
            (
                Some("http://a:2379, http://b:2379"),
                Some("ignored"),
                None,
                Ok(vec!["http://a:2379", "http://b:2379"]),
            ),
            (Some("a:2379"), None, None, Ok(vec!["http://a:2379"])),
            (
                None,
                Some("10.0.0.5"),
                None,
                Ok(vec!["http://10.0.0.5:2379"]),
            ),
            (
                None,
                Some("10.0.0.5"),
                Some("4001"),
                Ok(vec!["http://10.0.0.5:4001"]),
            ),
            (
                None,
                Some("https://e"),
                Some("4001"),
                Ok(vec!["https://e:4001"]),
            ),
            (Some(" "), Some("h"), None, Ok(vec!["http://h:2379"])),
            (None, Some("h"), Some("x"), Err(())),
            (Some(","), None, None, Err(())),
            (Some("ftp://a:1"), None, None, Err(())),
        ];
        crate::fallback_table::check(cases, |eps, host, port| {
            EtcdArgs {
                etcd_endpoints: eps.map(str::to_string),
                etcd_host_address: host.map(str::to_string),
                etcd_port: port.map(str::to_string),
                ..EtcdArgs::default()
            }
            .endpoints()
        });
    }

    #[test]
    fn tls_makes_bare_endpoints_https() {
        type Case<'a> = (&'a [&'a str], Result<&'a [&'a str], ()>);
        let cases: &[Case] = &[
            (&["--etcd-ca", "/ca.pem"], Ok(&["https://127.0.0.1:2379"])),
            (
                &[
                    "--etcd-ca",
                    "/ca.pem",
                    "--etcd-endpoints",
                    "a:1,https://b:2",
                ],
                Ok(&["https://a:1", "https://b:2"]),
            ),
            (
                &[
                    "--etcd-ca",
                    "/ca.pem",
                    "--etcd-host-address",
                    "e",
                    "--etcd-port",
                    "4001",
                ],
                Ok(&["https://e:4001"]),
            ),
            (
                &[
                    "--etcd-cert",
                    "/c.pem",
                    "--etcd-key",
                    "/k.pem",
                    "--etcd-endpoints",
                    "a",
                ],
                Ok(&["https://a:2379"]),
            ),
            (
                &["--etcd-ca", "/ca.pem", "--etcd-endpoints", "http://a:1"],
                Err(()),
            ),
            (&["--etcd-cert", "/c.pem"], Err(())),
            (&["--etcd-key", "/k.pem"], Err(())),
        ];
        for (list, want) in cases {
            let got = args(list).endpoints();
            match want {
                Ok(w) => assert_eq!(
                    got,
                    Ok(w.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                    "{list:?}"
                ),
                Err(()) => assert!(got.is_err(), "{list:?} -> {got:?}"),
            }
        }
    }

    #[test]
    fn settings_carry_prefix_auth_and_tls() {
        // (The flags parse into these fields: the manager's config test
        // gives all of them on its command line.)
        let a = EtcdArgs {
            etcd_endpoints: Some("e:2379".into()),
            access: EtcdAccessArgs {
                etcd_user: Some("mgr".into()),
                etcd_password: Some("s3cret-pw".into()),
                etcd_ca: Some("/ca.pem".into()),
                etcd_cert: Some("/c.pem".into()),
                etcd_key: Some("/k.pem".into()),
            },
            ..EtcdArgs::default()
        };
        let s = a.settings("/mdo/manager/").unwrap();
        assert_eq!(s.endpoints, vec!["https://e:2379"]);
        assert_eq!(s.prefix, "/mdo/manager");
        assert_eq!(s.auth, Some(("mgr".into(), "s3cret-pw".into())));
        let tls = s.tls.unwrap();
        assert_eq!(tls.ca, Some("/ca.pem".into()));
        assert_eq!(tls.cert, Some("/c.pem".into()));
        assert_eq!(tls.key, Some("/k.pem".into()));
        assert!(!format!("{a:?}").contains("s3cret-pw"), "{a:?}");

        let plain = args(&[]).settings("/services").unwrap();
        assert!(plain.auth.is_none() && plain.tls.is_none());
        assert!(args(&["--etcd-password", "x"]).settings("/s").is_err());
        assert!(args(&[]).settings("/a/../b").is_err());
        // A user without a password is allowed (etcd decides).
        let user_only = args(&["--etcd-user", "u"]).settings("/s").unwrap();
        assert_eq!(user_only.auth, Some(("u".into(), String::new())));
    }

    #[test]
    fn errors_are_one_line() {
        for list in [
            &["--etcd-host-address", "h", "--etcd-port", "x"][..],
            &["--etcd-cert", "/c.pem"],
            &["--etcd-endpoints", "ftp://x"],
        ] {
            let e = args(list).settings("/s").unwrap_err().to_string();
            assert!(!e.is_empty() && !e.contains('\n'), "{list:?}: {e}");
        }
    }

    #[test]
    fn help_names_every_flag_and_variable_and_hides_the_password() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for word in [
            "--etcd-endpoints",
            "ETCD_ENDPOINTS",
            "--etcd-host-address",
            "ETCD_HOST_ADDRESS",
            "--etcd-port",
            "ETCD_PORT",
            "--etcd-user",
            "ETCD_USER",
            "--etcd-password",
            "ETCD_PASSWORD",
            "--etcd-ca",
            "ETCD_CA",
            "--etcd-cert",
            "ETCD_CERT",
            "--etcd-key",
            "ETCD_KEY",
        ] {
            assert!(help.contains(word), "{word} missing from --help");
        }
    }
}
