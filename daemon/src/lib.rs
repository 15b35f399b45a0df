//! Plumbing every mdo binary shares, defined once so no binary can lack or
//! diverge from it: [`EtcdArgs`], the etcd connection flags (endpoints with
//! the legacy `ETCD_HOST_ADDRESS` fallback, user/password, TLS), turned into
//! [`registry::Settings`] by one rule; and [`redact_url`], how every binary
//! writes a URL or endpoint into its logs.

mod etcd;
mod redact;

pub use etcd::{EtcdArgs, EtcdArgsError};
pub use redact::{is_secret_param, redact_url, redact_urls, REDACTED};
