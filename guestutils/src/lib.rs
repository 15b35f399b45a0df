//! Lookups for code running inside a container: where are the other
//! instances of the services I need, and on which ports? A maestro-ng
//! compatible API (`get_node_list`, `get_port`, ...) that reads the registry
//! live from etcd, plus [`AsyncGuestUtils::wait_for_nodes`].
//!
//! What it owns: the guest side of DESIGN.md's environment contract, with
//! its fallbacks for a real Marathon ([`Environment`]), and the formatting
//! rules of maestro-ng (`host:port1:port2` strings sorted by container name,
//! ports as integers). Reading the process environment is its job (the
//! documented exception to "nothing below main reads the environment"), but
//! every entry point also accepts an explicit map.
//!
//! What it does not own: key formats and records (the `registry` crate),
//! Python (the `guestutils/python` bindings wrap this crate).
//!
//! Two flavours: [`AsyncGuestUtils`] for async code, [`GuestUtils`] for
//! blocking code: the same lookups, run on a small runtime of its own
//! ([`GuestUtils::block_on`]).

mod asynch;
mod blocking;
mod env;
mod error;
pub mod lookup;

pub use asynch::AsyncGuestUtils;
pub use blocking::{runtime, GuestUtils};
pub use env::Environment;
pub use error::{Error, Result};
pub use lookup::Side;
