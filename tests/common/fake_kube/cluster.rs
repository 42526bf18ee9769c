//! The fake's cluster side: a ReplicaSet/Deployment controller and a
//! kubelet, stepped by a task of their own whenever something changed,
//! and the discovery documents `kubectl` needs.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Key, State};

/// Steps the controller and kubelet after every change until a step
/// changes nothing, waiting `kubelet_delay` before each step.
pub(super) async fn run_kubelet(state: Arc<Mutex<State>>) {
    let mut changes = match state.lock() {
        Ok(state) => state.changed.subscribe(),
        Err(_) => return,
    };
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        loop {
            let delay = match state.lock() {
                Ok(state) => state.kubelet_delay,
                Err(_) => return,
            };
            if delay.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(delay).await;
            }
            changes.borrow_and_update();
            let Ok(mut state) = state.lock() else {
                return;
            };
            let before = state.next_version;
            controller_step(&mut state);
            if state.next_version == before {
                break;
            }
        }
    }
}

/// One step of the ReplicaSet/Deployment controller and the kubelet.
fn controller_step(state: &mut State) {
    let owners: Vec<Key> = state
        .objects
        .keys()
        .filter(|(r, _, _)| r == "replicasets" || r == "deployments")
        .cloned()
        .collect();
    for key in owners {
        let Some(owner) = state.objects.get(&key).cloned() else {
            continue;
        };
        let (_, namespace, name) = &key;
        let generation = owner["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas = owner["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let observed = owner["status"]["observedGeneration"].as_i64().unwrap_or(0);
        let pod_key = |index: usize| {
            (
                "pods".to_string(),
                namespace.clone(),
                format!("{name}-{index}"),
            )
        };
        if observed < generation {
            // The controller sees the new spec: pods beyond the count go,
            // missing ones are created.
            let extra: Vec<Key> = state
                .objects
                .keys()
                .filter(|(r, ns, pod)| {
                    let index = pod
                        .strip_prefix(name.as_str())
                        .and_then(|rest| rest.strip_prefix('-'))
                        .and_then(|i| i.parse::<usize>().ok());
                    r == "pods" && ns == namespace && index.is_some_and(|i| i >= replicas)
                })
                .cloned()
                .collect();
            for pod in &extra {
                state.delete(pod);
            }
            for index in 0..replicas {
                let pod_key = pod_key(index);
                if !state.objects.contains_key(&pod_key) {
                    state.next_ip += 1;
                    let ip = format!("10.244.{}.{}", state.next_ip / 250, state.next_ip % 250 + 1);
                    let template = &owner["spec"]["template"];
                    let pod = json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {
                            "name": pod_key.2, "namespace": namespace,
                            "labels": template["metadata"]["labels"],
                        },
                        "spec": template["spec"],
                        "status": { "phase": "Pending", "podIP": ip },
                    });
                    state.put(pod_key, pod);
                }
            }
        } else if !state.held {
            for index in 0..replicas {
                let pod_key = pod_key(index);
                if let Some(pod) = state.objects.get(&pod_key) {
                    let mut next = pod.clone();
                    kubelet_step(&mut next);
                    if next != *pod {
                        state.put(pod_key, next);
                    }
                }
            }
        }
        let ready = (0..replicas)
            .filter(|index| state.objects.get(&pod_key(*index)).is_some_and(is_ready))
            .count();
        let status = json!({
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": generation,
        });
        if let Some(owner) = state.objects.get(&key)
            && owner["status"] != status
        {
            let mut owner = owner.clone();
            owner["status"] = status;
            state.put(key, owner);
        }
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// What the kubelet makes of a pod, by its image.
fn kubelet_step(pod: &mut Value) {
    let image = pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let container = pod["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("app")
        .to_string();
    let waiting = |reason: &str, message: &str| {
        json!({
            "phase": "Pending",
            "containerStatuses": [{
                "name": container, "image": image, "imageID": "", "ready": false, "restartCount": 0,
                "state": { "waiting": { "reason": reason, "message": message } },
            }],
        })
    };
    let ip = pod["status"]["podIP"].clone();
    let mut status = if image.contains("pull-fail") {
        waiting(
            "ErrImagePull",
            &format!("failed to pull image \"{image}\": not found"),
        )
    } else if image.contains("crash") {
        waiting(
            "CrashLoopBackOff",
            "back-off 10s restarting failed container",
        )
    } else {
        let ready = !image.contains("never-ready");
        json!({
            "phase": "Running",
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "containerStatuses": [{
                "name": container, "image": image, "imageID": "", "ready": ready, "restartCount": 0,
                "state": { "running": { "startedAt": "2026-01-01T00:00:00Z" } },
            }],
        })
    };
    status["podIP"] = ip;
    pod["status"] = status;
}

pub(super) fn discovery(path: &str) -> Option<Value> {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        let short = match name {
            "namespaces" => "ns",
            "services" => "svc",
            "pods" => "po",
            "replicasets" => "rs",
            "deployments" => "deploy",
            _ => "netpol",
        };
        json!({ "name": name, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                "kind": kind, "shortNames": [short], "verbs": ["get", "list", "patch", "delete"] })
    };
    Some(match path {
        "/api" => {
            json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] })
        }
        "/apis" => {
            let group = |name: &str| {
                json!({ "name": name, "versions": [{ "groupVersion": format!("{name}/v1"), "version": "v1" }],
                        "preferredVersion": { "groupVersion": format!("{name}/v1"), "version": "v1" } })
            };
            json!({ "kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [group("apps"), group("networking.k8s.io")] })
        }
        "/api/v1" => json!({ "kind": "APIResourceList", "groupVersion": "v1", "resources": [
            resource("namespaces", "Namespace", false),
            resource("services", "Service", true),
            resource("pods", "Pod", true),
        ] }),
        "/apis/apps/v1" => {
            json!({ "kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
            resource("replicasets", "ReplicaSet", true),
            resource("deployments", "Deployment", true),
        ] })
        }
        "/apis/networking.k8s.io/v1" => json!({ "kind": "APIResourceList",
            "groupVersion": "networking.k8s.io/v1", "resources": [
            resource("networkpolicies", "NetworkPolicy", true),
        ] }),
        _ => return None,
    })
}
