//! Pure domain: types, id and hostname rules, input validation and the route
//! decisions of deploy, rollback and promote. Nothing here does I/O, so every
//! rule is unit-testable on its own.
//!
//! Types that derive `serde` here are stored in redb (see `io::store::codec`):
//! changing one is a change of the on-disk format.

pub mod audit;
pub mod auth;
pub mod deployment;
pub mod domains;
pub mod github;
pub mod idempotency;
pub mod ids;
pub mod names;
pub mod project;
pub mod quote;
pub mod routes;
pub mod schedule;
pub mod validate;

pub use audit::{AuditEvent, AuditOutcome, Origin};
pub use auth::{Caller, Role, TokenRecord};
pub use deployment::{
    Deployment, DeploymentStatus, DesiredState, GitCommit, GitSource, Instance, NewDeployment,
    RegionTopology, Source, Step, StepName,
};
pub use idempotency::{Idempotency, IdempotencyKey, IdempotencyRecord, StoredReply, SwitchOutcome};
pub use ids::{AuditEventId, DeploymentId, ProjectId, TokenId, WorkspaceId};
pub use project::{Environment, Project, Workspace};
pub use routes::{Route, RouteKind};
pub use schedule::{ScheduledAction, ScheduledChange};

/// Milliseconds since the Unix epoch: the one clock of stored timestamps.
pub type UnixMillis = u64;

pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
