//! Effects as data. A decision of the project actor changes the actor's
//! memory and describes everything else that must happen as an [`Effects`]:
//! the records to store (one submission), the answers to send, the driver
//! calls to make, the children to start, the timers to arm. Nothing in it
//! has happened yet. The executor (`executor.rs`) stores `writes` and only
//! after that commit does the rest, so an effect is never run for a decision
//! that was not stored, and a decision cannot forget an effect without it
//! showing in the value a unit test inspects.

use std::sync::Arc;
use std::time::Duration;

use crate::actors::build_slots::Priority;
use crate::actors::project::messages::{Created, DomainAdded, Reply};
use crate::actors::project::own_writes::Settlement;
use crate::actors::reconciler::WorkloadIntent;
use crate::error::Error;
use crate::io::builder::BuildRequest;
use crate::io::region::WorkloadSpec;
use crate::io::store::Mutation;
use crate::model::deployment::StepName;
use crate::model::project::Project;
use crate::model::{Deployment, DeploymentId, DeploymentStatus, Origin, SwitchOutcome};

/// What one decision asks for, in the order it must happen.
#[must_use = "a decision's effects do nothing until the executor runs them"]
#[derive(Default)]
pub struct Effects {
    /// Stored in one submission, atomically; everything below waits for
    /// its commit.
    pub writes: Vec<Mutation>,
    /// Commit ahead of other projects' queued work (rollback, promote).
    pub urgent: bool,
    /// Even with nothing to write, wait until every earlier submission of
    /// this actor has settled (an idempotent replay must never answer
    /// before the original commit).
    pub after_earlier: bool,
    /// The submission whose record a replayed answer comes from: if it
    /// failed, the answer is `UNAVAILABLE` instead (the original change was
    /// never stored).
    pub unless_failed: Option<Arc<Settlement>>,
    /// Sent after the commit; a failed commit replaces successes with its
    /// error.
    pub answers: Vec<Answer>,
    /// Whole desired states handed to the drivers after the commit.
    pub drivers: Vec<WorkloadIntent>,
    /// Children started after the commit.
    pub children: Vec<Child>,
    /// Timers armed after the commit.
    pub timers: Vec<Timer>,
    /// Children to stop at once: they work for something already decided
    /// against (stopping an observer is no effect on the world).
    pub stop_children: Vec<DeploymentId>,
    /// What the actor itself must hear about the commit's outcome.
    pub follow_up: Option<FollowUp>,
    /// A fail point hit after the commit and before the answers (tests).
    pub fail_point_after_commit: Option<&'static str>,
    /// Whether a rejected submission was foreseen by the decision (its
    /// answers say why and its memory did not change), or leaves the
    /// actor's memory ahead of the store so it must reload.
    pub on_reject: OnReject,
    /// Figures for the metrics, counted once the writes are committed (a
    /// failed commit counts nothing).
    pub observations: Vec<Observation>,
    /// States a deployment passed through within this submission's
    /// decisions and that only watchers see (published after the commit,
    /// before the stored records): a step entered and left in one turn is
    /// stored once, in its final state, by the same commit.
    pub snapshots: Vec<Deployment>,
}

/// Something the metrics count about a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Status(DeploymentStatus),
    Step {
        step: StepName,
        millis: u64,
        failed: bool,
    },
}

impl Observation {
    /// The latest finished `step` of `deployment`, if there is one.
    pub fn step(deployment: &Deployment, step: StepName) -> Option<Self> {
        let found = deployment
            .steps
            .iter()
            .rev()
            .find(|s| s.name == step && s.finished_at.is_some())?;
        let finished = found.finished_at?;
        Some(Self::Step {
            step,
            millis: finished.saturating_sub(found.started_at),
            failed: found.error.is_some(),
        })
    }

    pub fn record(self, metrics: &crate::metrics::Metrics) {
        match self {
            Self::Status(status) => metrics.status(status),
            Self::Step {
                step,
                millis,
                failed,
            } => metrics.step(step, millis, failed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnReject {
    /// The decision changed the actor's memory assuming the writes land.
    #[default]
    Reload,
    /// The decision changed nothing in memory; the answers carry the
    /// rejection to the caller and the actor goes on.
    Answered,
}

impl Effects {
    pub fn new() -> Self {
        Self::default()
    }

    /// An answer that needs no write: sent at once.
    pub fn answer_now<T: Answerable>(reply: Reply<T>, value: Result<T, Error>) -> Self {
        let mut effects = Self::new();
        effects.answer(reply, value);
        effects
    }

    /// Counts `status`, and the `step` that just finished, after the commit.
    pub fn observe(
        &mut self,
        deployment: &Deployment,
        status: DeploymentStatus,
        step: Option<StepName>,
    ) -> &mut Self {
        self.observations.push(Observation::Status(status));
        if let Some(step) = step.and_then(|s| Observation::step(deployment, s)) {
            self.observations.push(step);
        }
        self
    }

    pub fn write(&mut self, mutation: Mutation) -> &mut Self {
        self.writes.push(mutation);
        self
    }

    pub fn answer<T: Answerable>(&mut self, reply: Reply<T>, value: Result<T, Error>) -> &mut Self {
        self.answers.push(T::answer(reply, value));
        self
    }

    /// Appends `other`, to store both decisions in one submission.
    pub fn merge(&mut self, other: Effects) {
        self.writes.extend(other.writes);
        self.urgent |= other.urgent;
        self.after_earlier |= other.after_earlier;
        if other.unless_failed.is_some() {
            self.unless_failed = other.unless_failed;
        }
        if other.fail_point_after_commit.is_some() {
            self.fail_point_after_commit = other.fail_point_after_commit;
        }
        self.answers.extend(other.answers);
        self.drivers.extend(other.drivers);
        self.children.extend(other.children);
        self.timers.extend(other.timers);
        self.stop_children.extend(other.stop_children);
        if other.follow_up.is_some() {
            self.follow_up = other.follow_up;
        }
        if other.on_reject == OnReject::Reload {
            self.on_reject = OnReject::Reload;
        }
        self.observations.extend(other.observations);
        self.snapshots.extend(other.snapshots);
    }

    /// These effects with their deployment records turned into watcher
    /// snapshots: a later decision of the same submission stores the
    /// deployment's final state.
    pub fn superseded_by_later_write(mut self) -> Self {
        for write in std::mem::take(&mut self.writes) {
            match write {
                Mutation::PutDeployment(deployment) => self.snapshots.push(deployment),
                other => self.writes.push(other),
            }
        }
        self
    }

    /// Nothing to store and nothing to wait for: the executor can run the
    /// rest at once.
    pub fn needs_commit(&self) -> bool {
        !self.writes.is_empty() || self.after_earlier
    }
}

/// A child actor to start, tagged with the ticket of the work it belongs to
/// (reports of a superseded ticket are ignored).
#[derive(Debug, Clone)]
pub enum Child {
    /// Runs one build.
    Build {
        deployment: DeploymentId,
        ticket: u64,
        request: BuildRequest,
        /// Production builds get a build slot first.
        priority: Priority,
    },
    /// Watches one region until the workload runs, fails or times out.
    Readiness {
        deployment: DeploymentId,
        ticket: u64,
        region: String,
        spec: WorkloadSpec,
    },
}

impl Child {
    pub fn deployment(&self) -> &DeploymentId {
        match self {
            Child::Build { deployment, .. } | Child::Readiness { deployment, .. } => deployment,
        }
    }
}

/// A timer for a scheduled change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub deployment: DeploymentId,
    pub generation: u64,
    pub after: Duration,
}

/// Work the actor continues once it knows how the commit went.
pub enum FollowUp {
    /// The custom domain is claimed (or was refused): attach it.
    DomainClaimed {
        fqdn: String,
        origin: Origin,
        reply: Reply<DomainAdded>,
    },
}

/// An answer to a caller, with its reply port.
pub enum Answer {
    Created(Reply<Created>, Result<Created, Error>),
    Switch(Reply<SwitchOutcome>, Result<SwitchOutcome, Error>),
    Project(Reply<Project>, Result<Project, Error>),
    Domain(Reply<DomainAdded>, Result<DomainAdded, Error>),
    Pong(Reply<()>, Result<(), Error>),
    Deployment(Reply<Deployment>, Result<Deployment, Error>),
}

impl Answer {
    /// Sends the answer. A failed commit (`commit` is `Err`) turns a
    /// success into that error: nothing is acknowledged that is not stored.
    pub fn send(self, commit: &Result<(), Error>) {
        fn pick<T>(value: Result<T, Error>, commit: &Result<(), Error>) -> Result<T, Error> {
            match (value, commit) {
                (Ok(_), Err(e)) => Err(e.clone()),
                (value, _) => value,
            }
        }
        // A caller that went away (timed out) cannot be told; nothing to do.
        let _ = match self {
            Answer::Created(reply, value) => reply.send(pick(value, commit)).map_err(drop),
            Answer::Switch(reply, value) => reply.send(pick(value, commit)).map_err(drop),
            Answer::Project(reply, value) => reply.send(pick(value, commit)).map_err(drop),
            Answer::Domain(reply, value) => reply.send(pick(value, commit)).map_err(drop),
            Answer::Pong(reply, value) => reply.send(pick(value, commit)).map_err(drop),
            Answer::Deployment(reply, value) => reply.send(pick(value, commit)).map_err(drop),
        };
    }

    /// The error this answer carries, if it is one (for tests and logs).
    pub fn error(&self) -> Option<&Error> {
        match self {
            Answer::Created(_, Err(e))
            | Answer::Switch(_, Err(e))
            | Answer::Project(_, Err(e))
            | Answer::Domain(_, Err(e))
            | Answer::Pong(_, Err(e))
            | Answer::Deployment(_, Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Reply types an [`Answer`] can carry.
pub trait Answerable: Sized {
    fn answer(reply: Reply<Self>, value: Result<Self, Error>) -> Answer;
}

macro_rules! answerable {
    ($type:ty, $variant:ident) => {
        impl Answerable for $type {
            fn answer(reply: Reply<Self>, value: Result<Self, Error>) -> Answer {
                Answer::$variant(reply, value)
            }
        }
    };
}

answerable!(Created, Created);
answerable!(SwitchOutcome, Switch);
answerable!(Project, Project);
answerable!(DomainAdded, Domain);
answerable!((), Pong);
answerable!(Deployment, Deployment);
