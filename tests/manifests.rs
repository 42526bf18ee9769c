//! The manifests that run deployd in a cluster (`deploy/kubernetes/`):
//! every object is read into its typed Kubernetes struct and written back
//! unchanged (a misspelt or misplaced field would be dropped on the way),
//! its config is one deployd accepts, it runs one replica on a persistent
//! volume with gRPC health probes, and its RBAC grants what the kubernetes
//! driver calls.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const MANIFESTS: &str = include_str!("../deploy/kubernetes/deployd.yaml");

fn documents() -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(MANIFESTS).expect("the manifests are YAML")
}

/// `document` read as `K` and written back is `document` again.
fn round_trip<K: DeserializeOwned + Serialize>(document: &Value) -> K {
    let typed: K = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", document["kind"]));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(
        &back, document,
        "{} loses or changes fields",
        document["kind"]
    );
    typed
}

fn by_kind() -> BTreeMap<String, Value> {
    documents()
        .into_iter()
        .map(|d| (d["kind"].as_str().unwrap_or_default().to_string(), d))
        .collect()
}

#[test]
fn every_object_is_a_valid_typed_kubernetes_object() {
    let documents = documents();
    assert_eq!(documents.len(), 8);
    for document in &documents {
        match document["kind"].as_str().unwrap_or_default() {
            "Namespace" => drop(round_trip::<Namespace>(document)),
            "ServiceAccount" => drop(round_trip::<ServiceAccount>(document)),
            "ClusterRole" => drop(round_trip::<ClusterRole>(document)),
            "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(document)),
            "PersistentVolumeClaim" => drop(round_trip::<PersistentVolumeClaim>(document)),
            "ConfigMap" => drop(round_trip::<ConfigMap>(document)),
            "Deployment" => drop(round_trip::<Deployment>(document)),
            "Service" => drop(round_trip::<Service>(document)),
            other => panic!("unexpected kind {other}"),
        }
    }
    // The check sees a misspelt field: it does not survive the round trip.
    let mut misspelt = by_kind()["Deployment"].clone();
    misspelt["spec"]["replicaz"] = serde_json::json!(1);
    let typed: Deployment = serde_json::from_value(misspelt.clone()).expect("still parses");
    assert_ne!(serde_json::to_value(&typed).expect("serialize"), misspelt);
}

#[test]
fn deployd_runs_once_on_its_volume_with_grpc_health_probes_and_a_config_it_accepts() {
    let objects = by_kind();
    let config_map: ConfigMap = round_trip(&objects["ConfigMap"]);
    let text = &config_map.data.expect("data")["deployd.toml"];
    let config: deployd::Config = toml::from_str(text).expect("deployd reads its config");
    config.validate().expect("and accepts it");
    assert!(matches!(
        config.regions.get("local"),
        Some(deployd::config::RegionConfig::Kubernetes {
            kubeconfig: None,
            ..
        })
    ));

    let deployment: Deployment = round_trip(&objects["Deployment"]);
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate")
    );
    let pod = spec.template.spec.expect("pod spec");
    let container = &pod.containers[0];
    let grpc_port = config.listen.port();
    for probe in [&container.readiness_probe, &container.liveness_probe] {
        let grpc = probe
            .as_ref()
            .and_then(|p| p.grpc.as_ref())
            .expect("a gRPC probe");
        assert_eq!(grpc.port, i32::from(grpc_port));
    }
    let mounts = container.volume_mounts.as_ref().expect("mounts");
    let data = mounts
        .iter()
        .find(|m| std::path::Path::new(&m.mount_path) == config.data_dir)
        .expect("the data directory is a mounted volume");
    let volume = pod
        .volumes
        .as_ref()
        .and_then(|v| v.iter().find(|v| v.name == data.name))
        .expect("volume");
    assert!(volume.persistent_volume_claim.is_some());
    assert_eq!(pod.service_account_name.as_deref(), Some("deployd"));

    let service: Service = round_trip(&objects["Service"]);
    let ports: BTreeSet<String> = service
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from(["grpc".to_string(), "edge".to_string()])
    );
}

#[test]
fn rbac_grants_what_the_kubernetes_driver_calls() {
    let role: ClusterRole = round_trip(&by_kind()["ClusterRole"]);
    let mut granted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    // Server-side apply of a new object needs create as well as patch.
    let mut needed = vec![
        ("", "namespaces", "create"),
        ("", "namespaces", "patch"),
        ("", "pods", "list"),
        // The readiness watch, across namespaces.
        ("", "pods", "watch"),
        ("apps", "replicasets", "watch"),
    ];
    for (group, resource) in [
        ("", "services"),
        ("apps", "replicasets"),
        ("apps", "deployments"),
        ("networking.k8s.io", "networkpolicies"),
    ] {
        for verb in ["get", "list", "create", "patch", "delete"] {
            needed.push((group, resource, verb));
        }
    }
    for (group, resource, verb) in needed {
        assert!(
            granted.contains(&(group.into(), resource.into(), verb.into())),
            "{verb} {group}/{resource}"
        );
    }
    assert!(!granted.iter().any(|(_, r, _)| r == "*" || r == "secrets"));
}
