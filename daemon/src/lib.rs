//! Plumbing every mdo binary shares, defined once so no binary can lack or
//! diverge from it: [`EtcdArgs`], the etcd connection flags (endpoints with
//! the legacy `ETCD_HOST_ADDRESS` fallback, user/password, TLS), turned into
//! [`registry::Settings`] by one rule; [`LogArgs`] and [`init_logging`], the
//! log format flag and the tracing set-up; [`apply_env_aliases`], the
//! environment names of earlier releases; [`parse_bool`] and
//! [`marathon_url`], how boolean settings and the Marathon address are
//! read; [`http`], the HTTP APIs' token check and body limit; [`Backoff`],
//! the retry delay; [`redact_url`], how every binary writes a URL or
//! endpoint into its logs; and [`metrics`], how every binary's `/metrics`
//! is encoded (prometheus-client).

mod env;
mod etcd;
pub mod http;
mod log;
pub mod metrics;
mod redact;
mod values;

pub use backoff::Backoff;
pub use env::{aliased_value, apply_env_aliases};
pub use etcd::{EtcdArgs, EtcdArgsError};
pub use log::{init as init_logging, LogArgs, LogFormat};
pub use redact::{is_secret_param, redact_url, redact_urls, REDACTED};
pub use values::{marathon_url, parse_bool, DEFAULT_MARATHON_PORT, DEFAULT_MARATHON_URL};
