//! Theseus, the deployer: a declarative deploy document (YAML or JSON) in,
//! Marathon app definitions out.
//!
//! Owns: the document format and its validation ([`spec`], [`parse`]),
//! translation to app JSON ([`translate`]), the create / scale / update /
//! remove decision ([`plan`]), and the thin async layers that apply it
//! through the Marathon REST API (HTTP server; the command-line actions,
//! [`actions`]). The clap definitions of the command line are in [`config`].
//! Does not own: the Marathon types of record and client (the `marathon`
//! crate), the naming rules (names, groups, app ids: `registry::naming`) and
//! the registry layout in etcd (the `registry` crate), running tasks (the
//! manager).

pub mod actions;
pub mod apply;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod metrics;
pub mod parse;
pub mod plan;
pub mod services;
pub mod spec;
pub mod translate;
pub mod upstream;

pub use http::Application;
