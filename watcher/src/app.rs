//! Wiring: the watches, the callback runner and the optional child, until a
//! signal (or the child's exit) ends the process.

use std::future::pending;
use std::time::Duration;

use futures::future::join_all;
use nix::sys::signal::Signal;
use registry::{Registry, Scope, Settings};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::child;
use crate::config::{Config, WatchSpec};
use crate::dispatch::dispatch;
use crate::hook::{Notification, Runner};
use crate::signals::Signals;
use crate::watch::follow;

/// How long a callback that is running at shutdown may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until SIGTERM/SIGINT (exit code 0) or, with a child, until the child
/// exits (its exit code). Returns the process exit code.
pub async fn run(config: Config, runner: Option<Runner>, signals: &mut Signals) -> i32 {
    let stop = CancellationToken::new();
    let mut app = None;
    if !config.command.is_empty() {
        match child::spawn(&config.command) {
            Ok(c) => {
                info!(pid = c.id().unwrap_or(0), command = ?config.command, "started the application");
                app = Some(c);
            }
            Err(e) => {
                error!(command = ?config.command, error = %e, "cannot start the application");
                return if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
            }
        }
    }

    let (tx, rx) = mpsc::channel::<Notification>(1024);
    let watching = watch_all(
        config.watches.clone(),
        config.registry.clone(),
        config.debounce,
        tx,
    );
    tokio::pin!(watching);
    let mut dispatcher = tokio::spawn({
        let stop = stop.clone();
        let splay = config.splay;
        async move {
            match runner {
                Some(runner) => dispatch(rx, runner, splay, stop).await,
                None => stop.cancelled().await,
            }
        }
    });

    let code = loop {
        tokio::select! {
            code = wait(&mut app) => {
                info!(code, "the application exited");
                break code;
            }
            signal = signals.recv() => match (&app, signal) {
                (Some(c), s) => child::forward(c, s),
                (None, Signal::SIGHUP) => info!("SIGHUP ignored"),
                (None, s) => {
                    info!(signal = %s, "stopping");
                    break 0;
                }
            },
            _ = &mut watching => {
                error!("every watch ended");
                break 1;
            }
            result = &mut dispatcher => {
                error!(?result, "the callback runner ended");
                break 1;
            }
        }
    };
    stop.cancel();
    if !dispatcher.is_finished()
        && tokio::time::timeout(SHUTDOWN_GRACE, &mut dispatcher)
            .await
            .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "a callback was still running at shutdown; abandoning it");
        dispatcher.abort();
    }
    code
}

async fn wait(app: &mut Option<Child>) -> i32 {
    match app {
        Some(c) => match c.wait().await {
            Ok(status) => child::exit_code(status),
            Err(e) => {
                error!(error = %e, "cannot wait for the application");
                1
            }
        },
        None => pending().await,
    }
}

/// Connects (retrying while etcd is unreachable) and follows every watch.
async fn watch_all(
    watches: Vec<WatchSpec>,
    settings: Settings,
    window: Duration,
    tx: mpsc::Sender<Notification>,
) {
    if watches.is_empty() {
        return pending().await;
    }
    let registry = connect(&settings).await;
    let follows = watches.into_iter().map(|spec| {
        let events = registry.watch(Scope::service(spec.service.clone()), None);
        follow(spec, events, window, tx.clone())
    });
    join_all(follows).await;
}

async fn connect(settings: &Settings) -> Registry {
    let mut backoff = Duration::from_millis(200);
    let mut logged = false;
    loop {
        match Registry::connect(settings).await {
            Ok(r) => return r,
            Err(e) => {
                if !logged {
                    warn!(endpoints = ?settings.endpoints, error = %e, "cannot connect to etcd, retrying");
                    logged = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
