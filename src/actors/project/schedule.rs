//! Scheduled state changes. One per deployment, last writer wins: a new
//! schedule replaces the old one (whose timer then finds a stale generation
//! and does nothing). A timer is an ordinary message (`ScheduleDue`), so a
//! change is decided in the mailbox like everything else.

use std::time::Duration;

use crate::actors::project::deploy::stop_regions;
use crate::actors::project::messages::ProjectMsg;
use crate::actors::project::state::{ArmedSchedule, ProjectState};
use crate::io::store::Mutation;
use crate::model::{
    DeploymentId, DeploymentStatus, DesiredState, ScheduledAction, ScheduledChange, now_millis,
};

/// Schedules `STANDBY` for `id` after the standby delay, replacing any
/// earlier schedule of it. Returns the mutation to store with the decision.
pub fn standby_later(state: &mut ProjectState, id: &DeploymentId) -> Vec<Mutation> {
    let change = ScheduledChange {
        deployment_id: id.clone(),
        action: ScheduledAction::Standby,
        due_at: now_millis() + state.deps.config.standby_delay_ms,
    };
    arm(state, change.clone());
    vec![Mutation::PutSchedule {
        project_id: state.project.id.clone(),
        change,
    }]
}

/// Removes any schedule of `id`.
pub fn clear(state: &mut ProjectState, id: &DeploymentId) -> Vec<Mutation> {
    match state.schedules.remove(id) {
        Some(_) => vec![Mutation::DeleteSchedule {
            project_id: state.project.id.clone(),
            deployment_id: id.clone(),
        }],
        None => Vec::new(),
    }
}

/// Starts a timer for a change; one already due fires at once.
fn arm(state: &mut ProjectState, change: ScheduledChange) {
    let generation = state.next_generation();
    let delay = Duration::from_millis(change.due_at.saturating_sub(now_millis()));
    let deployment = change.deployment_id.clone();
    state
        .myself
        .send_after(delay, move || ProjectMsg::ScheduleDue {
            deployment,
            generation,
        });
    state.schedules.insert(
        change.deployment_id.clone(),
        ArmedSchedule { change, generation },
    );
}

/// Arms the timers of schedules loaded from the store.
pub fn arm_loaded(state: &mut ProjectState) {
    let loaded: Vec<ScheduledChange> = state
        .schedules
        .drain()
        .map(|(_, armed)| armed.change)
        .collect();
    for change in loaded {
        arm(state, change);
    }
}

/// A timer fired.
pub fn due(state: &mut ProjectState, id: &DeploymentId, generation: u64) {
    let Some(armed) = state.schedules.get(id) else {
        return;
    };
    if armed.generation != generation {
        return;
    }
    if state.wakes.contains_key(id) {
        // A rollback or promote is waking this deployment and will clear the
        // schedule if it succeeds; look again shortly.
        let change = armed.change.clone();
        let generation = state.next_generation();
        state
            .myself
            .send_after(state.deps.config.readiness_poll(), {
                let deployment = change.deployment_id.clone();
                move || ProjectMsg::ScheduleDue {
                    deployment,
                    generation,
                }
            });
        state
            .schedules
            .insert(id.clone(), ArmedSchedule { change, generation });
        return;
    }
    let mut mutations = clear(state, id);
    // A scheduled change never touches the live deployment.
    if state.project.live_id() != Some(id) {
        match state.deployment(id) {
            Ok(Some(mut deployment))
                if deployment.status == DeploymentStatus::Ready
                    && deployment.desired_state == DesiredState::Running =>
            {
                deployment.stand_by(now_millis());
                stop_regions(state, &deployment);
                mutations.push(Mutation::PutDeployment(deployment));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(deployment = %id, error = %e, "cannot read scheduled deployment")
            }
        }
    }
    state.submit(mutations, |_| {});
}
