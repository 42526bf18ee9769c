//! Scheduled state changes. One per deployment, last writer wins: a new
//! schedule replaces the old one (whose timer then finds a stale generation
//! and does nothing). A timer is an ordinary message (`ScheduleDue`), so a
//! change is decided in the mailbox like everything else, and applying
//! `STANDBY` is a decision with effects: the stored desired state, then
//! (after that commit) the drivers' scale-down.

use std::time::Duration;

use crate::actors::project::core::{ArmedSchedule, ProjectCore};
use crate::actors::project::effects::{Effects, Timer};
use crate::io::store::Mutation;
use crate::model::{
    DeploymentId, DeploymentStatus, DesiredState, ScheduledAction, ScheduledChange, now_millis,
};

/// How long a schedule whose deployment could not be read waits before it
/// tries again (it is never dropped for a failed read).
const RETRY_AFTER_READ_ERROR: Duration = Duration::from_secs(1);

/// Schedules `STANDBY` for `id` after the standby delay, replacing any
/// earlier schedule of it: the record to store with the decision and the
/// timer to arm once it is stored.
pub(super) fn standby_later(core: &mut ProjectCore, id: &DeploymentId) -> (Mutation, Timer) {
    let change = ScheduledChange {
        deployment_id: id.clone(),
        action: ScheduledAction::Standby,
        due_at: now_millis() + core.deps.config.standby_delay_ms,
    };
    let timer = arm(core, change.clone());
    let write = Mutation::PutSchedule {
        project_id: core.project.id.clone(),
        change,
    };
    (write, timer)
}

/// Removes any schedule of `id`.
pub(super) fn clear(core: &mut ProjectCore, id: &DeploymentId) -> Option<Mutation> {
    core.schedules.remove(id).map(|_| Mutation::DeleteSchedule {
        project_id: core.project.id.clone(),
        deployment_id: id.clone(),
    })
}

/// Remembers `change` under a new generation and returns its timer; one
/// already due fires at once.
fn arm(core: &mut ProjectCore, change: ScheduledChange) -> Timer {
    let generation = core.next_generation();
    let timer = Timer {
        deployment: change.deployment_id.clone(),
        generation,
        after: Duration::from_millis(change.due_at.saturating_sub(now_millis())),
    };
    core.schedules.insert(
        change.deployment_id.clone(),
        ArmedSchedule { change, generation },
    );
    timer
}

/// Arms the timers of schedules loaded from the store.
pub(super) fn arm_loaded(core: &mut ProjectCore) {
    let loaded: Vec<ScheduledChange> = core
        .schedules
        .drain()
        .map(|(_, armed)| armed.change)
        .collect();
    let mut effects = Effects::new();
    for change in loaded {
        effects.timers.push(arm(core, change));
    }
    core.push(effects);
}

/// Looks at a schedule again after `after`, keeping it armed.
fn retry(core: &mut ProjectCore, id: &DeploymentId, after: Duration) {
    let Some(armed) = core.schedules.get(id) else {
        return;
    };
    let change = armed.change.clone();
    let generation = core.next_generation();
    core.schedules
        .insert(id.clone(), ArmedSchedule { change, generation });
    let mut effects = Effects::new();
    effects.timers.push(Timer {
        deployment: id.clone(),
        generation,
        after,
    });
    core.push(effects);
}

/// A timer fired.
pub(super) fn due(core: &mut ProjectCore, id: &DeploymentId, generation: u64) {
    let Some(armed) = core.schedules.get(id) else {
        return;
    };
    if armed.generation != generation {
        return;
    }
    if core.wakes.contains_key(id) {
        // A rollback or promote is waking this deployment and will clear the
        // schedule if it succeeds; look again shortly.
        let after = core.deps.config.readiness_poll();
        retry(core, id, after);
        return;
    }
    // A scheduled change never touches the live deployment.
    let deployment = if core.project.live_id() == Some(id) {
        Ok(None)
    } else {
        core.deployment(id)
    };
    let deployment = match deployment {
        Ok(deployment) => deployment,
        Err(e) => {
            tracing::warn!(deployment = %id, error = %e, "cannot read a scheduled deployment; trying again");
            retry(core, id, RETRY_AFTER_READ_ERROR);
            return;
        }
    };
    let mut effects = Effects::new();
    effects.writes.extend(clear(core, id));
    if let Some(mut deployment) = deployment
        && deployment.status == DeploymentStatus::Ready
        && deployment.desired_state == DesiredState::Running
    {
        deployment.stand_by(now_millis());
        let (track, intent) = core.intent(&deployment);
        effects
            .write(Mutation::PutDeployment(deployment))
            .write(track);
        effects.drivers.push(intent);
    }
    core.push(effects);
}
