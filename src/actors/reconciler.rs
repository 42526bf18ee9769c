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
    /// Whether a worker runs for it. A slot made by start-up's re-apply
    /// holds the stored intent number alone (no regions yet) until
    /// [`feed_resumed`] reads the deployment and starts its worker, unless
    /// a newer intent arrives first and starts it at once.
    worked: bool,
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
                    if !slot.worked {
                        slot.worked = true;
                        let deployment = slot.latest.deployment_id.clone();
                        self.0.runtime.spawn(work(self.0.clone(), deployment, None));
                    }
                }
            }
            None => {
                let deployment = intent.deployment_id.clone();
                slots.insert(deployment.clone(), Slot::new(intent, true));
                self.0.runtime.spawn(work(self.0.clone(), deployment, None));
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
        let count = tracked.len();
        let mut waiting = Vec::with_capacity(count);
        {
            let Ok(mut slots) = self.0.slots.lock() else {
                return Ok(0);
            };
            // Every slot exists before any actor resumes, so an actor's
            // newer intent always finds it and wins. Its desired state is
            // read just before its worker starts, so start-up never holds
            // every running deployment in memory at once.
            for (deployment_id, intent) in tracked {
                if let std::collections::hash_map::Entry::Vacant(vacant) =
                    slots.entry(deployment_id.clone())
                {
                    waiting.push(deployment_id.clone());
                    let intent = WorkloadIntent {
                        deployment_id,
                        intent,
                        regions: Vec::new(),
                    };
                    vacant.insert(Slot::new(intent, false));
                }
            }
        }
        self.0.runtime.spawn(feed_resumed(self.0.clone(), waiting));
        Ok(count)
    }
}

impl Slot {
    fn new(latest: WorkloadIntent, worked: bool) -> Self {
        Self {
            latest,
            worked,
            errors: BTreeMap::new(),
            newer: Arc::new(Notify::new()),
        }
    }
}

/// Workers start-up's re-apply runs at once: a file with a hundred thousand
/// running deployments would otherwise start as many tasks, each with a
/// driver call per region, in one burst (memory that the allocator keeps
/// afterwards, and a burst of calls to every cluster).
const RESUME_WORKERS: usize = 256;

/// Starts the workers of start-up's slots, at most [`RESUME_WORKERS`] in
/// their first attempt at a time (a worker that must retry gives its permit
/// back, so a region that is down cannot hold up the others). Reads the
/// stored deployments a batch at a time, off the async workers, and fills
/// each slot's regions just before its worker starts; a slot whose worker
/// a newer intent already started is skipped, and one whose deployment is
/// no longer stored is forgotten.
async fn feed_resumed(inner: Arc<Inner>, waiting: Vec<DeploymentId>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(RESUME_WORKERS));
    for batch in waiting.chunks(RESUME_WORKERS) {
        let Some(stored) = read_batch(&inner, batch).await else {
            return;
        };
        for (deployment, stored) in batch.iter().zip(stored) {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            if inner.stopped.load(Ordering::SeqCst) {
                return;
            }
            let start = {
                let Ok(mut slots) = inner.slots.lock() else {
                    return;
                };
                match (slots.get_mut(deployment), stored) {
                    (Some(slot), Some(regions)) if !slot.worked => {
                        slot.latest.regions = regions;
                        slot.worked = true;
                        true
                    }
                    (Some(slot), None) if !slot.worked => {
                        slots.remove(deployment);
                        false
                    }
                    _ => false,
                }
            };
            if start {
                let work = work(inner.clone(), deployment.clone(), Some(permit));
                inner.runtime.spawn(work);
            }
        }
    }
}

/// The stored desired state of each deployment of `batch`, in its order
/// (`None`: no longer stored), read on the blocking pool (a cold page
/// cache at start means disk reads); a failed read is tried again with the
/// workers' backoff. `None` as a whole: the reconciler stopped.
async fn read_batch(
    inner: &Arc<Inner>,
    batch: &[DeploymentId],
) -> Option<Vec<Option<Vec<(String, WorkloadSpec)>>>> {
    let mut backoff = RETRY_FIRST;
    loop {
        let store = inner.store.clone();
        let ids = batch.to_vec();
        let read = tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| Ok(store.deployment(id)?.as_ref().map(workload_specs)))
                .collect::<Result<Vec<_>, Error>>()
        })
        .await;
        let error = match read {
            Ok(Ok(stored)) => return Some(stored),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::warn!(%error, "cannot read stored deployments to apply them again; retrying");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = inner.stop.notified() => return None,
        }
        if inner.stopped.load(Ordering::SeqCst) {
            return None;
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Applies the newest intent of `deployment` until every region confirms,
/// then forgets it (and, for a scale-down, its `workloads` row).
/// `first_attempt`: start-up's permit, given back after the first attempt.
async fn work(
    inner: Arc<Inner>,
    deployment: DeploymentId,
    mut first_attempt: Option<tokio::sync::OwnedSemaphorePermit>,
) {
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
        drop(first_attempt.take());
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
                release_room(&mut slots);
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

/// Gives back most of the map's room once it is mostly empty: start-up
/// fills it with every running deployment, and a map never shrinks by
/// itself. Rehashing only below an eighth keeps the cost per removal
/// constant on average.
fn release_room(slots: &mut HashMap<DeploymentId, Slot>) {
    if slots.capacity() > 1024 && slots.len() < slots.capacity() / 8 {
        slots.shrink_to(slots.len() * 2);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::io::region::Observed;
    use crate::metrics::{Metrics, StoreMetrics};
    use crate::model::ProjectId;
    use crate::model::deployment::{NewDeployment, RegionTopology, Source};

    /// Records every spec it is given, and how many applies ran at once.
    #[derive(Default)]
    struct CountingDriver {
        applied: Mutex<Vec<WorkloadSpec>>,
        in_flight: AtomicU64,
        most_in_flight: AtomicU64,
    }

    #[async_trait]
    impl RegionDriver for CountingDriver {
        async fn apply(&self, spec: &WorkloadSpec) -> Result<(), DriverError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            // Long enough that the feeder would start every worker at once
            // if nothing held it back.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(mut applied) = self.applied.lock() {
                applied.push(spec.clone());
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }

        async fn observe(&self, _spec: &WorkloadSpec) -> Result<Observed, DriverError> {
            Ok(Observed::default())
        }
    }

    fn running_deployment(project: &ProjectId, sequence: u64) -> Deployment {
        let request = NewDeployment {
            environment: "production".into(),
            branch: "main".into(),
            source: Source::Image(format!("app:{sequence}")),
            git_commit: None,
            command: vec![],
            port: 8080,
        };
        let mut deployment = Deployment::new(project.clone(), sequence, request, 0);
        deployment.regions = BTreeMap::from([(
            "east".to_string(),
            RegionTopology {
                desired_replicas: 1,
                running: true,
                ready: true,
                instances: Vec::new(),
            },
        )]);
        deployment
    }

    async fn store_tracked(store: &Store, deployments: &[Deployment]) {
        for (n, deployment) in deployments.iter().enumerate() {
            let stored = store
                .commit(vec![
                    Mutation::PutDeployment(deployment.clone()),
                    Mutation::TrackWorkload {
                        deployment_id: deployment.id.clone(),
                        intent: n as u64 + 1,
                    },
                ])
                .await;
            assert!(stored.is_ok(), "{stored:?}");
        }
    }

    /// Start-up re-applies every tracked deployment once, with the stored
    /// desired state, running at most `RESUME_WORKERS` first attempts at
    /// once; an intent decided while a deployment still waits its turn
    /// replaces the stored one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_up_reapplies_every_tracked_deployment_a_bounded_number_at_a_time() {
        let (store, _writer) = Store::in_memory().expect("an in-memory store");
        let project = ProjectId::generate();
        let count = RESUME_WORKERS * 2 + 10;
        let deployments: Vec<Deployment> = (1..=count as u64)
            .map(|sequence| running_deployment(&project, sequence))
            .collect();
        store_tracked(&store, &deployments).await;

        let driver = Arc::new(CountingDriver::default());
        let regions = Regions::from_drivers(BTreeMap::from([(
            "east".to_string(),
            driver.clone() as Arc<dyn RegionDriver>,
        )]));
        let reconciler = Reconciler::new(
            regions,
            store.clone(),
            Backends::default(),
            Arc::new(Metrics::new(["east"], StoreMetrics::new())),
        );
        assert_eq!(reconciler.resume().expect("resume"), count);
        assert_eq!(reconciler.stats().pending, count);

        // Start-up takes them in id order: the last one waits behind the
        // others. Stop it before its turn.
        let last = deployments
            .iter()
            .max_by_key(|d| d.id.as_str())
            .expect("deployments");
        let mut stopped = workload_specs(last);
        for (_, spec) in &mut stopped {
            spec.running = false;
        }
        reconciler.apply(WorkloadIntent {
            deployment_id: last.id.clone(),
            intent: reconciler.next_intent(),
            regions: stopped,
        });

        assert!(reconciler.settle(Duration::from_secs(20)).await, "settled");
        let applied = driver.applied.lock().expect("applied").clone();
        for deployment in deployments.iter().filter(|d| d.id != last.id) {
            let specs: Vec<&WorkloadSpec> = applied
                .iter()
                .filter(|s| s.deployment_id == deployment.id)
                .collect();
            assert_eq!(specs.len(), 1, "{} applied once", deployment.id);
            assert!(specs[0].running);
            assert_eq!(specs[0].image, deployment.image.clone().unwrap_or_default());
        }
        let last_specs: Vec<&WorkloadSpec> = applied
            .iter()
            .filter(|s| s.deployment_id == last.id)
            .collect();
        assert_eq!(last_specs.len(), 1, "only the newer intent is applied");
        assert!(!last_specs[0].running, "the newer intent wins");
        let most = driver.most_in_flight.load(Ordering::SeqCst);
        assert!(
            most <= RESUME_WORKERS as u64 + 1,
            "{most} applies at once (at most {RESUME_WORKERS} start-up workers and the newer intent's)"
        );
        assert!(most > 1, "start-up workers ran side by side");
    }
}
