//! `CANCELLED`: a deployment stopped before it was `READY`, by
//! `CancelDeployment` or by a newer deployment of the same project,
//! environment and branch while it was still queued or building
//! (supersede). Like a failure, it touches no route: its children stop
//! (which aborts its build and gives back its build slot) and every region
//! is told to scale down whatever was started for it.

use crate::actors::project::core::ProjectCore;
use crate::actors::project::effects::Effects;
use crate::actors::project::messages::Reply;
use crate::actors::project::replay;
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::{Deployment, DeploymentId, DeploymentStatus, Origin, Source, now_millis};

/// `CancelDeployment`. Idempotent: a cancelled deployment is answered as
/// stored (once this actor's earlier writes have settled, so the answer
/// never runs ahead of the cancel's own commit).
pub(super) fn cancel(
    core: &mut ProjectCore,
    id: &DeploymentId,
    origin: &Origin,
    reply: Reply<Deployment>,
) {
    if core.in_flight.contains_key(id) {
        if let Some((mut effects, deployment)) = stop(core, id, None) {
            if let Some(audit) = replay::audit(core, origin) {
                effects.write(audit);
            }
            effects.answer(reply, Ok(deployment));
            core.push(effects);
        }
        return;
    }
    let deployment = match core.deployment(id) {
        Ok(Some(d)) if d.project_id == core.project.id => d,
        Ok(_) => {
            core.answer(
                reply,
                Err(Error::not_found(format!("deployment {id} not found"))),
            );
            return;
        }
        Err(e) => {
            core.answer(reply, Err(e));
            return;
        }
    };
    if deployment.status == DeploymentStatus::Cancelled {
        let mut effects = Effects::new();
        effects.after_earlier = true;
        effects.answer(reply, Ok(deployment));
        core.push(effects);
        return;
    }
    let message = format!(
        "deployment {id} is {}; only a deployment that is not yet READY can be cancelled",
        deployment.status
    );
    core.answer(reply, Err(Error::precondition(message)));
}

/// A new deployment cancels the older ones of its project, environment
/// and branch that are still queued or building: their commit can never
/// be the newest, so their build is wasted work.
pub(super) fn supersede(core: &mut ProjectCore, newer: &Deployment) {
    let older: Vec<DeploymentId> = core
        .in_flight
        .values()
        .map(|f| &f.deployment)
        .filter(|d| {
            d.id != newer.id
                && d.sequence < newer.sequence
                && d.environment == newer.environment
                && d.branch == newer.branch
                && matches!(d.source, Source::Git(_))
                && matches!(
                    d.status,
                    DeploymentStatus::Pending | DeploymentStatus::Building
                )
        })
        .map(|d| d.id.clone())
        .collect();
    for id in older {
        tracing::info!(deployment = %id, by = %newer.id, "superseded");
        if let Some((effects, _)) = stop(core, &id, Some(newer.id.clone())) {
            core.push(effects);
        }
    }
}

/// Stores `id` as `CANCELLED`, stops its children and scales down what was
/// started for it. Returns the effects (to which the caller may add an
/// answer) and the deployment as it will be stored.
fn stop(
    core: &mut ProjectCore,
    id: &DeploymentId,
    superseded_by: Option<DeploymentId>,
) -> Option<(Effects, Deployment)> {
    let mut in_flight = core.in_flight.remove(id)?;
    let cancelled_step = in_flight.deployment.running_step().map(|s| s.name);
    in_flight.deployment.cancel(superseded_by, now_millis());
    if let Some(step) = cancelled_step {
        in_flight.ended(step);
    }
    let deployment = in_flight.deployment;
    let mut effects = Effects::new();
    effects.stop_children.push(id.clone());
    effects
        .write(Mutation::PutDeployment(deployment.clone()))
        .observe(&deployment, DeploymentStatus::Cancelled, cancelled_step);
    if !deployment.regions.is_empty() {
        let (track, intent) = core.intent(&deployment);
        effects.write(track);
        effects.drivers.push(intent);
    }
    Some((effects, deployment))
}
