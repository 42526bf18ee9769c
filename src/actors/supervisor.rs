//! The project supervisor: spawns project actors on demand, registers them
//! for lock-free lookup, and restarts one that fails by rebuilding it from
//! redb, after a backoff that doubles with each recent failure. A project
//! that keeps failing (more than `max_restarts` within `restart_window_ms`)
//! is marked broken for one window: its requests get `UNAVAILABLE` with the
//! reason, every other project keeps working, and when the window has
//! passed it is started again (and resumes its unfinished work).
//!
//! A project actor that stops to reload (a write it counted on was refused
//! because another project won a name) is started again at once; that is
//! not a failure.

mod incarnations;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent,
};

use self::incarnations::{Incarnations, Verdict};
use crate::actors::Deps;
use crate::actors::project::messages::ProjectMsg;
use crate::actors::project::{ProjectActor, ProjectArgs, RELOAD};
use crate::error::{Error, StorageFault};
use crate::io::store::Mutation;
use crate::model::{ProjectId, now_millis};

/// Running project actors, read by API handlers without asking the
/// supervisor. Only the supervisor inserts and removes.
pub type Registry = Arc<DashMap<ProjectId, ProjectEntry>>;

/// A running project actor and the number of API calls waiting on it.
#[derive(Clone)]
pub struct ProjectEntry {
    pub actor: ActorRef<ProjectMsg>,
    pub queued: Arc<AtomicUsize>,
}

impl ProjectEntry {
    pub fn is_running(&self) -> bool {
        matches!(
            self.actor.get_status(),
            ActorStatus::Starting | ActorStatus::Running
        )
    }
}
/// Projects that failed too often, with the reason and when they may be
/// started again.
pub type Broken = Arc<DashMap<ProjectId, BrokenProject>>;

#[derive(Debug, Clone)]
pub struct BrokenProject {
    pub reason: String,
    pub until: Instant,
}

/// The refusal a request for a broken project gets, or `None` once its
/// window has passed (the entry is then removed).
pub fn refusal(broken: &Broken, project: &ProjectId) -> Option<Error> {
    let entry = broken.get(project)?;
    if entry.until > Instant::now() {
        return Some(Error::Unavailable(entry.reason.clone()));
    }
    drop(entry);
    broken.remove(project);
    None
}

/// The reason a project's actor is stopped with when its project is paused.
const PAUSED: &str = "paused";

/// How often a project stopped by a data file that cannot be written tries
/// to start again (the store itself probes the file more often).
const STORAGE_RETRY: Duration = Duration::from_secs(1);

/// Whether the data file cannot be written for now but will be again on
/// its own (a full disk; a damaged file never is).
fn storage_will_recover(deps: &Deps) -> bool {
    matches!(deps.store.state().fault, Some(StorageFault::Unwritable(_)))
}

pub struct ProjectSupervisor;

pub struct SupervisorArgs {
    pub deps: Deps,
    pub registry: Registry,
    pub broken: Broken,
    /// Project actor failures since start.
    pub failures: Arc<AtomicU64>,
}

pub struct SupervisorState {
    deps: Deps,
    registry: Registry,
    broken: Broken,
    incarnations: Incarnations,
    failure_count: Arc<AtomicU64>,
}

pub enum SupervisorMsg {
    /// Returns the project's actor, spawning it from redb if needed.
    Ensure {
        project_id: ProjectId,
        reply: RpcReplyPort<Result<ProjectEntry, Error>>,
    },
    /// Deletes expired idempotency records (a timer).
    ExpireIdempotencyKeys,
    /// Starts a project's actor again after a failure's backoff or the end
    /// of its broken window, if nothing started it meanwhile.
    Restart { project_id: ProjectId },
}

/// How often expired idempotency keys are swept.
const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

impl Actor for ProjectSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let incarnations = Incarnations::new(
            args.deps.config.max_restarts,
            Duration::from_millis(args.deps.config.restart_window_ms),
        );
        Ok(SupervisorState {
            deps: args.deps,
            registry: args.registry,
            broken: args.broken,
            incarnations,
            failure_count: args.failures,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_interval(EXPIRY_SWEEP, || SupervisorMsg::ExpireIdempotencyKeys);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Ensure { project_id, reply } => {
                let result = ensure(&myself, state, &project_id).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Restart { project_id } => {
                if refusal(&state.broken, &project_id).is_none()
                    && let Err(e) = ensure(&myself, state, &project_id).await
                {
                    tracing::error!(project = %project_id, error = %e, "project actor could not restart");
                    // Its unfinished work resumes once the file can be
                    // written again, without waiting for a request.
                    if storage_will_recover(&state.deps) {
                        myself.send_after(STORAGE_RETRY, move || SupervisorMsg::Restart {
                            project_id,
                        });
                    }
                }
            }
            SupervisorMsg::ExpireIdempotencyKeys => {
                state.incarnations.forget_old_failures(Instant::now());
                state.deps.store.submit(
                    vec![Mutation::ExpireIdempotency { now: now_millis() }],
                    Box::new(|result, _| {
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "could not expire idempotency keys");
                        }
                    }),
                );
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let actor = cell.get_id();
                if !state.deps.store.state().is_writable() {
                    // The data file failed, not the project: no fault is
                    // counted and the project is never paused for it. It
                    // restarts once the file can be written again.
                    let Some(project_id) = state.incarnations.ended(actor) else {
                        return Ok(());
                    };
                    unregister(&state.registry, &project_id, actor);
                    tracing::error!(project = %project_id, %error, "project actor failed");
                    if storage_will_recover(&state.deps) {
                        myself.send_after(STORAGE_RETRY, move || SupervisorMsg::Restart {
                            project_id,
                        });
                    }
                    return Ok(());
                }
                let Some((project_id, verdict)) = state.incarnations.failed(actor, Instant::now())
                else {
                    return Ok(());
                };
                unregister(&state.registry, &project_id, actor);
                tracing::error!(project = %project_id, %error, "project actor failed");
                state.failure_count.fetch_add(1, Ordering::Relaxed);
                match verdict {
                    Verdict::RestartAfter(delay) => {
                        myself.send_after(delay, move || SupervisorMsg::Restart { project_id });
                    }
                    Verdict::Pause { failures } => {
                        let window = Duration::from_millis(state.deps.config.restart_window_ms);
                        let reason = format!(
                            "project {project_id} failed {failures} times within {} ms and is paused until that window has passed; last error: {error}",
                            state.deps.config.restart_window_ms
                        );
                        tracing::error!(project = %project_id, "{reason}");
                        state.broken.insert(
                            project_id.clone(),
                            BrokenProject {
                                reason,
                                until: Instant::now() + window,
                            },
                        );
                        // A request may have started a newer incarnation
                        // before this failure was reported: a paused
                        // project runs nothing.
                        if let Some((_, newer)) = state.registry.remove(&project_id) {
                            newer.actor.stop(Some(PAUSED.into()));
                        }
                        myself.send_after(window, move || SupervisorMsg::Restart { project_id });
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let actor = cell.get_id();
                let project_id = state.incarnations.ended(actor);
                if let Some(project_id) = &project_id {
                    unregister(&state.registry, project_id, actor);
                }
                if let Some(project_id) = project_id
                    && reason.as_deref().is_some_and(|r| r.starts_with(RELOAD))
                    && let Err(e) = ensure(&myself, state, &project_id).await
                {
                    tracing::error!(project = %project_id, error = %e, "project actor could not reload");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

async fn ensure(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    project_id: &ProjectId,
) -> Result<ProjectEntry, Error> {
    if let Some(refused) = refusal(&state.broken, project_id) {
        return Err(refused);
    }
    let registered = state.registry.get(project_id).map(|e| e.clone());
    // One that has stopped (idle, or failed) is replaced below; its end is
    // still to be reported here, and counted then if it was a failure.
    if let Some(entry) = registered
        && entry.is_running()
    {
        return Ok(entry);
    }
    // Unknown projects are answered here, before an actor exists for them.
    if state.deps.store.project(project_id)?.is_none() {
        return Err(Error::not_found(format!("project {project_id} not found")));
    }
    let args = ProjectArgs {
        project_id: project_id.clone(),
        deps: state.deps.clone(),
    };
    let (actor, _) = ProjectActor::spawn_linked(None, ProjectActor, args, myself.get_cell())
        .await
        .map_err(|e| Error::Unavailable(format!("project {project_id} could not start: {e}")))?;
    state
        .incarnations
        .started(actor.get_id(), project_id.clone());
    let entry = ProjectEntry {
        actor,
        queued: Arc::new(AtomicUsize::new(0)),
    };
    state.registry.insert(project_id.clone(), entry.clone());
    Ok(entry)
}

/// Drops a project's registry entry if it still names this actor (a newer
/// incarnation may have replaced it already).
fn unregister(registry: &Registry, project_id: &ProjectId, actor: ActorId) {
    registry.remove_if(project_id, |_, registered| {
        registered.actor.get_id() == actor
    });
}
