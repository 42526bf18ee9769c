//! A region that is a Kubernetes cluster, reached with kube-rs through a
//! kubeconfig file and context (or the in-cluster service account).
//!
//! `apply` writes every object of the workload with server-side apply,
//! field manager `deployd`, forced: redb holds the desired state, so
//! deployd's fields win over anyone's edits, and applying the same spec
//! again changes nothing (not even `resourceVersion`). The objects are in
//! [`objects`]: a namespace per project, a ReplicaSet, a Service and two
//! NetworkPolicies (its ingress, the sentinel's egress) per deployment, a
//! sentinel Deployment and Service per environment. Standby and wake apply the same whole objects with 0 or n
//! replicas: under server-side apply a partial object would drop the fields
//! it leaves out.
//!
//! A ReplicaSet, not a Deployment, runs a deployment: a deployd deployment
//! never changes its pod template (a new image is a new deployment, and
//! deployd itself switches traffic between them), so a Deployment's
//! rollout machinery would add an object per deployment and a level of
//! status to wait through for nothing.
//!
//! `observe` reads what a watch keeps ([`watch`]): one watch of
//! ReplicaSets and one of Pods per region, across namespaces, so a
//! deployment in flight costs no read at all and its readiness child is
//! woken by the event that may make it ready instead of its next poll.
//! Ready when the ReplicaSet's `observedGeneration` is current and
//! `readyReplicas` reaches the desired count; instances at `podIP:port`; a
//! pod whose image cannot be pulled, whose spec is invalid or that
//! crash-loops fails the region at once ([`observed`]). While the watch is
//! not established, and with `readiness = "poll"`, `observe` reads the
//! ReplicaSet and lists its pods instead: the same reading, two calls per
//! look.

mod errors;
pub mod objects;
mod observed;
mod watch;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DriverError, Held, Observed, RegionDriver, WorkloadSpec};
use crate::config::KubernetesReadiness;
use crate::model::{DeploymentId, ProjectId};
use errors::classify;
use objects::{LABEL_COMPONENT, LABEL_DEPLOYMENT, MANAGED_BY, MANAGER, Objects};

/// Bounds on one API call, so a silent API server cannot hold a
/// reconciler worker or a readiness poll for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Quick tries of one call before its error goes to the caller.
const CALL_TRIES: u32 = 4;
const CALL_RETRY_FIRST: Duration = Duration::from_millis(20);
/// How long a look waits for the readiness watch's first lists before it
/// reads the API server instead.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(2);

pub struct KubernetesRegion {
    name: String,
    /// `None`: the in-cluster service account.
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    sentinel_image: String,
    /// Made on first use: building a client reads files and needs the
    /// runtime, and a cluster that is down at start must not stop the
    /// daemon.
    client: tokio::sync::OnceCell<Client>,
    readiness: KubernetesReadiness,
    /// What the region's watches have seen; empty and not live until they
    /// start, and always under `readiness = "poll"`.
    cache: Arc<watch::Cache>,
    /// Started by the first `observe`, once there is a client.
    watches: tokio::sync::OnceCell<watch::Watches>,
    /// Where the watches run: the runtime the region was made on (the
    /// daemon's main one), not the actor thread that first observes.
    runtime: Option<tokio::runtime::Handle>,
}

impl KubernetesRegion {
    pub fn new(
        name: &str,
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        sentinel_image: String,
        readiness: KubernetesReadiness,
    ) -> Self {
        Self {
            name: name.to_string(),
            kubeconfig,
            context,
            sentinel_image,
            client: tokio::sync::OnceCell::new(),
            readiness,
            cache: Arc::default(),
            watches: tokio::sync::OnceCell::new(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    async fn client(&self) -> Result<Client, DriverError> {
        self.client
            .get_or_try_init(|| self.connect())
            .await
            .cloned()
    }

    /// A configuration that cannot work (no file, no such context) is
    /// permanent: the deployment fails with the reason instead of waiting.
    async fn connect(&self) -> Result<Client, DriverError> {
        let region = &self.name;
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| {
                    DriverError::permanent(format!(
                        "region {region}: kubeconfig {}: {e}",
                        path.display()
                    ))
                })?;
                let options = KubeConfigOptions {
                    context: self.context.clone(),
                    ..KubeConfigOptions::default()
                };
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| {
                        DriverError::permanent(format!(
                            "region {region}: kubeconfig {}: {e}",
                            path.display()
                        ))
                    })?
            }
            None => kube::Config::incluster().map_err(|e| {
                DriverError::permanent(format!("region {region}: in-cluster config: {e}"))
            })?,
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(READ_TIMEOUT);
        // kube's own retry of 429/503/504 backs off for up to 15 tries and
        // minutes; ours is bounded (`with_retries`, then the reconciler's
        // backoff within the region timeout), so one policy applies.
        config.default_retry = false;
        Client::try_from(config)
            .map_err(|e| DriverError::permanent(format!("region {region}: client: {e}")))
    }

    fn namespaced<K>(client: &Client, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(client.clone(), namespace)
    }
}

/// A few quick tries of one call (20, 40, 80 ms apart) while its error is
/// worth retrying, before the error goes to the caller, which retries the
/// whole apply with a longer backoff. An apply is seven calls: retried only
/// as a whole, a fifth of calls failing would fail four applies in five.
async fn with_retries<T, F>(mut call: impl FnMut() -> F) -> Result<T, DriverError>
where
    F: Future<Output = Result<T, DriverError>>,
{
    let mut delay = CALL_RETRY_FIRST;
    for _ in 1..CALL_TRIES {
        match call().await {
            Err(e) if !e.permanent => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            done => return done,
        }
    }
    call().await
}

/// The one way an object is written: server-side apply of the whole
/// object, as `deployd`, forced.
async fn apply<K>(api: &Api<K>, object: &K) -> Result<(), DriverError>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let what = format!("apply {} {name}", K::kind(&K::DynamicType::default()));
    let params = PatchParams::apply(MANAGER).force();
    let (name, params, what) = (&name, &params, &what);
    with_retries(|| async move {
        api.patch(name, params, &Patch::Apply(object))
            .await
            .map(drop)
            .map_err(|e| classify(what, e))
    })
    .await
}

/// Deletes an object; one that is already gone is fine.
async fn delete<K>(api: &Api<K>, name: &str) -> Result<(), DriverError>
where
    K: Resource + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    let what = format!("delete {} {name}", K::kind(&K::DynamicType::default()));
    let what = &what;
    with_retries(|| async move {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => Err(classify(what, e)),
        }
    })
    .await
}

#[async_trait]
impl RegionDriver for KubernetesRegion {
    async fn apply(&self, spec: &WorkloadSpec) -> Result<(), DriverError> {
        let client = self.client().await?;
        let objects = Objects::of(spec, &self.sentinel_image)?;
        let namespace = objects::namespace_name(&spec.project_id);
        apply(&Api::all(client.clone()), &objects.namespace).await?;
        // A scale-down leaves the environment's sentinel alone: other
        // deployments of the environment may still need it.
        if spec.running {
            apply(&Self::namespaced(&client, &namespace), &objects.sentinel).await?;
            apply(
                &Self::namespaced(&client, &namespace),
                &objects.sentinel_service,
            )
            .await?;
        }
        apply(&Self::namespaced(&client, &namespace), &objects.policy).await?;
        apply(
            &Self::namespaced(&client, &namespace),
            &objects.sentinel_egress,
        )
        .await?;
        apply(&Self::namespaced(&client, &namespace), &objects.service).await?;
        apply(&Self::namespaced(&client, &namespace), &objects.workload).await
    }

    async fn observe(&self, spec: &WorkloadSpec) -> Result<Observed, DriverError> {
        let client = self.client().await?;
        if self.readiness == KubernetesReadiness::Watch {
            self.watches
                .get_or_init(|| async {
                    let current = tokio::runtime::Handle::current();
                    let runtime = self.runtime.as_ref().unwrap_or(&current);
                    watch::Watches::start(runtime, &client, &self.cache, &self.name)
                })
                .await;
            // The first looks wait for the first lists rather than read
            // around them (two lists serve every deployment after).
            self.cache.started(FIRST_LIST_WAIT).await;
            if let Some(observed) = self.cache.observed(spec) {
                return Ok(observed);
            }
        }
        read_workload(&client, spec).await
    }

    fn changes(&self, spec: &WorkloadSpec) -> Option<tokio::sync::watch::Receiver<u64>> {
        (self.readiness == KubernetesReadiness::Watch)
            .then(|| self.cache.changes(&spec.deployment_id))
    }

    async fn held(&self) -> Result<Option<Vec<Held>>, DriverError> {
        let client = self.client().await?;
        let selector = format!("{MANAGED_BY}={MANAGER},{LABEL_COMPONENT}=workload");
        let params = ListParams::default().labels(&selector);
        let mut held: std::collections::BTreeMap<DeploymentId, Held> = Default::default();
        let replica_sets = Api::<ReplicaSet>::all(client.clone())
            .list(&params)
            .await
            .map_err(|e| classify("list ReplicaSets", e))?;
        for rs in replica_sets.items {
            let Some(entry) = held_entry(&mut held, rs.meta()) else {
                continue;
            };
            let spec = rs.spec.as_ref();
            entry.replicas = spec.and_then(|s| s.replicas).map(|r| r.max(0) as u32);
            entry.image = spec
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|p| p.containers.first())
                .and_then(|c| c.image.clone());
            entry.objects += 1;
        }
        let services = Api::<Service>::all(client.clone())
            .list(&params)
            .await
            .map_err(|e| classify("list Services", e))?;
        for service in services.items {
            if let Some(entry) = held_entry(&mut held, service.meta()) {
                entry.objects += 1;
            }
        }
        let policies = Api::<NetworkPolicy>::all(client)
            .list(&params)
            .await
            .map_err(|e| classify("list NetworkPolicies", e))?;
        for policy in policies.items {
            if let Some(entry) = held_entry(&mut held, policy.meta()) {
                entry.objects += 1;
            }
        }
        Ok(Some(held.into_values().collect()))
    }

    async fn remove(
        &self,
        project: &ProjectId,
        deployment: &DeploymentId,
    ) -> Result<(), DriverError> {
        let client = self.client().await?;
        let namespace = objects::namespace_name(project);
        let name = objects::workload_name(deployment);
        delete(&Self::namespaced::<ReplicaSet>(&client, &namespace), &name).await?;
        delete(&Self::namespaced::<Service>(&client, &namespace), &name).await?;
        let policies = Self::namespaced::<NetworkPolicy>(&client, &namespace);
        delete(&policies, &objects::egress_name(deployment)).await?;
        delete(&policies, &name).await
    }
}

/// `observe` without the watch: the ReplicaSet and its pods, read from the
/// API server.
async fn read_workload(client: &Client, spec: &WorkloadSpec) -> Result<Observed, DriverError> {
    let namespace = objects::namespace_name(&spec.project_id);
    let name = objects::workload_name(&spec.deployment_id);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let Some(workload) = replica_sets
        .get_opt(&name)
        .await
        .map_err(|e| classify(&format!("get ReplicaSet {name}"), e))?
    else {
        return Ok(Observed::default());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = format!(
        "{LABEL_DEPLOYMENT}={},{LABEL_COMPONENT}=workload",
        spec.deployment_id
    );
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| classify(&format!("list pods of {name}"), e))?;
    Ok(observed::observed(Some(&workload), &pods.items, spec))
}

/// Objects per deployment: ReplicaSet, Service, two NetworkPolicies.
pub const OBJECTS_PER_DEPLOYMENT: usize = 4;

fn held_entry<'a>(
    held: &'a mut std::collections::BTreeMap<DeploymentId, Held>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&'a mut Held> {
    let labels = meta.labels.as_ref();
    let deployment = objects::deployment_of(labels)?;
    let project = labels?.get(objects::LABEL_PROJECT)?;
    let project = ProjectId::parse(project, "project").ok()?;
    Some(held.entry(deployment.clone()).or_insert(Held {
        deployment_id: deployment,
        project_id: project,
        replicas: None,
        image: None,
        objects: 0,
        complete_at: OBJECTS_PER_DEPLOYMENT,
    }))
}
