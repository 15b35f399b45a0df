//! The built-in manager: a Marathon-compatible control plane that runs
//! command tasks and Docker containers on this machine and keeps its state in
//! etcd.
//!
//! Module map:
//! - `runtime`: the runtime boundary ([`runtime::Runtime`]) with the command
//!   and Docker implementations.
//! - `events`: the one event bus: typed Marathon events built from the
//!   manager's records (`events::build`), published once and delivered to
//!   `/v2/events` (SSE), `/v2/eventSubscriptions` (HTTP callbacks) and local
//!   observers.
//! - the control plane: [`config`], [`startup`] ([`Application`]), [`api`]
//!   (routes by resource; the only part that knows HTTP), [`error`]
//!   ([`error::ApiError`], mapped from [`core::CoreError`]), [`validation`]
//!   (normalisation of legacy input, Marathon's messages), [`ids`],
//!   [`state_store`] (state in etcd), [`state`] (and its queue and group views),
//!   [`core`] (the write path: apps, deployments, tasks), [`scheduler`]
//!   (pure `plan` per app and `plan_pass` per reconcile pass),
//!   [`reconcile`] (applies it: launches, kills, exits, deployments,
//!   recovery), [`ports`], [`env`],
//!   [`constraints`], [`health`]; [`bounds`]
//!   (the limits of app definitions and the clamps of durations) and
//!   [`contain`] (a panic in one app's work never stops a loop).

pub mod api;
pub mod bounds;
pub mod config;
pub mod constraints;
pub mod contain;
pub mod core;
pub mod env;
pub mod error;
pub mod events;
pub mod health;
pub mod ids;
pub mod ports;
pub mod reconcile;
pub mod recovery;
pub mod runtime;
pub mod scheduler;
pub mod startup;
pub mod state;
pub mod state_store;
mod task_writer;
pub mod validation;

pub use config::{Cli, Config};
pub use startup::{Application, StartError};
