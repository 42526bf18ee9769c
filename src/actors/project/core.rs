//! The project actor's state machine: its memory (the project record, its
//! fixed routes, the deployments it drives, armed schedules, wakes in
//! progress) and the reads its decisions make. Decisions live in one file
//! per operation (`deploy.rs`, `switch.rs`, `wake.rs`, `schedule.rs`,
//! `settings.rs`); each changes this memory and pushes what else must
//! happen as [`Effects`] into [`ProjectCore::out`], which the actor shell
//! drains after every message and hands to the executor. Nothing here
//! spawns, sends or writes, so decisions are unit-tested without a daemon
//! (`tests.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::actors::Deps;
use crate::actors::project::effects::{Answerable, Effects};
use crate::actors::project::messages::Reply;
use crate::actors::project::own_writes::{OwnWrites, Settlement};
use crate::actors::reconciler::{WorkloadIntent, workload_specs};
use crate::error::Error;
use crate::io::region::WorkloadSpec;
use crate::io::store::Mutation;
use crate::model::StepName;
use crate::model::names::Hostnames;
use crate::model::project::Project;
use crate::model::routes::Holder;
use crate::model::{
    Deployment, DeploymentId, Idempotency, IdempotencyKey, IdempotencyRecord, Origin, ProjectId,
    Route, ScheduledChange, SwitchOutcome, now_millis,
};

pub struct ProjectCore {
    pub(super) deps: Deps,
    pub(super) project: Project,
    /// The project's `LIVE` and `ENVIRONMENT` routes by hostname, as last
    /// decided. Per-push routes (`BRANCH`, `COMMIT`, `DEPLOYMENT`) grow
    /// with history and are read by point lookups instead.
    pub(super) fixed_routes: BTreeMap<String, Route>,
    /// Deployments not yet READY, FAILED or CANCELLED.
    pub(super) in_flight: HashMap<DeploymentId, InFlight>,
    pub(super) schedules: HashMap<DeploymentId, ArmedSchedule>,
    /// `STANDBY` deployments being woken for a rollback or promote.
    pub(super) wakes: HashMap<DeploymentId, Wake>,
    /// Custom domains whose claim is being stored.
    pub(super) claiming: HashSet<String>,
    own_writes: OwnWrites,
    next_ticket: u64,
    next_generation: u64,
    /// What decisions asked for since the shell last drained it.
    out: Vec<Effects>,
}

/// An idempotency record, and the settlement of the submission carrying it
/// when that may not have landed yet.
pub(super) type KeyRecord = (IdempotencyRecord, Option<Arc<Settlement>>);

pub struct InFlight {
    pub deployment: Deployment,
    /// The spawn of children currently working for this deployment.
    pub ticket: u64,
    /// The `tracing` span of the step running now (debug level: one per
    /// step, from its start to the next step or the end), so what is logged
    /// about the step carries the deployment, project and step.
    pub step: tracing::Span,
}

impl InFlight {
    pub fn new(deployment: Deployment) -> Self {
        Self {
            deployment,
            ticket: 0,
            step: tracing::Span::none(),
        }
    }

    /// Opens the span of `step`, closing the previous step's.
    pub fn enter(&mut self, step: StepName) {
        let deployment = &self.deployment;
        self.step = tracing::debug_span!(
            "step",
            step = step.as_str(),
            deployment_id = %deployment.id,
            project_id = %deployment.project_id,
        );
        self.step.in_scope(|| tracing::debug!("step started"));
    }

    /// Logs, in the step's span, that `step` ended and how long it took.
    pub fn ended(&self, step: StepName) {
        let found = self
            .deployment
            .steps
            .iter()
            .rev()
            .find(|s| s.name == step && s.finished_at.is_some());
        if let Some(found) = found {
            let took = found
                .finished_at
                .map_or(0, |at| at.saturating_sub(found.started_at));
            self.step.in_scope(|| {
                tracing::debug!(
                    duration_ms = took,
                    failed = found.error.is_some(),
                    "step finished"
                );
            });
        }
    }
}

pub struct ArmedSchedule {
    pub change: ScheduledChange,
    pub generation: u64,
}

pub struct Wake {
    /// The target as it will be stored once awake.
    pub target: Deployment,
    pub ticket: u64,
    /// Requests waiting for the wake, answered in arrival order.
    pub waiters: Vec<PendingSwitch>,
}

pub enum PendingSwitch {
    Rollback {
        source: DeploymentId,
        origin: Origin,
        reply: Reply<SwitchOutcome>,
    },
    Promote {
        origin: Origin,
        reply: Reply<SwitchOutcome>,
    },
}

impl PendingSwitch {
    pub fn idempotency(&self) -> Option<&Idempotency> {
        match self {
            PendingSwitch::Rollback { origin, .. } | PendingSwitch::Promote { origin, .. } => {
                origin.idempotency.as_ref()
            }
        }
    }

    /// The caller gave up (timed out, disconnected): nobody to switch for.
    pub fn is_abandoned(&self) -> bool {
        match self {
            PendingSwitch::Rollback { reply, .. } | PendingSwitch::Promote { reply, .. } => {
                reply.is_closed()
            }
        }
    }

    pub fn into_reply(self) -> Reply<SwitchOutcome> {
        match self {
            PendingSwitch::Rollback { reply, .. } | PendingSwitch::Promote { reply, .. } => reply,
        }
    }
}

impl ProjectCore {
    /// Rebuilds the memory from redb: the project, its fixed routes, its
    /// unfinished deployments and its schedules; never its whole history.
    pub fn load(deps: Deps, id: &ProjectId) -> Result<Self, Error> {
        let project = deps
            .store
            .project(id)?
            .ok_or_else(|| Error::not_found(format!("project {id} not found")))?;
        let snapshot = deps.store.project_snapshot(id)?;
        let mut core = Self {
            deps,
            project,
            fixed_routes: snapshot.fixed_routes,
            in_flight: HashMap::new(),
            schedules: HashMap::new(),
            wakes: HashMap::new(),
            claiming: HashSet::new(),
            own_writes: OwnWrites::default(),
            next_ticket: 1,
            next_generation: 1,
            out: Vec::new(),
        };
        for deployment in snapshot.in_flight {
            core.in_flight
                .insert(deployment.id.clone(), InFlight::new(deployment));
        }
        for change in snapshot.schedules {
            let generation = core.next_generation();
            core.schedules.insert(
                change.deployment_id.clone(),
                ArmedSchedule { change, generation },
            );
        }
        Ok(core)
    }

    /// Records `effects` as the outcome of the current decision.
    pub(super) fn push(&mut self, effects: Effects) {
        self.out.push(effects);
    }

    /// Answers at once, with nothing stored.
    pub(super) fn answer<T: Answerable>(&mut self, reply: Reply<T>, value: Result<T, Error>) {
        self.push(Effects::answer_now(reply, value));
    }

    /// Everything decided since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effects> {
        std::mem::take(&mut self.out)
    }

    /// Called by the executor as it hands a submission to the writer, so
    /// that reads see this actor's writes until the store has them.
    pub fn remember(&mut self, writes: &[Mutation], settlement: &Arc<Settlement>) {
        self.own_writes.add(writes, settlement);
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
            && self.wakes.is_empty()
            && self.schedules.is_empty()
            && self.claiming.is_empty()
    }

    /// Unfinished deployments, oldest first: the order resume drives them.
    pub fn unfinished(&self) -> Vec<DeploymentId> {
        let mut unfinished: Vec<_> = self
            .in_flight
            .values()
            .map(|f| (f.deployment.sequence, f.deployment.id.clone()))
            .collect();
        unfinished.sort();
        unfinished.into_iter().map(|(_, id)| id).collect()
    }

    pub(super) fn next_ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    pub(super) fn next_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    pub(super) fn hostnames(&self) -> Hostnames<'_> {
        Hostnames {
            apex: &self.deps.config.apex_domain,
            project_slug: &self.project.slug,
            workspace_slug: &self.project.workspace_slug,
        }
    }

    pub(super) fn fail_point(&self, name: &str) {
        self.deps.fail_point(name);
    }

    /// Reads a deployment: from memory if this actor drives it, else from
    /// its unsettled writes, else from the store (a point lookup).
    pub(super) fn deployment(&self, id: &DeploymentId) -> Result<Option<Deployment>, Error> {
        if let Some(in_flight) = self.in_flight.get(id) {
            return Ok(Some(in_flight.deployment.clone()));
        }
        if let Some(wake) = self.wakes.get(id) {
            return Ok(Some(wake.target.clone()));
        }
        if let Some(deployment) = self.own_writes.deployment(id) {
            return Ok(Some(deployment.clone()));
        }
        self.deps.store.deployment(id)
    }

    /// Who holds `fqdn` as this actor will have it once its writes land.
    pub(super) fn holder(&self, fqdn: &str) -> Result<Option<Holder>, Error> {
        if let Some(route) = self.fixed_routes.get(fqdn) {
            return Ok(Some(Holder::Route(route.clone())));
        }
        if let Some(route) = self.own_writes.route(fqdn) {
            return Ok(Some(Holder::Route(route.clone())));
        }
        self.deps.store.holder(fqdn)
    }

    /// The record of an idempotency key, with the settlement to check if it
    /// comes from a submission that may not have landed yet.
    pub(super) fn idempotency_record(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyRecord>, Error> {
        if let Some((record, settlement)) = self.own_writes.key(key) {
            return Ok(Some((record.clone(), Some(settlement))));
        }
        Ok(self
            .deps
            .store
            .idempotency(&self.project.id, key, now_millis())?
            .map(|r| (r, None)))
    }

    pub(super) fn is_production(&self, deployment: &Deployment) -> bool {
        self.project
            .environment(&deployment.environment)
            .is_some_and(|e| e.is_production())
    }

    /// The drivers' part of `deployment` as it is decided now: a new intent
    /// (newer than every earlier one, so it wins over them) and the record
    /// that makes start-up re-apply it should the daemon stop first.
    #[track_caller]
    pub(super) fn intent(&self, deployment: &Deployment) -> (Mutation, WorkloadIntent) {
        let intent = self.deps.reconciler.next_intent();
        tracing::debug!(deployment = %deployment.id, intent, caller = %std::panic::Location::caller(), desired = ?deployment.desired_state, "intent decided");
        (
            Mutation::TrackWorkload {
                deployment_id: deployment.id.clone(),
                intent,
            },
            WorkloadIntent {
                deployment_id: deployment.id.clone(),
                intent,
                regions: self.workload_specs(deployment),
            },
        )
    }

    /// What each region of `deployment` should run, as decided now.
    pub(super) fn workload_specs(&self, deployment: &Deployment) -> Vec<(String, WorkloadSpec)> {
        workload_specs(deployment)
    }
}
