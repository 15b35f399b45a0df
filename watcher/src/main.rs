//! `watcher`: parse, validate, load the callback, run; exit codes: 0 after
//! SIGTERM/SIGINT, the child's code in child mode, 64 for bad configuration.

use clap::Parser;
use watcher::hook::{HookError, Runner};
use watcher::signals::Signals;
use watcher::template::Templates;
use watcher::Cli;

const EX_USAGE: i32 = 64;

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            // clap's message, first line only (the rest is usage help).
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments");
            eprintln!("watcher: {}", line.trim_start_matches("error: "));
            return EX_USAGE;
        }
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("watcher: {e}");
            return EX_USAGE;
        }
    };
    // Templates are read and compiled before anything starts (and before
    // logging): a missing or broken one is a usage error, one line.
    let templates = if config.templates.is_empty() {
        None
    } else {
        match Templates::load(&config.templates) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("watcher: {e}");
                return EX_USAGE;
            }
        }
    };
    daemon::init_logging(config.log_format, "info");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        watches = ?config.watches.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        hook = ?config.hook,
        templates = ?config.templates.iter().map(|t| format!("{} -> {}", t.src.display(), t.dest.display())).collect::<Vec<_>>(),
        debounce = ?config.debounce,
        splay = ?config.splay,
        endpoints = ?daemon::redact_urls(&config.registry.endpoints),
        hook_timeout = ?config.hook_timeout,
        prefix = %config.registry.prefix,
        child = ?config.command,
        "watcher starting"
    );

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("watcher: cannot start the runtime: {e}");
            return 1;
        }
    };
    // The callback is loaded before anything starts, so a broken
    // watch_methods.py stops the container at once with its traceback.
    let hook = config.hook.as_ref().filter(|_| !config.watches.is_empty());
    let runner = match hook {
        None => None,
        Some(hook) => match Runner::load(hook, config.hook_timeout) {
            Ok(r) => Some(r),
            Err(HookError::PythonLoad { path, traceback }) => {
                tracing::error!("cannot load {}:\n{}", path.display(), traceback.trim_end());
                let last = traceback
                    .trim_end()
                    .lines()
                    .last()
                    .unwrap_or("error")
                    .to_string();
                eprintln!("watcher: cannot load {}: {last}", path.display());
                return EX_USAGE;
            }
            Err(e) => {
                eprintln!("watcher: {e}");
                return EX_USAGE;
            }
        },
    };
    let code = runtime.block_on(async {
        let mut signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("watcher: cannot install signal handlers: {e}");
                return 1;
            }
        };
        watcher::app::run(config, runner, templates, &mut signals).await
    });
    // A Python callback stuck past the grace period must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    tracing::info!(code, "watcher stopped");
    code
}
