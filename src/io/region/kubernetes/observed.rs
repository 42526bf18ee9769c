//! What a ReplicaSet and its pods mean for readiness: the one reading of
//! them, whether they came from a watch's cache or from a direct read.
//!
//! Ready: the ReplicaSet controller has seen the latest spec
//! (`observedGeneration` is current) and `readyReplicas` reaches the
//! desired count; instances are the pods at `podIP:port`; a pod that
//! cannot start without a new deployment fails the region at once.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::errors;
use crate::io::region::{Observed, WorkloadSpec};
use crate::model::Instance;

/// The workload as `spec`'s readiness sees it. No ReplicaSet yet: nothing
/// runs.
pub fn observed<'a>(
    workload: Option<&ReplicaSet>,
    pods: impl IntoIterator<Item = &'a Pod>,
    spec: &WorkloadSpec,
) -> Observed {
    let Some(workload) = workload else {
        return Observed::default();
    };
    let settled = is_settled(workload, spec);
    let mut observed = Observed::default();
    for pod in pods {
        if spec.running && observed.failed.is_none() {
            observed.failed = errors::permanent_failure(pod);
        }
        observed.instances.push(instance(pod, spec.port, settled));
    }
    observed
}

/// The ReplicaSet controller has seen the latest spec and as many pods as
/// the spec wants are ready.
fn is_settled(workload: &ReplicaSet, spec: &WorkloadSpec) -> bool {
    let generation = workload.metadata.generation.unwrap_or(0);
    let Some(status) = workload.status.as_ref() else {
        return false;
    };
    let desired = if spec.running { spec.replicas } else { 0 };
    status.observed_generation.unwrap_or(0) >= generation
        && status.ready_replicas.unwrap_or(0).max(0) as u32 >= desired
}

/// A pod as an instance: `running` only while it is ready and its
/// ReplicaSet is settled, so a deployment is never reported ready on a
/// stale status.
fn instance(pod: &Pod, port: u16, settled: bool) -> Instance {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let address = status
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .map(|ip| match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
            _ => format!("{ip}:{port}"),
        });
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let state = match (ready && settled && !deleting, address.is_some()) {
        (true, true) => "running",
        _ if deleting => "terminating",
        _ => "pending",
    };
    Instance {
        id: pod.metadata.name.clone().unwrap_or_default(),
        status: state.to_string(),
        address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeploymentId, ProjectId};

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            deployment_id: DeploymentId::parse("dep_0000000000000001", "d").unwrap(),
            project_id: ProjectId::parse("prj_0000000000000001", "p").unwrap(),
            environment: "production".into(),
            image: "nginx:1".into(),
            command: vec![],
            port: 3000,
            replicas: 2,
            running: true,
            sentinel_replicas: 3,
        }
    }

    fn replica_set(generation: i64, observed: i64, ready: i32) -> ReplicaSet {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "dep-0000000000000001", "generation": generation },
            "spec": { "selector": {} },
            "status": { "replicas": 2, "readyReplicas": ready, "observedGeneration": observed },
        }))
        .unwrap()
    }

    fn pod(ip: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p" },
            "status": {
                "podIP": ip,
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            },
        }))
        .unwrap()
    }

    #[test]
    fn ready_needs_the_current_generation_and_enough_ready_replicas() {
        assert!(is_settled(&replica_set(2, 2, 2), &spec()));
        // A status from before the last apply says nothing about it.
        assert!(!is_settled(&replica_set(3, 2, 2), &spec()));
        assert!(!is_settled(&replica_set(2, 2, 1), &spec()));
    }

    #[test]
    fn an_instance_runs_at_its_pod_address_only_once_ready_and_settled() {
        let ready = instance(&pod("10.0.0.7", true), 3000, true);
        assert_eq!(ready.status, "running");
        assert_eq!(ready.address.as_deref(), Some("10.0.0.7:3000"));
        assert_eq!(
            instance(&pod("10.0.0.7", true), 3000, false).status,
            "pending"
        );
        assert_eq!(
            instance(&pod("10.0.0.7", false), 3000, true).status,
            "pending"
        );
        let v6 = instance(&pod("fd00::7", true), 3000, true);
        assert_eq!(v6.address.as_deref(), Some("[fd00::7]:3000"));
    }
}
