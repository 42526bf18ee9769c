//! The supervision tree.
//!
//! ```text
//! ProjectSupervisor (on the actor thread, with everything below it)
//! └── ProjectActor (one per project, spawned on demand)
//!     ├── BuildActor (one per build)
//!     └── ReadinessActor (one per (deployment, region))
//! Reconciler (tasks, one per deployment with driver calls to make)
//! StatusReporter (one task: GitHub commit statuses from the outbox)
//! Resync (one task: orphans and drift in regions that keep objects)
//! ```
//!
//! Project actors decide; children and `io` do the slow work and report back
//! as messages, so a project's mailbox never waits behind a build or a
//! readiness poll. API handlers reach a project actor through [`Projects`],
//! which looks it up in a concurrent registry without a round trip through
//! the supervisor. The tree runs on a thread of its own
//! ([`actor_thread`]), so deploy traffic queued on the main runtime never
//! delays a message to an actor.

mod actor_thread;
mod build;
pub mod build_slots;
mod deps;
mod events;
pub mod github;
pub mod project;
mod projects;
pub mod readiness;
pub mod reconciler;
pub mod resync;
mod supervisor;

pub use deps::Deps;
pub use events::{DeploymentEvents, Subscription, Update};
pub use projects::Projects;
pub use reconciler::Reconciler;
