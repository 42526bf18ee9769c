//! [`Projects`]: the typed front door to the actor tree for the API. It finds
//! a project's actor in the registry (no supervisor round trip once running)
//! and turns every failure mode of an actor call (timeout, actor died
//! mid-request, actor gone) into an [`Error`], so a caller never hangs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};

use crate::actors::Deps;
use crate::actors::actor_thread::ActorThread;
use crate::actors::project::messages::{
    Created, DomainAdded, NewDeployment, ProjectMsg, Reply, SwitchOutcome,
};
use crate::actors::supervisor::{
    Broken, ProjectEntry, ProjectSupervisor, Registry, SupervisorArgs, SupervisorMsg, refusal,
};
use crate::error::Error;
use crate::model::project::Project;
use crate::model::{Deployment, DeploymentId, Origin, ProjectId};

#[derive(Clone)]
pub struct Projects {
    deps: Deps,
    registry: Registry,
    broken: Broken,
    failures: Arc<AtomicU64>,
    supervisor: ActorRef<SupervisorMsg>,
    thread: Arc<ActorThread>,
}

impl Projects {
    /// Starts the supervisor on a thread of its own ([`ActorThread`]); the
    /// project actors and their children run there too.
    pub async fn start(deps: Deps) -> Result<Self, Error> {
        let registry = Registry::default();
        let broken = Broken::default();
        let failures = Arc::new(AtomicU64::new(0));
        let args = SupervisorArgs {
            deps: deps.clone(),
            registry: registry.clone(),
            broken: broken.clone(),
            failures: failures.clone(),
        };
        let thread = ActorThread::start()
            .map_err(|e| Error::internal(format!("cannot start the actor thread: {e}")))?;
        let (supervisor, _) = thread
            .handle()
            .spawn(ProjectSupervisor::spawn(None, ProjectSupervisor, args))
            .await
            .map_err(|e| Error::internal(format!("cannot start the supervisor: {e}")))?
            .map_err(|e| Error::internal(format!("cannot start the supervisor: {e}")))?;
        Ok(Self {
            deps,
            registry,
            broken,
            failures,
            supervisor,
            thread: Arc::new(thread),
        })
    }

    /// Starts the actors of every project with unfinished deployments or
    /// pending schedules, so that work resumes without waiting for a request.
    pub async fn recover(&self) -> Result<usize, Error> {
        let pending = self.deps.store.projects_with_pending_work()?;
        for project in &pending {
            if let Err(e) = self.actor(project).await {
                tracing::error!(project = %project, error = %e, "could not resume project");
            }
        }
        Ok(pending.len())
    }

    /// Stops every actor and waits for them, then stops their thread, which
    /// drops what was left on it (timers, children's tasks) and with it
    /// their handles on the store.
    pub async fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self
            .supervisor
            .stop_and_wait(Some("shutdown".into()), Some(timeout))
            .await
        {
            tracing::warn!(error = %e, "actors did not stop in time");
        }
        self.registry.clear();
        self.thread.stop(timeout).await;
    }

    pub fn running_actors(&self) -> usize {
        self.registry.len()
    }

    pub fn broken_projects(&self) -> usize {
        self.broken.len()
    }

    /// API calls waiting on project actors: in all, and on the busiest
    /// one. Walks the registry, so it is for scrapes, not hot paths.
    pub fn queued_calls(&self) -> (usize, usize) {
        self.registry.iter().fold((0, 0), |(total, max), entry| {
            let queued = entry.queued.load(Ordering::Relaxed);
            (total + queued, max.max(queued))
        })
    }

    /// Project actor failures since start (refused writes excluded).
    pub fn actor_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How often a fail point has been reached (tests).
    #[cfg(feature = "fail-points")]
    pub fn fail_point_hits(&self, name: &str) -> u32 {
        self.deps.fail_points.hits(name)
    }

    async fn actor(&self, project: &ProjectId) -> Result<ProjectEntry, Error> {
        if let Some(refused) = refusal(&self.broken, project) {
            return Err(refused);
        }
        if let Some(entry) = self.registry.get(project).map(|e| e.clone())
            && entry.is_running()
        {
            return Ok(entry);
        }
        let reply = self
            .supervisor
            .call(
                |reply| SupervisorMsg::Ensure {
                    project_id: project.clone(),
                    reply,
                },
                Some(self.deps.config.call_timeout()),
            )
            .await;
        match reply {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(Error::Unavailable(format!(
                "project {project} did not start in time; retry"
            ))),
            _ => Err(Error::Unavailable("the daemon is shutting down".into())),
        }
    }

    /// One request to a project actor, bounded in time and in how many may
    /// wait on the same actor.
    async fn call<T: Send + 'static>(
        &self,
        project: &ProjectId,
        timeout: Duration,
        message: impl FnOnce(Reply<T>) -> ProjectMsg,
    ) -> Result<T, Error> {
        // A stopped actor (idle, or failed) is never handed out; one that
        // stops between this lookup and the send answers UNAVAILABLE below
        // without having seen the message, so a retry is safe.
        let entry = self.actor(project).await?;
        let limit = self.deps.config.max_queued_per_project;
        let _slot = QueueSlot::take(&entry.queued, limit).ok_or_else(|| {
            self.deps.metrics.mailbox_refusals.inc();
            Error::ResourceExhausted(format!(
                "project {project} already has {limit} requests waiting; retry later"
            ))
        })?;
        match entry.actor.call(message, Some(timeout)).await {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(Error::Unavailable(format!(
                "project {project} did not answer within {} ms; the request may still complete",
                timeout.as_millis()
            ))),
            // The actor failed while handling this request, or had just
            // failed on an earlier one and dropped this one unhandled: the
            // caller cannot tell which, so the answer does not claim either.
            Ok(CallResult::SenderError) => Err(Error::Unavailable(format!(
                "project {project} failed before answering (the request may not have been applied) and restarts from its stored state; retry, with the same idempotency key if it had one"
            ))),
            Err(_) => Err(Error::Unavailable(format!(
                "project {project} is restarting; retry"
            ))),
        }
    }

    /// One round trip through the project's mailbox.
    pub async fn ping(&self, project: &ProjectId) -> Result<(), Error> {
        let timeout = self.deps.config.call_timeout();
        self.call(project, timeout, |reply| ProjectMsg::Ping { reply })
            .await
    }

    pub async fn deploy(
        &self,
        project: &ProjectId,
        request: NewDeployment,
        origin: Origin,
    ) -> Result<Created, Error> {
        let timeout = self.deps.config.call_timeout();
        self.call(project, timeout, |reply| ProjectMsg::Deploy {
            request: Box::new(request),
            origin,
            reply,
        })
        .await
    }

    pub async fn rollback(
        &self,
        project: &ProjectId,
        source: DeploymentId,
        target: DeploymentId,
        origin: Origin,
    ) -> Result<SwitchOutcome, Error> {
        let timeout = self.deps.config.switch_timeout();
        self.call(project, timeout, |reply| ProjectMsg::Rollback {
            source,
            target,
            origin,
            reply,
        })
        .await
    }

    pub async fn promote(
        &self,
        project: &ProjectId,
        target: DeploymentId,
        origin: Origin,
    ) -> Result<SwitchOutcome, Error> {
        let timeout = self.deps.config.switch_timeout();
        self.call(project, timeout, |reply| ProjectMsg::Promote {
            target,
            origin,
            reply,
        })
        .await
    }

    pub async fn set_environment_regions(
        &self,
        project: &ProjectId,
        environment: String,
        regions: BTreeMap<String, u32>,
        origin: Origin,
    ) -> Result<Project, Error> {
        let timeout = self.deps.config.call_timeout();
        self.call(project, timeout, |reply| {
            ProjectMsg::SetEnvironmentRegions {
                environment,
                regions,
                origin,
                reply,
            }
        })
        .await
    }

    pub async fn cancel(
        &self,
        project: &ProjectId,
        deployment: DeploymentId,
        origin: Origin,
    ) -> Result<Deployment, Error> {
        let timeout = self.deps.config.call_timeout();
        self.call(project, timeout, |reply| ProjectMsg::Cancel {
            deployment,
            origin,
            reply,
        })
        .await
    }

    pub async fn add_custom_domain(
        &self,
        project: &ProjectId,
        fqdn: String,
        origin: Origin,
    ) -> Result<DomainAdded, Error> {
        let timeout = self.deps.config.call_timeout();
        self.call(project, timeout, |reply| ProjectMsg::AddCustomDomain {
            fqdn,
            origin,
            reply,
        })
        .await
    }

    /// Attaches a claimed domain if `found` (what DNS holds at its
    /// challenge record) proves it.
    pub async fn verify_custom_domain(
        &self,
        project: &ProjectId,
        fqdn: String,
        found: Vec<String>,
        origin: Origin,
    ) -> Result<DomainAdded, Error> {
        let timeout = self.deps.config.call_timeout();
        self.call(project, timeout, |reply| ProjectMsg::VerifyCustomDomain {
            fqdn,
            found,
            origin,
            reply,
        })
        .await
    }

    /// Gives up a custom domain, attached or pending.
    pub async fn remove_custom_domain(
        &self,
        project: &ProjectId,
        fqdn: String,
        origin: Origin,
    ) -> Result<Project, Error> {
        let timeout = self.deps.config.call_timeout();
        self.call(project, timeout, |reply| ProjectMsg::RemoveCustomDomain {
            fqdn,
            origin,
            reply,
        })
        .await
    }
}

/// A place in a project's queue of waiting calls, given back on drop (also
/// when the caller's future is dropped mid-call).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(queued: &'a AtomicUsize, limit: usize) -> Option<Self> {
        let before = queued.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(queued))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
