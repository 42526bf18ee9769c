//! The readiness child: one per (deployment, region), for deploys and for
//! waking a `STANDBY` deployment. It only looks: the reconciler makes the
//! driver calls, this child asks the region what runs until the desired
//! replicas do, the region reports a failure that waiting cannot fix, or
//! the region timeout passes, and reports a typed [`RegionOutcome`] to its
//! project actor.
//!
//! Polls back off (doubling up to [`MAX_POLL_INTERVAL`]), so thousands of
//! deployments stuck in slow regions cost little CPU. A driver that hears
//! of changes (`RegionDriver::changes`: the kubernetes driver's watch)
//! wakes the child as soon as something of its deployment changed; the
//! poll timer stays as the safety net for when it hears nothing.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::actors::Deps;
use crate::actors::project::messages::ProjectMsg;
use crate::io::region::WorkloadSpec;
use crate::model::Instance;

/// Polls never wait longer than this (unless `readiness_poll_ms` is longer).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How a region settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionOutcome {
    /// The desired replicas run.
    Ready(Vec<Instance>),
    Failed(RegionFailure),
}

/// Why a region did not get ready, in words for the deployment's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionFailure {
    #[error(
        "region {region} did not run {replicas} replica(s) within {} ms{}",
        after.as_millis(),
        last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    TimedOut {
        region: String,
        replicas: u32,
        after: Duration,
        last_error: Option<String>,
    },
    /// The region says waiting cannot help (a container exited, an image
    /// cannot be pulled, the spec is invalid).
    #[error("region {region}: {reason}")]
    Failed { region: String, reason: String },
    /// A worker crashed; not the region's fault.
    #[error("internal error in a worker: {0}")]
    Crashed(String),
}

pub struct ReadinessActor;

pub struct ReadinessArgs {
    pub deps: Deps,
    pub region: String,
    pub spec: WorkloadSpec,
    pub parent: ActorRef<ProjectMsg>,
    pub ticket: u64,
}

pub struct ReadinessState {
    args: ReadinessArgs,
    deadline: Instant,
    interval: Duration,
    last_error: Option<String>,
    /// From the driver, if it hears of changes: bumped when something of
    /// this deployment changed in the region.
    changes: Option<watch::Receiver<u64>>,
    /// The task that sends the next `Poll` (a change or the timer).
    next_poll: Option<JoinHandle<()>>,
}

pub enum ReadinessMsg {
    Poll,
}

impl Actor for ReadinessActor {
    type Msg = ReadinessMsg;
    type State = ReadinessState;
    type Arguments = ReadinessArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ReadinessArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(ReadinessMsg::Poll)?;
        // Subscribed before the first look, so no change after it is missed.
        let changes = args
            .deps
            .regions
            .get(&args.region)
            .and_then(|driver| driver.changes(&args.spec));
        Ok(ReadinessState {
            deadline: Instant::now() + args.deps.config.region_timeout(),
            interval: args.deps.config.readiness_poll(),
            args,
            last_error: None,
            changes,
            next_poll: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(next_poll) = state.next_poll.take() {
            next_poll.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        ReadinessMsg::Poll: ReadinessMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.args.deps.fail_point("readiness.polling");
        // Changes from here on wake the next look; those this look sees
        // may wake one more, which finds nothing new.
        if let Some(changes) = state.changes.as_mut() {
            changes.borrow_and_update();
        }
        match poll_once(state).await {
            Some(outcome) => {
                let _ = state.args.parent.cast(ProjectMsg::RegionSettled {
                    deployment: state.args.spec.deployment_id.clone(),
                    ticket: state.args.ticket,
                    region: state.args.region.clone(),
                    outcome,
                });
                myself.stop(None);
            }
            None => {
                let remaining = state.deadline.saturating_duration_since(Instant::now());
                let delay = state.interval.min(remaining);
                match state.changes.clone() {
                    Some(changes) => {
                        state.next_poll =
                            Some(tokio::spawn(poll_on_change(myself, changes, delay)));
                    }
                    None => {
                        myself.send_after(delay, || ReadinessMsg::Poll);
                    }
                }
                let cap = MAX_POLL_INTERVAL.max(state.args.deps.config.readiness_poll());
                state.interval = (state.interval * 2).min(cap);
            }
        }
        Ok(())
    }
}

/// Sends `Poll` when the deployment changed in the region or after
/// `delay`, whichever comes first.
async fn poll_on_change(
    myself: ActorRef<ReadinessMsg>,
    mut changes: watch::Receiver<u64>,
    delay: Duration,
) {
    let changed = async {
        if changes.changed().await.is_err() {
            // The driver is gone: only the timer is left.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = changed => {}
    }
    let _ = myself.cast(ReadinessMsg::Poll);
}

/// One look at the region; `Some` once it settled.
async fn poll_once(state: &mut ReadinessState) -> Option<RegionOutcome> {
    let args = &state.args;
    let region = &args.region;
    let apply_error = args
        .deps
        .reconciler
        .last_error(&args.spec.deployment_id, region);
    if let Some(error) = &apply_error {
        if error.permanent {
            return Some(RegionOutcome::Failed(RegionFailure::Failed {
                region: region.clone(),
                reason: error.message.clone(),
            }));
        }
        state.last_error = Some(error.message.clone());
    }
    let remaining = state.deadline.saturating_duration_since(Instant::now());
    if !remaining.is_zero() {
        let Some(driver) = args.deps.regions.get(region) else {
            return Some(RegionOutcome::Failed(RegionFailure::Failed {
                region: region.clone(),
                reason: "the region is not served by this daemon".into(),
            }));
        };
        match tokio::time::timeout(remaining, driver.observe(&args.spec)).await {
            Ok(Ok(observed)) => {
                if let Some(reason) = observed.failed {
                    return Some(RegionOutcome::Failed(RegionFailure::Failed {
                        region: region.clone(),
                        reason,
                    }));
                }
                if observed.is_ready(args.spec.replicas) {
                    // Before the actor hears of it and points routes here.
                    args.deps.backends.set_observed(
                        &args.spec.deployment_id,
                        region,
                        &observed.instances,
                    );
                    return Some(RegionOutcome::Ready(observed.instances));
                }
                if apply_error.is_none() {
                    state.last_error = None;
                }
            }
            Ok(Err(e)) if e.permanent => {
                return Some(RegionOutcome::Failed(RegionFailure::Failed {
                    region: region.clone(),
                    reason: e.message,
                }));
            }
            Ok(Err(e)) => state.last_error = Some(e.message),
            Err(_) => state.last_error = Some("the region driver did not answer".into()),
        }
    }
    if Instant::now() >= state.deadline {
        return Some(RegionOutcome::Failed(RegionFailure::TimedOut {
            region: region.clone(),
            replicas: args.spec.replicas,
            after: args.deps.config.region_timeout(),
            last_error: state.last_error.clone(),
        }));
    }
    None
}
