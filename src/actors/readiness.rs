//! The readiness child: one per (deployment, region). It applies the
//! topology, ensures the environment's sentinel and the deployment's network
//! policies, then polls the region until the desired replicas run or the
//! region timeout passes, and reports the outcome to its project actor.
//!
//! Every step is level-triggered: a driver error is retried on the next poll
//! until the deadline, and each poll compares desired with observed state.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::actors::Deps;
use crate::actors::project::messages::ProjectMsg;
use crate::io::region::{
    DriverError, NetworkPolicySpec, RegionDriver, SentinelSpec, TopologySpec, all_running,
};

pub struct ReadinessActor;

pub struct ReadinessArgs {
    pub deps: Deps,
    pub region: String,
    pub driver: Arc<dyn RegionDriver>,
    pub topology: TopologySpec,
    pub sentinel: SentinelSpec,
    pub network_policies: NetworkPolicySpec,
    pub timeout: Duration,
    pub poll_every: Duration,
    pub parent: ActorRef<ProjectMsg>,
    pub ticket: u64,
}

pub struct ReadinessState {
    args: ReadinessArgs,
    deadline: Instant,
    applied: bool,
    last_error: Option<String>,
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
        Ok(ReadinessState {
            deadline: Instant::now() + args.timeout,
            args,
            applied: false,
            last_error: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        ReadinessMsg::Poll: ReadinessMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let remaining = state.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let reason = format!(
                "region {} did not run {} replica(s) within {} ms{}",
                state.args.region,
                state.args.topology.replicas,
                state.args.timeout.as_millis(),
                state
                    .last_error
                    .as_ref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
            report(state, Err(reason));
            myself.stop(None);
            return Ok(());
        }
        if state.applied {
            state.args.deps.fail_point("readiness.polling");
        }
        match tokio::time::timeout(remaining, poll_once(state)).await {
            Ok(Ok(Some(instances))) => {
                report(state, Ok(instances));
                myself.stop(None);
                return Ok(());
            }
            Ok(Ok(None)) => state.last_error = None,
            Ok(Err(e)) => state.last_error = Some(e.0),
            Err(_) => state.last_error = Some("the region driver did not answer".into()),
        }
        myself.send_after(state.args.poll_every, || ReadinessMsg::Poll);
        Ok(())
    }
}

/// One level-triggered pass: make sure everything is applied, then look.
/// `Some(instances)` once the desired replicas run.
async fn poll_once(
    state: &mut ReadinessState,
) -> Result<Option<Vec<crate::model::Instance>>, DriverError> {
    let driver = &state.args.driver;
    if !state.applied {
        driver.apply_topology(&state.args.topology).await?;
        driver.ensure_sentinel(&state.args.sentinel).await?;
        driver
            .ensure_network_policies(&state.args.network_policies)
            .await?;
        state.applied = true;
    }
    let instances = driver.instances(&state.args.topology.deployment_id).await?;
    Ok(all_running(&instances, state.args.topology.replicas).then_some(instances))
}

fn report(state: &ReadinessState, result: Result<Vec<crate::model::Instance>, String>) {
    let _ = state.args.parent.cast(ProjectMsg::RegionSettled {
        deployment: state.args.topology.deployment_id.clone(),
        ticket: state.args.ticket,
        region: state.args.region.clone(),
        result,
    });
}
