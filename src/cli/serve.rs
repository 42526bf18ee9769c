//! `deployd serve` and `deployd check`: assemble the configuration
//! (embedded defaults, then the TOML file, then flags), then either run the
//! daemon until SIGINT or SIGTERM or verify its data file offline.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::Config;
use crate::cli::args::ConfigArgs;
use crate::cli::output::emit;
use crate::config::LogFormat;
use crate::io::store::check::check_file;

/// The exit code of `check` when the file has problems, distinct from 1
/// (the check itself could not run).
const EXIT_UNSOUND: u8 = 2;

/// Defaults, then the file, then the flags; validated as a whole because a
/// flag can make a valid file invalid and vice versa.
pub fn config(args: &ConfigArgs, listen: Option<SocketAddr>) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = listen {
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

/// Runs the daemon until it stops; the caller provides the runtime.
pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(config.log_format)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let shutdown = shutdown_signal()?;
    // `serve` calls back once recovery is done and health says SERVING.
    // Announcing readiness then (rather than at bind time) lets a
    // supervisor or test wait for one stdout line, and learn the port when
    // `--listen` asked for port 0.
    let (serving, announced) = tokio::sync::oneshot::channel();
    let daemon = crate::serve_observed(listener, config, shutdown, move |handle| {
        if let Some(token) = &handle.bootstrap_token {
            // Its only appearance: the store keeps a hash, the log nothing.
            let _ = emit(&format!(
                "deployd bootstrap admin token (shown once; keep it, it is stored nowhere): {token}"
            ));
        }
        let _ = serving.send(());
    });
    tokio::pin!(daemon);
    tokio::select! {
        result = &mut daemon => return result,
        Ok(()) = announced => {
            // Best effort: a closed stdout must not stop the daemon.
            let _ = emit(&format!("deployd listening on {local}"));
        }
    }
    daemon.await
}

/// `deployd check`: the daemon must be stopped (redb allows one process).
pub fn check(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = config(args, None)?;
    let path = config.db_path();
    let report = check_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    emit(&report.summary())?;
    if report.is_sound() {
        return Ok(ExitCode::SUCCESS);
    }
    let _ = writeln!(
        std::io::stderr(),
        "error: {} has {} problem(s)",
        path.display(),
        report.problems.len()
    );
    Ok(ExitCode::from(EXIT_UNSOUND))
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). A malformed
/// `RUST_LOG` is an error rather than silently logging less than asked.
/// `json`: one object per line, with the current span (the RPC and its
/// ids, or the deployment step) and the spans around it.
fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter()?)
        .with_writer(std::io::stderr);
    let installed = match format {
        // Colour codes only help a terminal; in a log file they are noise.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// `RUST_LOG`, or `info` without it.
fn log_filter() -> anyhow::Result<EnvFilter> {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("invalid RUST_LOG")
}

/// The load generator's in-process daemon logs as `serve` does (`RUST_LOG`,
/// default `info`), so its spans and events cost what they cost a deployed
/// daemon; only warnings and errors reach the terminal, since a line per
/// rollback would bury the report.
pub(crate) fn init_bench_logging() -> anyhow::Result<()> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let as_served = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(log_filter()?);
    let shown = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(as_served)
        .with(shown)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
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
