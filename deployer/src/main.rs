//! `deployer`: parse the command line, set up logs, run one command.

use std::process::ExitCode;
use std::time::Duration;

use deployer::actions::{self, CliError};
use deployer::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

/// Environment names of earlier releases, still accepted.
const ENV_ALIASES: &[(&str, &[&str])] = &[("LOG_FORMAT", &["DEPLOYER_LOG_FORMAT"])];

fn fail(e: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("deployer: {e}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    // Before the async runtime starts its threads.
    daemon::apply_env_aliases(ENV_ALIASES);
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli: Cli = match daemon::parse_cli() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let settings = match cli.common.settings() {
        Ok(s) => s,
        Err(e) => return fail(e, 64),
    };
    if let Command::Serve(args) = &cli.command {
        let config = match args.config(&cli.common) {
            Ok(c) => c,
            Err(e) => return fail(e, 64),
        };
        daemon::init_logging(cli.common.log.log_format, "info");
        return serve(config).await;
    }
    let result: Result<String, CliError> = match &cli.command {
        Command::Serve(_) => unreachable!("handled above"),
        Command::Render { file } => actions::render(file, &settings),
        Command::Apply {
            file,
            wait,
            wait_timeout,
        } => {
            let wait = wait.then(|| Duration::from_secs(*wait_timeout));
            actions::apply_file(file, wait, &settings).await
        }
        Command::Status { json } => actions::status(*json, &settings).await,
        Command::Remove { service, labels } => actions::remove(service, labels, &settings).await,
    };
    match result {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, e.exit_code()),
    }
}

async fn serve(config: deployer::config::ServeConfig) -> ExitCode {
    let listen = config.listen;
    let marathon = config.settings.marathon.url.clone();
    let app = match deployer::Application::build(config) {
        Ok(a) => a,
        Err(e) => return fail(format_args!("cannot listen on {listen}: {e}"), 64),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %format!("{}:{}", listen.ip(), app.port()),
        marathon = %daemon::redact_url(&marathon),
        "deployer listening"
    );
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    let signal_task = async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("signal received, shutting down");
        signals.cancel();
    };
    let stopper = shutdown.clone();
    let server = async move {
        let r = app.run_until_stopped(stopper.clone()).await;
        stopper.cancel();
        r
    };
    let (result, _) = tokio::join!(server, async {
        tokio::select! {
            _ = signal_task => {}
            _ = shutdown.cancelled() => {}
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format_args!("server failed: {e}"), 1),
    }
}
