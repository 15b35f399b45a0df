use std::time::Duration;

/// Everything a lookup can fail with (`GuestUtilsError` in Python).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The environment does not say what was asked (not inside a task?).
    #[error("cannot determine the {what}: none of {vars} is set")]
    MissingEnv {
        what: &'static str,
        vars: &'static str,
    },
    /// An environment value that cannot be used.
    #[error("invalid environment variable {var}={value:?}: {reason}")]
    InvalidEnv {
        var: String,
        value: String,
        reason: String,
    },
    /// Fewer instances than required are registered.
    #[error("expected at least {minimum} node(s) of service {service}, found {found}")]
    NotEnoughNodes {
        service: String,
        minimum: usize,
        found: usize,
    },
    /// The container is not registered under that service.
    #[error("container {container} of service {service} is not registered")]
    UnknownContainer { service: String, container: String },
    /// The container has no such port (and no default was given).
    #[error("container {container} of service {service} has no port named {port}")]
    UnknownPort {
        service: String,
        container: String,
        port: String,
    },
    /// The registered record has no internal address (and the environment neither).
    #[error("no internal address known for container {container}")]
    NoInternalAddress { container: String },
    /// `wait_for_nodes` ran out of time.
    #[error("timed out after {timeout:?} waiting for {minimum} node(s) of service {service} (found {found})")]
    Timeout {
        service: String,
        minimum: usize,
        found: usize,
        timeout: Duration,
    },
    /// The registry (etcd) failed or the settings are unusable.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// The blocking API could not start its runtime.
    #[error("cannot start the guestutils runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
