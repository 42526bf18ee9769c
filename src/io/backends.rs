//! Where each deployment's instances listen, per region, as the drivers
//! last reported them. The reconciler fills it: after a driver confirmed a
//! running workload it records the instances' addresses, and before it asks
//! a driver to scale a workload down it removes them, so the edge stops
//! sending new requests to a deployment before its instances go away. A
//! readiness watch records them too, before it reports a region ready: the
//! routes that follow must find the addresses already there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::model::{DeploymentId, Instance};

#[derive(Clone, Default)]
pub struct Backends(Arc<DashMap<DeploymentId, Entry>>);

#[derive(Default)]
struct Entry {
    by_region: BTreeMap<String, Vec<SocketAddr>>,
    /// Round robin position over every region's instances.
    next: AtomicUsize,
}

impl Backends {
    /// The addresses `deployment` serves on in `region`; an empty list
    /// removes the region.
    pub fn set(&self, deployment: &DeploymentId, region: &str, addresses: Vec<SocketAddr>) {
        if addresses.is_empty() {
            self.remove(deployment, region);
            return;
        }
        self.0
            .entry(deployment.clone())
            .or_default()
            .by_region
            .insert(region.to_string(), addresses);
    }

    /// [`Backends::set`] from what a driver observed: the addresses of the
    /// instances that have one.
    pub fn set_observed(&self, deployment: &DeploymentId, region: &str, instances: &[Instance]) {
        let addresses = instances
            .iter()
            .filter_map(|i| i.address.as_deref()?.parse().ok())
            .collect();
        self.set(deployment, region, addresses);
    }

    pub fn remove(&self, deployment: &DeploymentId, region: &str) {
        let emptied = match self.0.get_mut(deployment) {
            Some(mut entry) => {
                entry.by_region.remove(region);
                entry.by_region.is_empty()
            }
            None => false,
        };
        if emptied {
            self.0
                .remove_if(deployment, |_, entry| entry.by_region.is_empty());
        }
    }

    /// Every address of `deployment`, starting with the next one in round
    /// robin order, so a caller that fails to connect can try the rest.
    pub fn rotation(&self, deployment: &DeploymentId) -> Vec<SocketAddr> {
        let Some(entry) = self.0.get(deployment) else {
            return Vec::new();
        };
        let all: Vec<SocketAddr> = entry.by_region.values().flatten().copied().collect();
        if all.is_empty() {
            return all;
        }
        let start = entry.next.fetch_add(1, Ordering::Relaxed) % all.len();
        all[start..].iter().chain(&all[..start]).copied().collect()
    }

    /// Deployments with at least one address (for stats and tests).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn rotation_starts_one_further_each_time_and_covers_every_region() {
        let backends = Backends::default();
        let id = DeploymentId::generate();
        backends.set(&id, "a", vec![addr(1), addr(2)]);
        backends.set(&id, "b", vec![addr(3)]);
        let firsts: Vec<SocketAddr> = (0..3).map(|_| backends.rotation(&id)[0]).collect();
        assert_eq!(firsts, [addr(1), addr(2), addr(3)]);
        let mut all = backends.rotation(&id);
        all.sort();
        assert_eq!(all, [addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn removing_the_last_region_forgets_the_deployment() {
        let backends = Backends::default();
        let id = DeploymentId::generate();
        backends.set(&id, "a", vec![addr(1)]);
        backends.set(&id, "b", vec![addr(2)]);
        backends.remove(&id, "a");
        assert_eq!(backends.rotation(&id), [addr(2)]);
        backends.set(&id, "b", Vec::new());
        assert!(backends.rotation(&id).is_empty());
        assert!(backends.is_empty());
    }
}
