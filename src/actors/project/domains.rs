//! Custom domains: claimed, proven, attached.
//!
//! With `[domains] verification = "dns"` (the default), `add_custom_domain`
//! only records a pending claim in the project record (no route, no hold on
//! the name: claims of one domain by several projects coexist) and answers
//! with the TXT record that proves it. `verify_custom_domain` gets what DNS
//! answered (the API handler looked it up: slow I/O stays out of the
//! mailbox) and, if the project's token is there, attaches the domain.
//! With `"none"` a claim is attached at once, unproven.
//!
//! `remove_custom_domain` gives a domain up, pending or attached; an
//! attached one loses its route and its claim, and is free again.
//!
//! Attaching takes two steps, because another project may attach the same
//! name at the same moment: first the claim alone is stored (nothing in
//! this actor's memory changes, so losing the race is just an
//! `ALREADY_EXISTS` answer), then, once the name is ours, the project
//! record and the `LIVE` route.

use crate::actors::project::core::ProjectCore;
use crate::actors::project::effects::{Effects, FollowUp, OnReject};
use crate::actors::project::messages::{DomainAdded, Reply};
use crate::actors::project::replay;
use crate::config::DomainVerification;
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::domains::{self, DomainChallenge};
use crate::model::project::{PRODUCTION, Project};
use crate::model::{Origin, Route, RouteKind, StoredReply};

/// The answer about `fqdn` as the project stands: its route if attached,
/// its challenge if pending.
fn domain_state(core: &ProjectCore, fqdn: &str) -> DomainAdded {
    DomainAdded {
        project: core.project.clone(),
        route: core.fixed_routes.get(fqdn).cloned(),
        challenge: challenge(core, fqdn),
    }
}

fn challenge(core: &ProjectCore, fqdn: &str) -> Option<DomainChallenge> {
    let pending = core.project.pending_domains.iter().any(|d| d == fqdn);
    let token = core.project.domain_token.as_deref()?;
    pending.then(|| DomainChallenge::new(fqdn, token))
}

fn rebuild_domain(core: &ProjectCore, stored: StoredReply) -> Option<DomainAdded> {
    match stored {
        StoredReply::Domain { fqdn } => Some(domain_state(core, &fqdn)),
        _ => None,
    }
}

/// `AddCustomDomain`: a pending claim (dns) or step one of attaching
/// (none).
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
    let verification = core.deps.config.domains.verification;
    if let Err(e) = check_claim(core, &fqdn, verification) {
        core.answer(reply, Err(e));
        return;
    }
    if core.project.pending_domains.contains(&fqdn) {
        // Asked again: the same challenge, nothing new to store.
        let state = domain_state(core, &fqdn);
        core.answer(reply, Ok(state));
        return;
    }
    match verification {
        DomainVerification::Dns => claim_pending(core, fqdn, origin, reply),
        DomainVerification::None => attach(core, fqdn, origin, reply),
    }
}

/// Why `fqdn` cannot be claimed by this project now, if it cannot.
fn check_claim(
    core: &ProjectCore,
    fqdn: &str,
    verification: DomainVerification,
) -> Result<(), Error> {
    let apex = &core.deps.config.apex_domain;
    if fqdn == apex || fqdn.ends_with(&format!(".{apex}")) {
        return Err(Error::invalid(format!(
            "{fqdn} is under {apex}, where deployd generates hostnames; use a domain of your own"
        )));
    }
    if verification == DomainVerification::Dns && !domains::has_room_for_challenge(fqdn) {
        return Err(Error::invalid(format!(
            "{fqdn} is too long to be verified: {} would exceed 253 characters",
            domains::challenge_name(fqdn)
        )));
    }
    if core.project.custom_domains.iter().any(|d| d == fqdn) || core.claiming.contains(fqdn) {
        return Err(Error::AlreadyExists(format!(
            "domain {fqdn} is already attached to this project"
        )));
    }
    let pending = core.project.pending_domains.iter().any(|d| d == fqdn);
    let limit = core.deps.config.max_custom_domains_per_project;
    let claimed = core.project.custom_domains.len()
        + core.project.pending_domains.len()
        + core.claiming.len();
    if !pending && claimed >= limit {
        return Err(Error::ResourceExhausted(format!(
            "project {} already has {limit} custom domains (attached or pending), the most this daemon allows",
            core.project.id
        )));
    }
    taken_by_another(core, fqdn)
}

/// `ALREADY_EXISTS` if another project holds `fqdn` (attached it, or a
/// generated name). Pending claims hold nothing, so they never count.
fn taken_by_another(core: &ProjectCore, fqdn: &str) -> Result<(), Error> {
    match core.holder(fqdn)? {
        Some(holder) if holder.project_id() != &core.project.id => Err(Error::AlreadyExists(
            format!("domain {fqdn} is already in use by another project"),
        )),
        _ => Ok(()),
    }
}

/// Records the claim and answers with the record that proves it.
fn claim_pending(core: &mut ProjectCore, fqdn: String, origin: Origin, reply: Reply<DomainAdded>) {
    if core.project.domain_token.is_none() {
        core.project.domain_token = Some(domains::generate_token());
    }
    core.project.pending_domains.push(fqdn.clone());
    let mut effects = Effects::new();
    effects.write(Mutation::PutProject(core.project.clone()));
    let answer = domain_state(core, &fqdn);
    let stored = StoredReply::Domain { fqdn };
    effects.writes.extend(replay::record(core, &origin, stored));
    effects.answer(reply, Ok(answer));
    core.push(effects);
}

/// `VerifyCustomDomain`: `found` is what DNS holds at the domain's
/// challenge record. Attaches the domain if the project's token is there;
/// otherwise refuses and changes nothing.
pub(super) fn verify_custom_domain(
    core: &mut ProjectCore,
    fqdn: String,
    found: Vec<String>,
    origin: Origin,
    reply: Reply<DomainAdded>,
) {
    if core.project.custom_domains.contains(&fqdn) {
        // Verified before: the same answer again (the request is
        // idempotent by itself).
        let state = domain_state(core, &fqdn);
        core.answer(reply, Ok(state));
        return;
    }
    if core.claiming.contains(&fqdn) {
        let message = format!("domain {fqdn} is being attached by another request; try again");
        core.answer(reply, Err(Error::Aborted(message)));
        return;
    }
    let Some(challenge) = challenge(core, &fqdn) else {
        let message = format!(
            "domain {fqdn} is not claimed by project {}; add it first (AddCustomDomain)",
            core.project.id
        );
        core.answer(reply, Err(Error::precondition(message)));
        return;
    };
    if !challenge.is_proven_by(&found) {
        core.answer(reply, Err(challenge.not_proven(&found)));
        return;
    }
    if let Err(e) = taken_by_another(core, &fqdn) {
        core.answer(reply, Err(e));
        return;
    }
    attach(core, fqdn, origin, reply);
}

/// `RemoveCustomDomain`: gives up `fqdn`, attached or pending. The
/// release of its route and claim goes in the same submission as the
/// project record, so no reader ever sees the domain routed but unlisted
/// (or listed and free for another project). A retry after success finds
/// nothing and answers `NOT_FOUND`.
pub(super) fn remove_custom_domain(
    core: &mut ProjectCore,
    fqdn: String,
    origin: Origin,
    reply: Reply<Project>,
) {
    if core.claiming.contains(&fqdn) {
        // Its claim may be about to land: removing now would leave it
        // stored with no project listing it.
        let message = format!("domain {fqdn} is being attached by another request; try again");
        core.answer(reply, Err(Error::Aborted(message)));
        return;
    }
    let attached = core.project.custom_domains.contains(&fqdn);
    let pending = core.project.pending_domains.contains(&fqdn);
    if !attached && !pending {
        let message = format!(
            "domain {fqdn} is neither attached to nor claimed by project {}",
            core.project.id
        );
        core.answer(reply, Err(Error::not_found(message)));
        return;
    }
    core.project.custom_domains.retain(|d| *d != fqdn);
    core.project.pending_domains.retain(|d| *d != fqdn);
    let mut effects = Effects::new();
    effects.write(Mutation::PutProject(core.project.clone()));
    core.fixed_routes.remove(&fqdn);
    // Also for a pending claim: an attach interrupted between its two
    // steps (a crash, a failed second commit) leaves the name claimed by
    // this project while the record still calls it pending. The release
    // deletes only what this project holds, so it is harmless otherwise.
    effects.write(Mutation::ReleaseDomain {
        project_id: core.project.id.clone(),
        fqdn,
    });
    effects.writes.extend(replay::audit(core, &origin));
    effects.answer(reply, Ok(core.project.clone()));
    core.push(effects);
}

/// Step one of attaching: claim the name for this project alone.
fn attach(core: &mut ProjectCore, fqdn: String, origin: Origin, reply: Reply<DomainAdded>) {
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
/// deployment if there is one; a pending claim of it is settled.
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
    core.project.pending_domains.retain(|d| *d != fqdn);
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
        challenge: None,
    };
    effects.answer(reply, Ok(added));
    core.push(effects);
}
