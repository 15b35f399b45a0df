//! `manager`: parse the configuration, set up logging, build the
//! application, run it until SIGTERM/SIGINT.

use clap::Parser;
use manager::config::{Cli, Config, LogFormat};
use manager::Application;
use tokio_util::sync::CancellationToken;

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() {
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
            std::process::exit(64);
        }
    };
    let cfg = match Config::try_from(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("manager: {e}");
            std::process::exit(64);
        }
    };
    init_tracing(cfg.log_format);
    let app = match Application::build(cfg).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("manager: {e}");
            std::process::exit(1);
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
    });
    if let Err(e) = app.run_until_stopped(stop).await {
        eprintln!("manager: {e}");
        std::process::exit(1);
    }
}
