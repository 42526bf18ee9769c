//! The periodic resync: every `resync_interval_ms` it asks each region
//! what it holds ([`RegionDriver::held`], labelled `managed-by=deployd`),
//! judges each deployment against the store, and acts:
//!
//! - an **orphan** (a deployment the store does not know, one that is
//!   archived, or one that does not run in that region), once it has been
//!   one for `orphan_grace_ms`, is removed from the region
//!   ([`RegionDriver::remove`]). The grace keeps a resync from removing
//!   what another daemon sharing the cluster (or a restore of an older data
//!   file) is still bringing up.
//! - a **drifted** deployment (its workload's replicas or image differ from
//!   the stored desired state, or one of its objects is missing) is applied
//!   again through the reconciler, with the intent number of its
//!   `workloads` row: the same path start-up's resume takes, so a newer
//!   decision of its project actor still wins.
//!
//! Deployments without a `workloads` row whose objects drifted (a confirmed
//! scale-down someone scaled up again) are left alone: re-applying them
//! without an intent number could undo a wake decided meanwhile.
//!
//! The drivers only list and delete; every decision is here, and the pure
//! part ([`judge`]) has unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::actors::Deps;
use crate::actors::reconciler::{WorkloadIntent, workload_specs};
use crate::io::region::Held;
use crate::model::deployment::DesiredState;
use crate::model::{Deployment, DeploymentId};

/// What a resync makes of one deployment a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Apply the stored desired state again.
    Reapply,
    /// Remove it from the region (after the grace period).
    Orphan,
}

/// `stored`: the deployment as the store has it; `tracked`: it has a
/// `workloads` row (the reconciler may still be applying it).
pub fn judge(held: &Held, region: &str, stored: Option<&Deployment>, tracked: bool) -> Verdict {
    let Some(deployment) = stored else {
        return Verdict::Orphan;
    };
    if deployment.project_id != held.project_id {
        return Verdict::Orphan;
    }
    let Some(topology) = deployment.regions.get(region) else {
        return if tracked {
            Verdict::Keep
        } else {
            Verdict::Orphan
        };
    };
    if !tracked {
        return if deployment.desired_state == DesiredState::Archived {
            Verdict::Orphan
        } else {
            Verdict::Keep
        };
    }
    let replicas = if topology.running {
        topology.desired_replicas
    } else {
        0
    };
    let drifted = held.objects < held.complete_at
        || held.replicas != Some(replicas)
        || held.image.as_deref() != deployment.image.as_deref();
    if drifted {
        Verdict::Reapply
    } else {
        Verdict::Keep
    }
}

/// Counters for operators and tests.
#[derive(Debug, Default)]
pub struct ResyncStats {
    pub passes: AtomicU64,
    pub removed: AtomicU64,
    pub reapplied: AtomicU64,
    pub failed_calls: AtomicU64,
}

/// The running resync.
pub struct Resync {
    pub stats: Arc<ResyncStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Resync {
    pub fn start(deps: Deps) -> Self {
        let stats = Arc::new(ResyncStats::default());
        let task = tokio::spawn(run(deps, stats.clone()));
        Self { stats, task }
    }

    /// Stops the loop (a pass in flight is cut off: it only reads, and
    /// its removals and re-applies are idempotent) and waits until it let
    /// go of the store.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run(deps: Deps, stats: Arc<ResyncStats>) {
    let interval = Duration::from_millis(deps.config.resync_interval_ms.max(1));
    let grace = Duration::from_millis(deps.config.orphan_grace_ms);
    // Since when each (region, deployment) has been an orphan.
    let mut suspects: HashMap<(String, DeploymentId), Instant> = HashMap::new();
    loop {
        tokio::time::sleep(interval).await;
        pass(&deps, &stats, grace, &mut suspects).await;
        stats.passes.fetch_add(1, Ordering::Relaxed);
    }
}

async fn pass(
    deps: &Deps,
    stats: &ResyncStats,
    grace: Duration,
    suspects: &mut HashMap<(String, DeploymentId), Instant>,
) {
    let mut held_by_region = BTreeMap::new();
    for region in deps.regions.names() {
        let Some(driver) = deps.regions.get(region) else {
            continue;
        };
        match driver.held().await {
            Ok(Some(held)) => {
                held_by_region.insert(region.to_string(), held);
            }
            Ok(None) => {}
            Err(error) => {
                stats.failed_calls.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%region, %error, "resync could not list what the region holds");
            }
        }
    }
    if held_by_region.is_empty() {
        return;
    }
    // Point lookups of every deployment seen, off the async workers.
    let store = deps.store.clone();
    let ids: Vec<DeploymentId> = held_by_region
        .values()
        .flatten()
        .map(|h| h.deployment_id.clone())
        .collect();
    let looked = tokio::task::spawn_blocking(move || {
        let tracked: HashMap<DeploymentId, u64> = store.tracked_workloads()?.into_iter().collect();
        let mut stored = HashMap::new();
        for id in ids {
            if let Some(deployment) = store.deployment(&id)? {
                stored.insert(id, deployment);
            }
        }
        Ok::<_, crate::error::Error>((tracked, stored))
    })
    .await;
    let (tracked, stored) = match looked {
        Ok(Ok(looked)) => looked,
        Ok(Err(error)) => {
            tracing::warn!(%error, "resync could not read the store; skipping this pass");
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "resync lookup failed; skipping this pass");
            return;
        }
    };
    let now = Instant::now();
    let mut still_suspect = HashMap::new();
    let mut reapply = BTreeMap::new();
    for (region, held) in &held_by_region {
        for item in held {
            let id = &item.deployment_id;
            let deployment = stored.get(id);
            match judge(item, region, deployment, tracked.contains_key(id)) {
                Verdict::Keep => {}
                Verdict::Reapply => {
                    if let (Some(deployment), Some(intent)) = (deployment, tracked.get(id)) {
                        reapply.insert(id.clone(), (deployment.clone(), *intent));
                    }
                }
                Verdict::Orphan => {
                    let key = (region.clone(), id.clone());
                    let since = suspects.get(&key).copied().unwrap_or(now);
                    if now.duration_since(since) < grace {
                        still_suspect.insert(key, since);
                        continue;
                    }
                    let Some(driver) = deps.regions.get(region) else {
                        continue;
                    };
                    match driver.remove(&item.project_id, id).await {
                        Ok(()) => {
                            stats.removed.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%region, deployment = %id, "removed an orphaned workload");
                        }
                        Err(error) => {
                            stats.failed_calls.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%region, deployment = %id, %error, "could not remove an orphaned workload");
                            still_suspect.insert(key, since);
                        }
                    }
                }
            }
        }
    }
    *suspects = still_suspect;
    for (id, (deployment, intent)) in reapply {
        tracing::info!(deployment = %id, "re-applying a drifted workload");
        stats.reapplied.fetch_add(1, Ordering::Relaxed);
        deps.reconciler.apply(WorkloadIntent {
            deployment_id: id,
            intent,
            regions: workload_specs(&deployment),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProjectId;
    use crate::model::deployment::{NewDeployment, RegionTopology, Source};

    fn held(deployment: &Deployment, replicas: u32, image: &str, objects: usize) -> Held {
        Held {
            deployment_id: deployment.id.clone(),
            project_id: deployment.project_id.clone(),
            replicas: Some(replicas),
            image: Some(image.into()),
            objects,
            complete_at: 4,
        }
    }

    fn deployment(running: bool, desired: DesiredState) -> Deployment {
        let request = NewDeployment {
            environment: "production".into(),
            branch: "main".into(),
            source: Source::Image("nginx:1".into()),
            git_commit: None,
            command: vec![],
            port: 8080,
        };
        let mut d = Deployment::new(ProjectId::generate(), 1, request, 0);
        d.desired_state = desired;
        d.regions = BTreeMap::from([(
            "east".to_string(),
            RegionTopology {
                desired_replicas: 2,
                running,
                ready: true,
                instances: Vec::new(),
            },
        )]);
        d
    }

    #[test]
    fn unknown_and_archived_deployments_are_orphans() {
        let d = deployment(false, DesiredState::Archived);
        let h = held(&d, 0, "nginx:1", 4);
        assert_eq!(judge(&h, "east", None, false), Verdict::Orphan);
        assert_eq!(judge(&h, "east", Some(&d), false), Verdict::Orphan);
        // The reconciler is still on it: not yet.
        assert_eq!(judge(&h, "east", Some(&d), true), Verdict::Keep);
        // Not in this region (any more).
        let running = deployment(true, DesiredState::Running);
        assert_eq!(
            judge(
                &held(&running, 2, "nginx:1", 4),
                "west",
                Some(&running),
                false
            ),
            Verdict::Orphan
        );
    }

    #[test]
    fn drift_of_a_tracked_deployment_is_reapplied() {
        let d = deployment(true, DesiredState::Running);
        assert_eq!(
            judge(&held(&d, 2, "nginx:1", 4), "east", Some(&d), true),
            Verdict::Keep
        );
        for drifted in [
            held(&d, 5, "nginx:1", 4),
            held(&d, 2, "nginx:2", 4),
            held(&d, 2, "nginx:1", 3),
        ] {
            assert_eq!(judge(&drifted, "east", Some(&d), true), Verdict::Reapply);
        }
        let stopped = deployment(false, DesiredState::Standby);
        assert_eq!(
            judge(
                &held(&stopped, 0, "nginx:1", 4),
                "east",
                Some(&stopped),
                true
            ),
            Verdict::Keep
        );
        // Untracked: left alone (see the module docs).
        assert_eq!(
            judge(
                &held(&stopped, 4, "nginx:1", 4),
                "east",
                Some(&stopped),
                false
            ),
            Verdict::Keep
        );
    }
}
