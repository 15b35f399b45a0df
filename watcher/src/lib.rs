//! The mdo watcher: follows services in the registry (etcd) and calls user
//! code when the set of their instances really changes.
//!
//! Owns: WATCHES parsing and the command line ([`config`]), the pure change
//! decision ([`delta`]) and its debouncing ([`debounce`]), the per-watch
//! loop over registry events ([`watch`]), the callbacks (`service_change`
//! in an embedded Python, or a shell command: [`hook`]), the files rendered
//! from templates ([`template`]), and supervision of an optional child
//! application ([`child`]).
//!
//! Does not own: key formats, records or watch resumption (the `registry`
//! crate does), nor the environment (`main` reads it through clap).

pub mod app;
pub mod child;
pub mod config;
pub mod debounce;
pub mod delta;
pub mod dispatch;
pub mod hook;
pub mod signals;
pub mod template;
pub mod watch;

pub use config::{Cli, Config, ConfigError, Hook, LogFormat, WatchSpec};
pub use delta::{delta, Change, InstanceSet, Node};
