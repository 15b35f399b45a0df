//! Fault injection for issue 14, shared by the suite (`bench/tests/faults.rs`)
//! and the soak (`src/bin/soak.rs`): the real manager and subscriber binaries
//! on a real 3-member etcd cluster, real command tasks, real Docker
//! containers behind a socket proxy ([`stack`]); the invariant "what runs ==
//! the manager's running tasks == the records in etcd" checked from outside
//! ([`check`]); the workload, churn and faults ([`inject`]).

pub mod check;
pub mod inject;
pub mod stack;

pub use check::{observe, Checker, EtcdReaders, Observation};
pub use inject::{churn, deploy, inject, Fault, Outcome};
pub use stack::{Delivery, Stack, StackOptions};
