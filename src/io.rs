//! Everything the actors call out to, each behind a small interface so actors
//! can be tested with in-memory stand-ins and run with real drivers:
//!
//! - [`store`]: the redb file; one writer thread commits many actors'
//!   changes together (group commit) and answers only once durable.
//! - [`region`]: one driver per region applies topologies, sentinels and
//!   network policies, reports instances and scales deployments.
//! - [`builder`]: turns a git source into an image.
//! - [`backends`]: where each deployment's instances listen, as the drivers
//!   report it; the reconciler writes it, the edge reads it.
//! - [`github`]: GitHub's REST API (commit statuses).
//! - [`dns`]: TXT lookups that prove custom domains.

pub mod backends;
pub mod builder;
pub mod dns;
pub mod github;
pub mod region;
pub mod store;
pub mod thread_priority;
pub mod tls;
