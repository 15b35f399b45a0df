//! Wiring: the watches, the callback runner, the templates and the optional
//! child, until a signal (or the child's exit) ends the process. With
//! templates, the child starts only after their first render.

use std::future::pending;
use std::time::Duration;

use futures::future::join_all;
use nix::sys::signal::Signal;
use registry::{Registry, Scope, Settings};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::child;
use crate::config::{Config, WatchSpec};
use crate::delta::InstanceSet;
use crate::dispatch::dispatch;
use crate::hook::{Notification, Runner};
use crate::signals::Signals;
use crate::template::{self, Templates};
use crate::watch::follow;

/// How long a callback (or a template command) that is running at shutdown
/// may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until SIGTERM/SIGINT (exit code 0) or, with a child, until the child
/// exits (its exit code). Returns the process exit code.
pub async fn run(
    config: Config,
    runner: Option<Runner>,
    templates: Option<Templates>,
    signals: &mut Signals,
) -> i32 {
    let stop = CancellationToken::new();
    let mut app = None;
    // With templates the child waits for their first render.
    let mut child_pending = !config.command.is_empty();
    let (ready_tx, mut ready_rx) = oneshot::channel::<()>();
    let ready_tx = match templates {
        Some(_) => Some(ready_tx),
        None => {
            let _ = ready_tx.send(());
            None
        }
    };

    // One state channel per watch, for the templates.
    let mut publishers = Vec::new();
    let mut states = Vec::new();
    for spec in &config.watches {
        if templates.is_some() {
            let (tx, rx) = watch::channel::<Option<InstanceSet>>(None);
            publishers.push(Some(tx));
            states.push((spec.name.clone(), rx));
        } else {
            publishers.push(None);
        }
    }
    let mut renderer = tokio::spawn({
        let stop = stop.clone();
        let window = config.debounce;
        let has_child = child_pending;
        async move {
            match (templates, ready_tx) {
                (Some(t), Some(ready)) => {
                    template::run(t, states, window, has_child, ready, stop).await
                }
                _ => stop.cancelled().await,
            }
        }
    });

    let (tx, rx) = mpsc::channel::<Notification>(1024);
    let watching = watch_all(
        config.watches.clone(),
        config.registry.clone(),
        config.debounce,
        tx,
        publishers,
    );
    tokio::pin!(watching);
    let mut dispatcher = tokio::spawn({
        let stop = stop.clone();
        let splay = config.splay;
        async move {
            match runner {
                Some(runner) => dispatch(rx, runner, splay, stop).await,
                // Template mode alone: nobody reads the changes, but the
                // watches must never block on a full channel.
                None => {
                    let mut rx = rx;
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            n = rx.recv() => if n.is_none() {
                                stop.cancelled().await;
                                break;
                            },
                        }
                    }
                }
            }
        }
    });

    let code = loop {
        tokio::select! {
            ready = &mut ready_rx, if child_pending => {
                child_pending = false;
                if ready.is_err() {
                    // The renderer ended without rendering: its branch says why.
                    continue;
                }
                match child::spawn(&config.command) {
                    Ok(c) => {
                        info!(pid = c.id().unwrap_or(0), command = ?config.command, "started the application");
                        app = Some(c);
                    }
                    Err(e) => {
                        error!(command = ?config.command, error = %e, "cannot start the application");
                        break if e.kind() == std::io::ErrorKind::NotFound {
                            127
                        } else {
                            126
                        };
                    }
                }
            }
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
            result = &mut renderer => {
                error!(?result, "the template renderer ended");
                break 1;
            }
        }
    };
    stop.cancel();
    for (task, what) in [
        (&mut dispatcher, "a callback"),
        (&mut renderer, "a template command"),
    ] {
        if !task.is_finished()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut *task)
                .await
                .is_err()
        {
            warn!(grace = ?SHUTDOWN_GRACE, "{what} was still running at shutdown; abandoning it");
            task.abort();
        }
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
/// `publishers[i]` (template mode) gets the instance sets of `watches[i]`.
async fn watch_all(
    watches: Vec<WatchSpec>,
    settings: Settings,
    window: Duration,
    tx: mpsc::Sender<Notification>,
    publishers: Vec<Option<watch::Sender<Option<InstanceSet>>>>,
) {
    if watches.is_empty() {
        return pending().await;
    }
    let registry = connect(&settings).await;
    let follows = watches.into_iter().zip(publishers).map(|(spec, states)| {
        let events = registry.watch(Scope::service(spec.service.clone()), None);
        follow(spec, events, window, tx.clone(), states)
    });
    join_all(follows).await;
}

async fn connect(settings: &Settings) -> Registry {
    let mut backoff = daemon::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut logged = false;
    loop {
        match Registry::connect(settings).await {
            Ok(r) => return r,
            Err(e) => {
                if !logged {
                    warn!(endpoints = ?daemon::redact_urls(&settings.endpoints), error = %e, "cannot connect to etcd, retrying");
                    logged = true;
                }
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}
