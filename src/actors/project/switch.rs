//! Rollback and promote: explicit moves of the `LIVE` and `ENVIRONMENT`
//! routes and the live pointer. Both check every precondition against the
//! actor's current state, wake a `STANDBY` target first if needed, and then
//! switch everything in one store transaction.

use crate::actors::project::deploy::{spawn_readiness, stop_children};
use crate::actors::project::messages::{Reply, SwitchOutcome};
use crate::actors::project::state::{PendingSwitch, ProjectState, Wake};
use crate::actors::project::{replay, schedule};
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::project::LiveDeployment;
use crate::model::routes::plan_switch;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, DesiredState, Idempotency, Instance, StepName,
    StoredReply, now_millis,
};

fn stored_switch(stored: StoredReply) -> Option<SwitchOutcome> {
    match stored {
        StoredReply::Switch(outcome) => Some(*outcome),
        StoredReply::Deployment { .. } => None,
    }
}

pub async fn rollback(
    state: &mut ProjectState,
    source: DeploymentId,
    target: DeploymentId,
    idempotency: Option<Idempotency>,
    reply: Reply<SwitchOutcome>,
) {
    state.deps.fail_point("project.rollback");
    let Some(reply) = replay::check(state, idempotency.as_ref(), reply, stored_switch) else {
        return;
    };
    match check_rollback(state, &source, &target) {
        Ok(target) => {
            let request = PendingSwitch::Rollback {
                source,
                idempotency,
                reply,
            };
            if target.desired_state == DesiredState::Running {
                switch(state, target, request);
            } else {
                wake(state, target, request).await;
            }
        }
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

pub async fn promote(
    state: &mut ProjectState,
    target: DeploymentId,
    idempotency: Option<Idempotency>,
    reply: Reply<SwitchOutcome>,
) {
    state.deps.fail_point("project.promote");
    let Some(reply) = replay::check(state, idempotency.as_ref(), reply, stored_switch) else {
        return;
    };
    match check_promote(state, &target) {
        Ok(Check::Confirm) => {
            // Promoting the live deployment of a rolled-back project confirms
            // the rollback: no route moves, nothing is scheduled.
            state.project.is_rolled_back = false;
            let outcome = SwitchOutcome {
                project: state.project.clone(),
                routes: Vec::new(),
            };
            let mut mutations = vec![Mutation::PutProject(state.project.clone())];
            mutations.extend(replay::record(
                state,
                idempotency.as_ref(),
                StoredReply::Switch(Box::new(outcome.clone())),
            ));
            state.submit_switch(mutations, move |result| {
                let _ = reply.send(result.map(|()| outcome));
            });
        }
        Ok(Check::Switch(target)) => {
            let request = PendingSwitch::Promote { idempotency, reply };
            if target.desired_state == DesiredState::Running {
                switch(state, *target, request);
            } else {
                wake(state, *target, request).await;
            }
        }
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

fn load(state: &ProjectState, id: &DeploymentId, role: &str) -> Result<Deployment, Error> {
    state
        .deployment(id)?
        .ok_or_else(|| Error::not_found(format!("{role} deployment {id} not found")))
}

fn check_rollback(
    state: &ProjectState,
    source_id: &DeploymentId,
    target_id: &DeploymentId,
) -> Result<Deployment, Error> {
    let source = load(state, source_id, "source")?;
    let target = load(state, target_id, "target")?;
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
    if state.project.live_id() != Some(source_id) {
        return Err(Error::precondition(format!(
            "source deployment {source_id} is not the project's live deployment{}",
            state
                .project
                .live_id()
                .map(|l| format!(" ({l} is)"))
                .unwrap_or_default()
        )));
    }
    check_target_ready(&target)?;
    check_has_routes(state, &target)?;
    Ok(target)
}

enum Check {
    Confirm,
    Switch(Box<Deployment>),
}

fn check_promote(state: &ProjectState, target_id: &DeploymentId) -> Result<Check, Error> {
    let target = load(state, target_id, "target")?;
    check_target_ready(&target)?;
    let production = state
        .project
        .environment(&target.environment)
        .is_some_and(|e| e.is_production());
    if !production {
        return Err(Error::precondition(format!(
            "deployment {target_id} is in environment {}; only production deployments can be promoted",
            target.environment
        )));
    }
    let Some(live) = state.project.live_id() else {
        return Err(Error::precondition(
            "the project has no live deployment to replace",
        ));
    };
    if live == target_id {
        if state.project.is_rolled_back {
            return Ok(Check::Confirm);
        }
        return Err(Error::precondition(format!(
            "deployment {target_id} is already live"
        )));
    }
    check_has_routes(state, &target)?;
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

fn check_has_routes(state: &ProjectState, target: &Deployment) -> Result<(), Error> {
    if plan_switch(target, &state.routes).is_empty() {
        return Err(Error::precondition(format!(
            "environment {} has no LIVE or ENVIRONMENT route to move",
            target.environment
        )));
    }
    Ok(())
}

/// The switch itself: one transaction moves the routes, the live pointer and
/// the rolled-back flag, clears the target's schedule and (for a promote)
/// schedules the previous live deployment for standby.
fn switch(state: &mut ProjectState, mut target: Deployment, request: PendingSwitch) {
    state.deps.fail_point("switch.before_commit");
    let routes = plan_switch(&target, &state.routes);
    let mut mutations = schedule::clear(state, &target.id);
    // Only a woken target changed; rewriting an unchanged record (or route)
    // would cost a B-tree path per switch for nothing.
    if target.desired_state != DesiredState::Running {
        target.desired_state = DesiredState::Running;
        target.updated_at = now_millis();
        mutations.push(Mutation::PutDeployment(target.clone()));
    }
    for route in &routes {
        if state.routes.get(&route.fqdn) != Some(route) {
            state.routes.insert(route.fqdn.clone(), route.clone());
            mutations.push(Mutation::PutRoute(route.clone()));
        }
    }
    let previous = state.project.live.replace(LiveDeployment {
        id: target.id.clone(),
        sequence: target.sequence,
    });
    let (idempotency, reply) = match request {
        PendingSwitch::Rollback {
            idempotency, reply, ..
        } => {
            state.project.is_rolled_back = true;
            (idempotency, reply)
        }
        PendingSwitch::Promote { idempotency, reply } => {
            state.project.is_rolled_back = false;
            if let Some(previous) = previous.filter(|p| p.id != target.id) {
                mutations.extend(schedule::standby_later(state, &previous.id));
            }
            (idempotency, reply)
        }
    };
    mutations.push(Mutation::PutProject(state.project.clone()));
    let outcome = SwitchOutcome {
        project: state.project.clone(),
        routes,
    };
    mutations.extend(replay::record(
        state,
        idempotency.as_ref(),
        StoredReply::Switch(Box::new(outcome.clone())),
    ));
    let deps = state.deps.clone();
    state.submit_switch(mutations, move |result| {
        // Committed, not yet answered: the worst moment to lose the reply.
        deps.fail_point("switch.after_commit");
        let _ = reply.send(result.map(|()| outcome));
    });
}

/// Wakes a `STANDBY` target: its regions are scaled up by readiness
/// children, and the switch waits until all are ready. Nothing is stored
/// until then; if the wake fails, nothing changes.
async fn wake(state: &mut ProjectState, target: Deployment, request: PendingSwitch) {
    if let Some(wake) = state.wakes.get_mut(&target.id) {
        wake.waiters.push(request);
        return;
    }
    let ticket = state.next_ticket();
    let mut woken = target.clone();
    woken.start_step(StepName::Wake, now_millis());
    // Every region is checked again, whatever it reported before standby.
    for topology in woken.regions.values_mut() {
        topology.running = true;
        topology.ready = false;
    }
    let regions = woken.regions_not_ready();
    match spawn_readiness(state, &woken, &regions, ticket).await {
        Ok(children) => {
            state.wakes.insert(
                target.id.clone(),
                Wake {
                    target: woken,
                    ticket,
                    children,
                    waiters: vec![request],
                },
            );
        }
        Err(e) => answer_all(
            vec![request],
            Error::precondition(format!("could not wake deployment {}: {e}", target.id)),
        ),
    }
}

/// A region of a deployment being woken settled.
pub fn region_settled(
    state: &mut ProjectState,
    id: &DeploymentId,
    ticket: u64,
    region: &str,
    result: Result<Vec<Instance>, String>,
) {
    let Some(wake) = state.wakes.get_mut(id) else {
        return;
    };
    if wake.ticket != ticket {
        return;
    }
    match result {
        Ok(instances) => {
            if let Some(topology) = wake.target.regions.get_mut(region) {
                topology.ready = true;
                topology.instances = instances;
            }
            if !wake.target.regions_not_ready().is_empty() {
                return;
            }
            let Some(mut wake) = state.wakes.remove(id) else {
                return;
            };
            wake.target.finish_step(StepName::Wake, now_millis(), None);
            // Each waiter is checked again: the project may have changed
            // while the target was waking.
            for waiter in wake.waiters {
                match recheck(state, &wake.target, &waiter) {
                    Ok(()) => switch(state, wake.target.clone(), waiter),
                    Err(e) => answer_all(vec![waiter], e),
                }
            }
        }
        Err(reason) => {
            let Some(wake) = state.wakes.remove(id) else {
                return;
            };
            stop_children(&wake.children);
            // Nothing was stored for the wake: scale back down at once.
            super::deploy::stop_regions(state, &wake.target).run();
            answer_all(
                wake.waiters,
                Error::precondition(format!(
                    "deployment {id} could not be woken from standby ({reason}); nothing was changed"
                )),
            );
        }
    }
}

fn recheck(state: &ProjectState, woken: &Deployment, waiter: &PendingSwitch) -> Result<(), Error> {
    match waiter {
        PendingSwitch::Rollback { source, .. } => {
            check_rollback(state, source, &woken.id).map(|_| ())
        }
        PendingSwitch::Promote { .. } => match check_promote(state, &woken.id)? {
            Check::Switch(_) => Ok(()),
            Check::Confirm => Err(Error::precondition(format!(
                "deployment {} is already live",
                woken.id
            ))),
        },
    }
}

fn answer_all(waiters: Vec<PendingSwitch>, error: Error) {
    for waiter in waiters {
        let reply = match waiter {
            PendingSwitch::Rollback { reply, .. } | PendingSwitch::Promote { reply, .. } => reply,
        };
        let _ = reply.send(Err(error.clone()));
    }
}
