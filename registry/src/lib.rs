//! The etcd registry of mdo: the one crate that knows the key layout, the
//! instance record (schema 1), the naming rules and how to talk to etcd.
//!
//! Layout: `<prefix>/<service>/<group>/containers/<container>` -> [`Instance`]
//! as JSON. Every key is built by [`keys`], after the names were validated by
//! [`naming`]; nothing outside the allowed patterns is ever written.
//!
//! What it owns: [`Settings`] (endpoints, prefix, auth, TLS), [`naming`],
//! [`keys`], [`Instance`], and [`Registry`]: typed reads returning a
//! [`Snapshot`] (records with their `mod_revision` and the read revision),
//! ordered writes with per-operation compares in transactions of at most
//! 128 operations ([`Registry::apply`]), and watches that resume from a
//! revision and re-list after compaction ([`Registry::watch`]).
//!
//! The manager's own state (not instance records) uses the same connection
//! with raw values: keys from [`keys::manager`], paged prefix reads
//! ([`Registry::range_prefix`]) and one-transaction writes bounded by
//! etcd's `--max-txn-ops` ([`Registry::txn`]).
//!
//! What it does not do: read the process environment (callers do, except
//! guestutils), decide what to write (the subscriber does), or log secrets.

mod connection;
mod error;
mod instances;
pub mod keys;
mod kv;
pub mod naming;
mod record;
mod settings;
mod watch;

pub use connection::{Registry, MAX_TXN_OPS};
pub use error::{Error, NameKind, Result};
pub use instances::{ApplyReport, Entry, Expect, InvalidEntry, KeyRevision, Op, Outcome, Snapshot};
pub use keys::manager::ManagerKeys;
pub use keys::{InstanceName, Scope};
pub use kv::{prefix_range_end, KeyValue, KvOp, CHUNK_BYTES, DEFAULT_PAGE};
pub use naming::Names;
pub use record::{Instance, Port, SCHEMA};
pub use settings::{
    compat_endpoint, parse_endpoints, resolve_endpoints, with_scheme, Settings, Tls,
    DEFAULT_ENDPOINT, DEFAULT_PREFIX,
};
pub use watch::{WatchEvent, WatchStream};

/// Re-exported so callers (tests, benchmarks) can reach the raw client
/// through [`Registry::client`] without a version mismatch.
pub use etcd_client;
