//! # deployd
//!
//! A gRPC daemon that drives a deployment from source to traffic: build,
//! regional rollout, routing, and instant rollback and promote.
//!
//! # Layout
//!
//! Every import points down: `cli` -> `api` -> `actors` -> `io` -> `model`.
//!
//! - [`model`]: pure domain types, id and name rules, input validation and the
//!   route decisions. No I/O.
//! - [`io`]: what the actors call out to: the redb [`io::store`], the
//!   [`io::region`] drivers (one per region) and the [`io::builder`].
//! - [`actors`]: the supervision tree. One actor per project serializes every
//!   decision about it; children do the slow work (builds, readiness waits).
//! - [`edge`]: the HTTP reverse proxy for every routed hostname, an entry
//!   point beside `api` that reads committed routes.
//! - [`webhook`]: the GitHub webhook listener (HTTP/1.1), another entry
//!   point beside `api`: a signed push becomes a deployment through the
//!   project's actor.
//! - [`api`]: the tonic services that translate gRPC to actor calls and store
//!   reads, plus [`api::serve`], the daemon's entry point.
//! - [`cli`]: the `deployd` command line (server and client subcommands,
//!   and `deployd bench`, the load generator, in [`cli::bench`]).
//! - [`config`]: the daemon's configuration, with embedded defaults.
//! - [`error`]: the one error type every layer reports to the API.
//! - `fail_points`: named fault injection for tests (feature `fail-points`).

pub mod actors;
pub mod api;
pub mod cli;
pub mod config;
pub mod edge;
pub mod error;
#[cfg(feature = "fail-points")]
pub mod fail_points;
pub mod http1_server;
pub mod io;
pub mod metrics;
pub mod model;
pub mod pb;
pub mod webhook;

pub use api::{DaemonHandle, serve, serve_observed};
pub use config::Config;
