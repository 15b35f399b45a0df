//! What runs on a change: the user's Python function or a shell command.
//! Either way a failure is logged (traceback or exit status) and the
//! watcher goes on.

mod exec;
#[cfg(feature = "python")]
pub mod python;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Hook;
use crate::delta::Change;

pub use exec::ExecHook;

/// A change of one watch, ready for a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The WATCHES entry (`ingestor` or `ingestor.testing`).
    pub watch: String,
    pub change: Change,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// watch_methods.py could not be loaded (or has no `service_change`).
    #[error("cannot load {path}:\n{traceback}")]
    PythonLoad { path: PathBuf, traceback: String },
    /// `service_change` raised.
    #[error("service_change raised:\n{traceback}")]
    PythonRaised { traceback: String },
    /// The command could not be started.
    #[error("cannot start the command: {0}")]
    Spawn(#[source] std::io::Error),
    /// The command ended with a failure status.
    #[error("the command failed: {0}")]
    Failed(std::process::ExitStatus),
    /// The command ran past `--hook-timeout`; its process group was killed.
    #[error("the command ran longer than {0:?}; its process group was killed")]
    TimedOut(Duration),
    /// Built without the `python` feature.
    #[error("this watcher was built without Python support")]
    NoPython,
}

/// A loaded callback.
#[derive(Debug)]
pub enum Runner {
    Exec(ExecHook),
    #[cfg(feature = "python")]
    Python(python::PythonHook),
}

impl Runner {
    /// Prepares the hook; in Python mode this initialises the interpreter
    /// and runs the module, so a broken file is reported at start.
    /// `timeout` bounds each run of an exec hook (zero: no bound).
    pub fn load(hook: &Hook, timeout: Duration) -> Result<Runner, HookError> {
        match hook {
            Hook::Exec(command) => Ok(Runner::Exec(
                ExecHook::new(command.clone()).with_timeout(timeout),
            )),
            #[cfg(feature = "python")]
            Hook::Python { path, full_site } => {
                Ok(Runner::Python(python::PythonHook::load(path, *full_site)?))
            }
            #[cfg(not(feature = "python"))]
            Hook::Python { .. } => Err(HookError::NoPython),
        }
    }

    pub async fn run(&self, n: &Notification) -> Result<(), HookError> {
        match self {
            Runner::Exec(h) => h.run(n).await,
            #[cfg(feature = "python")]
            Runner::Python(h) => h.run(n).await,
        }
    }
}
