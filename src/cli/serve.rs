//! `deployd serve`: assemble the configuration (embedded defaults, then the
//! TOML file, then flags), set up logging, bind the listener and run the
//! daemon until SIGINT or SIGTERM.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::Config;
use crate::cli::args::ServeArgs;
use crate::cli::output::emit;

/// Defaults, then the file, then the flags; validated as a whole because a
/// flag can make a valid file invalid and vice versa.
pub fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data_dir) = &args.data_dir {
        config.data_dir.clone_from(data_dir);
    }
    config.validate()?;
    Ok(config)
}

pub fn dump(config: &Config) -> anyhow::Result<()> {
    let text = toml::to_string_pretty(config).context("cannot print the config as TOML")?;
    emit(&text)?;
    Ok(())
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). A malformed
/// `RUST_LOG` is an error rather than silently logging less than asked.
fn init_logging() -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("invalid RUST_LOG")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in a log file they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = shutdown_signal()?;
    crate::serve(listener, config, shutdown).await
}

/// Resolves on the first SIGINT or SIGTERM. Handlers are installed before
/// the daemon starts, so a signal that arrives during startup still counts.
/// Once shutdown has begun, a second signal exits at once, for the operator
/// who does not want to wait for in-flight work to drain.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down; signal again to exit immediately");
        tokio::spawn(async move {
            // The shell convention: 128 + the signal number.
            let code = tokio::select! {
                _ = interrupt.recv() => 130,
                _ = terminate.recv() => 143,
            };
            tracing::warn!("second signal: exiting without a clean shutdown");
            std::process::exit(code);
        });
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
