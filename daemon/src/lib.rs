//! Plumbing every mdo binary shares, defined once so no binary can lack or
//! diverge from it: [`EtcdArgs`], the etcd connection flags (endpoints with
//! the legacy `ETCD_HOST_ADDRESS` fallback, user/password, TLS), turned into
//! [`registry::Settings`] by one rule.

mod etcd;

pub use etcd::{EtcdArgs, EtcdArgsError};
