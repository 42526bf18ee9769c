//! The supervision tree.
//!
//! ```text
//! ProjectSupervisor
//! └── ProjectActor (one per project, spawned on demand)
//!     ├── BuildActor (one per build)
//!     └── ReadinessActor (one per (deployment, region))
//! ```
//!
//! Project actors decide; children and `io` do the slow work and report back
//! as messages, so a project's mailbox never waits behind a build or a
//! readiness poll. API handlers reach a project actor through [`Projects`],
//! which looks it up in a concurrent registry without a round trip through
//! the supervisor.

pub mod build;
pub mod deps;
pub mod events;
#[cfg(feature = "fail-points")]
pub mod fail_points;
pub mod project;
pub mod projects;
pub mod readiness;
pub mod supervisor;

pub use deps::Deps;
pub use events::DeploymentEvents;
pub use projects::Projects;
