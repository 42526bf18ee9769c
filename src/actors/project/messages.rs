//! Every message a project actor handles. Requests carry their reply port;
//! business failures go into the reply, never out of `handle`.

use std::collections::BTreeMap;

use ractor::RpcReplyPort;

use crate::actors::project::effects::{Child, FollowUp, OnReject, Timer};
use crate::actors::readiness::RegionOutcome;
use crate::error::Error;
use crate::io::builder::{BuildError, BuildOutput};
use crate::model::domains::DomainChallenge;
use crate::model::project::Project;
use crate::model::{Deployment, DeploymentId, DeploymentStatus, Origin, Route};
pub use crate::model::{NewDeployment, SwitchOutcome};

/// The answer to `CreateDeployment`: the new deployment as first stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: DeploymentId,
    pub status: DeploymentStatus,
}

/// The answer to `AddCustomDomain` and `VerifyCustomDomain`: the project,
/// the domain's `LIVE` route if it is attached and the project has a live
/// deployment, and the TXT record to create while it waits for its proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainAdded {
    pub project: Project,
    pub route: Option<Route>,
    pub challenge: Option<DomainChallenge>,
}

pub type Reply<T> = RpcReplyPort<Result<T, Error>>;

pub enum ProjectMsg {
    // Requests (from the API).
    Deploy {
        request: Box<NewDeployment>,
        origin: Origin,
        reply: Reply<Created>,
    },
    Rollback {
        source: DeploymentId,
        target: DeploymentId,
        origin: Origin,
        reply: Reply<SwitchOutcome>,
    },
    Promote {
        target: DeploymentId,
        origin: Origin,
        reply: Reply<SwitchOutcome>,
    },
    SetEnvironmentRegions {
        environment: String,
        regions: BTreeMap<String, u32>,
        origin: Origin,
        reply: Reply<Project>,
    },
    AddCustomDomain {
        fqdn: String,
        origin: Origin,
        reply: Reply<DomainAdded>,
    },
    /// `VerifyCustomDomain`, with what DNS answered for the domain's
    /// challenge record (looked up by the API handler, outside the
    /// mailbox).
    VerifyCustomDomain {
        fqdn: String,
        found: Vec<String>,
        origin: Origin,
        reply: Reply<DomainAdded>,
    },
    /// `RemoveCustomDomain`: answers with the project without the domain.
    RemoveCustomDomain {
        fqdn: String,
        origin: Origin,
        reply: Reply<Project>,
    },

    /// `CancelDeployment`: answers with the deployment as stored
    /// `CANCELLED`.
    Cancel {
        deployment: DeploymentId,
        /// Its audit event, stored with the cancel (a cancel needs no
        /// idempotency key: it is idempotent by itself).
        origin: Origin,
        reply: Reply<Deployment>,
    },

    /// Answers at once: a liveness probe, and the measure of one mailbox
    /// round trip (benches/hot_paths.rs).
    Ping { reply: Reply<()> },

    // Reports from children. `ticket` identifies the spawn they belong to;
    // reports of a superseded spawn are ignored.
    /// The build waits for a build slot (`queued`), or got one after
    /// waiting. Output lines do not come here: the build child writes them
    /// to the log and the watchers itself.
    BuildSlot {
        deployment: DeploymentId,
        ticket: u64,
        queued: bool,
    },
    BuildFinished {
        deployment: DeploymentId,
        ticket: u64,
        result: Result<BuildOutput, BuildError>,
    },
    RegionSettled {
        deployment: DeploymentId,
        ticket: u64,
        region: String,
        outcome: RegionOutcome,
    },

    /// A periodic timer: stop if idle (see `idle_actor_stop_ms`).
    IdleCheck,

    /// A timer armed for a scheduled change; stale generations are ignored.
    ScheduleDue {
        deployment: DeploymentId,
        generation: u64,
    },

    /// A submission of this actor settled: what is left of its effects that
    /// only the actor can do (start children, arm timers, continue a
    /// two-step request), or the news that it did not land.
    Committed(Box<AfterCommit>),
}

/// The actor's part of a settled submission.
pub struct AfterCommit {
    pub outcome: Result<(), Error>,
    pub children: Vec<Child>,
    pub timers: Vec<Timer>,
    pub follow_up: Option<FollowUp>,
    pub on_reject: OnReject,
}

impl ProjectMsg {
    /// Requests from the API (as opposed to reports and timers) keep an
    /// actor from being stopped as idle.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Self::Deploy { .. }
                | Self::Rollback { .. }
                | Self::Promote { .. }
                | Self::SetEnvironmentRegions { .. }
                | Self::AddCustomDomain { .. }
                | Self::VerifyCustomDomain { .. }
                | Self::RemoveCustomDomain { .. }
                | Self::Cancel { .. }
                | Self::Ping { .. }
        )
    }
}
