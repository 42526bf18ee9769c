//! The watch hub: deployment snapshots published after each durable commit,
//! and build output lines as they are printed, for `WatchDeployment`
//! streams. Only deployments somebody watches have a
//! channel, so publishing costs one map lookup otherwise. Watchers are
//! bounded overall and per deployment, because each one holds a task and
//! buffers for as long as its client keeps the stream open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::broadcast;

use crate::error::Error;
use crate::model::{Deployment, DeploymentId};

const CHANNEL_CAPACITY: usize = 64;

/// What a watcher hears.
#[derive(Debug, Clone)]
pub enum Update {
    /// The deployment as a commit stored it.
    Stored(Arc<Deployment>),
    /// A line of build output: not stored with the deployment (the build
    /// log on disk keeps it), so it is sent as it comes.
    BuildLine(Arc<str>),
}

#[derive(Clone)]
pub struct DeploymentEvents(Arc<Hub>);

struct Hub {
    channels: DashMap<DeploymentId, broadcast::Sender<Update>>,
    watchers: AtomicUsize,
    max_watchers: usize,
    max_per_deployment: usize,
}

/// One watcher's place in the hub. Dropping it gives the place back and
/// drops the deployment's channel when it was the last watcher, so no path
/// out of a watch (error, client gone, shutdown, send timeout) can leak it.
pub struct Subscription {
    pub updates: broadcast::Receiver<Update>,
    /// Tells this deployment's channel from a newer one made after a
    /// terminal publish removed it.
    channel: broadcast::Sender<Update>,
    hub: Arc<Hub>,
    id: DeploymentId,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.watchers.fetch_sub(1, Ordering::Relaxed);
        // Our receiver is still alive here (fields drop after this body),
        // so one receiver left means only ours.
        self.hub.channels.remove_if(&self.id, |_, sender| {
            sender.same_channel(&self.channel) && sender.receiver_count() <= 1
        });
    }
}

impl DeploymentEvents {
    pub fn new(max_watchers: usize, max_per_deployment: usize) -> Self {
        Self(Arc::new(Hub {
            channels: DashMap::new(),
            watchers: AtomicUsize::new(0),
            max_watchers,
            max_per_deployment,
        }))
    }

    /// Subscribe before reading the current state from the store, so that no
    /// change between the read and the subscription is missed. Refused with
    /// `RESOURCE_EXHAUSTED` beyond either bound.
    pub fn subscribe(&self, id: &DeploymentId) -> Result<Subscription, Error> {
        let hub = &self.0;
        hub.watchers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < hub.max_watchers).then_some(n + 1)
            })
            .map_err(|_| {
                Error::ResourceExhausted(format!(
                    "too many watch streams are open ({}); retry later",
                    hub.max_watchers
                ))
            })?;
        // The entry lock makes check-and-subscribe atomic per deployment.
        let entry = hub
            .channels
            .entry(id.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0);
        if entry.receiver_count() >= hub.max_per_deployment {
            drop(entry);
            hub.watchers.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::ResourceExhausted(format!(
                "deployment {id} already has {} watch streams; retry later",
                hub.max_per_deployment
            )));
        }
        let updates = entry.subscribe();
        let channel = entry.clone();
        drop(entry);
        Ok(Subscription {
            updates,
            channel,
            hub: Arc::clone(hub),
            id: id.clone(),
        })
    }

    /// Called only after the commit holding `deployment` is durable.
    pub fn publish(&self, deployment: &Deployment) {
        let Some(sender) = self.0.channels.get(&deployment.id).map(|s| s.clone()) else {
            return;
        };
        let _ = sender.send(Update::Stored(Arc::new(deployment.clone())));
        if deployment.status.is_terminal() {
            self.0.channels.remove(&deployment.id);
        }
    }

    /// A line of `id`'s build output, for its watchers (if any).
    pub fn publish_line(&self, id: &DeploymentId, line: &str) {
        if let Some(sender) = self.0.channels.get(id).map(|s| s.clone()) {
            let _ = sender.send(Update::BuildLine(Arc::from(line)));
        }
    }

    /// Deployments with at least one watcher.
    pub fn watched(&self) -> usize {
        self.0.channels.len()
    }

    /// Watch streams open now.
    pub fn watchers(&self) -> usize {
        self.0.watchers.load(Ordering::Relaxed)
    }
}
