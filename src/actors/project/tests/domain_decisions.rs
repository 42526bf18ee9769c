//! Decisions of `AddCustomDomain`, `VerifyCustomDomain` and
//! `RemoveCustomDomain`.

use super::*;
use crate::actors::project::effects::FollowUp;
use crate::actors::project::messages::DomainAdded;
use crate::model::ProjectId;

const DOMAIN: &str = "www.example.com";

type Answer<T> = tokio::sync::oneshot::Receiver<Result<T, Error>>;

/// Decides `AddCustomDomain` of `fqdn`; the effects wait in the core.
fn add(h: &mut Harness, fqdn: &str) -> Answer<DomainAdded> {
    let (reply, answer) = port();
    domains::add_custom_domain(&mut h.core, fqdn.into(), Origin::default(), reply);
    answer
}

fn without_verification(h: &mut Harness) {
    std::sync::Arc::make_mut(&mut h.core.deps.config)
        .domains
        .verification = crate::config::DomainVerification::None;
}

#[tokio::test]
async fn an_unverified_custom_domain_is_only_a_pending_claim() {
    let mut h = Harness::new().await;
    let answer = add(&mut h, DOMAIN);
    let effects = h.run().await;
    // The project record alone: no claim of the name, no route.
    assert_eq!(effects[0].writes.len(), 1);
    assert!(matches!(effects[0].writes[0], Mutation::PutProject(_)));
    assert_eq!(h.core.project().pending_domains, [DOMAIN]);
    assert!(h.core.project().custom_domains.is_empty());
    let added = answer.await.unwrap().unwrap();
    let challenge = added.challenge.expect("a challenge");
    assert_eq!(challenge.record_name, "_deployd-challenge.www.example.com");
    assert_eq!(
        Some(&challenge.record_value),
        h.core.project().domain_token.as_ref()
    );
    assert!(added.route.is_none());
}

#[tokio::test]
async fn verifying_changes_no_memory_until_the_claim_lands() {
    let mut h = Harness::new().await;
    let _answer = add(&mut h, "example.com");
    h.run().await;
    let token = h.core.project().domain_token.clone().expect("a token");

    let (reply, answer) = port();
    let found = vec!["deployd-verify=someone-else".to_string()];
    domains::verify_custom_domain(
        &mut h.core,
        "example.com".into(),
        found,
        Origin::default(),
        reply,
    );
    let effects = h.run().await;
    assert!(
        effects.iter().all(|e| e.writes.is_empty()),
        "a refusal writes nothing"
    );
    assert!(matches!(
        answer.await.unwrap(),
        Err(Error::FailedPrecondition(_))
    ));

    let (reply, _answer) = port();
    domains::verify_custom_domain(
        &mut h.core,
        "example.com".into(),
        vec![token],
        Origin::default(),
        reply,
    );
    let effects = h.core.take_effects();
    assert_eq!(effects[0].writes.len(), 1);
    assert!(matches!(effects[0].writes[0], Mutation::ClaimDomain { .. }));
    assert_eq!(
        effects[0].on_reject,
        crate::actors::project::effects::OnReject::Answered
    );
    assert!(h.core.project().custom_domains.is_empty());
    assert_eq!(h.core.project().pending_domains, ["example.com"]);
}

#[tokio::test]
async fn without_verification_a_claim_is_attached_at_once() {
    let mut h = Harness::new().await;
    without_verification(&mut h);
    let _answer = add(&mut h, DOMAIN);
    let effects = h.core.take_effects();
    assert_eq!(effects[0].writes.len(), 1);
    assert!(matches!(effects[0].writes[0], Mutation::ClaimDomain { .. }));
    assert_eq!(
        effects[0].on_reject,
        crate::actors::project::effects::OnReject::Answered
    );
    assert!(h.core.project().custom_domains.is_empty());
    assert!(h.core.project().pending_domains.is_empty());
}

/// Attaches `fqdn` without verification, both steps, to a project with a
/// live deployment: the domain gets its `LIVE` route.
async fn attach_live(h: &mut Harness, fqdn: &str) -> DeploymentId {
    without_verification(h);
    let live = h.deploy_ready("production", "main").await;
    let _answer = add(h, fqdn);
    let effects = h.run().await;
    let Some(FollowUp::DomainClaimed {
        fqdn: claimed,
        origin,
        reply,
    }) = effects.into_iter().find_map(|mut e| e.follow_up.take())
    else {
        panic!("attaching continues once the claim lands");
    };
    domains::domain_claimed(&mut h.core, claimed, origin, reply, Ok(()));
    h.run().await;
    assert!(h.core.fixed_routes.contains_key(fqdn));
    live
}

fn remove(h: &mut Harness, fqdn: &str) -> Answer<Project> {
    let (reply, answer) = port();
    domains::remove_custom_domain(&mut h.core, fqdn.into(), Origin::default(), reply);
    answer
}

#[tokio::test]
async fn removing_a_pending_claim_stores_the_project_and_a_release_that_finds_nothing() {
    let mut h = Harness::new().await;
    let _answer = add(&mut h, DOMAIN);
    h.run().await;

    let answer = remove(&mut h, DOMAIN);
    let effects = h.run().await;
    assert_eq!(effects.len(), 1);
    let writes = &effects[0].writes;
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(matches!(writes[0], Mutation::PutProject(_)));
    assert!(matches!(writes[1], Mutation::ReleaseDomain { .. }));
    let project = answer.await.unwrap().unwrap();
    assert!(project.pending_domains.is_empty());
    let stored = h.store.project(&project.id).unwrap().unwrap();
    assert!(stored.pending_domains.is_empty());
    assert!(stored.custom_domains.is_empty());
    assert!(h.store.holder(DOMAIN).unwrap().is_none());
}

/// An attach whose claim landed but whose second step never did (the
/// daemon stopped between them): the record says pending, the store says
/// the name is this project's. Removing the claim frees the name.
#[tokio::test]
async fn removing_a_pending_claim_frees_a_name_an_interrupted_attach_held() {
    let mut h = Harness::new().await;
    let _answer = add(&mut h, DOMAIN);
    h.run().await;
    h.store
        .commit(vec![Mutation::ClaimDomain {
            project_id: h.core.project().id.clone(),
            fqdn: DOMAIN.into(),
        }])
        .await
        .unwrap();
    assert!(h.store.holder(DOMAIN).unwrap().is_some());

    let answer = remove(&mut h, DOMAIN);
    h.run().await;
    assert!(answer.await.unwrap().unwrap().pending_domains.is_empty());
    assert!(h.store.holder(DOMAIN).unwrap().is_none());
}

#[tokio::test]
async fn removing_an_attached_domain_releases_its_route_and_claim_with_the_project() {
    let mut h = Harness::new().await;
    let live = attach_live(&mut h, DOMAIN).await;
    let project_id = h.core.project().id.clone();
    let routed = h.store.routes_named(&[DOMAIN.into()]).unwrap();
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].deployment_id, live);

    let answer = remove(&mut h, DOMAIN);
    let effects = h.run().await;
    assert_eq!(effects.len(), 1, "one submission");
    let writes = &effects[0].writes;
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(matches!(writes[0], Mutation::PutProject(_)));
    assert!(matches!(
        &writes[1],
        Mutation::ReleaseDomain { project_id: p, fqdn } if *p == project_id && fqdn == DOMAIN
    ));
    let project = answer.await.unwrap().unwrap();
    assert!(project.custom_domains.is_empty());
    assert!(!h.core.fixed_routes.contains_key(DOMAIN));

    // The store: no route, no claim, no index row, the project's own LIVE
    // route untouched.
    assert!(h.store.routes_named(&[DOMAIN.into()]).unwrap().is_empty());
    assert!(h.store.holder(DOMAIN).unwrap().is_none());
    let listed = h
        .store
        .routes_of_project(&project_id, Some(RouteKind::Live), None, 100)
        .unwrap()
        .routes;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_ne!(listed[0].fqdn, DOMAIN);
    assert_eq!(listed[0].deployment_id, live);
    let stored = h.store.project(&project_id).unwrap().unwrap();
    assert!(stored.custom_domains.is_empty());

    // Reloaded from the store, the actor agrees.
    let reloaded = ProjectCore::load(h.core.deps.clone(), &project_id).unwrap();
    assert!(!reloaded.fixed_routes.contains_key(DOMAIN));
}

#[tokio::test]
async fn a_release_never_takes_a_name_from_another_project() {
    let mut h = Harness::new().await;
    attach_live(&mut h, DOMAIN).await;
    let before = h.store.routes_named(&[DOMAIN.into()]).unwrap();
    h.store
        .commit(vec![Mutation::ReleaseDomain {
            project_id: ProjectId::generate(),
            fqdn: DOMAIN.into(),
        }])
        .await
        .expect("a release is never rejected");
    assert_eq!(h.store.routes_named(&[DOMAIN.into()]).unwrap(), before);
    assert!(h.store.holder(DOMAIN).unwrap().is_some());
    // Releasing what is already gone: accepted, nothing written.
    h.store
        .commit(vec![Mutation::ReleaseDomain {
            project_id: h.core.project().id.clone(),
            fqdn: "gone.example.com".into(),
        }])
        .await
        .expect("a release is never rejected");
}

#[tokio::test]
async fn removing_an_unknown_domain_is_not_found_and_writes_nothing() {
    let mut h = Harness::new().await;
    let before = h.core.project().clone();
    let answer = remove(&mut h, DOMAIN);
    let effects = h.run().await;
    assert!(effects.iter().all(|e| e.writes.is_empty()));
    assert!(matches!(answer.await.unwrap(), Err(Error::NotFound(_))));
    assert_eq!(*h.core.project(), before);
}

#[tokio::test]
async fn removing_a_domain_while_it_is_being_attached_is_aborted() {
    let mut h = Harness::new().await;
    without_verification(&mut h);
    let _answer = add(&mut h, DOMAIN);
    // Step one decided, its claim not yet stored.
    let attaching = h.core.take_effects();
    let before = h.core.project().clone();

    let answer = remove(&mut h, DOMAIN);
    let effects = h.run().await;
    assert!(effects.iter().all(|e| e.writes.is_empty()));
    assert!(matches!(answer.await.unwrap(), Err(Error::Aborted(_))));
    assert_eq!(*h.core.project(), before);
    assert!(h.core.claiming.contains(DOMAIN));
    drop(attaching);
}
