//! Builders turn a git source into an image. The [`simulated`] builder is the
//! default; [`podman`] builds for real (git, podman, an OCI registry). The
//! build child writes every progress line to the build's [`log`].

pub mod log;
pub mod podman;
pub mod simulated;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::BuilderConfig;
use crate::model::{DeploymentId, GitSource, ProjectId};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub deployment_id: DeploymentId,
    pub project_id: ProjectId,
    pub branch: String,
    pub source: GitSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// Derived from the deployment id, so a build re-run after a crash finds
    /// the one already started.
    pub build_id: String,
    pub image: String,
}

/// Receives human-readable progress lines while a build runs.
pub type Progress<'a> = &'a (dyn Fn(String) + Send + Sync);

#[async_trait]
pub trait Builder: Send + Sync + 'static {
    async fn build(
        &self,
        request: &BuildRequest,
        progress: Progress<'_>,
    ) -> Result<BuildOutput, BuildError>;
}

pub fn from_config(config: &BuilderConfig, data_dir: &std::path::Path) -> Arc<dyn Builder> {
    match config {
        BuilderConfig::Simulated {
            duration_ms,
            registry,
            rules,
            ..
        } => Arc::new(simulated::SimulatedBuilder::new(
            std::time::Duration::from_millis(*duration_ms),
            registry.clone(),
            rules.clone(),
        )),
        BuilderConfig::Podman {
            registry,
            insecure_registry,
            allow_file_repositories,
            podman,
            git,
            ..
        } => Arc::new(podman::PodmanBuilder::new(podman::PodmanBuilderConfig {
            registry,
            insecure: *insecure_registry,
            allow_file: *allow_file_repositories,
            podman,
            git,
            data_dir,
        })),
    }
}
