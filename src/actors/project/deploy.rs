//! Deploy: `PENDING -> BUILDING -> DEPLOYING -> NETWORK -> READY`, or
//! `FAILED` (`CANCELLED` is decided in `cancel.rs`). Each transition is decided here; what it stores, the build it
//! starts, the driver calls and the readiness watches it needs are effects,
//! run after its commit.

use std::cell::RefCell;

use crate::actors::build_slots::Priority;
use crate::actors::project::core::{InFlight, ProjectCore};
use crate::actors::project::effects::{Child, Effects};
use crate::actors::project::messages::{Created, NewDeployment, Reply};
use crate::actors::project::{cancel, replay, schedule};
use crate::actors::readiness::RegionOutcome;
use crate::error::Error;
use crate::io::builder::{BuildError, BuildOutput, BuildRequest};
use crate::io::store::Mutation;
use crate::model::project::LiveDeployment;
use crate::model::quote::quoted;
use crate::model::routes::{Holder, plan_deploy, sticky_hostnames};
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, DesiredState, Origin, RegionTopology, Route,
    RouteKind, Source, StepName, StoredReply, now_millis,
};

/// `CreateDeployment`: stores the new deployment as `PENDING`, answers once
/// that is durable, and starts the work.
pub(super) fn create(
    core: &mut ProjectCore,
    request: NewDeployment,
    origin: Origin,
    reply: Reply<Created>,
) -> Result<(), Error> {
    let Some(reply) =
        replay::check(
            core,
            origin.idempotency.as_ref(),
            reply,
            |_, stored| match stored {
                StoredReply::Deployment { id, status } => Some(Created { id, status }),
                _ => None,
            },
        )
    else {
        return Ok(());
    };
    let Some(environment) = core.project.environment(&request.environment) else {
        let message = format!(
            "project {} has no environment {}",
            core.project.id,
            quoted(&request.environment)
        );
        core.answer(reply, Err(Error::not_found(message)));
        return Ok(());
    };
    let regions = environment.effective_regions(core.deps.regions.names());
    if let Some(missing) = regions.keys().find(|r| !core.deps.regions.contains(r)) {
        let message = format!(
            "environment {} uses region {missing}, which this daemon does not serve; update the environment's regions",
            request.environment
        );
        core.answer(reply, Err(Error::precondition(message)));
        return Ok(());
    }
    let limit = core.deps.config.max_unfinished_per_project;
    if core.in_flight.len() >= limit {
        let message = format!(
            "project {} already has {limit} deployments that are not READY or FAILED; wait for some to finish",
            core.project.id
        );
        core.answer(reply, Err(Error::ResourceExhausted(message)));
        return Ok(());
    }
    let now = now_millis();
    let sequence = core.project.next_sequence;
    core.project.next_sequence += 1;
    let deployment = Deployment::new(core.project.id.clone(), sequence, request, now);
    let created = Created {
        id: deployment.id.clone(),
        status: deployment.status,
    };
    let mut effects = Effects::new();
    effects
        .write(Mutation::PutProject(core.project.clone()))
        .write(Mutation::PutDeployment(deployment.clone()))
        .observe(&deployment, DeploymentStatus::Pending, None);
    let stored = StoredReply::Deployment {
        id: created.id.clone(),
        status: created.status,
    };
    effects.writes.extend(replay::record(core, &origin, stored));
    effects.answer(reply, Ok(created));
    let id = deployment.id.clone();
    core.in_flight
        .insert(id.clone(), InFlight::new(deployment.clone()));
    // The first step (a build, or the deploy of an image) follows in this
    // same turn and stores the deployment again: one submission carries
    // both, `PENDING` reaching watchers as a snapshot. The answer still
    // waits for that commit, and older builds are superseded only after it.
    start_first_step(core, &id, effects.superseded_by_later_write());
    cancel::supersede(core, &deployment);
    Ok(())
}

/// `BUILDING`, or `DEPLOYING` for an image, stored with `earlier` (effects
/// of this turn, such as the creation's) in one submission.
fn start_first_step(core: &mut ProjectCore, id: &DeploymentId, earlier: Effects) {
    let has_image = core
        .in_flight
        .get(id)
        .is_some_and(|f| f.deployment.image.is_some());
    if has_image {
        start_deploying(core, id, earlier);
    } else {
        start_build(core, id, earlier);
    }
}

/// Drives a deployment from whatever step it last recorded. Used for new
/// deployments and, after a restart, for every unfinished one.
pub(super) fn advance(core: &mut ProjectCore, id: &DeploymentId) -> Result<(), Error> {
    let Some(in_flight) = core.in_flight.get(id) else {
        return Ok(());
    };
    match in_flight.deployment.status {
        DeploymentStatus::Pending | DeploymentStatus::Building => {
            start_first_step(core, id, Effects::new());
        }
        DeploymentStatus::Deploying => {
            // Resumed: tell the drivers again (level-triggered, adopts what
            // exists) and watch every region that is not known ready.
            let ticket = core.next_ticket();
            let mut effects = Effects::new();
            if let Some(in_flight) = core.in_flight.get_mut(id) {
                in_flight.ticket = ticket;
                in_flight.enter(StepName::Deploy);
            }
            let deployment = in_flight_deployment(core, id);
            if let Some(deployment) = deployment {
                let (track, intent) = core.intent(&deployment);
                effects.write(track);
                effects.drivers.push(intent);
                effects.children = readiness_children(core, &deployment, ticket);
                let ready_now = effects.children.is_empty();
                core.push(effects);
                if ready_now {
                    let network = regions_ready(core, id);
                    return switch_routes(core, id, network);
                }
            }
        }
        DeploymentStatus::Network => {
            if let Some(in_flight) = core.in_flight.get_mut(id) {
                in_flight.enter(StepName::Network);
            }
            return switch_routes(core, id, None);
        }
        DeploymentStatus::Ready | DeploymentStatus::Failed | DeploymentStatus::Cancelled => {
            core.in_flight.remove(id);
        }
    }
    Ok(())
}

fn in_flight_deployment(core: &ProjectCore, id: &DeploymentId) -> Option<Deployment> {
    core.in_flight.get(id).map(|f| f.deployment.clone())
}

/// `earlier`: effects of this turn to store in the same submission (see
/// [`start_first_step`]).
fn start_build(core: &mut ProjectCore, id: &DeploymentId, earlier: Effects) {
    let ticket = core.next_ticket();
    let Some(in_flight) = core.in_flight.get_mut(id) else {
        core.push(earlier);
        return;
    };
    let Source::Git(git) = in_flight.deployment.source.clone() else {
        core.push(earlier);
        return;
    };
    in_flight.ticket = ticket;
    in_flight.enter(StepName::Build);
    let deployment = &mut in_flight.deployment;
    if deployment.status != DeploymentStatus::Building {
        deployment.status = DeploymentStatus::Building;
        deployment.start_step(StepName::Build, now_millis());
    } else if let Some(step) = deployment
        .steps
        .iter_mut()
        .rev()
        .find(|s| s.name == StepName::Build)
    {
        // Resumed: whether it queues again is for the new child to say.
        step.detail.clear();
    }
    let request = BuildRequest {
        deployment_id: deployment.id.clone(),
        project_id: deployment.project_id.clone(),
        branch: deployment.branch.clone(),
        source: git,
    };
    let deployment = deployment.clone();
    let priority = if core.is_production(&deployment) {
        Priority::Production
    } else {
        Priority::Other
    };
    let mut effects = earlier;
    effects
        .write(Mutation::PutDeployment(deployment.clone()))
        .observe(&deployment, DeploymentStatus::Building, None);
    effects.children.push(Child::Build {
        deployment: id.clone(),
        ticket,
        request,
        priority,
    });
    core.push(effects);
}

/// What a queued build's step says until it gets a slot.
pub const QUEUED_FOR_SLOT: &str = "queued for a build slot";

/// The build child waits for a build slot, or got one after waiting: the
/// build step says so (stored, so watchers and `GetDeployment` see it).
pub(super) fn build_slot(core: &mut ProjectCore, id: &DeploymentId, ticket: u64, queued: bool) {
    let Some(in_flight) = core.in_flight.get_mut(id) else {
        return;
    };
    if in_flight.ticket != ticket || in_flight.deployment.status != DeploymentStatus::Building {
        return;
    }
    let deployment = &mut in_flight.deployment;
    let Some(step) = deployment
        .steps
        .iter_mut()
        .rev()
        .find(|s| s.name == StepName::Build && s.finished_at.is_none())
    else {
        return;
    };
    step.detail = if queued { QUEUED_FOR_SLOT } else { "building" }.to_string();
    deployment.updated_at = now_millis();
    let mut effects = Effects::new();
    effects.write(Mutation::PutDeployment(deployment.clone()));
    core.push(effects);
}

pub(super) fn build_finished(
    core: &mut ProjectCore,
    id: &DeploymentId,
    ticket: u64,
    result: Result<BuildOutput, BuildError>,
) {
    let Some(in_flight) = core.in_flight.get_mut(id) else {
        return;
    };
    if in_flight.ticket != ticket || in_flight.deployment.status != DeploymentStatus::Building {
        return;
    }
    match result {
        Ok(output) => {
            let deployment = &mut in_flight.deployment;
            deployment.image = Some(output.image);
            deployment.build_id = Some(output.build_id);
            deployment.finish_step(StepName::Build, now_millis(), None);
            in_flight.ended(StepName::Build);
            start_deploying(core, id, Effects::new());
        }
        // The failed step is `build`; the builder's words say why.
        Err(e) => fail(core, id, e.to_string()),
    }
}

/// `DEPLOYING`: one topology per region, stored with the driver intent;
/// after that commit the drivers are told and each region is watched.
/// `earlier`: effects of this turn to store in the same submission (see
/// [`start_first_step`]).
fn start_deploying(core: &mut ProjectCore, id: &DeploymentId, earlier: Effects) {
    let ticket = core.next_ticket();
    let regions = {
        let Some(in_flight) = core.in_flight.get(id) else {
            core.push(earlier);
            return;
        };
        core.project
            .environment(&in_flight.deployment.environment)
            .map(|e| e.effective_regions(core.deps.regions.names()))
            .unwrap_or_default()
    };
    let Some(in_flight) = core.in_flight.get_mut(id) else {
        core.push(earlier);
        return;
    };
    in_flight.ticket = ticket;
    in_flight.enter(StepName::Deploy);
    let deployment = &mut in_flight.deployment;
    deployment.status = DeploymentStatus::Deploying;
    deployment.start_step(StepName::Deploy, now_millis());
    deployment.regions = regions
        .into_iter()
        .map(|(region, replicas)| {
            let topology = RegionTopology {
                desired_replicas: replicas,
                running: true,
                ready: false,
                instances: Vec::new(),
            };
            (region, topology)
        })
        .collect();
    let deployment = deployment.clone();
    let (track, intent) = core.intent(&deployment);
    let mut effects = earlier;
    effects
        .write(Mutation::PutDeployment(deployment.clone()))
        .write(track)
        .observe(
            &deployment,
            DeploymentStatus::Deploying,
            Some(StepName::Build),
        );
    effects.drivers.push(intent);
    effects.children = readiness_children(core, &deployment, ticket);
    core.push(effects);
}

/// One readiness watch per region whose desired replicas are not known to
/// run (for deploys and wakes alike).
pub(super) fn readiness_children(
    core: &ProjectCore,
    deployment: &Deployment,
    ticket: u64,
) -> Vec<Child> {
    core.workload_specs(deployment)
        .into_iter()
        .filter(|(region, _)| deployment.regions.get(region).is_some_and(|t| !t.ready))
        .map(|(region, spec)| Child::Readiness {
            deployment: deployment.id.clone(),
            ticket,
            region,
            spec,
        })
        .collect()
}

/// A region of an in-flight deployment settled.
pub(super) fn region_settled(
    core: &mut ProjectCore,
    id: &DeploymentId,
    ticket: u64,
    region: &str,
    outcome: RegionOutcome,
) -> Result<(), Error> {
    let Some(in_flight) = core.in_flight.get_mut(id) else {
        return Ok(());
    };
    if in_flight.ticket != ticket || in_flight.deployment.status != DeploymentStatus::Deploying {
        return Ok(());
    }
    match outcome {
        RegionOutcome::Ready(instances) => {
            if let Some(topology) = in_flight.deployment.regions.get_mut(region) {
                topology.ready = true;
                topology.instances = instances;
            }
            // Readiness of single regions is not stored: it is no step or
            // status anyone was promised, and a resumed deployment watches
            // every region again anyway (level-triggered). It is stored
            // with NETWORK, once all regions are ready.
            if in_flight.deployment.regions_not_ready().is_empty() {
                let network = regions_ready(core, id);
                return switch_routes(core, id, network);
            }
        }
        RegionOutcome::Failed(failure) => fail(core, id, failure.to_string()),
    }
    Ok(())
}

/// `DEPLOYING -> NETWORK`. The effects are the switch's to submit: the
/// switch follows at once and stores the deployment's final state in the
/// same submission, so `NETWORK` reaches watchers but is stored only if the
/// switch cannot be decided now.
fn regions_ready(core: &mut ProjectCore, id: &DeploymentId) -> Option<Effects> {
    let in_flight = core.in_flight.get_mut(id)?;
    let now = now_millis();
    in_flight
        .deployment
        .finish_step(StepName::Deploy, now, None);
    in_flight.ended(StepName::Deploy);
    in_flight.enter(StepName::Network);
    let deployment = &mut in_flight.deployment;
    deployment.status = DeploymentStatus::Network;
    deployment.start_step(StepName::Network, now);
    let mut effects = Effects::new();
    effects
        .write(Mutation::PutDeployment(deployment.clone()))
        .observe(
            deployment,
            DeploymentStatus::Network,
            Some(StepName::Deploy),
        );
    Some(effects)
}

/// `NETWORK -> READY`: in one transaction the deployment becomes `READY`,
/// takes its routes and, when the plan says so, the live pointer; the
/// previous live deployment, and preview deployments left without a sticky
/// route, are scheduled for standby.
/// `network`: the effects of entering `NETWORK` in this same turn, stored
/// with the switch (or alone, if the switch cannot be decided now).
fn switch_routes(
    core: &mut ProjectCore,
    id: &DeploymentId,
    network: Option<Effects>,
) -> Result<(), Error> {
    core.fail_point("deploy.before_route_switch");
    let Some(mut in_flight) = core.in_flight.remove(id) else {
        if let Some(network) = network {
            core.push(network);
        }
        return Ok(());
    };
    let deployment = &mut in_flight.deployment;
    let read_error = RefCell::new(None);
    let plan = plan_deploy(deployment, &core.project, core.hostnames(), |name| {
        core.holder(name).unwrap_or_else(|e| {
            read_error.replace(Some(e));
            None
        })
    });
    if let Some(e) = read_error.into_inner() {
        core.in_flight.insert(id.clone(), in_flight);
        if let Some(network) = network {
            core.push(network);
        }
        return Err(e);
    }
    let now = now_millis();
    deployment.hostnames = plan.hostnames.clone();
    if let Some(step) = deployment
        .steps
        .iter_mut()
        .rev()
        .find(|s| s.name == StepName::Network)
    {
        // A name another project holds is reported, never dropped quietly.
        step.detail = plan.refused.join("; ");
    }
    deployment.finish_step(StepName::Network, now, None);
    deployment.status = DeploymentStatus::Ready;
    in_flight.ended(StepName::Network);
    let deployment = &mut in_flight.deployment;

    let mut effects = network
        .map(Effects::superseded_by_later_write)
        .unwrap_or_default();
    effects
        .write(Mutation::PutDeployment(deployment.clone()))
        .observe(deployment, DeploymentStatus::Ready, Some(StepName::Network));
    for route in &plan.routes {
        if matches!(route.kind, RouteKind::Environment | RouteKind::Live) {
            core.fixed_routes.insert(route.fqdn.clone(), route.clone());
        }
        effects.write(Mutation::PutRoute(route.clone()));
    }
    let mut previous_live = None;
    if plan.takes_live {
        previous_live = core.project.live.replace(LiveDeployment {
            id: deployment.id.clone(),
            sequence: deployment.sequence,
        });
        effects.write(Mutation::PutProject(core.project.clone()));
    }
    let mut to_stand_by = Vec::new();
    if let Some(previous) = previous_live.filter(|p| p.id != deployment.id) {
        to_stand_by.push(previous.id);
    }
    for displaced in &plan.displaced {
        if *displaced != deployment.id
            && !to_stand_by.contains(displaced)
            && left_without_sticky_route(core, displaced, &plan.routes)?
        {
            to_stand_by.push(displaced.clone());
        }
    }
    for standby in to_stand_by {
        let (write, timer) = schedule::standby_later(core, &standby);
        effects.write(write);
        effects.timers.push(timer);
    }
    effects.fail_point_after_commit = Some("deploy.after_route_switch_commit");
    core.push(effects);
    Ok(())
}

/// A preview deployment that lost its last `BRANCH` and `ENVIRONMENT`
/// route to `taken` serves nothing sticky any more: it can go to standby.
/// Production keeps the seed's rule (only the deployment that stops being
/// live is scheduled).
fn left_without_sticky_route(
    core: &ProjectCore,
    id: &DeploymentId,
    taken: &[Route],
) -> Result<bool, Error> {
    let Some(displaced) = core.deployment(id)? else {
        return Ok(false);
    };
    if core.is_production(&displaced)
        || displaced.status != DeploymentStatus::Ready
        || displaced.desired_state != DesiredState::Running
    {
        return Ok(false);
    }
    for name in sticky_hostnames(&displaced, core.hostnames()) {
        let points_here = match taken.iter().find(|r| r.fqdn == name) {
            Some(route) => route.deployment_id == displaced.id,
            None => {
                matches!(core.holder(&name)?, Some(Holder::Route(r)) if r.deployment_id == displaced.id)
            }
        };
        if points_here {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `FAILED`: records the failed step, stops the children and tells every
/// region to stop what was created. Routes are not touched.
pub(super) fn fail(core: &mut ProjectCore, id: &DeploymentId, reason: String) {
    let Some(mut in_flight) = core.in_flight.remove(id) else {
        return;
    };
    in_flight
        .step
        .in_scope(|| tracing::info!(deployment = %id, %reason, "deployment failed"));
    let failed_step = in_flight.deployment.running_step().map(|s| s.name);
    in_flight.deployment.fail(reason, now_millis());
    if let Some(step) = failed_step {
        in_flight.ended(step);
    }
    let mut effects = Effects::new();
    effects.stop_children.push(id.clone());
    effects
        .write(Mutation::PutDeployment(in_flight.deployment.clone()))
        .observe(&in_flight.deployment, DeploymentStatus::Failed, failed_step);
    if !in_flight.deployment.regions.is_empty() {
        let (track, intent) = core.intent(&in_flight.deployment);
        effects.write(track);
        effects.drivers.push(intent);
    }
    core.push(effects);
}
