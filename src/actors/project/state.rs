//! A project actor's memory: the project record, its routes, the deployments
//! it is driving, armed schedules and wakes in progress. Rebuilt from redb
//! whenever the actor starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ractor::{ActorCell, ActorRef};

use crate::actors::Deps;
use crate::actors::project::messages::{ProjectMsg, Reply, SwitchOutcome};
use crate::actors::project::own_writes::{OwnWrites, Pending};
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::names::Hostnames;
use crate::model::project::Project;
use crate::model::{
    Deployment, DeploymentId, Idempotency, IdempotencyKey, IdempotencyRecord, ProjectId, Route,
    RouteKind, ScheduledChange, now_millis,
};

pub struct ProjectState {
    pub deps: Deps,
    pub myself: ActorRef<ProjectMsg>,
    pub project: Project,
    /// This project's routes by hostname, as last submitted to the store,
    /// except `DEPLOYMENT` routes: there is one per deployment ever made,
    /// they never move, and no decision reads them, so keeping them would
    /// make memory grow with history.
    pub routes: BTreeMap<String, Route>,
    /// Deployments not yet READY or FAILED.
    pub in_flight: HashMap<DeploymentId, InFlight>,
    pub schedules: HashMap<DeploymentId, ArmedSchedule>,
    /// `STANDBY` deployments being woken for a rollback or promote.
    pub wakes: HashMap<DeploymentId, Wake>,
    /// Writes whose submission may not have settled yet.
    own_writes: OwnWrites,
    next_ticket: u64,
    next_generation: u64,
    /// This actor's submissions not yet settled: only with none may a
    /// switch jump the writer's queue.
    unsettled: Arc<AtomicUsize>,
    /// When the last request arrived, for stopping idle actors.
    pub last_request: std::time::Instant,
}

pub struct InFlight {
    pub deployment: Deployment,
    /// The spawn of children currently working for this deployment.
    pub ticket: u64,
    pub children: Vec<ActorCell>,
}

impl InFlight {
    pub fn new(deployment: Deployment) -> Self {
        Self {
            deployment,
            ticket: 0,
            children: Vec::new(),
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
    pub children: Vec<ActorCell>,
    /// Requests waiting for the wake, answered in arrival order.
    pub waiters: Vec<PendingSwitch>,
}

pub enum PendingSwitch {
    Rollback {
        source: DeploymentId,
        idempotency: Option<Idempotency>,
        reply: Reply<SwitchOutcome>,
    },
    Promote {
        idempotency: Option<Idempotency>,
        reply: Reply<SwitchOutcome>,
    },
}

impl ProjectState {
    pub fn load(deps: Deps, myself: ActorRef<ProjectMsg>, id: &ProjectId) -> Result<Self, Error> {
        let project = deps
            .store
            .project(id)?
            .ok_or_else(|| Error::not_found(format!("project {id} not found")))?;
        let snapshot = deps.store.project_snapshot(id)?;
        let mut state = Self {
            deps,
            myself,
            project,
            routes: snapshot
                .routes
                .into_iter()
                .filter(|(_, r)| r.kind != RouteKind::Deployment)
                .collect(),
            in_flight: HashMap::new(),
            schedules: HashMap::new(),
            wakes: HashMap::new(),
            own_writes: OwnWrites::default(),
            next_ticket: 1,
            next_generation: 1,
            unsettled: Arc::default(),
            last_request: std::time::Instant::now(),
        };
        for deployment in snapshot.in_flight {
            state
                .in_flight
                .insert(deployment.id.clone(), InFlight::new(deployment));
        }
        for change in snapshot.schedules {
            let generation = state.next_generation();
            state.schedules.insert(
                change.deployment_id.clone(),
                ArmedSchedule { change, generation },
            );
        }
        Ok(state)
    }

    /// Nothing in flight, no wake, no schedule, and no request for
    /// `idle_for`: stopping loses nothing, the store has it all.
    pub fn is_idle(&self, idle_for: std::time::Duration) -> bool {
        self.in_flight.is_empty()
            && self.wakes.is_empty()
            && self.schedules.is_empty()
            && self.last_request.elapsed() >= idle_for
    }

    pub fn next_ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    pub fn next_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    pub fn hostnames(&self) -> Hostnames<'_> {
        Hostnames {
            apex: &self.deps.config.apex_domain,
            project_slug: &self.project.slug,
            workspace_slug: &self.project.workspace_slug,
        }
    }

    /// Hands `mutations` to the store writer and returns at once. After the
    /// commit, the stored deployments are published to watchers and `then`
    /// runs with the outcome. A failed or rejected commit also tells this
    /// actor to rebuild itself from the store.
    pub fn submit(
        &mut self,
        mutations: Vec<Mutation>,
        then: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) {
        self.submit_with(mutations, then, false);
    }

    /// [`ProjectState::submit`] for a rollback or promote: committed ahead of
    /// other projects' queued work when none of this actor's own earlier
    /// submissions is still queued (otherwise in order, as usual).
    pub fn submit_switch(
        &mut self,
        mutations: Vec<Mutation>,
        then: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) {
        let urgent = self.unsettled.load(Ordering::Acquire) == 0;
        self.submit_with(mutations, then, urgent);
    }

    fn submit_with(
        &mut self,
        mutations: Vec<Mutation>,
        then: impl FnOnce(Result<(), Error>) + Send + 'static,
        urgent: bool,
    ) {
        let events = self.deps.events.clone();
        let myself = self.myself.clone();
        let pending = Pending::of(&mutations);
        let unsettled = self.unsettled.clone();
        unsettled.fetch_add(1, Ordering::AcqRel);
        let completion: crate::io::store::Completion = Box::new(move |result, mutations| {
            unsettled.fetch_sub(1, Ordering::AcqRel);
            match &result {
                Ok(()) => {
                    for mutation in &mutations {
                        if let Mutation::PutDeployment(deployment) = mutation {
                            events.publish(deployment);
                        }
                    }
                }
                Err(e) => {
                    let _ = myself.cast(ProjectMsg::StoreDiverged {
                        reason: e.to_string(),
                    });
                }
            }
            then(result);
        });
        let id = if urgent {
            self.deps.store.submit_urgent(mutations, completion)
        } else {
            self.deps.store.submit(mutations, completion)
        };
        let settled = self.deps.store.settled_through();
        self.own_writes.add(id, pending, settled);
    }

    /// The record of an idempotency key: this actor's unsettled submissions
    /// first, then the store.
    pub fn idempotency_record(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, Error> {
        if let Some(record) = self.own_writes.key(key) {
            return Ok(Some(record.clone()));
        }
        self.deps
            .store
            .idempotency(&self.project.id, key, now_millis())
    }

    /// Submits and answers `reply` with `value` once durable.
    pub fn submit_and_reply<T: Send + 'static>(
        &mut self,
        mutations: Vec<Mutation>,
        reply: Reply<T>,
        value: T,
    ) {
        self.submit(mutations, move |result| {
            let _ = reply.send(result.map(|()| value));
        });
    }

    /// Reads a deployment: from memory if this actor drives it, else from
    /// the store (a point lookup in an MVCC read transaction).
    pub fn deployment(&self, id: &DeploymentId) -> Result<Option<Deployment>, Error> {
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
}
