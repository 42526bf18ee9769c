//! Region drivers: the interface to one region's cluster.
//!
//! Every call is idempotent and level-triggered: applying the same spec twice
//! changes nothing, and names are derived from ids, so a step re-run after a
//! crash adopts what it created before. The real Kubernetes driver and the
//! [`simulated`] one implement the same trait.

pub mod simulated;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::RegionConfig;
use crate::model::{DeploymentId, Instance, ProjectId};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

/// The desired state of one deployment in one region.
#[derive(Debug, Clone)]
pub struct TopologySpec {
    pub deployment_id: DeploymentId,
    pub project_id: ProjectId,
    pub environment: String,
    pub image: String,
    /// Passed to the runtime as an argv list, never through a shell.
    pub command: Vec<String>,
    pub replicas: u32,
    /// `false` scales the deployment to zero.
    pub running: bool,
}

/// The gateway of one environment in one region.
#[derive(Debug, Clone)]
pub struct SentinelSpec {
    pub project_id: ProjectId,
    pub environment: String,
    /// 3 in production, 1 elsewhere.
    pub replicas: u32,
}

/// Ingress from the environment's sentinel to the deployment, and the
/// matching egress rule on the sentinel side.
#[derive(Debug, Clone)]
pub struct NetworkPolicySpec {
    pub deployment_id: DeploymentId,
    pub project_id: ProjectId,
    pub environment: String,
}

#[async_trait]
pub trait RegionDriver: Send + Sync + 'static {
    async fn apply_topology(&self, spec: &TopologySpec) -> Result<(), DriverError>;
    async fn ensure_sentinel(&self, spec: &SentinelSpec) -> Result<(), DriverError>;
    async fn ensure_network_policies(&self, spec: &NetworkPolicySpec) -> Result<(), DriverError>;
    /// Observed instances of a deployment; status `running` counts as ready.
    async fn instances(&self, deployment: &DeploymentId) -> Result<Vec<Instance>, DriverError>;
    /// Scales a deployment to its replicas (`true`) or to zero (`false`).
    async fn set_running(
        &self,
        deployment: &DeploymentId,
        running: bool,
    ) -> Result<(), DriverError>;
}

/// The driver of every configured region.
#[derive(Clone)]
pub struct Regions(Arc<BTreeMap<String, Arc<dyn RegionDriver>>>);

impl Regions {
    pub fn from_config(regions: &BTreeMap<String, RegionConfig>) -> Self {
        let drivers = regions
            .iter()
            .map(|(name, config)| {
                let driver: Arc<dyn RegionDriver> = match config {
                    RegionConfig::Simulated {
                        ready_after_ms,
                        never_ready,
                    } => Arc::new(simulated::SimulatedRegion::new(
                        name,
                        std::time::Duration::from_millis(*ready_after_ms),
                        *never_ready,
                    )),
                };
                (name.clone(), driver)
            })
            .collect();
        Self(Arc::new(drivers))
    }

    pub fn get(&self, region: &str) -> Option<Arc<dyn RegionDriver>> {
        self.0.get(region).cloned()
    }

    pub fn contains(&self, region: &str) -> bool {
        self.0.contains_key(region)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Instances count as ready when this many report `running`.
pub fn all_running(instances: &[Instance], replicas: u32) -> bool {
    instances.iter().filter(|i| i.status == "running").count() >= replicas as usize
}
