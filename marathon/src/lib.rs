//! Marathon v2 REST API for Rust: the JSON types, an async client and an
//! event-stream (SSE) client.
//!
//! This crate owns the *shapes*: every type serialises exactly as Marathon
//! does (camelCase keys, unset optionals and empty `omitEmpty` collections
//! omitted, `labels` and arrays that Marathon always writes always written),
//! so strict clients such as marathon-python parse our output, and reads
//! real Marathon's output including legacy input fields and event types it
//! does not know. It is shared by the built-in manager (which serialises
//! these types), the subscriber (events, apps, tasks), the deployer (apps,
//! deployments) and the benchmarks.
//!
//! It does not own app normalisation or validation (the manager does), and
//! depends on no server framework and no etcd.
//!
//! - Types: [`App`], [`AppInfo`], [`Task`], [`Deployment`],
//!   [`DeploymentResult`], [`Event`], [`Info`], [`ErrorBody`], ...
//! - Helpers: [`Timestamp`] (3 ms digits, UTC), [`QueryBool`], [`sse`].
//! - Client: [`Client`] with typed errors ([`Error`]), raw-JSON app calls
//!   (`list_apps_raw`, `put_apps_raw`, ...) for callers that must keep
//!   unknown fields, the lean read of apps with tasks ([`lean`],
//!   [`Client::apps_with_tasks`]), event subscriptions, and
//!   [`Client::events`], a reconnecting SSE stream of [`StreamItem`]s.
//!   Marathon's REST paths are spelled in [`path`] and nowhere else.
//!
//! Canonical output, in short: `App::default()` is what Marathon stores for
//! an app with only an id; `None`/empty fields are omitted; legacy input
//! fields (`ports`, `uris`, `ipAddress`, `container.docker.network`,
//! `container.docker.portMappings`) are read into their own fields and never
//! written; unknown keys are kept in `extra` and written back.
//!
//! ```no_run
//! use futures::StreamExt;
//! use marathon::{App, AppFilter, Client, Error, Event, StreamItem};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::builder("http://user:pass@127.0.0.1:8080")
//!     .maybe_token(std::env::var("MARATHON_TOKEN").ok())
//!     .build()?;
//! let mut app = App::new("/dev/web");
//! app.cmd = Some("python3 -m http.server $PORT0".into());
//! client.create_app(&app).await?;
//! client.scale_app("/dev/web", 3, false).await?;
//! let apps = client.list_apps(&["apps.tasks"], &AppFilter::default()).await?;
//! println!("{} apps", apps.len());
//!
//! let mut events = client.events(&["status_update_event"]);
//! while let Some(item) = events.next().await {
//!     match item {
//!         Ok(StreamItem::Connected) => { /* resync: events may have been missed */ }
//!         Ok(StreamItem::Disconnected) => { /* unhealthy until the next Connected */ }
//!         Ok(StreamItem::Event(Event::StatusUpdate(e))) => println!("{} {}", e.task_id, e.task_status),
//!         Ok(StreamItem::Event(_)) => {}
//!         Err(e) => eprintln!("event stream: {e}"), // it reconnects by itself
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod app;
pub mod checks;
pub mod client;
pub mod container;
pub mod deployment;
pub mod error;
pub mod event;
pub mod info;
pub mod lean;
pub mod query;
pub mod sse;
pub mod strategy;
pub mod stream;
pub mod task;
pub mod time;

pub use app::{
    App, AppInfo, DeploymentRef, EnvValue, Fetch, KillSelection, SecretSource, UnreachableStrategy,
    UpgradeStrategy, VersionInfo,
};
pub use checks::{
    Command, HealthCheck, HealthCheckProtocol, HealthCheckResult, ReadinessCheck,
    ReadinessCheckResult,
};
pub use client::{path, AppFilter, Client, ClientBuilder, KillResult};
pub use container::{
    Container, ContainerType, Docker, Network, NetworkMode, Parameter, PortDefinition, PortMapping,
    Volume,
};
pub use deployment::{
    Deployment, DeploymentAction, DeploymentPlan, DeploymentResult, DeploymentStep, Group,
};
pub use error::{describe_transport, Error, ErrorBody, ErrorDetail, ErrorDetails, Result};
pub use event::Event;
pub use info::{
    EventSubscriptions, HttpConfig, Info, Leader, MarathonConfig, Queue, QueueDelay, QueueItem,
    ZookeeperConfig,
};
pub use query::QueryBool;
pub use stream::{StreamConfig, StreamItem};
pub use task::{IpAddress, Task, TaskFailure, TaskState};
pub use time::Timestamp;
