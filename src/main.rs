//! The `deployd` binary; everything it does is in [`deployd::cli`].

use std::process::ExitCode;

use clap::Parser;

// Why not glibc's malloc: see ARCHITECTURE.md, "Entry points".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    deployd::cli::run(deployd::cli::Cli::parse())
}
