//! The `deployd` command line.
