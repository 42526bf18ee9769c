//! Custom domains are proven before they take traffic: a claim stays
//! pending (no route, the edge does not know the name) until the TXT record
//! `_deployd-challenge.<domain>` holds the project's token, asked of a
//! small DNS server on 127.0.0.1 that the test controls. A pending claim
//! blocks no one; a verified domain is the project's alone.

mod common;

use common::dns::TestDns;
use common::http::get;
use common::*;
use deployd::config::DomainVerification;
use deployd::io::store::check::check_file;
use deployd::pb;
use tonic::Code;

const DOMAIN: &str = "www.example.com";
const CHALLENGE: &str = "_deployd-challenge.www.example.com";

fn config_with(dns: &TestDns) -> deployd::Config {
    let mut config = fast_config();
    config.domains.resolver = Some(dns.addr);
    config
}

async fn add(daemon: &TestDaemon, project_id: &str, fqdn: &str) -> pb::AddCustomDomainResponse {
    daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: project_id.into(),
            fqdn: fqdn.into(),
            ..Default::default()
        })
        .await
        .expect("add custom domain")
        .into_inner()
}

async fn verify(
    daemon: &TestDaemon,
    project_id: &str,
    fqdn: &str,
) -> Result<pb::VerifyCustomDomainResponse, tonic::Status> {
    daemon
        .projects()
        .await
        .verify_custom_domain(pb::VerifyCustomDomainRequest {
            project_id: project_id.into(),
            fqdn: fqdn.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_claimed_domain_takes_traffic_only_once_its_txt_record_proves_it() {
    let dns = TestDns::start().await;
    let daemon = TestDaemon::start_with(config_with(&dns)).await;
    let project = daemon.project("acme", "web").await;
    let (_, live) = daemon.two_production_deploys(&project.id).await;
    let edge = daemon.edge();

    let added = add(&daemon, &project.id, DOMAIN).await;
    assert!(added.route.is_none(), "a pending domain has no route");
    let challenge = added.challenge.expect("the record to create");
    assert_eq!(challenge.record_name, CHALLENGE);
    assert!(challenge.record_value.starts_with("deployd-verify="));
    let pending = daemon.get_project(&project.id).await;
    assert_eq!(pending.pending_custom_domains, [DOMAIN]);
    assert!(pending.custom_domains.is_empty());
    let routes = daemon.routes(&project.id).await;
    assert!(routes.iter().all(|r| r.fqdn != DOMAIN), "{routes:?}");
    assert_eq!(get(edge, DOMAIN, &[]).await.status, 404);
    // Claiming again answers the same record and stores nothing new.
    let again = add(&daemon, &project.id, DOMAIN).await;
    assert_eq!(again.challenge.as_ref(), Some(&challenge));
    assert_eq!(daemon.get_project(&project.id).await, pending);

    // No record: refused, saying what to create; nothing changes.
    let refused = verify(&daemon, &project.id, DOMAIN).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(CHALLENGE),
        "{}",
        refused.message()
    );
    assert!(refused.message().contains(&challenge.record_value));
    assert!(refused.message().contains("no TXT record"));
    assert_eq!(daemon.get_project(&project.id).await, pending);
    assert_eq!(daemon.routes(&project.id).await, routes);
    assert_eq!(get(edge, DOMAIN, &[]).await.status, 404);

    // Another value: refused, quoting what DNS holds.
    dns.set_txt(
        CHALLENGE,
        &["deployd-verify=0123456789abcdef0123456789abcdef"],
    );
    let refused = verify(&daemon, &project.id, DOMAIN).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("0123456789abcdef"),
        "{}",
        refused.message()
    );
    assert_eq!(daemon.get_project(&project.id).await, pending);
    assert_eq!(get(edge, DOMAIN, &[]).await.status, 404);

    // The project's token (beside an unrelated TXT string): attached.
    dns.set_txt(CHALLENGE, &["v=spf1 -all", &challenge.record_value]);
    let verified = verify(&daemon, &project.id, DOMAIN).await.expect("verify");
    let route = verified.route.expect("a LIVE route");
    assert_eq!(route.fqdn, DOMAIN);
    assert_eq!(route.kind, pb::RouteKind::Live as i32);
    assert_eq!(route.deployment_id, live);
    let attached = daemon.get_project(&project.id).await;
    assert_eq!(attached.custom_domains, [DOMAIN]);
    assert!(attached.pending_custom_domains.is_empty());
    let answer = get(edge, DOMAIN, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.deployment(), live);

    // Verifying again answers the attached domain without asking DNS.
    let queries = dns.queries();
    let again = verify(&daemon, &project.id, DOMAIN)
        .await
        .expect("verify again");
    assert_eq!(again.route.map(|r| r.deployment_id), Some(live.clone()));
    assert_eq!(dns.queries(), queries);

    // A restart keeps the domain, its route and the edge's answer.
    let routes = daemon.routes(&project.id).await;
    let daemon = daemon.stop().await.start().await;
    assert_eq!(daemon.get_project(&project.id).await, attached);
    assert_eq!(daemon.routes(&project.id).await, routes);
    assert_eq!(get(daemon.edge(), DOMAIN, &[]).await.deployment(), live);
}

#[tokio::test]
async fn a_pending_claim_blocks_no_one_and_a_verified_domain_is_exclusive() {
    let dns = TestDns::start().await;
    let daemon = TestDaemon::start_with(config_with(&dns)).await;
    let squatter = daemon.project("squat", "grab").await;
    let owner = daemon.project("acme", "web").await;
    let (_, live) = daemon.two_production_deploys(&owner.id).await;

    // The squatter claims first; the owner's claim is not refused.
    let squatter_token = add(&daemon, &squatter.id, DOMAIN)
        .await
        .challenge
        .expect("challenge")
        .record_value;
    let owner_token = add(&daemon, &owner.id, DOMAIN)
        .await
        .challenge
        .expect("challenge")
        .record_value;
    assert_ne!(
        squatter_token, owner_token,
        "each project has its own token"
    );

    // DNS holds the owner's token: the squatter cannot verify.
    dns.set_txt(CHALLENGE, &[&owner_token]);
    let refused = verify(&daemon, &squatter.id, DOMAIN).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    verify(&daemon, &owner.id, DOMAIN)
        .await
        .expect("the owner verifies");
    assert_eq!(get(daemon.edge(), DOMAIN, &[]).await.deployment(), live);

    // Even with its token in DNS too, the squatter gets ALREADY_EXISTS,
    // and so does a new claim by anyone else.
    dns.set_txt(CHALLENGE, &[&owner_token, &squatter_token]);
    let taken = verify(&daemon, &squatter.id, DOMAIN).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let late = daemon.project("late", "web").await;
    let taken = daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: late.id.clone(),
            fqdn: DOMAIN.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    assert!(
        daemon
            .routes(&squatter.id)
            .await
            .iter()
            .all(|r| r.fqdn != DOMAIN)
    );
    assert_eq!(get(daemon.edge(), DOMAIN, &[]).await.deployment(), live);
}

#[tokio::test]
async fn a_domain_verified_before_the_first_deploy_is_routed_by_it() {
    let dns = TestDns::start().await;
    let daemon = TestDaemon::start_with(config_with(&dns)).await;
    let project = daemon.project("acme", "web").await;
    let token = add(&daemon, &project.id, DOMAIN)
        .await
        .challenge
        .expect("challenge")
        .record_value;
    dns.set_txt(CHALLENGE, &[&token]);
    let verified = verify(&daemon, &project.id, DOMAIN).await.expect("verify");
    assert!(verified.route.is_none(), "no live deployment yet");
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    assert_eq!(get(daemon.edge(), DOMAIN, &[]).await.deployment(), live);
}

#[tokio::test]
async fn unclaimed_domains_and_unreachable_dns_change_nothing() {
    // A resolver address where nothing listens.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut config = fast_config();
    config.domains.resolver = Some(silent.local_addr().expect("addr"));
    config.domains.lookup_timeout_ms = 200;
    drop(silent);
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;

    let unclaimed = verify(&daemon, &project.id, DOMAIN).await.unwrap_err();
    assert_eq!(unclaimed.code(), Code::FailedPrecondition, "{unclaimed:?}");
    assert!(
        unclaimed.message().contains("not claimed"),
        "{}",
        unclaimed.message()
    );

    add(&daemon, &project.id, DOMAIN).await;
    let before = daemon.get_project(&project.id).await;
    let down = verify(&daemon, &project.id, DOMAIN).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(down.message().contains(CHALLENGE), "{}", down.message());
    assert_eq!(daemon.get_project(&project.id).await, before);
}

#[tokio::test]
async fn without_verification_a_claimed_domain_is_live_at_once() {
    let mut config = fast_config();
    config.domains.verification = DomainVerification::None;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let (_, live) = daemon.two_production_deploys(&project.id).await;
    let added = add(&daemon, &project.id, DOMAIN).await;
    assert!(added.challenge.is_none());
    assert_eq!(added.route.expect("route").deployment_id, live);
    assert_eq!(
        daemon.get_project(&project.id).await.custom_domains,
        [DOMAIN]
    );
    assert_eq!(get(daemon.edge(), DOMAIN, &[]).await.deployment(), live);
}

/// Two projects proving one domain at the same moment (DNS holds both
/// tokens, say across a change of owner): one gets it, the other an
/// `ALREADY_EXISTS` answer, and neither actor fails over it.
#[tokio::test]
async fn a_race_to_verify_one_domain_has_one_winner_and_no_crash() {
    let dns = TestDns::start().await;
    let daemon = TestDaemon::start_with(config_with(&dns)).await;
    let first = daemon.project("acme", "web").await;
    let second = daemon.project("other", "api").await;
    for round in 0..10 {
        let fqdn = format!("race{round}.example.com");
        let mut tokens = Vec::new();
        for project in [&first, &second] {
            let challenge = add(&daemon, &project.id, &fqdn)
                .await
                .challenge
                .expect("challenge");
            tokens.push(challenge.record_value);
        }
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        dns.set_txt(&format!("_deployd-challenge.{fqdn}"), &tokens);
        let (a, b) = tokio::join!(
            verify(&daemon, &first.id, &fqdn),
            verify(&daemon, &second.id, &fqdn)
        );
        let (winner, lost) = match (a, b) {
            (Ok(_), Err(lost)) => (&first, lost),
            (Err(lost), Ok(_)) => (&second, lost),
            other => panic!("exactly one must win {fqdn}: {other:?}"),
        };
        assert_eq!(lost.code(), Code::AlreadyExists, "{}", lost.message());
        let attached = daemon.get_project(&winner.id).await.custom_domains;
        assert!(attached.contains(&fqdn), "{attached:?}");
    }
    let stats = daemon.stats().await;
    assert_eq!(stats.project_actor_failures, 0);
    assert_eq!(stats.broken_projects, 0);
}

#[tokio::test]
async fn a_domain_too_long_for_its_challenge_record_is_refused() {
    let dns = TestDns::start().await;
    let daemon = TestDaemon::start_with(config_with(&dns)).await;
    let project = daemon.project("acme", "web").await;
    // 242 characters: a valid name, but `_deployd-challenge.` makes 261.
    let long = format!(
        "{}.{}.com",
        vec!["a".repeat(63); 3].join("."),
        "b".repeat(46)
    );
    let refused = daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: project.id.clone(),
            fqdn: long,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        daemon
            .get_project(&project.id)
            .await
            .pending_custom_domains
            .is_empty()
    );
}

async fn remove(
    daemon: &TestDaemon,
    project_id: &str,
    fqdn: &str,
) -> Result<pb::RemoveCustomDomainResponse, tonic::Status> {
    daemon
        .projects()
        .await
        .remove_custom_domain(pb::RemoveCustomDomainRequest {
            project_id: project_id.into(),
            fqdn: fqdn.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Claims and proves `fqdn` for `project_id`, with the TXT record set.
async fn attach(daemon: &TestDaemon, dns: &TestDns, project_id: &str, fqdn: &str) {
    let token = add(daemon, project_id, fqdn)
        .await
        .challenge
        .expect("challenge")
        .record_value;
    dns.set_txt(&format!("_deployd-challenge.{fqdn}"), &[&token]);
    verify(daemon, project_id, fqdn).await.expect("verify");
}

#[tokio::test]
async fn a_removed_domain_stops_serving_at_once_and_is_free_for_another_project() {
    let dns = TestDns::start().await;
    let daemon = TestDaemon::start_with(config_with(&dns)).await;
    let first = daemon.project("acme", "web").await;
    let (_, first_live) = daemon.two_production_deploys(&first.id).await;
    attach(&daemon, &dns, &first.id, DOMAIN).await;
    assert_eq!(
        get(daemon.edge(), DOMAIN, &[]).await.deployment(),
        first_live
    );
    let own_routes: Vec<_> = daemon
        .routes(&first.id)
        .await
        .into_iter()
        .filter(|r| r.fqdn != DOMAIN)
        .collect();

    let removed = remove(&daemon, &first.id, DOMAIN).await.expect("remove");
    let project = removed.project.expect("project");
    assert!(project.custom_domains.is_empty());
    assert!(project.pending_custom_domains.is_empty());
    // Once the reply is here, the edge no longer knows the name, and the
    // project's other routes are as they were.
    assert_eq!(get(daemon.edge(), DOMAIN, &[]).await.status, 404);
    assert_eq!(daemon.routes(&first.id).await, own_routes);
    let stored = daemon.get_project(&first.id).await;
    assert!(stored.custom_domains.is_empty() && stored.pending_custom_domains.is_empty());

    // Removing it again: NOT_FOUND, nothing changes.
    let again = remove(&daemon, &first.id, DOMAIN).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    assert_eq!(daemon.get_project(&first.id).await, stored);

    // Another project claims, proves and serves the same name.
    let second = daemon.project("other", "api").await;
    let (_, second_live) = daemon.two_production_deploys(&second.id).await;
    attach(&daemon, &dns, &second.id, DOMAIN).await;
    assert_eq!(
        get(daemon.edge(), DOMAIN, &[]).await.deployment(),
        second_live
    );
    assert!(
        daemon
            .routes(&first.id)
            .await
            .iter()
            .all(|r| r.fqdn != DOMAIN)
    );

    // The stored records still satisfy `deployd check`, and a restart
    // keeps the removal and the new owner.
    let stopped = daemon.stop().await;
    let report = check_file(&stopped.db_path()).expect("check");
    assert!(report.is_sound(), "{}", report.summary());
    let daemon = stopped.start().await;
    assert_eq!(daemon.get_project(&first.id).await, stored);
    assert_eq!(daemon.routes(&first.id).await, own_routes);
    assert_eq!(
        daemon.get_project(&second.id).await.custom_domains,
        [DOMAIN]
    );
    assert_eq!(
        get(daemon.edge(), DOMAIN, &[]).await.deployment(),
        second_live
    );
}

#[tokio::test]
async fn removing_a_pending_claim_frees_its_slot_and_unknown_domains_change_nothing() {
    let dns = TestDns::start().await;
    let mut config = config_with(&dns);
    config.max_custom_domains_per_project = 1;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    add(&daemon, &project.id, DOMAIN).await;
    let full = daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: project.id.clone(),
            fqdn: "api.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");

    let before = daemon.get_project(&project.id).await;
    let unknown = remove(&daemon, &project.id, "api.example.com")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(daemon.get_project(&project.id).await, before);

    let removed = remove(&daemon, &project.id, DOMAIN).await.expect("remove");
    assert!(
        removed
            .project
            .expect("project")
            .pending_custom_domains
            .is_empty()
    );
    let added = add(&daemon, &project.id, "api.example.com").await;
    assert!(added.challenge.is_some());
    assert_eq!(
        daemon.get_project(&project.id).await.pending_custom_domains,
        ["api.example.com"]
    );

    // After a restart the removed claim is still gone.
    let daemon = daemon.stop().await.start().await;
    assert_eq!(
        daemon.get_project(&project.id).await.pending_custom_domains,
        ["api.example.com"]
    );
}
