//! Readiness from a watch: one watch of ReplicaSets and one of Pods per
//! region, across all namespaces, of the workload objects deployd manages
//! (`app.kubernetes.io/managed-by=deployd,deployd.io/component=workload`),
//! feeding a [`Cache`] that `observe` reads instead of the API server.
//!
//! All namespaces, not one watch per project namespace: two long-lived
//! requests per cluster whatever the number of projects, where per
//! namespace it would be two per project (and a re-list of each after a
//! 410). The cost is RBAC to list and watch pods and ReplicaSets
//! cluster-wide (the resync already lists across namespaces) and a cache
//! of every managed workload pod, kept slim (no spec, no managed fields).
//!
//! kube's own `Api::watch`, not the runtime's reflector: the cache is a
//! map and a loop, and the `runtime` feature would add its dependency tree
//! to every build of a 2-core machine for that.
//!
//! Recovery: a watch that ends or breaks resumes from the last
//! `resourceVersion` it delivered (or bookmarked); a 410 Gone, as a status
//! or as an `ERROR` event, re-lists and watches from the list's version.
//! While a kind is not being watched (the list or the watch call fails),
//! [`Cache::observed`] answers `None` and `observe` reads the API server
//! directly, so a broken watch slows readiness down instead of stopping it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use super::objects::{self, LABEL_COMPONENT, MANAGED_BY, MANAGER};
use super::observed::observed;
use crate::io::region::{Observed, WorkloadSpec};
use crate::model::DeploymentId;

/// The server ends each watch after this long and it is resumed: below
/// the client's 30 s read timeout, so a quiet watch is never cut by it.
const WATCH_SECONDS: u32 = 25;
/// Backoff of a failed list or watch call.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// A watch that ended sooner than this with no event is backed off from.
const QUIET_END: Duration = Duration::from_secs(1);

fn selector() -> String {
    format!("{MANAGED_BY}={MANAGER},{LABEL_COMPONENT}=workload")
}

/// What the watches have seen, by deployment, and who waits on which
/// deployment. A `std` mutex: nothing awaits while holding it.
pub struct Cache {
    state: Mutex<CacheState>,
    /// Whether the cache can answer, for a first look that waits for the
    /// first list instead of reading around it.
    status: watch::Sender<Status>,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            status: watch::channel(Status::Starting).0,
        }
    }
}

/// Where the two watches are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not started, or neither kind's first list has answered yet.
    Starting,
    /// Both kinds are listed and watched: the cache is current.
    Live,
    /// A list or watch call failed and is being retried.
    Down,
}

#[derive(Default)]
pub struct CacheState {
    replica_sets: Watched<ReplicaSet>,
    pods: Watched<Pod>,
    /// A counter per deployment that a readiness child waits on; bumped
    /// when an object of that deployment changes.
    waiters: HashMap<DeploymentId, watch::Sender<u64>>,
    /// `waiters` is swept of senders nobody listens to when it grows to
    /// this size.
    sweep_at: usize,
}

/// The objects of one kind, by deployment, then by (namespace, name).
struct Watched<K> {
    /// A list succeeded and the watch is established (or being resumed
    /// after a clean end): the objects are current.
    live: bool,
    /// A list or watch call of this kind has answered, well or not.
    answered: bool,
    by_deployment: HashMap<DeploymentId, BTreeMap<(String, String), K>>,
}

impl<K> Default for Watched<K> {
    fn default() -> Self {
        Self {
            live: false,
            answered: false,
            by_deployment: HashMap::new(),
        }
    }
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // The state is plain maps, whole after any panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The workload as the watches see it; `None` while either kind is
    /// not watched (read the API server instead).
    pub fn observed(&self, spec: &WorkloadSpec) -> Option<Observed> {
        let state = self.lock();
        if !(state.replica_sets.live && state.pods.live) {
            return None;
        }
        let key = (
            objects::namespace_name(&spec.project_id),
            objects::workload_name(&spec.deployment_id),
        );
        let workload = state
            .replica_sets
            .by_deployment
            .get(&spec.deployment_id)
            .and_then(|objects| objects.get(&key));
        let pods = state
            .pods
            .by_deployment
            .get(&spec.deployment_id)
            .into_iter()
            .flat_map(|pods| pods.values());
        Some(observed(workload, pods, spec))
    }

    /// Waits (up to `bound`) for the watches' first lists, if they are
    /// still starting.
    pub async fn started(&self, bound: Duration) {
        let mut status = self.status.subscribe();
        let _ = tokio::time::timeout(bound, status.wait_for(|s| *s != Status::Starting)).await;
    }

    /// A counter that changes whenever an object of `deployment` does (or
    /// a re-list replaced everything).
    pub fn changes(&self, deployment: &DeploymentId) -> watch::Receiver<u64> {
        let mut state = self.lock();
        if state.waiters.len() >= state.sweep_at {
            state
                .waiters
                .retain(|_, sender| sender.receiver_count() > 0);
            state.sweep_at = (state.waiters.len() * 2).max(64);
        }
        state
            .waiters
            .entry(deployment.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

impl CacheState {
    fn wake(&mut self, deployment: &DeploymentId) {
        if let Some(sender) = self.waiters.get(deployment) {
            if sender.receiver_count() == 0 {
                self.waiters.remove(deployment);
            } else {
                sender.send_modify(|changes| *changes += 1);
            }
        }
    }

    fn wake_all(&mut self) {
        self.waiters.retain(|_, sender| sender.receiver_count() > 0);
        for sender in self.waiters.values() {
            sender.send_modify(|changes| *changes += 1);
        }
    }
}

/// A kind the watches follow.
trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn watched(state: &mut CacheState) -> &mut Watched<Self>;
    /// Drops what readiness never reads, so the cache stays small.
    fn slim(&mut self);
}

impl Kind for ReplicaSet {
    fn watched(state: &mut CacheState) -> &mut Watched<Self> {
        &mut state.replica_sets
    }

    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        self.metadata.annotations = None;
        self.spec = None;
    }
}

impl Kind for Pod {
    fn watched(state: &mut CacheState) -> &mut Watched<Self> {
        &mut state.pods
    }

    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        self.metadata.annotations = None;
        self.spec = None;
    }
}

impl Cache {
    fn set_live<K: Kind>(&self, live: bool) {
        let mut state = self.lock();
        let watched = K::watched(&mut state);
        watched.live = live;
        watched.answered = true;
        self.publish(&state);
    }

    fn publish(&self, state: &CacheState) {
        let (replica_sets, pods) = (&state.replica_sets, &state.pods);
        let status = if replica_sets.live && pods.live {
            Status::Live
        } else if !(replica_sets.answered && pods.answered) {
            Status::Starting
        } else {
            Status::Down
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// A list's items replace everything known of the kind.
    fn replace<K: Kind>(&self, items: Vec<K>) {
        let mut state = self.lock();
        let watched = K::watched(&mut state);
        watched.by_deployment.clear();
        for object in items {
            insert(watched, object);
        }
        watched.live = true;
        watched.answered = true;
        self.publish(&state);
        state.wake_all();
    }

    fn upsert<K: Kind>(&self, object: K) {
        let mut state = self.lock();
        if let Some(deployment) = insert(K::watched(&mut state), object) {
            state.wake(&deployment);
        }
    }

    fn remove<K: Kind>(&self, object: &K) {
        let Some(deployment) = objects::deployment_of(object.meta().labels.as_ref()) else {
            return;
        };
        let mut state = self.lock();
        let watched = K::watched(&mut state);
        if let Some(objects) = watched.by_deployment.get_mut(&deployment) {
            objects.remove(&key_of(object));
            if objects.is_empty() {
                watched.by_deployment.remove(&deployment);
            }
        }
        state.wake(&deployment);
    }
}

fn key_of<K: Kind>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// Stores `object` under its deployment; which one, if it names one.
fn insert<K: Kind>(watched: &mut Watched<K>, mut object: K) -> Option<DeploymentId> {
    let deployment = objects::deployment_of(object.meta().labels.as_ref())?;
    object.slim();
    watched
        .by_deployment
        .entry(deployment.clone())
        .or_default()
        .insert(key_of(&object), object);
    Some(deployment)
}

/// The two watch loops of a region; dropping it stops them.
pub struct Watches {
    tasks: [tokio::task::AbortHandle; 2],
}

impl Watches {
    /// Starts both loops on `runtime`: they decode every event of the
    /// region's workloads, work that must not run on the actor thread,
    /// where the first `observe` (from a readiness child) is called.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        client: &Client,
        cache: &Arc<Cache>,
        region: &str,
    ) -> Self {
        let replica_sets = runtime.spawn(follow::<ReplicaSet>(
            Api::all(client.clone()),
            cache.clone(),
            region.to_string(),
        ));
        let pods = runtime.spawn(follow::<Pod>(
            Api::all(client.clone()),
            cache.clone(),
            region.to_string(),
        ));
        Self {
            tasks: [replica_sets.abort_handle(), pods.abort_handle()],
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How one watch request ended.
enum Ended {
    /// Watch again from the last version seen.
    Resume,
    /// That version is gone (410): list again.
    Relist,
}

/// Lists, then watches from the list's version for ever.
async fn follow<K: Kind>(api: Api<K>, cache: Arc<Cache>, region: String) {
    let kind = K::kind(&());
    let mut retry = RETRY_FIRST;
    loop {
        let list = match api.list(&ListParams::default().labels(&selector())).await {
            Ok(list) => list,
            Err(error) => {
                cache.set_live::<K>(false);
                tracing::warn!(%region, %kind, %error, "listing for the readiness watch failed; readiness reads the API server meanwhile");
                backoff(&mut retry).await;
                continue;
            }
        };
        let mut version = list.metadata.resource_version.clone().unwrap_or_default();
        cache.replace(list.items);
        retry = RETRY_FIRST;
        while let Ended::Resume = watch_once(&api, &cache, &region, &mut version, &mut retry).await
        {
        }
        // A re-list: until it is done the cache may miss what the expired
        // window held, so readiness reads the API server.
        cache.set_live::<K>(false);
        tracing::info!(%region, %kind, "the watch's resource version expired; listing again");
    }
}

/// One watch request from `version`, applying its events to the cache and
/// moving `version` along.
async fn watch_once<K: Kind>(
    api: &Api<K>,
    cache: &Cache,
    region: &str,
    version: &mut String,
    retry: &mut Duration,
) -> Ended {
    let kind = K::kind(&());
    let params = WatchParams::default()
        .labels(&selector())
        .timeout(WATCH_SECONDS);
    let stream = match api.watch(&params, version).await {
        Ok(stream) => stream,
        Err(kube::Error::Api(status)) if status.code == 410 => return Ended::Relist,
        Err(error) => {
            cache.set_live::<K>(false);
            tracing::warn!(%region, %kind, %error, "the readiness watch failed; readiness reads the API server meanwhile");
            backoff(retry).await;
            return Ended::Resume;
        }
    };
    // Resumed from the last version: the events it missed come first.
    cache.set_live::<K>(true);
    let started = tokio::time::Instant::now();
    let mut stream = std::pin::pin!(stream);
    let mut events = 0_u64;
    while let Some(event) = stream.next().await {
        match event {
            Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                advance(version, &object);
                cache.upsert(object);
            }
            Ok(WatchEvent::Deleted(object)) => {
                advance(version, &object);
                cache.remove(&object);
            }
            Ok(WatchEvent::Bookmark(bookmark)) => {
                *version = bookmark.metadata.resource_version;
            }
            Ok(WatchEvent::Error(status)) if status.code == 410 => return Ended::Relist,
            Err(kube::Error::Api(status)) if status.code == 410 => return Ended::Relist,
            Ok(WatchEvent::Error(status)) => {
                tracing::debug!(%region, %kind, message = %status.message, "the readiness watch ended with an error; resuming");
                break;
            }
            Err(error) => {
                tracing::debug!(%region, %kind, %error, "the readiness watch broke; resuming");
                break;
            }
        }
        events += 1;
    }
    // A watch that ends at once without saying anything, again and again,
    // must not spin; one that ran its course quietly resumes at once.
    // While backing off nothing is watched: readiness reads around it.
    if events == 0 && started.elapsed() < QUIET_END {
        cache.set_live::<K>(false);
        backoff(retry).await;
    } else {
        *retry = RETRY_FIRST;
    }
    Ended::Resume
}

fn advance<K: Kind>(version: &mut String, object: &K) {
    if let Some(seen) = object.resource_version() {
        *version = seen;
    }
}

async fn backoff(retry: &mut Duration) {
    tokio::time::sleep(*retry).await;
    *retry = (*retry * 2).min(RETRY_MAX);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProjectId;

    fn spec(deployment: &str) -> WorkloadSpec {
        WorkloadSpec {
            deployment_id: DeploymentId::parse(deployment, "d").unwrap(),
            project_id: ProjectId::parse("prj_0000000000000001", "p").unwrap(),
            environment: "production".into(),
            image: "nginx:1".into(),
            command: vec![],
            port: 3000,
            replicas: 1,
            running: true,
            sentinel_replicas: 1,
        }
    }

    fn labels(deployment: &str) -> serde_json::Value {
        serde_json::json!({
            MANAGED_BY: MANAGER,
            objects::LABEL_PROJECT: "prj_0000000000000001",
            objects::LABEL_DEPLOYMENT: deployment,
            LABEL_COMPONENT: "workload",
        })
    }

    fn replica_set(deployment: &str, ready: i32) -> ReplicaSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": deployment.replace('_', "-"),
                "namespace": "deployd-prj-0000000000000001",
                "labels": labels(deployment), "generation": 1,
                "managedFields": [{ "manager": "deployd" }],
            },
            "spec": { "selector": {} },
            "status": { "replicas": 1, "readyReplicas": ready, "observedGeneration": 1 },
        }))
        .unwrap()
    }

    fn pod(deployment: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": format!("{}-0", deployment.replace('_', "-")),
                "namespace": "deployd-prj-0000000000000001",
                "labels": labels(deployment),
            },
            "spec": { "containers": [{ "name": "app" }] },
            "status": {
                "podIP": "10.0.0.7",
                "conditions": [{ "type": "Ready", "status": "True" }],
            },
        }))
        .unwrap()
    }

    const ONE: &str = "dep_0000000000000001";
    const TWO: &str = "dep_0000000000000002";

    #[test]
    fn the_cache_answers_only_once_both_kinds_are_listed() {
        let cache = Cache::default();
        assert_eq!(*cache.status.borrow(), Status::Starting);
        cache.replace(vec![replica_set(ONE, 1)]);
        assert_eq!(cache.observed(&spec(ONE)), None, "pods not listed yet");
        cache.replace(vec![pod(ONE)]);
        assert_eq!(*cache.status.borrow(), Status::Live);
        let observed = cache.observed(&spec(ONE)).unwrap();
        assert!(observed.is_ready(1));
        assert_eq!(
            observed.instances[0].address.as_deref(),
            Some("10.0.0.7:3000")
        );
        // A failed watch call: read around the cache until it is back.
        cache.set_live::<Pod>(false);
        assert_eq!(*cache.status.borrow(), Status::Down);
        assert_eq!(cache.observed(&spec(ONE)), None);
    }

    #[test]
    fn a_change_wakes_only_the_waiters_of_its_deployment() {
        let cache = Cache::default();
        cache.replace(Vec::<ReplicaSet>::new());
        cache.replace(Vec::<Pod>::new());
        let mut one = cache.changes(&DeploymentId::parse(ONE, "d").unwrap());
        let mut two = cache.changes(&DeploymentId::parse(TWO, "d").unwrap());
        cache.upsert(replica_set(ONE, 0));
        assert!(one.has_changed().unwrap());
        assert!(!two.has_changed().unwrap());
        one.borrow_and_update();
        cache.remove(&replica_set(ONE, 0));
        assert!(one.has_changed().unwrap());
        assert!(!two.has_changed().unwrap());
        two.borrow_and_update();
        // A re-list may have changed anything: everyone looks again.
        cache.replace(vec![pod(TWO)]);
        assert!(two.has_changed().unwrap());
    }

    #[test]
    fn cached_objects_keep_only_what_readiness_reads() {
        let cache = Cache::default();
        cache.replace(vec![replica_set(ONE, 1)]);
        cache.replace(vec![pod(ONE)]);
        let state = cache.lock();
        let pods = &state.pods.by_deployment[&DeploymentId::parse(ONE, "d").unwrap()];
        let pod = pods.values().next().unwrap();
        assert!(pod.spec.is_none());
        assert!(pod.status.is_some());
        let sets = &state.replica_sets.by_deployment[&DeploymentId::parse(ONE, "d").unwrap()];
        assert!(sets.values().all(|rs| rs.metadata.managed_fields.is_none()));
    }
}
