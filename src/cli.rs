//! The `deployd` command line: `serve` runs the daemon, `check` verifies
//! its data file offline, every other subcommand is a gRPC client of one.
//! [`run`] executes a parsed [`Cli`] and reports errors as
//! `error: <message>` on stderr.

mod admin;
mod args;
pub mod bench;
mod client;
mod deploy;
mod output;
mod render;
mod serve;

use std::io::Write;
use std::process::ExitCode;

pub use args::Cli;
use args::Command;
pub use client::{AuthChannel, Bearer, with_token};

/// Runs the command and returns the process exit code: 0 on success, 1 on
/// any error, 2 when a followed deployment ended `FAILED` or `check` found
/// problems.
pub fn run(cli: Cli) -> ExitCode {
    match execute(cli) {
        Ok(code) => code,
        // The reader went away (`deployd deployments ... | head`): nothing
        // is wrong and nobody is left to tell.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // The message may quote what the daemon stored or was sent.
            let message = format!("{error:#}");
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                output::terminal_safe(&message)
            );
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = serve::config(&args.config, args.listen)?;
            if args.dump_config {
                serve::dump(&config)?;
            } else {
                let runtime = runtime(true)?;
                let served = runtime.block_on(serve::run(config));
                // `serve` gave up on anything still running (a store write
                // past its deadline, say); waiting for it here would break
                // the shutdown bound, and what it acknowledged is durable.
                runtime.shutdown_timeout(std::time::Duration::from_millis(100));
                served?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => serve::check(&args.config),
        Command::Bench(args) => {
            // Without a subscriber every span of h2 and tonic would take
            // tracing's `log` fallback (kube-client switches it on), a cost
            // no deployed daemon pays.
            serve::init_bench_logging()?;
            let report = runtime(true)?.block_on(bench::run(*args, cli.token, &cli.tls))?;
            if cli.json {
                output::json_pretty(&report)?;
            } else {
                output::emit(&report.table())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(args::TokenCommand::Generate) => {
            output::emit(&crate::model::auth::NewToken::generate().text)?;
            Ok(ExitCode::SUCCESS)
        }
        command => runtime(false)?.block_on(client::run(
            &cli.addr,
            &cli.tls,
            cli.token.as_deref(),
            cli.json,
            command,
        )),
    }
}

/// The daemon gets every core; a client makes a handful of sequential calls
/// and starts faster on one thread.
fn runtime(multi_thread: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
