//! Plumbing every mdo binary shares, defined once so no binary can lack or
//! diverge from it: [`parse_cli`], the command line parsed with one exit
//! code and one line per mistake; [`EtcdArgs`], the etcd connection flags (endpoints with
//! the legacy `ETCD_HOST_ADDRESS` fallback, user/password, TLS), turned into
//! [`registry::Settings`] by one rule; [`LogArgs`] and [`init_logging`], the
//! log format flag and the tracing set-up; [`apply_env_aliases`], the
//! environment names of earlier releases; [`parse_bool`] and
//! [`marathon_url`], how boolean settings and the Marathon address are
//! read; [`http`], the HTTP APIs' token check and body limit; [`Backoff`],
//! the retry delay; [`redact_url`], how every binary writes a URL or
//! endpoint into its logs; [`metrics`], how every binary's `/metrics`
//! is encoded (prometheus-client); and [`cargo_command`], how a test or
//! `cluster-setup` runs `cargo build` without rebuilding what was built.

mod cargo;
mod cli;
mod env;
mod etcd;
pub mod http;
mod log;
pub mod metrics;
mod redact;
mod values;

pub use backoff::Backoff;
pub use cargo::cargo_command;
pub use cli::{parse_cli, usage_line};
pub use env::{aliased_value, apply_env_aliases};
pub use etcd::{EtcdAccessArgs, EtcdArgs, EtcdArgsError};
pub use log::{init as init_logging, LogArgs, LogFormat};
pub use redact::{is_secret_param, redact_url, redact_urls, REDACTED};
pub use values::{marathon_url, parse_bool, DEFAULT_MARATHON_PORT, DEFAULT_MARATHON_URL};

/// What the tests of both fallback rules ([`EtcdArgs`]' endpoints,
/// [`marathon_url`]) share: a table of (the value, the legacy host, the
/// legacy port) and what comes out, `Err(())` where it is refused.
#[cfg(test)]
mod fallback_table {
    use std::fmt::Debug;

    pub(crate) type Row<'a, W> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Result<W, ()>,
    );

    /// Checks every row of `rows` against `resolve`.
    pub(crate) fn check<W, G, E>(
        rows: &[Row<W>],
        resolve: impl Fn(Option<&str>, Option<&str>, Option<&str>) -> Result<G, E>,
    ) where
        W: Debug,
        G: PartialEq<W> + Debug,
        E: Debug,
    {
        for (value, host, port, want) in rows {
            let got = resolve(*value, *host, *port);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{value:?} {host:?} {port:?}"),
                (Err(()), Err(_)) => {}
                _ => panic!("{value:?} {host:?} {port:?}: want {want:?}, got {got:?}"),
            }
        }
    }
}
