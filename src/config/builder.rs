//! `[builder]`: the simulated builder or podman builds pushed to a
//! registry, and how many run at once.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::regions::default_podman;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "snake_case", deny_unknown_fields)]
pub enum BuilderConfig {
    /// Pretends to build: waits, then reports an image in `registry`.
    Simulated {
        /// Builds that run at once; more wait, production first.
        #[serde(default = "default_slots")]
        slots: usize,
        #[serde(default)]
        duration_ms: u64,
        #[serde(default = "default_registry")]
        registry: String,
        /// The first rule that matches a build (every field it sets is
        /// equal) overrides duration and outcome.
        #[serde(default)]
        rules: Vec<SimulatedBuildRule>,
    },
    /// Fetches the commit with git, builds its Dockerfile with podman and
    /// pushes the image to `registry`; the deployment runs it by digest.
    Podman {
        #[serde(default = "default_slots")]
        slots: usize,
        /// `HOST:PORT` of the OCI registry images are pushed to, as
        /// `HOST:PORT/deployd/PROJECT:DEPLOYMENT`.
        registry: String,
        /// Push to (and let podman regions pull from) the registry over
        /// plain HTTP, without TLS: for a registry on this machine.
        #[serde(default)]
        insecure_registry: bool,
        /// `file://` repositories read the daemon's own disk, so they are
        /// refused (`INVALID_ARGUMENT`) unless this is set.
        #[serde(default)]
        allow_file_repositories: bool,
        #[serde(default = "default_podman")]
        podman: PathBuf,
        #[serde(default = "default_git")]
        git: PathBuf,
    },
}

fn default_git() -> PathBuf {
    PathBuf::from("git")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedBuildRule {
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub commit_sha: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub fail: bool,
}

fn default_slots() -> usize {
    4
}

impl BuilderConfig {
    /// Builds that may run at once (`[builder] slots`).
    pub fn slots(&self) -> usize {
        match self {
            Self::Simulated { slots, .. } | Self::Podman { slots, .. } => *slots,
        }
    }

    /// Registries reached without TLS: podman regions pull from them so.
    pub fn insecure_registries(&self) -> Vec<String> {
        match self {
            Self::Podman {
                registry,
                insecure_registry: true,
                ..
            } => vec![registry.clone()],
            _ => Vec::new(),
        }
    }

    /// Whether `file://` repositories may be deployed: the simulated
    /// builder reads nothing, the podman builder only when allowed.
    pub fn allows_file_repositories(&self) -> bool {
        match self {
            Self::Simulated { .. } => true,
            Self::Podman {
                allow_file_repositories,
                ..
            } => *allow_file_repositories,
        }
    }
}

fn default_registry() -> String {
    "registry.deployd.local".to_string()
}

impl Default for BuilderConfig {
    fn default() -> Self {
        Self::Simulated {
            slots: default_slots(),
            duration_ms: 200,
            registry: default_registry(),
            rules: Vec::new(),
        }
    }
}
