//! Waking a `STANDBY` target for a rollback or promote. Nothing about the
//! deployment is stored until it runs again: the wake records only that the
//! drivers are being told to scale it up (so a crash mid-wake is scaled
//! back down at start), watches every region, and then each waiting request
//! is checked again and switched. A wake that fails, or whose every waiter
//! was refused or gave up, scales the target back down: standby capacity
//! never leaks.

use crate::actors::project::core::{PendingSwitch, ProjectCore, Wake};
use crate::actors::project::deploy::readiness_children;
use crate::actors::project::effects::{Effects, Observation};
use crate::actors::project::switch::{Check, check_promote, check_rollback, switch};
use crate::actors::readiness::RegionOutcome;
use crate::error::Error;
use crate::model::{Deployment, DeploymentId, StepName, now_millis};

/// Starts waking `target` for `request`, or queues `request` behind a wake
/// already in progress (bounded: `max_wake_waiters`).
pub(super) fn start(core: &mut ProjectCore, target: Deployment, request: PendingSwitch) {
    let limit = core.deps.config.max_wake_waiters;
    if let Some(wake) = core.wakes.get_mut(&target.id) {
        wake.waiters.retain(|w| !w.is_abandoned());
        if wake.waiters.len() >= limit {
            let message = format!(
                "{limit} requests already wait for deployment {} to wake; retry shortly",
                target.id
            );
            core.answer(request.into_reply(), Err(Error::ResourceExhausted(message)));
            return;
        }
        wake.waiters.push(request);
        return;
    }
    let ticket = core.next_ticket();
    let mut woken = target;
    woken.start_step(StepName::Wake, now_millis());
    // Every region is checked again, whatever it reported before standby.
    for topology in woken.regions.values_mut() {
        topology.running = true;
        topology.ready = false;
    }
    let (track, intent) = core.intent(&woken);
    let mut effects = Effects::new();
    effects.write(track);
    effects.drivers.push(intent);
    effects.children = readiness_children(core, &woken, ticket);
    let ready_now = effects.children.is_empty();
    core.push(effects);
    let id = woken.id.clone();
    core.wakes.insert(
        id.clone(),
        Wake {
            target: woken,
            ticket,
            waiters: vec![request],
        },
    );
    if ready_now {
        finish(core, &id);
    }
}

/// A region of a deployment being woken settled.
pub(super) fn region_settled(
    core: &mut ProjectCore,
    id: &DeploymentId,
    ticket: u64,
    region: &str,
    outcome: RegionOutcome,
) {
    let Some(wake) = core.wakes.get_mut(id) else {
        return;
    };
    if wake.ticket != ticket {
        return;
    }
    match outcome {
        RegionOutcome::Ready(instances) => {
            if let Some(topology) = wake.target.regions.get_mut(region) {
                topology.ready = true;
                topology.instances = instances;
            }
            if wake.target.regions_not_ready().is_empty() {
                finish(core, id);
            }
        }
        RegionOutcome::Failed(failure) => give_up(
            core,
            id,
            Error::precondition(format!(
                "deployment {id} could not be woken from standby ({failure}); nothing was changed"
            )),
        ),
    }
}

/// A worker of the wake crashed: the wake fails like a region would.
pub(super) fn worker_failed(core: &mut ProjectCore, id: &DeploymentId, error: String) {
    give_up(
        core,
        id,
        Error::precondition(format!(
            "deployment {id} could not be woken from standby (internal error in a worker: {error}); nothing was changed"
        )),
    );
}

/// Every region runs: each waiter still there is checked again (the project
/// may have changed while the target woke) and switched, or answered
/// `ABORTED` with the reason.
fn finish(core: &mut ProjectCore, id: &DeploymentId) {
    let Some(mut wake) = core.wakes.remove(id) else {
        return;
    };
    wake.target.finish_step(StepName::Wake, now_millis(), None);
    let mut switched = false;
    for waiter in wake.waiters {
        if waiter.is_abandoned() {
            continue;
        }
        match recheck(core, &wake.target, &waiter) {
            Ok(()) => {
                switch(core, wake.target.clone(), waiter);
                switched = true;
            }
            Err(e) => core.answer(
                waiter.into_reply(),
                Err(Error::Aborted(format!(
                    "the project changed while deployment {id} was waking ({e}); nothing was switched"
                ))),
            ),
        }
    }
    if !switched {
        scale_back_down(core, &wake.target);
    }
    // The wake itself is not stored; its duration is counted last, after
    // the decisions above.
    if let Some(step) = Observation::step(&wake.target, StepName::Wake) {
        let mut effects = Effects::new();
        effects.observations.push(step);
        core.push(effects);
    }
}

/// The wake failed: every waiter gets `error`, the target goes back down.
fn give_up(core: &mut ProjectCore, id: &DeploymentId, error: Error) {
    let Some(wake) = core.wakes.remove(id) else {
        return;
    };
    let mut effects = Effects::new();
    effects.stop_children.push(id.clone());
    core.push(effects);
    for waiter in wake.waiters {
        core.answer(waiter.into_reply(), Err(error.clone()));
    }
    scale_back_down(core, &wake.target);
}

/// The target stays stored as `STANDBY`; tell the drivers so again.
fn scale_back_down(core: &mut ProjectCore, woken: &Deployment) {
    let mut stopped = woken.clone();
    for topology in stopped.regions.values_mut() {
        topology.running = false;
        topology.ready = false;
        topology.instances.clear();
    }
    let (track, intent) = core.intent(&stopped);
    let mut effects = Effects::new();
    effects.write(track);
    effects.drivers.push(intent);
    core.push(effects);
}

fn recheck(core: &ProjectCore, woken: &Deployment, waiter: &PendingSwitch) -> Result<(), Error> {
    match waiter {
        PendingSwitch::Rollback { source, .. } => {
            check_rollback(core, source, &woken.id).map(|_| ())
        }
        PendingSwitch::Promote { .. } => match check_promote(core, &woken.id)? {
            Check::Switch(_) => Ok(()),
            Check::Confirm(_) => Err(Error::precondition(format!(
                "deployment {} is already live",
                woken.id
            ))),
        },
    }
}
