//! The project actor: one per project, the only writer of that project's
//! state. Its mailbox serializes deploy steps, rollback, promote, settings
//! and scheduled changes.
//!
//! The actor is a thin shell around a state machine: [`core::ProjectCore`]
//! holds the memory and the reads, one file per operation ([`deploy`],
//! [`switch`], [`wake`], [`schedule`], [`settings`]) holds the decisions,
//! and every decision's consequences are [`effects::Effects`] values that
//! the shell hands to the [`executor`] after each message. The shell itself
//! only starts and stops children and arms timers, when the executor says
//! their commit has landed.

mod cancel;
mod core;
mod deploy;
mod domains;
pub mod effects;
mod executor;
pub mod messages;
mod own_writes;
mod replay;
mod schedule;
mod settings;
mod switch;
#[cfg(test)]
mod tests;
mod wake;

use std::collections::HashMap;
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::actors::Deps;
use crate::actors::build::{BuildActor, BuildArgs};
use crate::actors::readiness::{ReadinessActor, ReadinessArgs};
use crate::error::Error;
use crate::model::{DeploymentId, ProjectId};
pub use core::ProjectCore;
// The load generator tells a queued build from a running one by it.
pub use deploy::QUEUED_FOR_SLOT;
use effects::{Child, FollowUp, OnReject};
use executor::Executor;
use messages::{AfterCommit, ProjectMsg};

/// The reason a project actor gives when it stops to reload its memory
/// from the store after a write it relied on was refused (another project
/// won a hostname at the same moment). The supervisor starts it again at
/// once; it is not a failure.
pub const RELOAD: &str = "reload";

/// The reason an idle project actor gives when it stops.
pub const IDLE: &str = "idle";

pub struct ProjectActor;

pub struct ProjectArgs {
    pub project_id: ProjectId,
    pub deps: Deps,
}

pub struct ProjectState {
    core: ProjectCore,
    executor: Executor,
    /// Running children by the deployment they work for.
    children: HashMap<DeploymentId, Vec<ActorCell>>,
    /// What each running child works for: (deployment, ticket).
    child_of: HashMap<ActorId, (DeploymentId, u64)>,
    /// When the last request arrived, for stopping idle actors.
    last_request: Instant,
}

impl Actor for ProjectActor {
    type Msg = ProjectMsg;
    type State = ProjectState;
    type Arguments = ProjectArgs;

    /// Rebuilds the actor's memory from redb. Fails (and so does the spawn)
    /// if the project is unknown or its records cannot be read.
    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ProjectArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let core = ProjectCore::load(args.deps.clone(), &args.project_id)?;
        Ok(ProjectState {
            core,
            executor: Executor::new(args.deps, myself),
            children: HashMap::new(),
            child_of: HashMap::new(),
            last_request: Instant::now(),
        })
    }

    /// Resumes: re-arms schedules (due ones fire at once) and drives every
    /// unfinished deployment on from its last recorded step.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let idle_after = state.core.deps.config.idle_actor_stop();
        if !idle_after.is_zero() {
            myself.send_interval(idle_after / 2, || ProjectMsg::IdleCheck);
        }
        schedule::arm_loaded(&mut state.core);
        let unfinished = state.core.unfinished();
        if !unfinished.is_empty() {
            state.core.deps.fail_point("recovery.resume");
        }
        for id in unfinished {
            deploy::advance(&mut state.core, &id)?;
        }
        run_effects(&myself, state).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if message.is_request() {
            state.last_request = Instant::now();
        }
        let core = &mut state.core;
        match message {
            ProjectMsg::Deploy {
                request,
                origin,
                reply,
            } => deploy::create(core, *request, origin, reply)?,
            ProjectMsg::Rollback {
                source,
                target,
                origin,
                reply,
            } => switch::rollback(core, source, target, origin, reply),
            ProjectMsg::Promote {
                target,
                origin,
                reply,
            } => switch::promote(core, target, origin, reply),
            ProjectMsg::SetEnvironmentRegions {
                environment,
                regions,
                origin,
                reply,
            } => settings::set_environment_regions(core, environment, regions, origin, reply),
            ProjectMsg::AddCustomDomain {
                fqdn,
                origin,
                reply,
            } => domains::add_custom_domain(core, fqdn, origin, reply),
            ProjectMsg::VerifyCustomDomain {
                fqdn,
                found,
                origin,
                reply,
            } => domains::verify_custom_domain(core, fqdn, found, origin, reply),
            ProjectMsg::RemoveCustomDomain {
                fqdn,
                origin,
                reply,
            } => domains::remove_custom_domain(core, fqdn, origin, reply),
            ProjectMsg::Ping { reply } => core.answer(reply, Ok(())),
            ProjectMsg::Cancel {
                deployment,
                origin,
                reply,
            } => cancel::cancel(core, &deployment, &origin, reply),
            ProjectMsg::BuildSlot {
                deployment,
                ticket,
                queued,
            } => deploy::build_slot(core, &deployment, ticket, queued),
            ProjectMsg::BuildFinished {
                deployment,
                ticket,
                result,
            } => deploy::build_finished(core, &deployment, ticket, result),
            ProjectMsg::RegionSettled {
                deployment,
                ticket,
                region,
                outcome,
            } => {
                if core.wakes.contains_key(&deployment) {
                    wake::region_settled(core, &deployment, ticket, &region, outcome);
                } else {
                    deploy::region_settled(core, &deployment, ticket, &region, outcome)?;
                }
            }
            ProjectMsg::ScheduleDue {
                deployment,
                generation,
            } => schedule::due(core, &deployment, generation),
            ProjectMsg::IdleCheck => {
                let idle_for = core.deps.config.idle_actor_stop();
                if core.is_idle() && state.last_request.elapsed() >= idle_for {
                    myself.stop(Some(IDLE.into()));
                }
            }
            ProjectMsg::Committed(after) => committed(&myself, state, *after).await?,
        }
        run_effects(&myself, state).await;
        Ok(())
    }

    /// Children finishing is normal; a child that panics fails the work it
    /// was doing. ractor's default here would stop this actor instead.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(child, error) => {
                if let Some((deployment, ticket)) = forget_child(state, child.get_id()) {
                    child_failed(&mut state.core, &deployment, ticket, error.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(child, _, _) => {
                forget_child(state, child.get_id());
            }
            _ => {}
        }
        run_effects(&myself, state).await;
        Ok(())
    }
}

/// A child working for `deployment` under `ticket` crashed: the work it did
/// fails, like a region would.
fn child_failed(core: &mut ProjectCore, deployment: &DeploymentId, ticket: u64, error: String) {
    if core
        .wakes
        .get(deployment)
        .is_some_and(|w| w.ticket == ticket)
    {
        wake::worker_failed(core, deployment, error);
    } else if core
        .in_flight
        .get(deployment)
        .is_some_and(|f| f.ticket == ticket)
    {
        deploy::fail(
            core,
            deployment,
            format!("internal error in a worker: {error}"),
        );
    }
}

fn forget_child(state: &mut ProjectState, child: ActorId) -> Option<(DeploymentId, u64)> {
    let (deployment, ticket) = state.child_of.remove(&child)?;
    if let Some(cells) = state.children.get_mut(&deployment) {
        cells.retain(|c| c.get_id() != child);
        if cells.is_empty() {
            state.children.remove(&deployment);
        }
    }
    Some((deployment, ticket))
}

/// Drains the decisions' effects and runs them, until none are left (the
/// actor's own part of an effect can decide more, e.g. a child that cannot
/// start fails its deployment).
async fn run_effects(myself: &ActorRef<ProjectMsg>, state: &mut ProjectState) {
    loop {
        let batch = state.core.take_effects();
        if batch.is_empty() {
            return;
        }
        for mut effects in batch {
            for deployment in std::mem::take(&mut effects.stop_children) {
                for child in state.children.remove(&deployment).unwrap_or_default() {
                    state.child_of.remove(&child.get_id());
                    child.stop(None);
                }
            }
            if let Some(after) = state.executor.execute(&mut state.core, effects)
                && let Err(e) = committed(myself, state, after).await
            {
                // Nothing was stored, so nothing can have diverged.
                tracing::error!(error = %e, "effects without a commit reported a failure");
            }
        }
    }
}

/// The actor's part of a settled submission.
async fn committed(
    myself: &ActorRef<ProjectMsg>,
    state: &mut ProjectState,
    after: AfterCommit,
) -> Result<(), Error> {
    let AfterCommit {
        outcome,
        children,
        timers,
        follow_up,
        on_reject,
    } = after;
    match outcome {
        Ok(()) => {
            for child in children {
                start_child(myself, state, child).await;
            }
            for timer in timers {
                let (deployment, generation) = (timer.deployment, timer.generation);
                myself.send_after(timer.after, move || ProjectMsg::ScheduleDue {
                    deployment,
                    generation,
                });
            }
            if let Some(follow_up) = follow_up {
                continue_with(&mut state.core, follow_up, Ok(()));
            }
            Ok(())
        }
        Err(e) if e.is_rejection() && on_reject == OnReject::Answered => {
            if let Some(follow_up) = follow_up {
                continue_with(&mut state.core, follow_up, Err(e));
            }
            Ok(())
        }
        Err(e) if e.is_rejection() => {
            // Another project won a name this actor's memory already
            // counted on: reload from the store and decide again. Nothing
            // is lost; in-flight deployments resume from their stored step.
            tracing::info!(project = %state.core.project().id, reason = %e, "reloading after a refused write");
            myself.stop(Some(format!("{RELOAD}: {e}")));
            Ok(())
        }
        Err(e) => Err(Error::Unavailable(format!(
            "project {}: a change could not be stored ({e}); restarting from the store",
            state.core.project().id
        ))),
    }
}

fn continue_with(core: &mut ProjectCore, follow_up: FollowUp, outcome: Result<(), Error>) {
    match follow_up {
        FollowUp::DomainClaimed {
            fqdn,
            origin,
            reply,
        } => domains::domain_claimed(core, fqdn, origin, reply, outcome),
    }
}

/// Starts a child unless the work it was decided for moved on meanwhile
/// (the deployment failed, a newer ticket replaced it).
async fn start_child(myself: &ActorRef<ProjectMsg>, state: &mut ProjectState, child: Child) {
    let deployment = child.deployment().clone();
    let ticket = match &child {
        Child::Build { ticket, .. } | Child::Readiness { ticket, .. } => *ticket,
    };
    let core = &mut state.core;
    let current = core.in_flight.get(&deployment).map(|f| f.ticket) == Some(ticket)
        || core.wakes.get(&deployment).map(|w| w.ticket) == Some(ticket);
    if !current {
        return;
    }
    let deps = core.deps.clone();
    let spawned = match child {
        Child::Build {
            request, priority, ..
        } => {
            let args = BuildArgs {
                builder: deps.builder.clone(),
                deps,
                request,
                priority,
                parent: myself.clone(),
                ticket,
            };
            BuildActor::spawn_linked(None, BuildActor, args, myself.get_cell())
                .await
                .map(|(actor, _)| actor.get_cell())
                .map_err(|e| format!("could not start the build: {e}"))
        }
        Child::Readiness { region, spec, .. } => {
            let args = ReadinessArgs {
                deps,
                region: region.clone(),
                spec,
                parent: myself.clone(),
                ticket,
            };
            ReadinessActor::spawn_linked(None, ReadinessActor, args, myself.get_cell())
                .await
                .map(|(actor, _)| actor.get_cell())
                .map_err(|e| format!("could not start the readiness check for {region}: {e}"))
        }
    };
    match spawned {
        Ok(cell) => {
            state
                .child_of
                .insert(cell.get_id(), (deployment.clone(), ticket));
            state.children.entry(deployment).or_default().push(cell);
        }
        Err(reason) => child_failed(&mut state.core, &deployment, ticket, reason),
    }
}
