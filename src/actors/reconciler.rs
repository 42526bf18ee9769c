//! The one place driver calls are made. A project actor decides what a
//! deployment's workloads should be and, after the commit that stores the
//! decision, hands the whole desired state to [`Reconciler::apply`] as a
//! [`WorkloadIntent`]. The reconciler then makes every region match it,
//! retrying with backoff until each driver confirms.
//!
//! Intents are numbered, and per deployment only the newest counts: a
//! worker applies one deployment's intents in order and always the latest
//! it knows, so a scale-down never races a wake of the same deployment
//! (if the wake's intent arrives while the scale-down is in flight, the
//! worker applies the wake right after it: the wake wins). A confirmed
//! scale-down removes the deployment's `workloads` row, unless a newer
//! intent replaced it; at start, [`Reconciler::resume`] re-applies the
//! stored state of every deployment that still has a row.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::Error;
use crate::io::backends::Backends;
use crate::io::region::{DriverError, RegionDriver, Regions, WorkloadSpec};
use crate::io::store::{Mutation, Store};
use crate::model::project::PRODUCTION;
use crate::model::{Deployment, DeploymentId, now_millis};

/// What the drivers must make of one deployment, in every region it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIntent {
    pub deployment_id: DeploymentId,
    /// Higher numbers are newer decisions.
    pub intent: u64,
    pub regions: Vec<(String, WorkloadSpec)>,
}

impl WorkloadIntent {
    pub fn runs_anywhere(&self) -> bool {
        self.regions.iter().any(|(_, spec)| spec.running)
    }
}

/// What each region of `deployment` should run, from its topologies.
pub fn workload_specs(deployment: &Deployment) -> Vec<(String, WorkloadSpec)> {
    let sentinel_replicas = if deployment.environment == PRODUCTION {
        3
    } else {
        1
    };
    deployment
        .regions
        .iter()
        .map(|(region, topology)| {
            let spec = WorkloadSpec {
                deployment_id: deployment.id.clone(),
                project_id: deployment.project_id.clone(),
                environment: deployment.environment.clone(),
                image: deployment.image.clone().unwrap_or_default(),
                command: deployment.command.clone(),
                port: deployment.port,
                replicas: topology.desired_replicas,
                running: topology.running,
                sentinel_replicas,
            };
            (region.clone(), spec)
        })
        .collect()
}

/// Retry backoff of a driver call that failed.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Reconciler(Arc<Inner>);

struct Inner {
    /// Failed driver calls by region.
    metrics: Arc<crate::metrics::Metrics>,
    regions: Regions,
    store: Store,
    backends: Backends,
    runtime: tokio::runtime::Handle,
    next_intent: AtomicU64,
    slots: Mutex<HashMap<DeploymentId, Slot>>,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    /// Set on shutdown: workers stop retrying (what they had not confirmed
    /// is re-applied at the next start, from the `workloads` rows).
    stopped: AtomicBool,
    stop: Notify,
}

/// The deployments a worker is busy with.
struct Slot {
    latest: WorkloadIntent,
    /// The last failure per region, while it lasts.
    errors: BTreeMap<String, DriverError>,
    /// Cuts a worker's backoff short when a newer intent arrives.
    newer: Arc<Notify>,
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcilerStats {
    /// Deployments whose intent is not yet confirmed by every driver.
    pub pending: usize,
    pub calls: u64,
    pub failed_calls: u64,
}

impl Reconciler {
    /// Must be created inside the runtime its workers run on.
    pub fn new(
        regions: Regions,
        store: Store,
        backends: Backends,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self(Arc::new(Inner {
            metrics,
            regions,
            store,
            backends,
            runtime: tokio::runtime::Handle::current(),
            // Microseconds since the epoch: newer than any number handed
            // out by an earlier run of the daemon.
            next_intent: AtomicU64::new(now_millis().saturating_mul(1000)),
            slots: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        }))
    }

    /// Stops every worker (at its next retry) and accepts no new intent:
    /// the daemon is shutting down and must let go of the store.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.stop.notify_waiters();
        if let Ok(mut slots) = self.0.slots.lock() {
            slots.clear();
        }
    }

    /// A number newer than every intent decided so far.
    pub fn next_intent(&self) -> u64 {
        self.0.next_intent.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes the drivers match `intent`, unless a newer intent for the same
    /// deployment is already known. Returns at once; safe to call from any
    /// thread (the store writer's completions call it).
    pub fn apply(&self, intent: WorkloadIntent) {
        if self.0.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut slots) = self.0.slots.lock() else {
            return;
        };
        match slots.get_mut(&intent.deployment_id) {
            Some(slot) => {
                if intent.intent > slot.latest.intent {
                    slot.latest = intent;
                    slot.newer.notify_one();
                }
            }
            None => {
                let deployment = intent.deployment_id.clone();
                slots.insert(
                    deployment.clone(),
                    Slot {
                        latest: intent,
                        errors: BTreeMap::new(),
                        newer: Arc::new(Notify::new()),
                    },
                );
                let inner = self.0.clone();
                self.0.runtime.spawn(work(inner, deployment));
            }
        }
    }

    /// The last error the driver of `region` gave for `deployment`, while
    /// its intent is not confirmed.
    pub fn last_error(&self, deployment: &DeploymentId, region: &str) -> Option<DriverError> {
        let slots = self.0.slots.lock().ok()?;
        slots.get(deployment)?.errors.get(region).cloned()
    }

    pub fn stats(&self) -> ReconcilerStats {
        ReconcilerStats {
            pending: self.0.slots.lock().map(|s| s.len()).unwrap_or(0),
            calls: self.0.calls.load(Ordering::Relaxed),
            failed_calls: self.0.failed_calls.load(Ordering::Relaxed),
        }
    }

    /// Waits until every intent known so far is confirmed, or `limit`
    /// passed (a region may be down for longer): the edge starts serving
    /// once start-up's re-apply told it where instances are.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.stats().pending == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Re-applies the stored desired state of every deployment the drivers
    /// may hold (running ones, and scale-downs not yet confirmed, including
    /// those of a wake cut short by a crash). Returns how many.
    pub fn resume(&self) -> Result<usize, Error> {
        let tracked = self.0.store.tracked_workloads()?;
        let newest = tracked.iter().map(|(_, intent)| *intent).max().unwrap_or(0);
        self.0
            .next_intent
            .fetch_max(newest.saturating_add(1), Ordering::Relaxed);
        for (deployment, intent) in &tracked {
            self.apply(WorkloadIntent {
                deployment_id: deployment.id.clone(),
                intent: *intent,
                regions: workload_specs(deployment),
            });
        }
        Ok(tracked.len())
    }
}

/// Applies the newest intent of `deployment` until every region confirms,
/// then forgets it (and, for a scale-down, its `workloads` row).
async fn work(inner: Arc<Inner>, deployment: DeploymentId) {
    let mut backoff = RETRY_FIRST;
    loop {
        let Some((intent, newer)) = inner.slots.lock().ok().and_then(|slots| {
            slots
                .get(&deployment)
                .map(|s| (s.latest.clone(), s.newer.clone()))
        }) else {
            return;
        };
        tracing::debug!(deployment = %deployment, intent = intent.intent, running = intent.runs_anywhere(), "applying");
        let mut calls = tokio::task::JoinSet::new();
        for (region, spec) in intent.regions.iter().cloned() {
            let driver = inner.regions.get(&region);
            let backends = inner.backends.clone();
            calls.spawn(async move {
                let result = match driver {
                    Some(driver) => apply_and_route(&*driver, &spec, &region, &backends).await,
                    None => Err(DriverError::permanent(format!(
                        "region {region} is not served by this daemon"
                    ))),
                };
                (region, result)
            });
        }
        let mut failed = BTreeMap::new();
        while let Some(joined) = calls.join_next().await {
            inner.calls.fetch_add(1, Ordering::Relaxed);
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((region, Err(e))) => {
                    failed.insert(region, e);
                }
                Err(e) => {
                    failed.insert(String::new(), DriverError::transient(e.to_string()));
                }
            }
        }
        inner
            .failed_calls
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        for region in failed.keys() {
            inner.metrics.driver_error(region);
        }
        {
            let Ok(mut slots) = inner.slots.lock() else {
                return;
            };
            let Some(slot) = slots.get_mut(&deployment) else {
                return;
            };
            if slot.latest.intent != intent.intent {
                // A newer decision arrived meanwhile: apply it right away.
                slot.errors.clear();
                backoff = RETRY_FIRST;
                continue;
            }
            if failed.is_empty() {
                slots.remove(&deployment);
                drop(slots);
                if !intent.runs_anywhere() {
                    forget(&inner.store, intent);
                }
                return;
            }
            for (region, error) in &failed {
                tracing::warn!(deployment = %deployment, %region, %error, "driver call failed; retrying");
            }
            slot.errors = failed;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = newer.notified() => {}
            () = inner.stop.notified() => return,
        }
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// One driver call, with the edge kept in step: a workload about to be
/// scaled down stops getting new requests first; a running one is routed
/// to the addresses its driver reports once it confirmed the spec.
async fn apply_and_route(
    driver: &dyn RegionDriver,
    spec: &WorkloadSpec,
    region: &str,
    backends: &Backends,
) -> Result<(), DriverError> {
    if !spec.running {
        backends.remove(&spec.deployment_id, region);
        return driver.apply(spec).await;
    }
    driver.apply(spec).await?;
    // The addresses are a convenience for the edge; a failed look leaves
    // the previous ones rather than failing a confirmed apply.
    if let Ok(observed) = driver.observe(spec).await {
        backends.set_observed(&spec.deployment_id, region, &observed.instances);
    }
    Ok(())
}

/// Every driver confirmed that `intent`'s deployment runs nowhere: start-up
/// need not look at it again (unless a newer intent came since, which the
/// writer checks).
fn forget(store: &Store, intent: WorkloadIntent) {
    store.submit(
        vec![Mutation::ForgetWorkload {
            deployment_id: intent.deployment_id,
            intent: intent.intent,
        }],
        Box::new(|result, _| {
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not record a confirmed scale-down; start-up will apply it again");
            }
        }),
    );
}
