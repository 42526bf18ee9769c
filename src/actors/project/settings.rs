//! Project settings that go through the actor because deploys read them:
//! environment regions and custom domains.

use std::collections::BTreeMap;

use crate::actors::project::messages::Reply;
use crate::actors::project::state::ProjectState;
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::project::Project;
use crate::model::{Route, RouteKind};

pub fn set_environment_regions(
    state: &mut ProjectState,
    environment: String,
    regions: BTreeMap<String, u32>,
    reply: Reply<Project>,
) {
    if let Some(unknown) = regions.keys().find(|r| !state.deps.regions.contains(r)) {
        let known: Vec<&str> = state.deps.regions.names().collect();
        let _ = reply.send(Err(Error::invalid(format!(
            "region {unknown} is not served by this daemon (known: {})",
            known.join(", ")
        ))));
        return;
    }
    let project_id = state.project.id.clone();
    let Some(env) = state.project.environment_mut(&environment) else {
        let _ = reply.send(Err(Error::not_found(format!(
            "project {project_id} has no environment {environment:?}"
        ))));
        return;
    };
    env.regions = regions;
    let project = state.project.clone();
    state.submit_and_reply(vec![Mutation::PutProject(project.clone())], reply, project);
}

/// Attaches a custom domain: a `LIVE` hostname of the production
/// environment, pointing at the live deployment if there is one.
pub fn add_custom_domain(
    state: &mut ProjectState,
    fqdn: String,
    reply: Reply<(Project, Option<Route>)>,
) {
    let apex = &state.deps.config.apex_domain;
    if fqdn == *apex || fqdn.ends_with(&format!(".{apex}")) {
        let _ = reply.send(Err(Error::invalid(format!(
            "{fqdn} is under {apex}, where deployd generates hostnames; use a domain of your own"
        ))));
        return;
    }
    if state.project.custom_domains.contains(&fqdn) {
        let _ = reply.send(Err(Error::AlreadyExists(format!(
            "domain {fqdn} is already attached to this project"
        ))));
        return;
    }
    match state.deps.store.domain_owner(&fqdn) {
        Ok(Some(owner)) if owner != state.project.id.as_str() => {
            let _ = reply.send(Err(Error::AlreadyExists(format!(
                "domain {fqdn} is already in use by another project"
            ))));
            return;
        }
        Ok(_) => {}
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    }
    state.project.custom_domains.push(fqdn.clone());
    let mut mutations = vec![
        Mutation::ClaimDomain {
            project_id: state.project.id.clone(),
            fqdn: fqdn.clone(),
        },
        Mutation::PutProject(state.project.clone()),
    ];
    let route = state.project.live.as_ref().map(|live| Route {
        fqdn: fqdn.clone(),
        project_id: state.project.id.clone(),
        environment: crate::model::project::PRODUCTION.to_string(),
        kind: RouteKind::Live,
        deployment_id: live.id.clone(),
        deployment_sequence: live.sequence,
    });
    if let Some(route) = &route {
        state.routes.insert(fqdn, route.clone());
        mutations.push(Mutation::PutRoute(route.clone()));
    }
    let project = state.project.clone();
    state.submit_and_reply(mutations, reply, (project, route));
}
