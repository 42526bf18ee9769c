//! Rollback and promote: explicit moves of the `LIVE` and `ENVIRONMENT`
//! routes and the live pointer. Both check every precondition against the
//! actor's current state, wake a `STANDBY` target first if needed
//! (`wake.rs`), and then switch everything in one store transaction.

use crate::actors::project::core::{PendingSwitch, ProjectCore};
use crate::actors::project::effects::Effects;
use crate::actors::project::messages::{Reply, SwitchOutcome};
use crate::actors::project::{replay, schedule, wake};
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::project::LiveDeployment;
use crate::model::routes::plan_switch;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, DesiredState, Origin, Route, RouteKind,
    StoredReply, now_millis,
};

/// At most this many deployments are remembered as rolled back from; an
/// older one is scheduled for standby when a newer one is added.
const MAX_ROLLED_BACK_FROM: usize = 16;

/// A retried switch is answered with the switch it made (the target live,
/// the rolled-back flag it set, the environment's `LIVE` and `ENVIRONMENT`
/// routes pointing at the target) and the project's other settings as
/// they are now. The record holds only what identifies that answer, so it
/// stays small whatever the project's size.
fn rebuild(core: &ProjectCore, stored: StoredReply) -> Option<SwitchOutcome> {
    let StoredReply::Switch {
        target,
        environment,
        rolled_back,
        moved_routes,
    } = stored
    else {
        return None;
    };
    let sequence = match core.deployment(&target) {
        Ok(Some(deployment)) => deployment.sequence,
        _ => return None,
    };
    let routes = if moved_routes {
        core.fixed_routes
            .values()
            .filter(|r| {
                r.environment == environment
                    && matches!(r.kind, RouteKind::Live | RouteKind::Environment)
            })
            .map(|r| Route {
                deployment_id: target.clone(),
                deployment_sequence: sequence,
                ..r.clone()
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut project = core.project.clone();
    project.live = Some(LiveDeployment {
        id: target,
        sequence,
    });
    project.is_rolled_back = rolled_back;
    Some(SwitchOutcome { project, routes })
}

pub(super) fn rollback(
    core: &mut ProjectCore,
    source: DeploymentId,
    target: DeploymentId,
    origin: Origin,
    reply: Reply<SwitchOutcome>,
) {
    core.fail_point("project.rollback");
    let Some(reply) = replay::check(core, origin.idempotency.as_ref(), reply, rebuild) else {
        return;
    };
    match check_rollback(core, &source, &target) {
        Ok(target) => {
            let request = PendingSwitch::Rollback {
                source,
                origin,
                reply,
            };
            if target.desired_state == DesiredState::Running {
                switch(core, target, request);
            } else {
                wake::start(core, target, request);
            }
        }
        Err(e) => core.answer(reply, Err(e)),
    }
}

pub(super) fn promote(
    core: &mut ProjectCore,
    target: DeploymentId,
    origin: Origin,
    reply: Reply<SwitchOutcome>,
) {
    core.fail_point("project.promote");
    let Some(reply) = replay::check(core, origin.idempotency.as_ref(), reply, rebuild) else {
        return;
    };
    match check_promote(core, &target) {
        Ok(Check::Confirm(live)) => confirm(core, &live, origin, reply),
        Ok(Check::Switch(target)) => {
            let request = PendingSwitch::Promote { origin, reply };
            if target.desired_state == DesiredState::Running {
                switch(core, *target, request);
            } else {
                wake::start(core, *target, request);
            }
        }
        Err(e) => core.answer(reply, Err(e)),
    }
}

/// Promoting the live deployment of a rolled-back project confirms the
/// rollback: no route moves, deploys take `LIVE` routes again, and the
/// deployments rolled back from are scheduled for standby.
fn confirm(core: &mut ProjectCore, live: &Deployment, origin: Origin, reply: Reply<SwitchOutcome>) {
    let mut effects = Effects::new();
    core.project.is_rolled_back = false;
    for from in std::mem::take(&mut core.project.rolled_back_from) {
        if from != live.id {
            let (write, timer) = schedule::standby_later(core, &from);
            effects.write(write);
            effects.timers.push(timer);
        }
    }
    effects.write(Mutation::PutProject(core.project.clone()));
    let stored = StoredReply::Switch {
        target: live.id.clone(),
        environment: live.environment.clone(),
        rolled_back: false,
        moved_routes: false,
    };
    effects.writes.extend(replay::record(core, &origin, stored));
    let outcome = SwitchOutcome {
        project: core.project.clone(),
        routes: Vec::new(),
    };
    effects.answer(reply, Ok(outcome));
    effects.urgent = true;
    core.push(effects);
}

fn load(core: &ProjectCore, id: &DeploymentId, role: &str) -> Result<Deployment, Error> {
    core.deployment(id)?
        .ok_or_else(|| Error::not_found(format!("{role} deployment {id} not found")))
}

pub(super) fn check_rollback(
    core: &ProjectCore,
    source_id: &DeploymentId,
    target_id: &DeploymentId,
) -> Result<Deployment, Error> {
    let source = load(core, source_id, "source")?;
    let target = load(core, target_id, "target")?;
    if source.project_id != target.project_id {
        return Err(Error::precondition(
            "source and target belong to different projects",
        ));
    }
    if source.environment != target.environment {
        return Err(Error::precondition(format!(
            "source is in environment {} but target is in {}",
            source.environment, target.environment
        )));
    }
    if core.project.live_id() != Some(source_id) {
        return Err(Error::precondition(format!(
            "source deployment {source_id} is not the project's live deployment{}",
            core.project
                .live_id()
                .map(|l| format!(" ({l} is)"))
                .unwrap_or_default()
        )));
    }
    check_target_ready(&target)?;
    check_has_routes(core, &target)?;
    Ok(target)
}

pub(super) enum Check {
    /// The target is the live deployment of a rolled-back project.
    Confirm(Box<Deployment>),
    Switch(Box<Deployment>),
}

pub(super) fn check_promote(core: &ProjectCore, target_id: &DeploymentId) -> Result<Check, Error> {
    let target = load(core, target_id, "target")?;
    check_target_ready(&target)?;
    if !core.is_production(&target) {
        return Err(Error::precondition(format!(
            "deployment {target_id} is in environment {}; only production deployments can be promoted",
            target.environment
        )));
    }
    let Some(live) = core.project.live_id() else {
        return Err(Error::precondition(
            "the project has no live deployment to replace",
        ));
    };
    if live == target_id {
        if core.project.is_rolled_back {
            return Ok(Check::Confirm(Box::new(target)));
        }
        return Err(Error::precondition(format!(
            "deployment {target_id} is already live"
        )));
    }
    check_has_routes(core, &target)?;
    Ok(Check::Switch(Box::new(target)))
}

fn check_target_ready(target: &Deployment) -> Result<(), Error> {
    if target.status != DeploymentStatus::Ready {
        return Err(Error::precondition(format!(
            "target deployment {} is {}, not READY",
            target.id, target.status
        )));
    }
    Ok(())
}

fn check_has_routes(core: &ProjectCore, target: &Deployment) -> Result<(), Error> {
    if plan_switch(target, core.fixed_routes.values()).is_empty() {
        return Err(Error::precondition(format!(
            "environment {} has no LIVE or ENVIRONMENT route to move",
            target.environment
        )));
    }
    Ok(())
}

/// The switch itself: one transaction moves the routes, the live pointer and
/// the rolled-back flag, clears the target's schedule, and schedules for
/// standby what stops being needed (a promote's previous live deployment and
/// the deployments rolled back from).
pub(super) fn switch(core: &mut ProjectCore, mut target: Deployment, request: PendingSwitch) {
    core.fail_point("switch.before_commit");
    let routes = plan_switch(&target, core.fixed_routes.values());
    let mut effects = Effects::new();
    effects.writes.extend(schedule::clear(core, &target.id));
    // Only a woken target changed; rewriting an unchanged record (or route)
    // would cost a B-tree path per switch for nothing.
    if target.desired_state != DesiredState::Running {
        target.desired_state = DesiredState::Running;
        target.updated_at = now_millis();
        effects.write(Mutation::PutDeployment(target.clone()));
    }
    for route in &routes {
        if core.fixed_routes.get(&route.fqdn) != Some(route) {
            core.fixed_routes.insert(route.fqdn.clone(), route.clone());
            effects.write(Mutation::PutRoute(route.clone()));
        }
    }
    let previous = core
        .project
        .live
        .replace(LiveDeployment {
            id: target.id.clone(),
            sequence: target.sequence,
        })
        .map(|p| p.id)
        .filter(|p| *p != target.id);
    let mut to_stand_by = Vec::new();
    let (origin, reply) = match request {
        PendingSwitch::Rollback { origin, reply, .. } => {
            core.project.is_rolled_back = true;
            let from = &mut core.project.rolled_back_from;
            from.retain(|d| *d != target.id);
            if let Some(previous) = previous
                && !from.contains(&previous)
            {
                from.push(previous);
            }
            while from.len() > MAX_ROLLED_BACK_FROM {
                to_stand_by.push(from.remove(0));
            }
            (origin, reply)
        }
        PendingSwitch::Promote { origin, reply } => {
            core.project.is_rolled_back = false;
            to_stand_by.extend(previous);
            for from in std::mem::take(&mut core.project.rolled_back_from) {
                if from != target.id && !to_stand_by.contains(&from) {
                    to_stand_by.push(from);
                }
            }
            (origin, reply)
        }
    };
    for id in to_stand_by {
        let (write, timer) = schedule::standby_later(core, &id);
        effects.write(write);
        effects.timers.push(timer);
    }
    effects.write(Mutation::PutProject(core.project.clone()));
    let stored = StoredReply::Switch {
        target: target.id.clone(),
        environment: target.environment.clone(),
        rolled_back: core.project.is_rolled_back,
        moved_routes: true,
    };
    effects.writes.extend(replay::record(core, &origin, stored));
    let outcome = SwitchOutcome {
        project: core.project.clone(),
        routes,
    };
    effects.answer(reply, Ok(outcome));
    effects.urgent = true;
    // Committed, not yet answered: the worst moment to lose the reply.
    effects.fail_point_after_commit = Some("switch.after_commit");
    core.push(effects);
}
