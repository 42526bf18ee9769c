//! The project actor: one per project, the only writer of that project's
//! state. Its mailbox serializes deploy steps, rollback, promote, settings
//! and scheduled changes; handlers decide, hand durable changes to the store
//! writer and return without waiting for builds, regions or the disk.
//!
//! One file per operation: [`deploy`], [`switch`] (rollback and promote),
//! [`schedule`], [`settings`]; [`state`] holds what the actor remembers.

pub mod deploy;
pub mod messages;
pub mod own_writes;
pub mod replay;
pub mod schedule;
pub mod settings;
pub mod state;
pub mod switch;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::actors::Deps;
use crate::model::ProjectId;
use messages::ProjectMsg;
use state::ProjectState;

pub struct ProjectActor;

pub struct ProjectArgs {
    pub project_id: ProjectId,
    pub deps: Deps,
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
        Ok(ProjectState::load(args.deps, myself, &args.project_id)?)
    }

    /// Resumes: re-arms schedules (due ones fire at once) and drives every
    /// unfinished deployment on from its last recorded step.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let idle_after = state.deps.config.idle_actor_stop();
        if !idle_after.is_zero() {
            myself.send_interval(idle_after / 2, || ProjectMsg::IdleCheck);
        }
        schedule::arm_loaded(state);
        let mut unfinished: Vec<_> = state
            .in_flight
            .values()
            .map(|f| (f.deployment.sequence, f.deployment.id.clone()))
            .collect();
        unfinished.sort();
        if !unfinished.is_empty() {
            state.deps.fail_point("recovery.resume");
        }
        for (_, id) in unfinished {
            deploy::advance(state, &id).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if message.is_request() {
            state.last_request = std::time::Instant::now();
        }
        match message {
            ProjectMsg::Deploy {
                request,
                idempotency,
                reply,
            } => deploy::create(state, *request, idempotency, reply).await,
            ProjectMsg::Rollback {
                source,
                target,
                idempotency,
                reply,
            } => switch::rollback(state, source, target, idempotency, reply).await,
            ProjectMsg::Promote {
                target,
                idempotency,
                reply,
            } => switch::promote(state, target, idempotency, reply).await,
            ProjectMsg::SetEnvironmentRegions {
                environment,
                regions,
                reply,
            } => settings::set_environment_regions(state, environment, regions, reply),
            ProjectMsg::AddCustomDomain { fqdn, reply } => {
                settings::add_custom_domain(state, fqdn, reply)
            }
            ProjectMsg::Ping { reply } => {
                let _ = reply.send(Ok(()));
            }
            ProjectMsg::BuildProgress {
                deployment,
                ticket,
                line,
            } => deploy::build_progress(state, &deployment, ticket, line),
            ProjectMsg::BuildFinished {
                deployment,
                ticket,
                result,
            } => deploy::build_finished(state, &deployment, ticket, result).await,
            ProjectMsg::RegionSettled {
                deployment,
                ticket,
                region,
                result,
            } => {
                if state.wakes.contains_key(&deployment) {
                    switch::region_settled(state, &deployment, ticket, &region, result);
                } else {
                    deploy::region_settled(state, &deployment, ticket, &region, result);
                }
            }
            ProjectMsg::ScheduleDue {
                deployment,
                generation,
            } => schedule::due(state, &deployment, generation),
            ProjectMsg::IdleCheck => {
                if state.is_idle(state.deps.config.idle_actor_stop()) {
                    myself.stop(Some("idle".into()));
                }
            }
            ProjectMsg::StoreDiverged { reason } => {
                return Err(format!(
                    "project {}: a change could not be stored ({reason}); restarting from the store",
                    state.project.id
                )
                .into());
            }
        }
        Ok(())
    }

    /// Children finishing is normal; a child that panics fails the work it
    /// was doing. ractor's default here would stop this actor instead.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(child, error) = event {
            let child_id = child.get_id();
            let failed = state
                .in_flight
                .values()
                .find(|f| f.children.iter().any(|c| c.get_id() == child_id))
                .map(|f| f.deployment.id.clone());
            if let Some(id) = failed {
                deploy::fail(state, &id, format!("internal error in a worker: {error}"));
            }
            let failed_wake = state
                .wakes
                .iter()
                .find(|(_, w)| w.children.iter().any(|c| c.get_id() == child_id))
                .map(|(id, w)| (id.clone(), w.ticket));
            if let Some((id, ticket)) = failed_wake {
                let region = String::new();
                switch::region_settled(
                    state,
                    &id,
                    ticket,
                    &region,
                    Err(format!("internal error in a worker: {error}")),
                );
            }
        }
        Ok(())
    }
}
