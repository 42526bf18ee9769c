//! A region in memory: the default driver, so the daemon runs with nothing
//! else installed. Instances of an applied workload report `running` once
//! `ready_after` has passed, or never when the region is set `never_ready`.
//!
//! It keeps what a cluster would hold (workloads with their replicas,
//! sentinels, network policies) and lets tests read it, so a test can assert
//! on what runs and not only on what the store says. With `persist`, that
//! state is also written to a file under the data directory after every
//! change, so it outlives the daemon the way a real cluster does: the crash
//! harness kills the daemon and then checks that, after the restart, what
//! runs matches what is stored.
//!
//! With `serve_http`, every running instance is a small HTTP server on
//! 127.0.0.1 that answers with its deployment id ([`instance_server`]), and
//! reports that address, so the edge routes real requests to it.

mod instance_server;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{DriverError, Observed, RegionDriver, WorkloadSpec};
use crate::model::{DeploymentId, Instance};

/// What the region holds for one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulatedWorkload {
    pub image: String,
    /// Replicas asked for; zero while scaled down.
    pub replicas: u32,
}

/// Everything the region holds; the content of its state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulatedState {
    pub workloads: BTreeMap<String, SimulatedWorkload>,
    /// `project/environment` -> sentinel replicas.
    pub sentinels: BTreeMap<String, u32>,
    /// Deployments whose network policies exist.
    pub network_policies: BTreeSet<String>,
}

impl SimulatedState {
    /// Replicas that run (or start) for a deployment; zero if none.
    pub fn replicas(&self, deployment: &DeploymentId) -> u32 {
        self.workloads
            .get(deployment.as_str())
            .map_or(0, |w| w.replicas)
    }
}

pub struct SimulatedRegion {
    name: String,
    ready_after: Duration,
    never_ready: bool,
    state: Mutex<Inner>,
    state_file: Option<PathBuf>,
    /// While set, every call fails with a transient error (tests).
    unavailable: AtomicBool,
    applies: AtomicU64,
    serve_http: bool,
    /// Deployment id -> one server per running replica (`serve_http`).
    servers: Mutex<HashMap<String, Vec<instance_server::InstanceServer>>>,
}

/// What the region holds, kept compact: a daemon re-applies every running
/// deployment to it at start, so it can hold hundreds of thousands of
/// workloads, and [`SimulatedState`] (three maps keyed by the same id) is
/// built only for snapshots and the state file.
struct Inner {
    workloads: HashMap<Box<str>, HeldWorkload>,
    sentinels: BTreeMap<String, u32>,
}

struct HeldWorkload {
    image: Box<str>,
    replicas: u32,
    network_policy: bool,
    /// When its replicas last changed; readiness counts from there.
    since: Instant,
}

impl Inner {
    fn from_state(state: SimulatedState, now: Instant) -> Self {
        let workloads = state
            .workloads
            .into_iter()
            .map(|(id, workload)| {
                let network_policy = state.network_policies.contains(&id);
                let held = HeldWorkload {
                    image: workload.image.into(),
                    replicas: workload.replicas,
                    network_policy,
                    since: now,
                };
                (id.into_boxed_str(), held)
            })
            .collect();
        Self {
            workloads,
            sentinels: state.sentinels,
        }
    }

    fn to_state(&self) -> SimulatedState {
        let mut state = SimulatedState {
            sentinels: self.sentinels.clone(),
            ..SimulatedState::default()
        };
        for (id, held) in &self.workloads {
            state.workloads.insert(
                id.to_string(),
                SimulatedWorkload {
                    image: held.image.to_string(),
                    replicas: held.replicas,
                },
            );
            if held.network_policy {
                state.network_policies.insert(id.to_string());
            }
        }
        state
    }
}

/// Where a persisted simulated region keeps its state.
pub fn state_file(data_dir: &Path, region: &str) -> PathBuf {
    data_dir.join("simulated").join(format!("{region}.json"))
}

/// Reads a persisted region's state (an absent file is an empty region).
pub fn read_state_file(path: &Path) -> std::io::Result<SimulatedState> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SimulatedState::default()),
        Err(e) => Err(e),
    }
}

impl SimulatedRegion {
    pub fn new(
        name: &str,
        ready_after: Duration,
        never_ready: bool,
        state_file: Option<PathBuf>,
        serve_http: bool,
    ) -> Self {
        let held = match &state_file {
            Some(path) => read_state_file(path).unwrap_or_else(|e| {
                tracing::warn!(region = name, file = %path.display(), error = %e, "simulated region starts empty");
                SimulatedState::default()
            }),
            None => SimulatedState::default(),
        };
        Self {
            name: name.to_string(),
            ready_after,
            never_ready,
            state: Mutex::new(Inner::from_state(held, Instant::now())),
            state_file,
            unavailable: AtomicBool::new(false),
            applies: AtomicU64::new(0),
            serve_http,
            servers: Mutex::new(HashMap::new()),
        }
    }

    /// Starts or stops instance servers so `replicas` of them serve
    /// `deployment` (zero stops them all).
    fn match_servers(&self, spec: &WorkloadSpec, replicas: u32) -> Result<(), DriverError> {
        if !self.serve_http {
            return Ok(());
        }
        let mut servers = self
            .servers
            .lock()
            .map_err(|_| DriverError::transient("simulated region servers are poisoned"))?;
        let key = spec.deployment_id.as_str();
        if replicas == 0 {
            servers.remove(key);
            return Ok(());
        }
        let running = servers.entry(key.to_string()).or_default();
        running.truncate(replicas as usize);
        while running.len() < replicas as usize {
            let instance = self.instance_id(spec, running.len() as u32);
            let server = instance_server::start(key, &instance).map_err(|e| {
                DriverError::transient(format!("cannot start instance {instance}: {e}"))
            })?;
            running.push(server);
        }
        Ok(())
    }

    fn instance_id(&self, spec: &WorkloadSpec, index: u32) -> String {
        format!("{}-{}-{index}", spec.deployment_id.short(), self.name)
    }

    /// Where instance `index` of `deployment` serves, if it does.
    fn address(&self, deployment: &str, index: usize) -> Option<String> {
        let servers = self.servers.lock().ok()?;
        servers
            .get(deployment)?
            .get(index)
            .map(|s| s.address.to_string())
    }

    /// A copy of everything the region holds.
    pub fn snapshot(&self) -> SimulatedState {
        self.state
            .lock()
            .map(|inner| inner.to_state())
            .unwrap_or_default()
    }

    /// What the region holds for `deployment`.
    pub fn workload(&self, deployment: &DeploymentId) -> Option<SimulatedWorkload> {
        self.state.lock().ok().and_then(|inner| {
            inner
                .workloads
                .get(deployment.as_str())
                .map(|held| SimulatedWorkload {
                    image: held.image.to_string(),
                    replicas: held.replicas,
                })
        })
    }

    /// Replicas that run (or start) for `deployment`; zero when scaled
    /// down or never applied.
    pub fn replicas(&self, deployment: &DeploymentId) -> u32 {
        self.workload(deployment).map_or(0, |w| w.replicas)
    }

    /// Makes every call fail (transiently) until cleared: an unreachable
    /// cluster.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Stops instance `index` of `deployment` behind the daemon's back, the
    /// way a crashed process would: the region still says it runs, but its
    /// address refuses connections (tests of the edge's retries).
    pub fn crash_instance(&self, deployment: &DeploymentId, index: usize) {
        if let Ok(mut servers) = self.servers.lock()
            && let Some(running) = servers.get_mut(deployment.as_str())
            && index < running.len()
        {
            running.remove(index);
        }
    }

    /// Successful `apply` calls so far.
    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }

    fn check_available(&self) -> Result<(), DriverError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(DriverError::transient(format!(
                "simulated region {} is unavailable",
                self.name
            )));
        }
        Ok(())
    }

    fn persist(&self, inner: &Inner) -> Result<(), DriverError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let held = inner.to_state();
        let failed = |e: &dyn std::fmt::Display| {
            DriverError::transient(format!("cannot write {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        }
        let bytes = serde_json::to_vec_pretty(&held).map_err(|e| failed(&e))?;
        // Write then rename, so a reader (or a crash) never sees half a file.
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, bytes).map_err(|e| failed(&e))?;
        std::fs::rename(&temp, path).map_err(|e| failed(&e))
    }
}

#[async_trait]
impl RegionDriver for SimulatedRegion {
    async fn apply(&self, spec: &WorkloadSpec) -> Result<(), DriverError> {
        self.check_available()?;
        let mut guard = self
            .state
            .lock()
            .map_err(|_| DriverError::transient("simulated region state is poisoned"))?;
        let replicas = if spec.running { spec.replicas } else { 0 };
        let mut changed = false;
        let inner = &mut *guard;
        match inner.workloads.get_mut(spec.deployment_id.as_str()) {
            Some(held) => {
                if held.replicas != replicas || *held.image != *spec.image {
                    held.image = spec.image.as_str().into();
                    held.replicas = replicas;
                    held.since = Instant::now();
                    changed = true;
                }
                if spec.running && !held.network_policy {
                    held.network_policy = true;
                    changed = true;
                }
            }
            None => {
                let held = HeldWorkload {
                    image: spec.image.as_str().into(),
                    replicas,
                    network_policy: spec.running,
                    since: Instant::now(),
                };
                inner
                    .workloads
                    .insert(spec.deployment_id.as_str().into(), held);
                changed = true;
            }
        }
        if spec.running {
            let sentinel = format!("{}/{}", spec.project_id, spec.environment);
            if inner.sentinels.get(&sentinel) != Some(&spec.sentinel_replicas) {
                inner.sentinels.insert(sentinel, spec.sentinel_replicas);
                changed = true;
            }
        }
        if changed {
            self.persist(inner)?;
        }
        drop(guard);
        // Always, not only on a change: after a restart the held state is
        // read back from its file but the servers are gone.
        self.match_servers(spec, if spec.running { spec.replicas } else { 0 })?;
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn observe(&self, spec: &WorkloadSpec) -> Result<Observed, DriverError> {
        self.check_available()?;
        let inner = self
            .state
            .lock()
            .map_err(|_| DriverError::transient("simulated region state is poisoned"))?;
        let key = spec.deployment_id.as_str();
        let Some(workload) = inner.workloads.get(key) else {
            return Ok(Observed::default());
        };
        let status = if !self.never_ready && workload.since.elapsed() >= self.ready_after {
            "running"
        } else {
            "pending"
        };
        let replicas = workload.replicas;
        drop(inner);
        let instances = (0..replicas)
            .map(|i| Instance {
                id: self.instance_id(spec, i),
                status: status.to_string(),
                address: self.address(key, i as usize),
            })
            .collect();
        Ok(Observed {
            instances,
            failed: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProjectId;

    fn spec(
        deployment: &DeploymentId,
        project: &ProjectId,
        image: &str,
        running: bool,
    ) -> WorkloadSpec {
        WorkloadSpec {
            deployment_id: deployment.clone(),
            project_id: project.clone(),
            environment: "production".into(),
            image: image.into(),
            command: Vec::new(),
            port: 8080,
            replicas: 2,
            running,
            sentinel_replicas: 3,
        }
    }

    #[tokio::test]
    async fn what_it_holds_survives_the_state_file_and_readiness_counts_from_the_last_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = state_file(dir.path(), "east");
        let region = SimulatedRegion::new(
            "east",
            Duration::from_secs(3600),
            false,
            Some(file.clone()),
            false,
        );
        let project = ProjectId::generate();
        let (running, stopped) = (DeploymentId::generate(), DeploymentId::generate());
        region
            .apply(&spec(&running, &project, "app:1", true))
            .await
            .unwrap();
        region
            .apply(&spec(&stopped, &project, "app:2", false))
            .await
            .unwrap();

        let held = region.snapshot();
        assert_eq!(held.replicas(&running), 2);
        assert_eq!(held.replicas(&stopped), 0);
        assert_eq!(held.workloads[running.as_str()].image, "app:1");
        // Only a running workload gets its network policy and sentinel.
        assert_eq!(held.network_policies, BTreeSet::from([running.to_string()]));
        assert_eq!(held.sentinels[&format!("{project}/production")], 3);
        // The file says the same, and a region read back from it holds it.
        assert_eq!(read_state_file(&file).unwrap(), held);
        let reread = SimulatedRegion::new("east", Duration::ZERO, false, Some(file), false);
        assert_eq!(reread.snapshot(), held);

        // Not ready before `ready_after` has passed since the last change...
        let observed = region
            .observe(&spec(&running, &project, "app:1", true))
            .await
            .unwrap();
        assert_eq!(observed.instances.len(), 2);
        assert!(observed.instances.iter().all(|i| i.status == "pending"));
        // ...and a region read back starts its clocks again (here at zero).
        let observed = reread
            .observe(&spec(&running, &project, "app:1", true))
            .await
            .unwrap();
        assert!(observed.is_ready(2), "{observed:?}");
    }
}
