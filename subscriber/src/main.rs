//! `subscriber`: parse config, init tracing, build, run until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use subscriber::{Application, Cli};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let msg = e.to_string();
            let line = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("subscriber: {}", line.trim_start_matches("error: "));
            return ExitCode::from(64);
        }
    };
    let format = cli.log.log_format;
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("subscriber: {e}");
            return ExitCode::from(64);
        }
    };
    daemon::init_logging(format, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("subscriber: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async move {
        let app = match Application::build(config).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("subscriber: {e}");
                return ExitCode::from(69);
            }
        };
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        match app.run_until_stopped(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "subscriber failed");
                ExitCode::from(1)
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
