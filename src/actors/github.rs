//! The commit status reporter: tells GitHub the state of every deployment
//! it is owed a status for, level-triggered from the store.
//!
//! The writer puts a deployment into the `github_outbox` table in the
//! transaction that stores its new status (`io::store::github`), so a
//! status owed is as durable as the deployment. This task reads the
//! outbox at start and whenever a git deployment's change was committed
//! (a [`DeploymentEvents`] notification), works out the status each
//! deployment calls for *now* from its stored record, sends it, and
//! settles the row (`Mutation::SettleStatus`), which keeps it when the
//! deployment moved on meanwhile. A crash at any point leaves the row, and
//! the next start sends the state of that moment. Slow I/O never touches a
//! project actor: the actors only store their decisions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::actors::DeploymentEvents;
use crate::config::GithubConfig;
use crate::error::Error;
use crate::io::github::{CommitStatuses, PostError};
use crate::io::store::{Mutation, Store};
use crate::model::github::{CommitStatus, ReportedStatus};
use crate::model::{DeploymentId, RouteKind, now_millis};

/// Outbox rows looked at per pass; rows beyond wait for the next pass.
const BATCH: usize = 1024;
/// Statuses on their way to GitHub at once.
const MAX_SENDING: usize = 8;

/// A handle to the running reporter; [`StatusReporter::stop`] ends it
/// (what it had not settled is sent again at the next start).
#[derive(Clone)]
pub struct StatusReporter {
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl StatusReporter {
    /// Starts the reporter; it first works off whatever the outbox holds.
    /// Without `api` (no token configured) it only records each status as
    /// not sent, so nothing piles up to be sent if a token comes later.
    pub fn start(
        store: Store,
        events: &DeploymentEvents,
        api: Option<Arc<dyn CommitStatuses>>,
        config: &GithubConfig,
    ) -> Self {
        let worker = Worker {
            store,
            api,
            wake: events.git_committed(),
            retry: Backoff {
                first: config.status_retry(),
                max: config.status_retry_max(),
                attempts: config.status_max_attempts,
            },
            scheme: config.target_url_scheme.clone(),
        };
        Self {
            task: Arc::new(Mutex::new(Some(tokio::spawn(worker.run())))),
        }
    }

    pub fn stop(&self) {
        if let Some(task) = self.task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }
}

#[derive(Clone, Copy)]
struct Backoff {
    first: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    /// The wait before attempt `failed + 1`.
    fn after(&self, failed: u32) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32 << failed.saturating_sub(1).min(20));
        doubled.min(self.max)
    }
}

/// A deployment whose last attempt failed.
struct Retry {
    failed: u32,
    due: Instant,
}

/// What one attempt came to.
enum Sent {
    /// Nothing more to send for now (`reported` is what GitHub was given,
    /// if anything).
    Settle(Option<ReportedStatus>),
    /// Try again after a backoff.
    Failed(String),
}

#[derive(Clone)]
struct Worker {
    store: Store,
    api: Option<Arc<dyn CommitStatuses>>,
    wake: Arc<Notify>,
    retry: Backoff,
    scheme: String,
}

impl Worker {
    async fn run(self) {
        let mut retries: HashMap<DeploymentId, Retry> = HashMap::new();
        let mut sending: JoinSet<(DeploymentId, Sent)> = JoinSet::new();
        let mut in_flight: HashSet<DeploymentId> = HashSet::new();
        let mut tasks: HashMap<tokio::task::Id, DeploymentId> = HashMap::new();
        loop {
            match self.store.status_outbox(BATCH) {
                Ok(owed) => {
                    if owed.len() < BATCH {
                        retries.retain(|id, _| owed.contains(id));
                    }
                    let now = Instant::now();
                    for id in owed {
                        if in_flight.len() >= MAX_SENDING {
                            break;
                        }
                        if in_flight.contains(&id) || retries.get(&id).is_some_and(|r| r.due > now)
                        {
                            continue;
                        }
                        let worker = self.clone();
                        let task = id.clone();
                        let handle = sending.spawn(async move {
                            let sent = worker.attempt(&task).await;
                            (task, sent)
                        });
                        tasks.insert(handle.id(), id.clone());
                        in_flight.insert(id);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the GitHub status outbox");
                    tokio::time::sleep(self.retry.first).await;
                    continue;
                }
            }
            let next_due = retries
                .iter()
                .filter(|(id, _)| !in_flight.contains(*id))
                .map(|(_, r)| r.due)
                .min();
            tokio::select! {
                () = self.wake.notified() => {}
                Some(joined) = sending.join_next_with_id(), if !sending.is_empty() => {
                    let (task, id, sent) = match joined {
                        Ok((task, (id, sent))) => (task, id, sent),
                        // A panicked attempt counts as a failed one.
                        Err(e) => match tasks.get(&e.id()).cloned() {
                            Some(id) => (e.id(), id, Sent::Failed(format!("the attempt failed: {e}"))),
                            None => continue,
                        },
                    };
                    tasks.remove(&task);
                    in_flight.remove(&id);
                    self.finish(id, sent, &mut retries).await;
                }
                () = sleep_until(next_due), if next_due.is_some() => {}
            }
        }
    }

    /// Settles the outbox row, or schedules the next attempt (giving up,
    /// and settling, after the last).
    async fn finish(
        &self,
        id: DeploymentId,
        sent: Sent,
        retries: &mut HashMap<DeploymentId, Retry>,
    ) {
        let reported = match sent {
            Sent::Settle(reported) => reported,
            Sent::Failed(why) => {
                let failed = retries.get(&id).map_or(0, |r| r.failed) + 1;
                if failed < self.retry.attempts {
                    tracing::debug!(deployment = %id, attempt = failed, error = %why, "commit status not delivered; retrying");
                    retries.insert(
                        id,
                        Retry {
                            failed,
                            due: Instant::now() + self.retry.after(failed),
                        },
                    );
                    return;
                }
                tracing::warn!(deployment = %id, attempts = failed, error = %why, "giving up on a commit status");
                match self.store.deployment(&id) {
                    Ok(Some(deployment)) => Some(ReportedStatus {
                        state: crate::model::github::CommitState::of(deployment.status),
                        accepted: false,
                        at: now_millis(),
                    }),
                    _ => None,
                }
            }
        };
        retries.remove(&id);
        let settled = self
            .store
            .commit(vec![Mutation::SettleStatus {
                deployment_id: id.clone(),
                reported,
            }])
            .await;
        if let Err(e) = settled {
            // The row stays; the next pass sends (or settles) it again.
            tracing::warn!(deployment = %id, error = %e, "cannot record a commit status");
            retries.insert(
                id,
                Retry {
                    failed: 1,
                    due: Instant::now() + self.retry.first,
                },
            );
        }
    }

    /// Sends the status `id` calls for now, unless GitHub has it already
    /// or it is owed none any more (the repository was disconnected).
    async fn attempt(&self, id: &DeploymentId) -> Sent {
        let status = match self.status_of(id) {
            Ok(Some(status)) => status,
            Ok(None) => return Sent::Settle(None),
            Err(e) => return Sent::Failed(e.to_string()),
        };
        let reported = ReportedStatus {
            state: status.state,
            accepted: true,
            at: now_millis(),
        };
        let Some(api) = &self.api else {
            return Sent::Settle(Some(ReportedStatus {
                accepted: false,
                ..reported
            }));
        };
        match api.post(&status).await {
            Ok(()) => Sent::Settle(Some(reported)),
            Err(PostError::Transient(why)) => Sent::Failed(why),
            Err(PostError::Permanent(why)) => {
                tracing::warn!(deployment = %id, error = %why, "GitHub refused a commit status; not sending it again");
                Sent::Settle(Some(ReportedStatus {
                    accepted: false,
                    ..reported
                }))
            }
        }
    }

    fn status_of(&self, id: &DeploymentId) -> Result<Option<CommitStatus>, Error> {
        let Some(deployment) = self.store.deployment(id)? else {
            return Ok(None);
        };
        let Some(connection) = self.store.repository_connection(&deployment.project_id)? else {
            return Ok(None);
        };
        if !connection.reports(&deployment) {
            return Ok(None);
        }
        let target = self
            .store
            .routes_named(&deployment.hostnames)?
            .into_iter()
            .find(|r| r.kind == RouteKind::Deployment && r.deployment_id == deployment.id)
            .map(|r| r.fqdn)
            .or_else(|| deployment.hostnames.first().cloned())
            .map(|host| format!("{}://{host}", self.scheme));
        let status = CommitStatus::of(&connection, &deployment, target);
        let already = self.store.reported_status(id)?.map(|r| r.state);
        Ok(status.filter(|s| already != Some(s.state)))
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
