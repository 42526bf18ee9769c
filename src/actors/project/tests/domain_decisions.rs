//! Decisions of `AddCustomDomain` and `VerifyCustomDomain`.

use super::*;

#[tokio::test]
async fn an_unverified_custom_domain_is_only_a_pending_claim() {
    let mut h = Harness::new().await;
    let (reply, answer) = port();
    domains::add_custom_domain(
        &mut h.core,
        "www.example.com".into(),
        Origin::default(),
        reply,
    );
    let effects = h.run().await;
    // The project record alone: no claim of the name, no route.
    assert_eq!(effects[0].writes.len(), 1);
    assert!(matches!(effects[0].writes[0], Mutation::PutProject(_)));
    assert_eq!(h.core.project().pending_domains, ["www.example.com"]);
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
    let (reply, _answer) = port();
    domains::add_custom_domain(&mut h.core, "example.com".into(), Origin::default(), reply);
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
    std::sync::Arc::make_mut(&mut h.core.deps.config)
        .domains
        .verification = crate::config::DomainVerification::None;
    let (reply, _answer) = port();
    domains::add_custom_domain(
        &mut h.core,
        "www.example.com".into(),
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
    assert!(h.core.project().pending_domains.is_empty());
}
