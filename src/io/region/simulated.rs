//! A region in memory: the default driver, so the daemon runs with nothing
//! else installed. Instances of an applied topology report `running` once
//! `ready_after` has passed, or never when the region is set `never_ready`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;

use super::{DriverError, NetworkPolicySpec, RegionDriver, SentinelSpec, TopologySpec};
use crate::model::{DeploymentId, Instance};

pub struct SimulatedRegion {
    name: String,
    ready_after: Duration,
    never_ready: bool,
    workloads: DashMap<DeploymentId, Workload>,
    /// Names of sentinels and network policies, as a cluster would hold them.
    objects: Mutex<HashSet<String>>,
}

struct Workload {
    replicas: u32,
    running: bool,
    /// When the current replicas were asked for; readiness counts from here.
    since: Instant,
}

impl SimulatedRegion {
    pub fn new(name: &str, ready_after: Duration, never_ready: bool) -> Self {
        Self {
            name: name.to_string(),
            ready_after,
            never_ready,
            workloads: DashMap::new(),
            objects: Mutex::new(HashSet::new()),
        }
    }

    fn record(&self, object: String) {
        if let Ok(mut objects) = self.objects.lock() {
            objects.insert(object);
        }
    }
}

#[async_trait]
impl RegionDriver for SimulatedRegion {
    async fn apply_topology(&self, spec: &TopologySpec) -> Result<(), DriverError> {
        let mut entry = self
            .workloads
            .entry(spec.deployment_id.clone())
            .or_insert_with(|| Workload {
                replicas: spec.replicas,
                running: spec.running,
                since: Instant::now(),
            });
        if entry.replicas != spec.replicas || entry.running != spec.running {
            *entry = Workload {
                replicas: spec.replicas,
                running: spec.running,
                since: Instant::now(),
            };
        }
        Ok(())
    }

    async fn ensure_sentinel(&self, spec: &SentinelSpec) -> Result<(), DriverError> {
        self.record(format!(
            "sentinel/{}/{}/{}",
            spec.project_id, spec.environment, spec.replicas
        ));
        Ok(())
    }

    async fn ensure_network_policies(&self, spec: &NetworkPolicySpec) -> Result<(), DriverError> {
        self.record(format!("netpol/ingress/{}", spec.deployment_id));
        self.record(format!("netpol/egress/{}", spec.deployment_id));
        Ok(())
    }

    async fn instances(&self, deployment: &DeploymentId) -> Result<Vec<Instance>, DriverError> {
        let Some(workload) = self.workloads.get(deployment) else {
            return Ok(Vec::new());
        };
        if !workload.running {
            return Ok(Vec::new());
        }
        let status = if !self.never_ready && workload.since.elapsed() >= self.ready_after {
            "running"
        } else {
            "pending"
        };
        Ok((0..workload.replicas)
            .map(|i| Instance {
                id: format!("{}-{}-{i}", deployment.short(), self.name),
                status: status.to_string(),
            })
            .collect())
    }

    async fn set_running(
        &self,
        deployment: &DeploymentId,
        running: bool,
    ) -> Result<(), DriverError> {
        if let Some(mut workload) = self.workloads.get_mut(deployment)
            && workload.running != running
        {
            workload.running = running;
            workload.since = Instant::now();
        }
        Ok(())
    }
}
