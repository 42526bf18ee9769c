//! The `deployd` binary; everything it does is in [`deployd::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    deployd::cli::run(deployd::cli::Cli::parse())
}
