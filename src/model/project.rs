//! Workspaces, projects and environments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{DeploymentId, ProjectId, UnixMillis, WorkspaceId};

pub const PRODUCTION: &str = "production";
pub const PREVIEW: &str = "preview";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: String,
    pub name: String,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub slug: String,
    /// Region -> replicas. Empty means every configured region, 1 replica.
    pub regions: BTreeMap<String, u32>,
}

impl Environment {
    pub fn is_production(&self) -> bool {
        self.slug == PRODUCTION
    }

    /// The regions a deploy of this environment runs in.
    pub fn effective_regions<'a>(
        &self,
        configured: impl Iterator<Item = &'a str>,
    ) -> BTreeMap<String, u32> {
        if self.regions.is_empty() {
            configured.map(|r| (r.to_string(), 1)).collect()
        } else {
            self.regions.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDeployment {
    pub id: DeploymentId,
    pub sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub workspace_id: WorkspaceId,
    /// Copied from the workspace (slugs never change) so hostnames can be
    /// built without reading the workspace.
    pub workspace_slug: String,
    pub slug: String,
    pub name: String,
    pub live: Option<LiveDeployment>,
    pub is_rolled_back: bool,
    /// Deployments a rollback moved live traffic away from while the
    /// project is rolled back. They keep running so rolling forward is
    /// instant; confirming the rollback (or any promote) schedules them for
    /// `STANDBY`, so their capacity does not leak.
    pub rolled_back_from: Vec<DeploymentId>,
    pub environments: Vec<Environment>,
    /// Verified custom domains (or, with `[domains] verification =
    /// "none"`, every claimed one): `LIVE` names of production.
    pub custom_domains: Vec<String>,
    /// The sequence number the next deployment gets.
    pub next_sequence: u64,
    pub created_at: UnixMillis,
    /// Custom domains claimed but not yet proven (format 4). They take no
    /// route and hold no name: another project may claim the same domain,
    /// and whoever proves it first gets it.
    pub pending_domains: Vec<String>,
    /// The value the TXT record `_deployd-challenge.<domain>` must hold
    /// for this project to prove a domain (`model::domains`); made at the
    /// first claim and never changed, so records already created stay
    /// valid (format 4).
    pub domain_token: Option<String>,
}

impl Project {
    pub fn new(workspace: &Workspace, slug: String, name: String, now: UnixMillis) -> Self {
        let environment = |slug: &str| Environment {
            slug: slug.to_string(),
            regions: BTreeMap::new(),
        };
        Self {
            id: ProjectId::generate(),
            workspace_id: workspace.id.clone(),
            workspace_slug: workspace.slug.clone(),
            slug,
            name,
            live: None,
            is_rolled_back: false,
            rolled_back_from: Vec::new(),
            environments: vec![environment(PRODUCTION), environment(PREVIEW)],
            custom_domains: Vec::new(),
            next_sequence: 1,
            created_at: now,
            pending_domains: Vec::new(),
            domain_token: None,
        }
    }

    pub fn environment(&self, slug: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.slug == slug)
    }

    pub fn environment_mut(&mut self, slug: &str) -> Option<&mut Environment> {
        self.environments.iter_mut().find(|e| e.slug == slug)
    }

    pub fn live_id(&self) -> Option<&DeploymentId> {
        self.live.as_ref().map(|l| &l.id)
    }
}
