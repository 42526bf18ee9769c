//! Project settings that go through the actor because deploys read them:
//! environment regions. (Custom domains have their own file,
//! `domains.rs`.)

use std::collections::BTreeMap;

use crate::actors::project::core::ProjectCore;
use crate::actors::project::effects::Effects;
use crate::actors::project::messages::Reply;
use crate::actors::project::replay;
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::project::Project;
use crate::model::quote::quoted;
use crate::model::{Origin, StoredReply};

pub(super) fn set_environment_regions(
    core: &mut ProjectCore,
    environment: String,
    regions: BTreeMap<String, u32>,
    origin: Origin,
    reply: Reply<Project>,
) {
    let Some(reply) = replay::check(core, origin.idempotency.as_ref(), reply, |core, stored| {
        matches!(stored, StoredReply::Project).then(|| core.project.clone())
    }) else {
        return;
    };
    if let Some(unknown) = regions.keys().find(|r| !core.deps.regions.contains(r)) {
        let known: Vec<&str> = core.deps.regions.names().collect();
        let message = format!(
            "region {unknown} is not served by this daemon (known: {})",
            known.join(", ")
        );
        core.answer(reply, Err(Error::invalid(message)));
        return;
    }
    let project_id = core.project.id.clone();
    let Some(env) = core.project.environment_mut(&environment) else {
        let message = format!(
            "project {project_id} has no environment {}",
            quoted(&environment)
        );
        core.answer(reply, Err(Error::not_found(message)));
        return;
    };
    env.regions = regions;
    let project = core.project.clone();
    let mut effects = Effects::new();
    effects.write(Mutation::PutProject(project.clone()));
    effects
        .writes
        .extend(replay::record(core, &origin, StoredReply::Project));
    effects.answer(reply, Ok(project));
    core.push(effects);
}
