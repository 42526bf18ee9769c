//! The supervision tree.
//!
//! ```text
//! ProjectSupervisor
//! └── ProjectActor (one per project, spawned on demand)
//!     ├── BuildActor (one per build)
//!     └── ReadinessActor (one per (deployment, region))
//! Reconciler (tasks, one per deployment with driver calls to make)
//! ```
//!
//! Project actors decide; children and `io` do the slow work and report back
//! as messages, so a project's mailbox never waits behind a build or a
//! readiness poll. API handlers reach a project actor through [`Projects`],
//! which looks it up in a concurrent registry without a round trip through
//! the supervisor.

mod build;
pub mod build_slots;
mod deps;
mod events;
pub mod project;
mod projects;
pub mod readiness;
pub mod reconciler;
mod supervisor;

pub use deps::Deps;
pub use events::{DeploymentEvents, Subscription, Update};
pub use projects::Projects;
pub use reconciler::Reconciler;
