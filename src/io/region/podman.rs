//! A region made of containers on this machine, run by podman through its
//! REST API (libpod). Each (deployment, region) runs its replicas as
//! containers named `deployd-{deployment}-{region}-{index}` and labelled
//! with the deployment, project, environment and region, so a re-run or a
//! restarted daemon finds and adopts what exists instead of creating a
//! duplicate.
//!
//! Containers publish the deployment's port on 127.0.0.1 at a port podman
//! picks, get `PORT` in their environment and run with an init process (so
//! a stop is quick). Standby stops them and keeps them, so a wake only
//! starts them again. Readiness is the driver's own TCP probe of the
//! published port (podman's healthchecks need systemd). A container that
//! exited while it should run fails the deployment at once, with its exit
//! code. On one machine the edge is the sentinel and there is no network to
//! police, so sentinels and network policies have no objects here.

mod libpod;
mod service;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::{DriverError, Observed, RegionDriver, WorkloadSpec};
use crate::model::Instance;
use libpod::{ContainerSummary, Libpod};
use service::Service;

const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const LABEL_DEPLOYMENT: &str = "deployd.deployment";
const LABEL_PROJECT: &str = "deployd.project";
const LABEL_ENVIRONMENT: &str = "deployd.environment";
const LABEL_REGION: &str = "deployd.region";
const LABEL_INDEX: &str = "deployd.index";
/// SIGTERM, then this long before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

pub struct PodmanRegion {
    name: String,
    service: Service,
    /// Containers this driver stopped (standby), until it starts them
    /// again: their exit is not a failure.
    stopped: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Registries (`host:port`) pulled from without TLS.
    insecure_registries: Vec<String>,
}

impl PodmanRegion {
    /// `socket`: a podman API socket the operator runs; without one, the
    /// daemon starts `podman system service` on `owned_socket`.
    pub fn new(
        name: &str,
        socket: Option<&Path>,
        owned_socket: &Path,
        podman: &Path,
        insecure_registries: Vec<String>,
    ) -> Self {
        let service = match socket {
            Some(socket) => Service::external(socket),
            None => Service::owned(owned_socket, podman),
        };
        Self {
            name: name.to_string(),
            service,
            stopped: std::sync::Mutex::default(),
            insecure_registries,
        }
    }

    fn mark_stopped(&self, name: &str, stopped: bool) {
        if let Ok(mut set) = self.stopped.lock() {
            if stopped {
                set.insert(name.to_string());
            } else {
                set.remove(name);
            }
        }
    }

    /// An exited container is a failed deployment unless this driver
    /// stopped it, or it ended the way a stop ends it (SIGTERM or SIGKILL;
    /// after a restart of the daemon the driver no longer remembers its own
    /// stops, and a wake may be observed before its start).
    fn crashed(&self, container: &ContainerSummary) -> bool {
        let stopped_here = self
            .stopped
            .lock()
            .is_ok_and(|set| set.contains(container.name()));
        container.state == "exited" && !stopped_here && !matches!(container.exit_code, 137 | 143)
    }

    fn container_name(&self, spec: &WorkloadSpec, index: u32) -> String {
        format!("deployd-{}-{}-{index}", spec.deployment_id, self.name)
    }

    async fn containers(
        &self,
        libpod: &Libpod,
        spec: &WorkloadSpec,
    ) -> Result<Vec<ContainerSummary>, DriverError> {
        libpod
            .list(&[
                (LABEL_DEPLOYMENT, spec.deployment_id.as_str()),
                (LABEL_REGION, &self.name),
            ])
            .await
    }

    fn container_spec(&self, spec: &WorkloadSpec, index: u32) -> serde_json::Value {
        let mut container = serde_json::json!({
            "name": self.container_name(spec, index),
            "image": spec.image,
            "env": { "PORT": spec.port.to_string() },
            "labels": {
                LABEL_MANAGED_BY: "deployd",
                LABEL_DEPLOYMENT: spec.deployment_id.as_str(),
                LABEL_PROJECT: spec.project_id.as_str(),
                LABEL_ENVIRONMENT: spec.environment,
                LABEL_REGION: self.name,
                LABEL_INDEX: index.to_string(),
            },
            "init": true,
            "portmappings": [{
                "container_port": spec.port,
                "host_ip": "127.0.0.1",
                "protocol": "tcp",
            }],
        });
        if !spec.command.is_empty() {
            container["command"] = serde_json::json!(spec.command);
        }
        container
    }

    async fn run(&self, libpod: &Libpod, spec: &WorkloadSpec) -> Result<(), DriverError> {
        if !libpod.image_exists(&spec.image).await? {
            // An image the builder pushed to a plain-HTTP registry (by
            // digest: `HOST:PORT/deployd/prj_…@sha256:…`) is pulled without
            // TLS; every other image with it.
            let registry = spec.image.split('/').next().unwrap_or_default();
            let tls_verify = !self.insecure_registries.iter().any(|r| r == registry);
            libpod.pull(&spec.image, tls_verify).await?;
        }
        let existing = self.containers(libpod, spec).await?;
        for index in 0..spec.replicas {
            let name = self.container_name(spec, index);
            match existing.iter().find(|c| c.name() == name) {
                Some(c) if c.state == "running" => {}
                Some(_) => libpod.start(&name).await?,
                None => {
                    libpod.create(&self.container_spec(spec, index)).await?;
                    libpod.start(&name).await?;
                }
            }
            self.mark_stopped(&name, false);
        }
        // Fewer replicas than before: the surplus goes.
        for extra in existing.iter().filter(|c| {
            c.label(LABEL_INDEX)
                .and_then(|i| i.parse::<u32>().ok())
                .is_none_or(|i| i >= spec.replicas)
        }) {
            libpod.remove(extra.name()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl RegionDriver for PodmanRegion {
    async fn apply(&self, spec: &WorkloadSpec) -> Result<(), DriverError> {
        let libpod = self.service.client().await?;
        if spec.running {
            return self.run(libpod, spec).await;
        }
        for container in self.containers(libpod, spec).await? {
            self.mark_stopped(container.name(), true);
            if container.state == "running" || container.state == "created" {
                libpod.stop(container.name(), STOP_GRACE).await?;
            }
        }
        Ok(())
    }

    async fn observe(&self, spec: &WorkloadSpec) -> Result<Observed, DriverError> {
        let libpod = self.service.client().await?;
        let mut observed = Observed::default();
        for container in self.containers(libpod, spec).await? {
            let address = container.published(spec.port);
            let status = match (container.state.as_str(), address) {
                ("running", Some(address)) if accepts(address).await => "running",
                ("running" | "created" | "configured", _) => "pending",
                (other, _) => other,
            };
            if spec.running && self.crashed(&container) && observed.failed.is_none() {
                observed.failed = Some(format!(
                    "container {} exited with code {}",
                    container.name(),
                    container.exit_code
                ));
            }
            observed.instances.push(Instance {
                id: container.name().to_string(),
                status: status.to_string(),
                address: address.map(|a| a.to_string()),
            });
        }
        Ok(observed)
    }
}

/// The instance's own readiness check: its port accepts a connection.
async fn accepts(address: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await,
        Ok(Ok(_))
    )
}
