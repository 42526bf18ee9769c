//! Conversions from domain types to their protobuf counterparts. Request
//! parsing (the other direction) lives with each service, next to the
//! validation it needs.

use std::collections::{BTreeMap, HashMap};

use crate::error::Error;
use crate::model::project::Project;
use crate::model::{
    Deployment, DeploymentStatus, DesiredState, GitCommit, Route, RouteKind, Source, Step,
    UnixMillis, Workspace,
};
use crate::pb;

pub fn timestamp(millis: UnixMillis) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: (millis / 1000) as i64,
        nanos: ((millis % 1000) * 1_000_000) as i32,
    }
}

pub fn workspace(ws: &Workspace) -> pb::Workspace {
    pb::Workspace {
        id: ws.id.to_string(),
        slug: ws.slug.clone(),
        name: ws.name.clone(),
        created_at: Some(timestamp(ws.created_at)),
    }
}

fn region_map(regions: &BTreeMap<String, u32>) -> HashMap<String, u32> {
    regions.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

pub fn project<'a>(
    project: &Project,
    configured_regions: impl Iterator<Item = &'a str> + Clone,
) -> pb::Project {
    pb::Project {
        id: project.id.to_string(),
        workspace_id: project.workspace_id.to_string(),
        slug: project.slug.clone(),
        name: project.name.clone(),
        live_deployment_id: project
            .live_id()
            .map(ToString::to_string)
            .unwrap_or_default(),
        is_rolled_back: project.is_rolled_back,
        environments: project
            .environments
            .iter()
            .map(|env| pb::Environment {
                slug: env.slug.clone(),
                regions: region_map(&env.regions),
                effective_regions: region_map(&env.effective_regions(configured_regions.clone())),
                is_production: env.is_production(),
            })
            .collect(),
        custom_domains: project.custom_domains.clone(),
        pending_custom_domains: project.pending_domains.clone(),
        created_at: Some(timestamp(project.created_at)),
    }
}

pub fn status(status: DeploymentStatus) -> pb::DeploymentStatus {
    match status {
        DeploymentStatus::Pending => pb::DeploymentStatus::Pending,
        DeploymentStatus::Building => pb::DeploymentStatus::Building,
        DeploymentStatus::Deploying => pb::DeploymentStatus::Deploying,
        DeploymentStatus::Network => pb::DeploymentStatus::Network,
        DeploymentStatus::Ready => pb::DeploymentStatus::Ready,
        DeploymentStatus::Failed => pb::DeploymentStatus::Failed,
        DeploymentStatus::Cancelled => pb::DeploymentStatus::Cancelled,
    }
}

pub fn status_from_pb(status: pb::DeploymentStatus) -> Option<DeploymentStatus> {
    Some(match status {
        pb::DeploymentStatus::Unspecified => return None,
        pb::DeploymentStatus::Pending => DeploymentStatus::Pending,
        pb::DeploymentStatus::Building => DeploymentStatus::Building,
        pb::DeploymentStatus::Deploying => DeploymentStatus::Deploying,
        pb::DeploymentStatus::Network => DeploymentStatus::Network,
        pb::DeploymentStatus::Ready => DeploymentStatus::Ready,
        pb::DeploymentStatus::Failed => DeploymentStatus::Failed,
        pb::DeploymentStatus::Cancelled => DeploymentStatus::Cancelled,
    })
}

fn desired_state(state: DesiredState) -> pb::DesiredState {
    match state {
        DesiredState::Running => pb::DesiredState::Running,
        DesiredState::Standby => pb::DesiredState::Standby,
        DesiredState::Archived => pb::DesiredState::Archived,
    }
}

pub fn route_kind(kind: RouteKind) -> pb::RouteKind {
    match kind {
        RouteKind::Commit => pb::RouteKind::Commit,
        RouteKind::Branch => pb::RouteKind::Branch,
        RouteKind::Environment => pb::RouteKind::Environment,
        RouteKind::Live => pb::RouteKind::Live,
        RouteKind::Deployment => pb::RouteKind::Deployment,
    }
}

pub fn route_kind_from_pb(kind: pb::RouteKind) -> Option<RouteKind> {
    Some(match kind {
        pb::RouteKind::Unspecified => return None,
        pb::RouteKind::Commit => RouteKind::Commit,
        pb::RouteKind::Branch => RouteKind::Branch,
        pb::RouteKind::Environment => RouteKind::Environment,
        pb::RouteKind::Live => RouteKind::Live,
        pb::RouteKind::Deployment => RouteKind::Deployment,
    })
}

/// A request's page size: 0 means `default`, more than `max` is refused.
pub fn page_size(requested: u32, default: u32, max: u32) -> Result<usize, Error> {
    match requested {
        0 => Ok(default as usize),
        n if n <= max => Ok(n as usize),
        n => Err(Error::invalid(format!(
            "page_size {n} is larger than {max}"
        ))),
    }
}

pub fn route(route: &Route) -> pb::Route {
    pb::Route {
        fqdn: route.fqdn.clone(),
        deployment_id: route.deployment_id.to_string(),
        environment_slug: route.environment.clone(),
        kind: route_kind(route.kind) as i32,
    }
}

pub fn step(step: &Step) -> pb::Step {
    pb::Step {
        name: step.name.as_str().to_string(),
        started_at: Some(timestamp(step.started_at)),
        finished_at: step.finished_at.map(timestamp),
        error: step.error.clone().unwrap_or_default(),
        detail: step.detail.clone(),
    }
}

fn git_commit(commit: &GitCommit) -> pb::GitCommit {
    pb::GitCommit {
        sha: commit.sha.clone(),
        message: commit.message.clone(),
        author_name: commit.author_name.clone(),
        author_email: commit.author_email.clone(),
        committed_at: commit.committed_at.map(timestamp),
    }
}

/// `hostnames`: the routes that currently point at the deployment.
pub fn deployment(d: &Deployment, hostnames: Vec<String>) -> pb::Deployment {
    pb::Deployment {
        id: d.id.to_string(),
        project_id: d.project_id.to_string(),
        environment_slug: d.environment.clone(),
        branch: d.branch.clone(),
        source: Some(match &d.source {
            Source::Git(git) => pb::deployment::Source::Git(pb::GitSource {
                repository: git.repository.clone(),
                commit_sha: git.commit_sha.clone(),
                context_path: git.context_path.clone(),
                dockerfile_path: git.dockerfile_path.clone(),
            }),
            Source::Image(image) => pb::deployment::Source::DockerImage(pb::DockerImage {
                image: image.clone(),
            }),
        }),
        git_commit: d.git_commit.as_ref().map(git_commit),
        command: d.command.clone(),
        image: d.image.clone().unwrap_or_default(),
        build_id: d.build_id.clone().unwrap_or_default(),
        status: status(d.status) as i32,
        desired_state: desired_state(d.desired_state) as i32,
        error_message: d.error_message.clone().unwrap_or_default(),
        steps: d.steps.iter().map(step).collect(),
        regions: d
            .regions
            .iter()
            .map(|(region, t)| pb::RegionTopology {
                region: region.clone(),
                desired_replicas: t.desired_replicas,
                desired_status: if t.running { "running" } else { "stopped" }.to_string(),
                ready: t.ready,
                instances: t
                    .instances
                    .iter()
                    .map(|i| pb::Instance {
                        id: i.id.clone(),
                        status: i.status.clone(),
                        address: i.address.clone().unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect(),
        hostnames,
        sequence: d.sequence,
        port: u32::from(d.port),
        superseded_by: d
            .superseded_by
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        created_at: Some(timestamp(d.created_at)),
        updated_at: Some(timestamp(d.updated_at)),
    }
}
