//! The subscriber: turns Marathon task events into instance records in etcd
//! (layout and schema in DESIGN.md) and keeps them right by itself.
//!
//! Owns: the event intake (SSE or HTTP callbacks), the one ordered writer,
//! the resync driver and the HTTP views (`/cleanup`, `/info`, `/health`,
//! `/metrics`, `/callback`). Does not own key formats or the record schema
//! (the `registry` crate) nor Marathon's types (the `marathon` crate).

pub mod app;
pub mod apps_list;
pub mod config;
pub mod convert;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod record;
pub mod record_store;
pub mod resync;
pub mod source;
pub mod writer;

pub use app::{AppError, Application};
pub use config::{Cli, Config};
