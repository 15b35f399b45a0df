//! `manager`: parse the configuration, set up logging, build the
//! application, run it until SIGTERM/SIGINT, then shut down within
//! `--shutdown-timeout` (tasks keep running for the next manager).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use manager::config::{Cli, Config};
use manager::Application;
use tokio_util::sync::CancellationToken;

/// Slack past `--shutdown-timeout` before the watchdog ends the process:
/// the staged shutdown plus the runtime's own teardown fit in it.
const WATCHDOG_SLACK: Duration = Duration::from_secs(3);

/// How long the runtime's teardown may wait for blocking tasks.
const RUNTIME_TEARDOWN: Duration = Duration::from_secs(1);

/// Environment names of earlier releases, still accepted.
const ENV_ALIASES: &[(&str, &[&str])] = &[
    ("LOG_FORMAT", &["MANAGER_LOG_FORMAT"]),
    (
        "CONTAINER_ETCD_ENDPOINTS",
        &["MANAGER_CONTAINER_ETCD_ENDPOINTS"],
    ),
    ("MANAGER_MAX_BODY_BYTES", &["MANAGER_MAX_BODY"]),
];

fn main() -> ExitCode {
    daemon::apply_env_aliases(ENV_ALIASES);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("manager: {}", line.trim_start_matches("error: "));
            return ExitCode::from(64);
        }
    };
    let cfg = match Config::try_from(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("manager: {e}");
            return ExitCode::from(64);
        }
    };
    daemon::init_logging(cfg.log_format, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("manager: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cfg));
    // A blocking task stuck in a system call must not hold the exit.
    runtime.shutdown_timeout(RUNTIME_TEARDOWN);
    code
}

async fn run(cfg: Config) -> ExitCode {
    let bound = cfg.shutdown_timeout;
    let app = match Application::build(cfg).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("manager: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        signal_stop.cancel();
        start_watchdog(bound + WATCHDOG_SLACK);
    });
    match app.run_until_stopped(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("manager: {e}");
            ExitCode::from(1)
        }
    }
}

/// Last resort: every shutdown stage is bounded, but should one still hang
/// (a worker thread stuck outside the runtime), end the process anyway.
fn start_watchdog(after: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            eprintln!(
                "manager: shutdown still running after {} s; exiting",
                after.as_secs()
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no shutdown watchdog");
    }
}
