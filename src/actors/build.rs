//! The build child: runs one build and reports the outcome to its project
//! actor as a message. The build is awaited here, in the child's own
//! mailbox, so the project actor stays free for rollbacks and promotes.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::actors::Deps;
use crate::actors::project::messages::ProjectMsg;
use crate::io::builder::{BuildRequest, Builder};

pub struct BuildActor;

pub struct BuildArgs {
    pub deps: Deps,
    pub builder: Arc<dyn Builder>,
    pub request: BuildRequest,
    pub parent: ActorRef<ProjectMsg>,
    pub ticket: u64,
}

pub enum BuildMsg {
    Run,
}

impl Actor for BuildActor {
    type Msg = BuildMsg;
    type State = Option<BuildArgs>;
    type Arguments = BuildArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BuildArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(BuildMsg::Run)?;
        Ok(Some(args))
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        BuildMsg::Run: BuildMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(args) = state.take() else {
            return Ok(());
        };
        let deployment = args.request.deployment_id.clone();
        let parent = args.parent.clone();
        let progress = {
            let deployment = deployment.clone();
            move |line: String| {
                let _ = parent.cast(ProjectMsg::BuildProgress {
                    deployment: deployment.clone(),
                    ticket: args.ticket,
                    line,
                });
            }
        };
        args.deps.fail_point("build.started");
        let result = args.builder.build(&args.request, &progress).await;
        let _ = args.parent.cast(ProjectMsg::BuildFinished {
            deployment,
            ticket: args.ticket,
            result,
        });
        myself.stop(None);
        Ok(())
    }
}
