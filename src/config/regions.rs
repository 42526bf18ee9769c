//! `[regions.NAME]`: how deployd reaches each region, and the defaults of
//! each driver's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How deployd reaches one region.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegionConfig {
    /// An in-process stand-in for a cluster. Instances become ready
    /// `ready_after_ms` after a topology is applied, or never.
    Simulated {
        #[serde(default)]
        ready_after_ms: u64,
        #[serde(default)]
        never_ready: bool,
        /// Keep what the region runs in `data_dir/simulated/REGION.json`,
        /// so it outlives the daemon like a real cluster (the crash
        /// harness uses it to check driver state after a restart).
        #[serde(default)]
        persist: bool,
        /// Each running instance serves HTTP on 127.0.0.1 (answering with
        /// its deployment id), so the edge has something to route to. Off
        /// in the load generator, where thousands of instances would each
        /// hold a socket.
        #[serde(default = "serve_http_by_default")]
        serve_http: bool,
    },
    /// Containers on this machine, through podman's REST API.
    Podman {
        /// The API socket of a podman service the operator runs. Without
        /// it, the daemon starts `podman system service` on
        /// `data_dir/podman/REGION.sock` (reusing one that answers there).
        #[serde(default)]
        socket: Option<PathBuf>,
        /// The podman binary that starts that service.
        #[serde(default = "default_podman")]
        podman: PathBuf,
    },
    /// A Kubernetes cluster (see `io::region::kubernetes`).
    Kubernetes {
        /// The kubeconfig file to reach the cluster with. Without it, the
        /// in-cluster service account (`KUBERNETES_SERVICE_HOST`, the
        /// mounted token and CA).
        #[serde(default)]
        kubeconfig: Option<PathBuf>,
        /// A context of that file; its current context without one.
        #[serde(default)]
        context: Option<String>,
        /// The image of each environment's sentinel (gateway) Deployment.
        #[serde(default = "default_sentinel_image")]
        sentinel_image: String,
        /// How readiness learns what runs: `watch` (the default) or `poll`.
        #[serde(default)]
        readiness: KubernetesReadiness,
    },
}

/// How the kubernetes driver follows a deployment to readiness (see
/// `io::region::kubernetes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesReadiness {
    /// One watch of ReplicaSets and one of Pods per cluster feed a cache;
    /// a deployment in flight costs no read.
    #[default]
    Watch,
    /// Every look reads the ReplicaSet and lists its pods: for a cluster
    /// whose RBAC allows no watch across namespaces.
    Poll,
}

fn default_sentinel_image() -> String {
    "registry.deployd.local/sentinel:1".to_string()
}

pub(super) fn default_podman() -> PathBuf {
    PathBuf::from("podman")
}

fn serve_http_by_default() -> bool {
    true
}
