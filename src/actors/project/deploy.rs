//! Deploy: `PENDING -> BUILDING -> DEPLOYING -> NETWORK -> READY`, or
//! `FAILED`. Each transition is decided here and stored through the writer;
//! the build and the regional rollout run in child actors.

use std::collections::BTreeSet;
use std::sync::Arc;

use ractor::{Actor, ActorCell};

use crate::actors::build::{BuildActor, BuildArgs};
use crate::actors::project::messages::{Created, NewDeployment, Reply};
use crate::actors::project::replay;
use crate::actors::project::schedule;
use crate::actors::project::state::{InFlight, ProjectState};
use crate::actors::readiness::{ReadinessActor, ReadinessArgs};
use crate::error::Error;
use crate::io::builder::{BuildError, BuildOutput, BuildRequest};
use crate::io::region::{NetworkPolicySpec, RegionDriver, SentinelSpec, TopologySpec};
use crate::io::store::Mutation;
use crate::model::project::LiveDeployment;
use crate::model::routes::plan_deploy;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, Idempotency, Instance, RegionTopology, RouteKind,
    Source, StepName, StoredReply, now_millis,
};

/// `CreateDeployment`: stores the new deployment as `PENDING`, answers once
/// that is durable, and starts the work.
pub async fn create(
    state: &mut ProjectState,
    request: NewDeployment,
    idempotency: Option<Idempotency>,
    reply: Reply<Created>,
) {
    let Some(reply) = replay::check(state, idempotency.as_ref(), reply, |stored| match stored {
        StoredReply::Deployment { id, status } => Some(Created { id, status }),
        StoredReply::Switch(_) => None,
    }) else {
        return;
    };
    let Some(environment) = state.project.environment(&request.environment) else {
        let _ = reply.send(Err(Error::not_found(format!(
            "project {} has no environment {:?}",
            state.project.id, request.environment
        ))));
        return;
    };
    let regions = environment.effective_regions(state.deps.regions.names());
    if let Some(missing) = regions.keys().find(|r| !state.deps.regions.contains(r)) {
        let _ = reply.send(Err(Error::precondition(format!(
            "environment {} uses region {missing}, which this daemon does not serve; update the environment's regions",
            request.environment
        ))));
        return;
    }
    let now = now_millis();
    let sequence = state.project.next_sequence;
    state.project.next_sequence += 1;
    let deployment = Deployment::new(state.project.id.clone(), sequence, request, now);
    let created = Created {
        id: deployment.id.clone(),
        status: deployment.status,
    };
    let mut mutations = vec![
        Mutation::PutProject(state.project.clone()),
        Mutation::PutDeployment(deployment.clone()),
    ];
    mutations.extend(replay::record(
        state,
        idempotency.as_ref(),
        StoredReply::Deployment {
            id: created.id.clone(),
            status: created.status,
        },
    ));
    state.submit_and_reply(mutations, reply, created);
    let id = deployment.id.clone();
    state
        .in_flight
        .insert(id.clone(), InFlight::new(deployment));
    advance(state, &id).await;
}

/// Drives a deployment from whatever step it last recorded. Used for new
/// deployments and, after a restart, for every unfinished one.
pub async fn advance(state: &mut ProjectState, id: &DeploymentId) {
    let Some(in_flight) = state.in_flight.get(id) else {
        return;
    };
    match in_flight.deployment.status {
        DeploymentStatus::Pending | DeploymentStatus::Building => {
            if in_flight.deployment.image.is_some() {
                start_deploying(state, id).await;
            } else {
                start_build(state, id).await;
            }
        }
        DeploymentStatus::Deploying => spawn_deploy_readiness(state, id).await,
        DeploymentStatus::Network => switch_routes(state, id),
        DeploymentStatus::Ready | DeploymentStatus::Failed => {
            state.in_flight.remove(id);
        }
    }
}

async fn start_build(state: &mut ProjectState, id: &DeploymentId) {
    let ticket = state.next_ticket();
    let Some(in_flight) = state.in_flight.get_mut(id) else {
        return;
    };
    let deployment = &mut in_flight.deployment;
    let Source::Git(git) = deployment.source.clone() else {
        return;
    };
    in_flight.ticket = ticket;
    if deployment.status != DeploymentStatus::Building {
        let now = now_millis();
        deployment.status = DeploymentStatus::Building;
        deployment.start_step(StepName::Build, now);
    }
    let request = BuildRequest {
        deployment_id: deployment.id.clone(),
        project_id: deployment.project_id.clone(),
        branch: deployment.branch.clone(),
        source: git,
    };
    let stored = Mutation::PutDeployment(deployment.clone());
    state.submit(vec![stored], |_| {});
    let args = BuildArgs {
        deps: state.deps.clone(),
        builder: state.deps.builder.clone(),
        request,
        parent: state.myself.clone(),
        ticket,
    };
    match BuildActor::spawn_linked(None, BuildActor, args, state.myself.get_cell()).await {
        Ok((child, _)) => {
            if let Some(in_flight) = state.in_flight.get_mut(id) {
                in_flight.children = vec![child.get_cell()];
            }
        }
        Err(e) => fail(state, id, format!("could not start the build: {e}")),
    }
}

pub fn build_progress(state: &mut ProjectState, id: &DeploymentId, ticket: u64, line: String) {
    if let Some(in_flight) = state.in_flight.get_mut(id)
        && in_flight.ticket == ticket
        && let Some(step) = in_flight
            .deployment
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.name == StepName::Build)
    {
        step.detail = line;
    }
}

pub async fn build_finished(
    state: &mut ProjectState,
    id: &DeploymentId,
    ticket: u64,
    result: Result<BuildOutput, BuildError>,
) {
    let Some(in_flight) = state.in_flight.get_mut(id) else {
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
            start_deploying(state, id).await;
        }
        // The failed step is `build`; the builder's words say why.
        Err(e) => fail(state, id, e.to_string()),
    }
}

/// `DEPLOYING`: one topology per region, then a readiness child per region.
async fn start_deploying(state: &mut ProjectState, id: &DeploymentId) {
    let regions = {
        let Some(in_flight) = state.in_flight.get(id) else {
            return;
        };
        state
            .project
            .environment(&in_flight.deployment.environment)
            .map(|e| e.effective_regions(state.deps.regions.names()))
            .unwrap_or_default()
    };
    let Some(in_flight) = state.in_flight.get_mut(id) else {
        return;
    };
    let deployment = &mut in_flight.deployment;
    let now = now_millis();
    deployment.status = DeploymentStatus::Deploying;
    deployment.start_step(StepName::Deploy, now);
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
    let stored = Mutation::PutDeployment(deployment.clone());
    state.submit(vec![stored], |_| {});
    spawn_deploy_readiness(state, id).await;
}

async fn spawn_deploy_readiness(state: &mut ProjectState, id: &DeploymentId) {
    let ticket = state.next_ticket();
    let Some(in_flight) = state.in_flight.get_mut(id) else {
        return;
    };
    in_flight.ticket = ticket;
    let pending = in_flight.deployment.regions_not_ready();
    if pending.is_empty() {
        regions_ready(state, id);
        return;
    }
    let deployment = in_flight.deployment.clone();
    match spawn_readiness(state, &deployment, &pending, ticket).await {
        Ok(children) => {
            if let Some(in_flight) = state.in_flight.get_mut(id) {
                in_flight.children = children;
            }
        }
        Err(e) => fail(state, id, e),
    }
}

/// Spawns one readiness child per region in `regions`, for a deploy or for
/// waking a `STANDBY` deployment. On error, the children already spawned are
/// stopped.
pub async fn spawn_readiness(
    state: &ProjectState,
    deployment: &Deployment,
    regions: &BTreeSet<String>,
    ticket: u64,
) -> Result<Vec<ActorCell>, String> {
    let mut children = Vec::with_capacity(regions.len());
    let result = spawn_each_readiness(state, deployment, regions, ticket, &mut children).await;
    if result.is_err() {
        stop_children(&children);
        children.clear();
    }
    result.map(|()| children)
}

async fn spawn_each_readiness(
    state: &ProjectState,
    deployment: &Deployment,
    regions: &BTreeSet<String>,
    ticket: u64,
    children: &mut Vec<ActorCell>,
) -> Result<(), String> {
    let Some(image) = deployment.image.clone() else {
        return Err("the deployment has no image".into());
    };
    let production = state
        .project
        .environment(&deployment.environment)
        .is_some_and(|e| e.is_production());
    for region in regions {
        let Some(driver) = state.deps.regions.get(region) else {
            return Err(format!("region {region} is not served by this daemon"));
        };
        let replicas = deployment
            .regions
            .get(region)
            .map_or(1, |t| t.desired_replicas);
        let args = ReadinessArgs {
            deps: state.deps.clone(),
            region: region.clone(),
            driver,
            topology: TopologySpec {
                deployment_id: deployment.id.clone(),
                project_id: deployment.project_id.clone(),
                environment: deployment.environment.clone(),
                image: image.clone(),
                command: deployment.command.clone(),
                replicas,
                running: true,
            },
            sentinel: SentinelSpec {
                project_id: deployment.project_id.clone(),
                environment: deployment.environment.clone(),
                replicas: if production { 3 } else { 1 },
            },
            network_policies: NetworkPolicySpec {
                deployment_id: deployment.id.clone(),
                project_id: deployment.project_id.clone(),
                environment: deployment.environment.clone(),
            },
            timeout: state.deps.config.region_timeout(),
            poll_every: state.deps.config.readiness_poll(),
            parent: state.myself.clone(),
            ticket,
        };
        let (child, _) =
            ReadinessActor::spawn_linked(None, ReadinessActor, args, state.myself.get_cell())
                .await
                .map_err(|e| format!("could not start the readiness check for {region}: {e}"))?;
        children.push(child.get_cell());
    }
    Ok(())
}

pub fn stop_children(children: &[ActorCell]) {
    for child in children {
        child.stop(None);
    }
}

/// A region of an in-flight deployment settled.
pub fn region_settled(
    state: &mut ProjectState,
    id: &DeploymentId,
    ticket: u64,
    region: &str,
    result: Result<Vec<Instance>, String>,
) {
    let Some(in_flight) = state.in_flight.get_mut(id) else {
        return;
    };
    if in_flight.ticket != ticket || in_flight.deployment.status != DeploymentStatus::Deploying {
        return;
    }
    match result {
        Ok(instances) => {
            if let Some(topology) = in_flight.deployment.regions.get_mut(region) {
                topology.ready = true;
                topology.instances = instances;
            }
            // Readiness of single regions is not stored: it is no step or
            // status anyone was promised, and a resumed deployment polls
            // every region again anyway (level-triggered). It is stored
            // with NETWORK, once all regions are ready.
            if in_flight.deployment.regions_not_ready().is_empty() {
                regions_ready(state, id);
            }
        }
        Err(reason) => fail(state, id, reason),
    }
}

fn regions_ready(state: &mut ProjectState, id: &DeploymentId) {
    let Some(in_flight) = state.in_flight.get_mut(id) else {
        return;
    };
    let deployment = &mut in_flight.deployment;
    let now = now_millis();
    deployment.finish_step(StepName::Deploy, now, None);
    deployment.status = DeploymentStatus::Network;
    deployment.start_step(StepName::Network, now);
    let stored = Mutation::PutDeployment(deployment.clone());
    state.submit(vec![stored], |_| {});
    switch_routes(state, id);
}

/// `NETWORK -> READY`: in one transaction the deployment becomes `READY`,
/// takes its routes and, when the plan says so, the live pointer; the
/// previous live deployment is scheduled for standby.
fn switch_routes(state: &mut ProjectState, id: &DeploymentId) {
    state.deps.fail_point("deploy.before_route_switch");
    let Some(mut in_flight) = state.in_flight.remove(id) else {
        return;
    };
    let deployment = &mut in_flight.deployment;
    let plan = plan_deploy(deployment, &state.project, &state.routes, state.hostnames());
    let now = now_millis();
    deployment.finish_step(StepName::Network, now, None);
    deployment.status = DeploymentStatus::Ready;

    let mut mutations = vec![Mutation::PutDeployment(deployment.clone())];
    for route in plan.routes {
        if route.kind != RouteKind::Deployment {
            state.routes.insert(route.fqdn.clone(), route.clone());
        }
        mutations.push(Mutation::PutRoute(route));
    }
    let mut previous_live = None;
    if plan.takes_live {
        previous_live = state.project.live.replace(LiveDeployment {
            id: deployment.id.clone(),
            sequence: deployment.sequence,
        });
        mutations.push(Mutation::PutProject(state.project.clone()));
    }
    if let Some(previous) = previous_live.filter(|p| p.id != deployment.id) {
        mutations.extend(schedule::standby_later(state, &previous.id));
    }
    let deps = state.deps.clone();
    state.submit(mutations, move |_| {
        deps.fail_point("deploy.after_route_switch_commit");
    });
}

/// `FAILED`: records the failed step, stops the children and tells every
/// region to stop what was created. Routes are not touched.
pub fn fail(state: &mut ProjectState, id: &DeploymentId, reason: String) {
    let Some(mut in_flight) = state.in_flight.remove(id) else {
        return;
    };
    tracing::info!(deployment = %id, %reason, "deployment failed");
    stop_children(&in_flight.children);
    in_flight.deployment.fail(reason, now_millis());
    let stop = stop_regions(state, &in_flight.deployment);
    state.submit(
        vec![Mutation::PutDeployment(in_flight.deployment)],
        move |result| {
            if result.is_ok() {
                stop.run();
            }
        },
    );
}

/// Scaling a deployment to zero in each of its regions. The decision is
/// stored first and the driver calls run after its commit ([`StopRegions::run`]
/// from the completion), so a crash in between leaves a deployment stored as
/// running that is still running, never one stored as running that was
/// already scaled away.
pub struct StopRegions {
    runtime: tokio::runtime::Handle,
    calls: Vec<(Arc<dyn RegionDriver>, DeploymentId, String)>,
}

impl StopRegions {
    /// Starts the driver calls in the background; each is level-triggered
    /// and idempotent. Safe to call from the store writer's thread.
    pub fn run(self) {
        for (driver, id, region) in self.calls {
            self.runtime.spawn(async move {
                if let Err(e) = driver.set_running(&id, false).await {
                    tracing::warn!(deployment = %id, %region, error = %e, "could not stop deployment");
                }
            });
        }
    }
}

pub fn stop_regions(state: &ProjectState, deployment: &Deployment) -> StopRegions {
    StopRegions {
        runtime: tokio::runtime::Handle::current(),
        calls: deployment
            .regions
            .keys()
            .filter_map(|region| {
                let driver = state.deps.regions.get(region)?;
                Some((driver, deployment.id.clone(), region.clone()))
            })
            .collect(),
    }
}
