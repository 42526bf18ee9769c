//! Region drivers: the interface to one region's cluster.
//!
//! A driver is told what a deployment's workload in its region should look
//! like ([`WorkloadSpec`], always the whole object) and reports what runs.
//! Every call is idempotent and level-triggered: applying the same spec twice
//! changes nothing, and names are derived from ids, so a call re-run after a
//! crash adopts what it created before. Drivers never decide anything; the
//! project actors decide and `actors::reconciler` makes the calls, after the
//! commit that holds the decision, until the driver confirms.

pub mod kubernetes;
pub mod podman;
pub mod simulated;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::RegionConfig;
use crate::model::{DeploymentId, Instance, ProjectId};

/// A failed driver call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub message: String,
    /// Retrying cannot help (an invalid spec, an image that does not
    /// exist): readiness fails at once instead of waiting out the region
    /// timeout. Everything else (timeouts, conflicts, 5xx) is retried.
    pub permanent: bool,
}

impl DriverError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// The desired state of one deployment in one region: everything needed to
/// (re-)create its objects, so a driver never merges a partial change into
/// what exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub deployment_id: DeploymentId,
    pub project_id: ProjectId,
    pub environment: String,
    pub image: String,
    /// Passed to the runtime as an argv list, never through a shell.
    pub command: Vec<String>,
    /// The port the application listens on; it gets it as `PORT`.
    pub port: u16,
    /// Replicas while running.
    pub replicas: u32,
    /// `false`: the same workload scaled to zero (`STANDBY`, failed).
    pub running: bool,
    /// Replicas of the environment's gateway (sentinel) in this region: 3
    /// in production, 1 elsewhere.
    pub sentinel_replicas: u32,
}

/// What a driver sees of one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub instances: Vec<Instance>,
    /// Set when the workload cannot become ready however long one waits (a
    /// container that exited, an image that cannot be pulled): the reason,
    /// in words for the deployment's error.
    pub failed: Option<String>,
}

impl Observed {
    /// The desired replicas report `running`.
    pub fn is_ready(&self, replicas: u32) -> bool {
        self.instances
            .iter()
            .filter(|i| i.status == "running")
            .count()
            >= replicas as usize
    }
}

#[async_trait]
pub trait RegionDriver: Send + Sync + 'static {
    /// Makes the region match `spec`. Running: the workload with its
    /// replicas, the environment's sentinel, and the network policies that
    /// let only that sentinel reach the deployment. Not running: the same
    /// workload with zero replicas. `Ok` means the driver accepted the
    /// desired state (instances may still be starting).
    async fn apply(&self, spec: &WorkloadSpec) -> Result<(), DriverError>;

    /// What runs for the workload now.
    async fn observe(&self, spec: &WorkloadSpec) -> Result<Observed, DriverError>;

    /// A counter that changes whenever what `observe(spec)` sees may have
    /// changed, for a driver that hears of changes (the kubernetes
    /// driver's watch): the readiness child looks again then instead of
    /// waiting for its next poll. `None`: only polls find changes.
    fn changes(&self, _spec: &WorkloadSpec) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Every deployment the region holds objects of, for the periodic
    /// resync (`actors::resync` decides what to remove and re-apply).
    /// `None`: this driver holds nothing that outlives what `apply`
    /// re-creates, and has nothing to resync.
    async fn held(&self) -> Result<Option<Vec<Held>>, DriverError> {
        Ok(None)
    }

    /// Removes every object of `deployment` (not its environment's
    /// sentinel, nor the project's namespace). Idempotent.
    async fn remove(
        &self,
        _project: &ProjectId,
        _deployment: &DeploymentId,
    ) -> Result<(), DriverError> {
        Ok(())
    }
}

/// What a region holds of one deployment, as a resync sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub deployment_id: DeploymentId,
    pub project_id: ProjectId,
    /// Replicas and image of its workload object, if that exists.
    pub replicas: Option<u32>,
    pub image: Option<String>,
    /// How many of its objects exist, of the `complete_at` that `apply`
    /// writes for it.
    pub objects: usize,
    pub complete_at: usize,
}

/// The driver of every configured region.
#[derive(Clone)]
pub struct Regions {
    drivers: Arc<BTreeMap<String, Arc<dyn RegionDriver>>>,
    /// The simulated ones again, typed, so tests and the load generator can
    /// look at what they run.
    simulated: Arc<BTreeMap<String, Arc<simulated::SimulatedRegion>>>,
}

impl Regions {
    /// `data_dir` holds the state of simulated regions that persist it.
    /// `insecure_registries`: registries (`host:port`) podman regions pull
    /// from over plain HTTP (the builder's, when it pushes there so).
    pub fn from_config(
        regions: &BTreeMap<String, RegionConfig>,
        data_dir: &Path,
        insecure_registries: &[String],
    ) -> Self {
        let mut drivers: BTreeMap<String, Arc<dyn RegionDriver>> = BTreeMap::new();
        let mut simulated = BTreeMap::new();
        for (name, config) in regions {
            match config {
                RegionConfig::Simulated {
                    ready_after_ms,
                    never_ready,
                    persist,
                    serve_http,
                } => {
                    let state_file = persist.then(|| simulated::state_file(data_dir, name));
                    let region = Arc::new(simulated::SimulatedRegion::new(
                        name,
                        std::time::Duration::from_millis(*ready_after_ms),
                        *never_ready,
                        state_file,
                        *serve_http,
                    ));
                    simulated.insert(name.clone(), region.clone());
                    drivers.insert(name.clone(), region);
                }
                RegionConfig::Podman { socket, podman } => {
                    // One service per region: two regions on one machine
                    // must not race to start (and unlink) one socket.
                    let owned = data_dir.join("podman").join(format!("{name}.sock"));
                    let region = podman::PodmanRegion::new(
                        name,
                        socket.as_deref(),
                        &owned,
                        podman,
                        insecure_registries.to_vec(),
                    );
                    drivers.insert(name.clone(), Arc::new(region));
                }
                RegionConfig::Kubernetes {
                    kubeconfig,
                    context,
                    sentinel_image,
                    readiness,
                } => {
                    let region = kubernetes::KubernetesRegion::new(
                        name,
                        kubeconfig.clone(),
                        context.clone(),
                        sentinel_image.clone(),
                        *readiness,
                    );
                    drivers.insert(name.clone(), Arc::new(region));
                }
            }
        }
        Self {
            drivers: Arc::new(drivers),
            simulated: Arc::new(simulated),
        }
    }

    pub fn get(&self, region: &str) -> Option<Arc<dyn RegionDriver>> {
        self.drivers.get(region).cloned()
    }

    pub fn contains(&self, region: &str) -> bool {
        self.drivers.contains_key(region)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.drivers.keys().map(String::as_str)
    }

    /// The simulated driver of `region`, if that region is simulated.
    pub fn simulated(&self, region: &str) -> Option<Arc<simulated::SimulatedRegion>> {
        self.simulated.get(region).cloned()
    }

    /// Regions served by the given drivers (unit tests of their callers).
    #[cfg(test)]
    pub(crate) fn from_drivers(drivers: BTreeMap<String, Arc<dyn RegionDriver>>) -> Self {
        Self {
            drivers: Arc::new(drivers),
            simulated: Arc::new(BTreeMap::new()),
        }
    }
}
