//! The shapes of records written in older formats, kept only to read them
//! (`codec::Record::upgrade`). Never written. Each converts into the
//! current model type with what the older format knew.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::deployment::DEFAULT_PORT;
use crate::model::project::{Environment, LiveDeployment};
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, DesiredState, GitCommit, IdempotencyRecord,
    Instance, Project, ProjectId, RegionTopology, Route, Source, Step, StoredReply, UnixMillis,
    WorkspaceId,
};

/// `Project` in format 1: no `rolled_back_from`.
#[derive(Deserialize)]
pub struct ProjectV1 {
    id: ProjectId,
    workspace_id: WorkspaceId,
    workspace_slug: String,
    slug: String,
    name: String,
    live: Option<LiveDeployment>,
    is_rolled_back: bool,
    environments: Vec<Environment>,
    custom_domains: Vec<String>,
    next_sequence: u64,
    created_at: UnixMillis,
}

impl From<ProjectV1> for Project {
    fn from(v1: ProjectV1) -> Self {
        Project {
            id: v1.id,
            workspace_id: v1.workspace_id,
            workspace_slug: v1.workspace_slug,
            slug: v1.slug,
            name: v1.name,
            live: v1.live,
            is_rolled_back: v1.is_rolled_back,
            rolled_back_from: Vec::new(),
            environments: v1.environments,
            custom_domains: v1.custom_domains,
            next_sequence: v1.next_sequence,
            created_at: v1.created_at,
            pending_domains: Vec::new(),
            domain_token: None,
        }
    }
}

/// `Instance` in format 1: no address.
#[derive(Deserialize)]
struct InstanceV1 {
    id: String,
    status: String,
}

/// `RegionTopology` in format 1 (its instances had no address).
#[derive(Deserialize)]
struct RegionTopologyV1 {
    desired_replicas: u32,
    running: bool,
    ready: bool,
    instances: Vec<InstanceV1>,
}

impl From<RegionTopologyV1> for RegionTopology {
    fn from(v1: RegionTopologyV1) -> Self {
        RegionTopology {
            desired_replicas: v1.desired_replicas,
            running: v1.running,
            ready: v1.ready,
            instances: v1
                .instances
                .into_iter()
                .map(|i| Instance {
                    id: i.id,
                    status: i.status,
                    address: None,
                })
                .collect(),
        }
    }
}

/// `Deployment` in format 1: no `hostnames` (format 1 only ever gave the
/// plain names, which `routes::candidate_hostnames` falls back to), no
/// port (every application got the default).
#[derive(Deserialize)]
pub struct DeploymentV1 {
    id: DeploymentId,
    project_id: ProjectId,
    environment: String,
    sequence: u64,
    branch: String,
    source: Source,
    git_commit: Option<GitCommit>,
    command: Vec<String>,
    image: Option<String>,
    build_id: Option<String>,
    status: DeploymentStatus,
    desired_state: DesiredState,
    error_message: Option<String>,
    steps: Vec<Step>,
    regions: BTreeMap<String, RegionTopologyV1>,
    created_at: UnixMillis,
    updated_at: UnixMillis,
}

impl From<DeploymentV1> for Deployment {
    fn from(v1: DeploymentV1) -> Self {
        Deployment {
            id: v1.id,
            project_id: v1.project_id,
            environment: v1.environment,
            sequence: v1.sequence,
            branch: v1.branch,
            source: v1.source,
            git_commit: v1.git_commit,
            command: v1.command,
            port: DEFAULT_PORT,
            image: v1.image,
            build_id: v1.build_id,
            status: v1.status,
            desired_state: v1.desired_state,
            error_message: v1.error_message,
            steps: v1.steps,
            regions: v1
                .regions
                .into_iter()
                .map(|(region, topology)| (region, topology.into()))
                .collect(),
            hostnames: Vec::new(),
            created_at: v1.created_at,
            updated_at: v1.updated_at,
            superseded_by: None,
        }
    }
}

/// Format 1 stored a switch's whole reply (the project and every moved
/// route), which grew with the number of custom domains.
#[derive(Deserialize)]
struct SwitchOutcomeV1 {
    project: ProjectV1,
    routes: Vec<Route>,
}

#[derive(Deserialize)]
enum StoredReplyV1 {
    Deployment {
        id: DeploymentId,
        status: DeploymentStatus,
    },
    Switch(Box<SwitchOutcomeV1>),
}

#[derive(Deserialize)]
pub struct IdempotencyRecordV1 {
    fingerprint: u64,
    reply: StoredReplyV1,
    expires_at: UnixMillis,
}

impl From<IdempotencyRecordV1> for IdempotencyRecord {
    fn from(v1: IdempotencyRecordV1) -> Self {
        let reply = match v1.reply {
            StoredReplyV1::Deployment { id, status } => StoredReply::Deployment { id, status },
            StoredReplyV1::Switch(outcome) => {
                let environment = outcome
                    .routes
                    .first()
                    .map_or_else(|| "production".to_string(), |r| r.environment.clone());
                let target = outcome
                    .routes
                    .first()
                    .map(|r| r.deployment_id.clone())
                    .or_else(|| outcome.project.live.as_ref().map(|l| l.id.clone()));
                match target {
                    Some(target) => StoredReply::Switch {
                        target,
                        environment,
                        rolled_back: outcome.project.is_rolled_back,
                        moved_routes: !outcome.routes.is_empty(),
                    },
                    None => StoredReply::Project,
                }
            }
        };
        IdempotencyRecord {
            fingerprint: v1.fingerprint,
            reply,
            expires_at: v1.expires_at,
        }
    }
}
