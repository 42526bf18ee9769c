//! A deployment and its lifecycle: status, desired state, steps and the
//! per-region topology.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{DeploymentId, ProjectId, UnixMillis};

/// `PENDING -> BUILDING (git only) -> DEPLOYING -> NETWORK -> READY`, or
/// `FAILED` or `CANCELLED` from any non-terminal status. `CANCELLED` (by
/// `CancelDeployment` or a newer deployment of the same branch) never
/// takes a route, like `FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStatus {
    Pending,
    Building,
    Deploying,
    Network,
    Ready,
    Failed,
    /// Added in record format 3; stays last so older bytes decode as is.
    Cancelled,
}

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed | Self::Cancelled)
    }

    /// A stable one-byte code, used in index keys on disk.
    pub fn code(self) -> u8 {
        match self {
            Self::Pending => 1,
            Self::Building => 2,
            Self::Deploying => 3,
            Self::Network => 4,
            Self::Ready => 5,
            Self::Failed => 6,
            Self::Cancelled => 7,
        }
    }

    /// The name users see in the API (`READY`, not `Ready`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Building => "BUILDING",
            Self::Deploying => "DEPLOYING",
            Self::Network => "NETWORK",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

impl std::fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesiredState {
    Running,
    /// Scaled to zero; a rollback or promote wakes it.
    Standby,
    /// Will not run again (failed deployments end here).
    Archived,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    pub repository: String,
    pub commit_sha: String,
    pub context_path: String,
    pub dockerfile_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Git(GitSource),
    Image(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitCommit {
    pub sha: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    pub committed_at: Option<UnixMillis>,
}

/// The named phases a deployment goes through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepName {
    Build,
    Deploy,
    Network,
    /// Waking a `STANDBY` deployment for a rollback or promote.
    Wake,
}

impl StepName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Build => "build",
            Self::Deploy => "deploy",
            Self::Network => "network",
            Self::Wake => "wake",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: StepName,
    pub started_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    pub error: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub status: String,
    /// `host:port` where the instance serves, once the region knows it.
    pub address: Option<String>,
}

/// The port an application listens on unless its deployment says
/// otherwise; it gets it as `PORT` in its environment.
pub const DEFAULT_PORT: u16 = 8080;

/// Desired and observed state of a deployment in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionTopology {
    pub desired_replicas: u32,
    /// `false` once the deployment is set to stop (standby, failure).
    pub running: bool,
    pub ready: bool,
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub project_id: ProjectId,
    pub environment: String,
    /// Per-project creation order, from 1. Sticky routes only move to a
    /// deployment with a higher sequence than the one they point at.
    pub sequence: u64,
    pub branch: String,
    pub source: Source,
    pub git_commit: Option<GitCommit>,
    pub command: Vec<String>,
    /// The port the application listens on (`PORT` in its environment).
    pub port: u16,
    pub image: Option<String>,
    pub build_id: Option<String>,
    pub status: DeploymentStatus,
    pub desired_state: DesiredState,
    pub error_message: Option<String>,
    pub steps: Vec<Step>,
    pub regions: BTreeMap<String, RegionTopology>,
    /// The per-push hostnames (`DEPLOYMENT`, `COMMIT`, `BRANCH`) this
    /// deployment was given when it became `READY`, as actually stored: a
    /// name that collided took a suffix (`model::names`). Sticky routes may
    /// move away later; the routes table says where each points now.
    pub hostnames: Vec<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// The newer deployment of the same project, environment and branch
    /// that cancelled this one while it was queued or building. Last, so
    /// format 2 bytes are these bytes without it (`codec.rs`).
    pub superseded_by: Option<DeploymentId>,
}

/// A validated `CreateDeployment` request.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub environment: String,
    pub branch: String,
    pub source: Source,
    pub git_commit: Option<GitCommit>,
    pub command: Vec<String>,
    pub port: u16,
}

impl Deployment {
    /// A new `PENDING` deployment; a prebuilt image is its image from the
    /// start, a git source gets one from its build.
    pub fn new(
        project_id: ProjectId,
        sequence: u64,
        request: NewDeployment,
        now: UnixMillis,
    ) -> Self {
        Self {
            id: DeploymentId::generate(),
            project_id,
            environment: request.environment,
            sequence,
            branch: request.branch,
            image: match &request.source {
                Source::Image(image) => Some(image.clone()),
                Source::Git(_) => None,
            },
            source: request.source,
            git_commit: request.git_commit,
            command: request.command,
            port: request.port,
            build_id: None,
            status: DeploymentStatus::Pending,
            desired_state: DesiredState::Running,
            error_message: None,
            steps: Vec::new(),
            regions: BTreeMap::new(),
            hostnames: Vec::new(),
            created_at: now,
            updated_at: now,
            superseded_by: None,
        }
    }

    /// The commit this deployment runs, from the git source or, for a
    /// prebuilt image, from the commit metadata the client sent.
    pub fn commit_sha(&self) -> Option<&str> {
        match &self.source {
            Source::Git(git) => Some(git.commit_sha.as_str()),
            Source::Image(_) => self
                .git_commit
                .as_ref()
                .map(|c| c.sha.as_str())
                .filter(|sha| !sha.is_empty()),
        }
    }

    pub fn start_step(&mut self, name: StepName, now: UnixMillis) {
        self.steps.push(Step {
            name,
            started_at: now,
            finished_at: None,
            error: None,
            detail: String::new(),
        });
        self.updated_at = now;
    }

    /// Ends the most recent step named `name` that is still running.
    pub fn finish_step(&mut self, name: StepName, now: UnixMillis, error: Option<String>) {
        if let Some(step) = self
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.name == name && s.finished_at.is_none())
        {
            step.finished_at = Some(now);
            step.error = error;
        }
        self.updated_at = now;
    }

    /// Regions whose desired replicas are not (yet) known to run.
    pub fn regions_not_ready(&self) -> std::collections::BTreeSet<String> {
        self.regions
            .iter()
            .filter(|(_, t)| !t.ready)
            .map(|(region, _)| region.clone())
            .collect()
    }

    pub fn running_step(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.finished_at.is_none())
    }

    /// Marks the deployment failed: the running step records the error, the
    /// topologies are set to stop and it will not be started again.
    pub fn fail(&mut self, message: String, now: UnixMillis) {
        if let Some(step) = self.running_step().map(|s| s.name) {
            self.finish_step(step, now, Some(message.clone()));
        }
        self.status = DeploymentStatus::Failed;
        self.desired_state = DesiredState::Archived;
        self.error_message = Some(message);
        for topology in self.regions.values_mut() {
            topology.running = false;
        }
        self.updated_at = now;
    }

    /// Marks the deployment cancelled (by a caller, or superseded by a
    /// newer deployment): like [`Deployment::fail`], the running step ends
    /// with the reason and nothing started for it runs again.
    pub fn cancel(&mut self, superseded_by: Option<DeploymentId>, now: UnixMillis) {
        let message = match &superseded_by {
            Some(newer) => format!("cancelled: superseded by {newer}"),
            None => "cancelled".to_string(),
        };
        self.fail(message, now);
        self.status = DeploymentStatus::Cancelled;
        self.superseded_by = superseded_by;
    }

    /// Whether any region is meant to run instances: what the drivers must
    /// be told to keep, and what start-up re-applies.
    pub fn runs_anywhere(&self) -> bool {
        self.regions.values().any(|t| t.running)
    }

    /// Scales every region to zero (`STANDBY`).
    pub fn stand_by(&mut self, now: UnixMillis) {
        self.desired_state = DesiredState::Standby;
        for topology in self.regions.values_mut() {
            topology.running = false;
            topology.ready = false;
            topology.instances.clear();
        }
        self.updated_at = now;
    }
}
