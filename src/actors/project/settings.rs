//! Project settings that go through the actor because deploys read them:
//! environment regions and custom domains.
//!
//! A custom domain is attached in two steps, because another project may
//! claim the same name at the same moment: first the claim alone is stored
//! (nothing in this actor's memory changes, so losing the race is just an
//! `ALREADY_EXISTS` answer), then, once the claim is ours, the project
//! record and the `LIVE` route.

use std::collections::BTreeMap;

use crate::actors::project::core::ProjectCore;
use crate::actors::project::effects::{Effects, FollowUp, OnReject};
use crate::actors::project::messages::{DomainAdded, Reply};
use crate::actors::project::replay;
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::project::{PRODUCTION, Project};
use crate::model::quote::quoted;
use crate::model::{Origin, Route, RouteKind, StoredReply};

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

fn rebuild_domain(core: &ProjectCore, stored: StoredReply) -> Option<DomainAdded> {
    match stored {
        StoredReply::Domain { fqdn } => Some(DomainAdded {
            project: core.project.clone(),
            route: core.fixed_routes.get(&fqdn).cloned(),
        }),
        _ => None,
    }
}

/// Step one: claim the name for this project.
pub(super) fn add_custom_domain(
    core: &mut ProjectCore,
    fqdn: String,
    origin: Origin,
    reply: Reply<DomainAdded>,
) {
    let Some(reply) = replay::check(core, origin.idempotency.as_ref(), reply, rebuild_domain)
    else {
        return;
    };
    let apex = &core.deps.config.apex_domain;
    if fqdn == *apex || fqdn.ends_with(&format!(".{apex}")) {
        let message = format!(
            "{fqdn} is under {apex}, where deployd generates hostnames; use a domain of your own"
        );
        core.answer(reply, Err(Error::invalid(message)));
        return;
    }
    if core.project.custom_domains.contains(&fqdn) || core.claiming.contains(&fqdn) {
        let message = format!("domain {fqdn} is already attached to this project");
        core.answer(reply, Err(Error::AlreadyExists(message)));
        return;
    }
    let limit = core.deps.config.max_custom_domains_per_project;
    if core.project.custom_domains.len() + core.claiming.len() >= limit {
        let message = format!(
            "project {} already has {limit} custom domains, the most this daemon allows",
            core.project.id
        );
        core.answer(reply, Err(Error::ResourceExhausted(message)));
        return;
    }
    match core.holder(&fqdn) {
        Ok(Some(holder)) if holder.project_id() != &core.project.id => {
            let message = format!("domain {fqdn} is already in use by another project");
            core.answer(reply, Err(Error::AlreadyExists(message)));
            return;
        }
        Ok(_) => {}
        Err(e) => {
            core.answer(reply, Err(e));
            return;
        }
    }
    core.claiming.insert(fqdn.clone());
    let mut effects = Effects::new();
    effects.write(Mutation::ClaimDomain {
        project_id: core.project.id.clone(),
        fqdn: fqdn.clone(),
    });
    effects.follow_up = Some(FollowUp::DomainClaimed {
        fqdn,
        origin,
        reply,
    });
    // Memory is untouched until the claim is ours: a lost race is only an
    // answer.
    effects.on_reject = OnReject::Answered;
    core.push(effects);
}

/// Step two: the claim was stored (or refused). Attach the domain: a
/// `LIVE` hostname of the production environment, pointing at the live
/// deployment if there is one.
pub(super) fn domain_claimed(
    core: &mut ProjectCore,
    fqdn: String,
    origin: Origin,
    reply: Reply<DomainAdded>,
    claimed: Result<(), Error>,
) {
    core.claiming.remove(&fqdn);
    if let Err(e) = claimed {
        core.answer(reply, Err(e));
        return;
    }
    core.project.custom_domains.push(fqdn.clone());
    let mut effects = Effects::new();
    effects.write(Mutation::PutProject(core.project.clone()));
    let route = core.project.live.as_ref().map(|live| Route {
        fqdn: fqdn.clone(),
        project_id: core.project.id.clone(),
        environment: PRODUCTION.to_string(),
        kind: RouteKind::Live,
        deployment_id: live.id.clone(),
        deployment_sequence: live.sequence,
    });
    if let Some(route) = &route {
        core.fixed_routes.insert(fqdn.clone(), route.clone());
        effects.write(Mutation::PutRoute(route.clone()));
    }
    let stored = StoredReply::Domain { fqdn };
    effects.writes.extend(replay::record(core, &origin, stored));
    let added = DomainAdded {
        project: core.project.clone(),
        route,
    };
    effects.answer(reply, Ok(added));
    core.push(effects);
}
