//! The `deployd` binary; everything it does is in [`deployd::cli`].

use std::process::ExitCode;

use clap::Parser;

// Why not glibc's malloc (nor mimalloc): see ARCHITECTURE.md, "Entry points".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation. Background threads
/// return freed pages to the system a second after they fall idle, so a
/// daemon whose load ebbs (20,000 watches closing) shrinks again without
/// waiting for its next allocation.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_OPTIONS: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

fn main() -> ExitCode {
    deployd::cli::run(deployd::cli::Cli::parse())
}
