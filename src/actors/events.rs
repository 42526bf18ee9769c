//! The watch hub: deployment snapshots published after each durable commit,
//! for `WatchDeployment` streams. Only deployments somebody watches have a
//! channel, so publishing costs one map lookup otherwise.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::broadcast;

use crate::model::{Deployment, DeploymentId};

const CHANNEL_CAPACITY: usize = 64;

#[derive(Clone, Default)]
pub struct DeploymentEvents(Arc<DashMap<DeploymentId, broadcast::Sender<Arc<Deployment>>>>);

impl DeploymentEvents {
    /// Subscribe before reading the current state from the store, so that no
    /// change between the read and the subscription is missed.
    pub fn subscribe(&self, id: &DeploymentId) -> broadcast::Receiver<Arc<Deployment>> {
        self.0
            .entry(id.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Called only after the commit holding `deployment` is durable.
    pub fn publish(&self, deployment: &Deployment) {
        let Some(sender) = self.0.get(&deployment.id).map(|s| s.clone()) else {
            return;
        };
        let _ = sender.send(Arc::new(deployment.clone()));
        if deployment.status.is_terminal() {
            self.0.remove(&deployment.id);
        }
    }

    /// Drops the channel once its last watcher is gone.
    pub fn release(&self, id: &DeploymentId) {
        self.0
            .remove_if(id, |_, sender| sender.receiver_count() == 0);
    }

    pub fn watched(&self) -> usize {
        self.0.len()
    }
}
