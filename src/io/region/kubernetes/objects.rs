//! The Kubernetes objects of one workload, as typed values built from a
//! [`WorkloadSpec`]: the same spec always gives the same objects, whole, so
//! a server-side apply of them never merges a partial change.
//!
//! Names come from ids (an id's `_` becomes `-`, since names are DNS
//! labels): namespace `deployd-prj-…` per project, ReplicaSet, Service and
//! NetworkPolicy `dep-…` and NetworkPolicy `dep-…-egress` per deployment, Deployment and Service
//! `sentinel-{environment}` per environment. Every object carries
//! `app.kubernetes.io/managed-by=deployd` and the ids it belongs to.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::io::region::{DriverError, WorkloadSpec};
use crate::model::{DeploymentId, ProjectId};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "deployd";
pub const LABEL_PROJECT: &str = "deployd.io/project";
pub const LABEL_ENVIRONMENT: &str = "deployd.io/environment";
pub const LABEL_DEPLOYMENT: &str = "deployd.io/deployment";
/// `workload` or `sentinel`: what a pod is, for selectors and policies.
pub const LABEL_COMPONENT: &str = "deployd.io/component";
/// The port the sentinel listens on, and its Service's port.
pub const SENTINEL_PORT: u16 = 8080;

pub fn namespace_name(project: &ProjectId) -> String {
    format!("deployd-{}", project.as_str().replace('_', "-"))
}

pub fn workload_name(deployment: &DeploymentId) -> String {
    deployment.as_str().replace('_', "-")
}

/// The sentinel-side NetworkPolicy of a deployment.
pub fn egress_name(deployment: &DeploymentId) -> String {
    format!("{}-egress", workload_name(deployment))
}

pub fn sentinel_name(environment: &str) -> String {
    format!("sentinel-{environment}")
}

/// Every object `apply` writes for `spec`, in the order it writes them:
/// the namespace first (the rest live in it), the policy before the pods it
/// protects.
pub struct Objects {
    pub namespace: Namespace,
    pub sentinel: Deployment,
    pub sentinel_service: Service,
    pub policy: NetworkPolicy,
    pub sentinel_egress: NetworkPolicy,
    pub service: Service,
    pub workload: ReplicaSet,
}

impl Objects {
    pub fn of(spec: &WorkloadSpec, sentinel_image: &str) -> Result<Self, DriverError> {
        let namespace = namespace_name(&spec.project_id);
        let name = workload_name(&spec.deployment_id);
        let sentinel = sentinel_name(&spec.environment);
        let project_labels = json!({
            MANAGED_BY: MANAGER,
            LABEL_PROJECT: spec.project_id.as_str(),
        });
        let sentinel_labels = json!({
            MANAGED_BY: MANAGER,
            LABEL_PROJECT: spec.project_id.as_str(),
            LABEL_ENVIRONMENT: spec.environment,
            LABEL_COMPONENT: "sentinel",
        });
        let sentinel_selector = json!({
            LABEL_ENVIRONMENT: spec.environment,
            LABEL_COMPONENT: "sentinel",
        });
        let labels = json!({
            MANAGED_BY: MANAGER,
            LABEL_PROJECT: spec.project_id.as_str(),
            LABEL_ENVIRONMENT: spec.environment,
            LABEL_DEPLOYMENT: spec.deployment_id.as_str(),
            LABEL_COMPONENT: "workload",
        });
        let selector = json!({
            LABEL_DEPLOYMENT: spec.deployment_id.as_str(),
            LABEL_COMPONENT: "workload",
        });
        let replicas = if spec.running { spec.replicas } else { 0 };
        let mut container = json!({
            "name": "app",
            "image": spec.image,
            "env": [{ "name": "PORT", "value": spec.port.to_string() }],
            "ports": [{ "containerPort": spec.port, "protocol": "TCP" }],
            "readinessProbe": { "tcpSocket": { "port": spec.port } },
        });
        if !spec.command.is_empty() {
            // Like podman's command: the image's entrypoint runs with these
            // arguments, one argv item each.
            container["args"] = json!(spec.command);
        }
        Ok(Self {
            namespace: typed(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": namespace, "labels": project_labels },
            }))?,
            // A Deployment, unlike the workloads: the sentinel outlives
            // every deployment of its environment, and a new sentinel image
            // must roll out to it.
            sentinel: typed(json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": { "name": sentinel, "namespace": namespace, "labels": sentinel_labels },
                "spec": {
                    "replicas": spec.sentinel_replicas,
                    "selector": { "matchLabels": sentinel_selector },
                    "template": {
                        "metadata": { "labels": sentinel_labels },
                        "spec": { "containers": [{
                            "name": "sentinel",
                            "image": sentinel_image,
                            "env": [{ "name": "PORT", "value": SENTINEL_PORT.to_string() }],
                            "ports": [{ "containerPort": SENTINEL_PORT, "protocol": "TCP" }],
                        }] },
                    },
                },
            }))?,
            sentinel_service: typed(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": sentinel, "namespace": namespace, "labels": sentinel_labels },
                "spec": {
                    "selector": sentinel_selector,
                    "ports": [{ "name": "http", "port": SENTINEL_PORT, "targetPort": SENTINEL_PORT, "protocol": "TCP" }],
                },
            }))?,
            // Only the environment's sentinel may reach the deployment's
            // pods; selecting them with one ingress rule denies the rest.
            policy: typed(json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": { "name": name, "namespace": namespace, "labels": labels },
                "spec": {
                    "podSelector": { "matchLabels": selector },
                    "policyTypes": ["Ingress"],
                    "ingress": [{
                        "from": [{ "podSelector": { "matchLabels": sentinel_selector } }],
                        "ports": [{ "port": spec.port, "protocol": "TCP" }],
                    }],
                },
            }))?,
            // The sentinel's side: its pods may reach the deployment's
            // port. Egress policies add up, so the sentinel reaches every
            // deployment of its environment and nothing else (it is given
            // instance addresses by deployd; it needs no DNS).
            sentinel_egress: typed(json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": { "name": egress_name(&spec.deployment_id), "namespace": namespace, "labels": labels },
                "spec": {
                    "podSelector": { "matchLabels": sentinel_selector },
                    "policyTypes": ["Egress"],
                    "egress": [{
                        "to": [{ "podSelector": { "matchLabels": selector } }],
                        "ports": [{ "port": spec.port, "protocol": "TCP" }],
                    }],
                },
            }))?,
            service: typed(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": name, "namespace": namespace, "labels": labels },
                "spec": {
                    "selector": selector,
                    "ports": [{ "name": "http", "port": spec.port, "targetPort": spec.port, "protocol": "TCP" }],
                },
            }))?,
            workload: typed(json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": { "name": name, "namespace": namespace, "labels": labels },
                "spec": {
                    "replicas": replicas,
                    "selector": { "matchLabels": selector },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": { "containers": [container] },
                    },
                },
            }))?,
        })
    }
}

/// The labels a resync reads back: whose an object is.
pub fn deployment_of(labels: Option<&BTreeMap<String, String>>) -> Option<DeploymentId> {
    let labels = labels?;
    if labels.get(MANAGED_BY).map(String::as_str) != Some(MANAGER) {
        return None;
    }
    DeploymentId::parse(labels.get(LABEL_DEPLOYMENT)?, "deployment").ok()
}

/// A template above is wrong: a bug, reported rather than panicked on.
fn typed<K: DeserializeOwned>(value: serde_json::Value) -> Result<K, DriverError> {
    serde_json::from_value(value)
        .map_err(|e| DriverError::permanent(format!("building a Kubernetes object: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(running: bool) -> WorkloadSpec {
        WorkloadSpec {
            deployment_id: DeploymentId::parse("dep_0000000000000001", "d").unwrap(),
            project_id: ProjectId::parse("prj_0000000000000001", "p").unwrap(),
            environment: "production".into(),
            image: "nginx:1".into(),
            command: vec!["serve".into(), "--fast".into()],
            port: 3000,
            replicas: 2,
            running,
            sentinel_replicas: 3,
        }
    }

    #[test]
    fn objects_are_named_and_labelled_from_ids() {
        let objects = Objects::of(&spec(true), "sentinel:1").unwrap();
        let rs = &objects.workload;
        assert_eq!(rs.metadata.name.as_deref(), Some("dep-0000000000000001"));
        assert_eq!(
            rs.metadata.namespace.as_deref(),
            Some("deployd-prj-0000000000000001")
        );
        let spec_ = rs.spec.as_ref().unwrap();
        assert_eq!(spec_.replicas, Some(2));
        let container = &spec_
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(
            container.args.as_deref(),
            Some(&["serve".to_string(), "--fast".into()][..])
        );
        assert_eq!(
            deployment_of(rs.metadata.labels.as_ref()).map(|d| d.to_string()),
            Some("dep_0000000000000001".to_string())
        );
        assert_eq!(objects.sentinel.spec.as_ref().unwrap().replicas, Some(3));
    }

    #[test]
    fn a_stopped_spec_is_the_same_object_with_zero_replicas() {
        let running = Objects::of(&spec(true), "s").unwrap().workload;
        let mut stopped = Objects::of(&spec(false), "s").unwrap().workload;
        assert_eq!(stopped.spec.as_ref().unwrap().replicas, Some(0));
        stopped.spec.as_mut().unwrap().replicas = Some(2);
        assert_eq!(stopped, running);
    }
}
