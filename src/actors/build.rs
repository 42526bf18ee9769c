//! The build child: waits for a build slot, runs one build and reports the
//! outcome to its project actor as a message. The build runs in a task the
//! child owns, so stopping the child (a cancel, a newer deployment of the
//! branch, the project failing it) aborts the task: its slot or its place
//! in the queue goes back, and the builder's future is dropped, which kills
//! what the builder started (`kill_on_drop`). Every output line goes to the
//! build log on disk and to the deployment's watchers as it comes.

use std::sync::{Arc, Mutex, PoisonError};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::AbortHandle;

use crate::actors::Deps;
use crate::actors::build_slots::Priority;
use crate::actors::project::messages::ProjectMsg;
use crate::io::builder::{BuildError, BuildRequest, Builder};

pub struct BuildActor;

pub struct BuildArgs {
    pub deps: Deps,
    pub builder: Arc<dyn Builder>,
    pub request: BuildRequest,
    pub priority: Priority,
    pub parent: ActorRef<ProjectMsg>,
    pub ticket: u64,
}

pub enum BuildMsg {}

impl Actor for BuildActor {
    type Msg = BuildMsg;
    /// The build task, aborted when the child stops.
    type State = AbortHandle;
    type Arguments = BuildArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BuildArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (parent, deployment, ticket) = (
            args.parent.clone(),
            args.request.deployment_id.clone(),
            args.ticket,
        );
        let build = tokio::spawn(run(args));
        let abort = build.abort_handle();
        tokio::spawn(async move {
            // A builder that panics fails its deployment, as a crashed
            // child would; an aborted build was stopped on purpose.
            if let Err(e) = build.await
                && e.is_panic()
            {
                let _ = parent.cast(ProjectMsg::BuildFinished {
                    deployment,
                    ticket,
                    result: Err(BuildError("internal error: the build panicked".into())),
                });
            }
            myself.stop(None);
        });
        Ok(abort)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        task: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        task.abort();
        Ok(())
    }
}

async fn run(args: BuildArgs) {
    let BuildArgs {
        deps,
        builder,
        request,
        priority,
        parent,
        ticket,
    } = args;
    let deployment = request.deployment_id.clone();
    let report = |queued: bool| {
        let _ = parent.cast(ProjectMsg::BuildSlot {
            deployment: deployment.clone(),
            ticket,
            queued,
        });
    };
    let _slot = match deps.build_slots.try_acquire(priority) {
        Ok(slot) => slot,
        Err(queued) => {
            report(true);
            let slot = queued.wait().await;
            report(false);
            slot
        }
    };
    let log = Mutex::new(deps.build_logs.open(&deployment));
    let progress = |line: String| {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .line(&line);
        deps.events.publish_line(&deployment, &line);
    };
    deps.fail_point("build.started");
    // A failed build's error carries its last lines (the builder puts
    // them there); the whole output is in the log.
    let result = builder.build(&request, &progress).await;
    let _ = parent.cast(ProjectMsg::BuildFinished {
        deployment,
        ticket,
        result,
    });
}
