//! The built-in edge serves every routed hostname from the deployment's
//! running instances (simulated instances answer with their deployment id),
//! and moves traffic the moment a rollback or promote is acknowledged.

mod common;

use std::collections::BTreeSet;

use common::http::get;
use common::*;
use deployd::model::DeploymentId;
use deployd::pb::DesiredState;

const LIVE_HOST: &str = "web-acme.deployd.local";

fn deployment_host(id: &str) -> String {
    format!(
        "web-dep-{}-acme.deployd.local",
        id.trim_start_matches("dep_")
    )
}

#[tokio::test]
async fn hostnames_reach_their_deployment_and_unknown_hosts_get_404() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    let edge = daemon.edge();

    let answer = get(edge, LIVE_HOST, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.deployment(), live);
    // A port and upper case in Host do not matter.
    let answer = get(edge, "WEB-ACME.deployd.local:80", &[]).await;
    assert_eq!(answer.deployment(), live);
    // The old deployment still runs (until its standby) and keeps its own name.
    assert_eq!(
        get(edge, &deployment_host(&old), &[]).await.deployment(),
        old
    );

    let unknown = get(edge, "nobody.deployd.local", &[]).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[tokio::test]
async fn once_rollback_and_promote_answer_the_next_request_reaches_the_new_target() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    let edge = daemon.edge();
    assert_eq!(get(edge, LIVE_HOST, &[]).await.deployment(), live);

    for _ in 0..3 {
        daemon.rollback(&live, &old).await.expect("rollback");
        for host in [LIVE_HOST, "web-production-acme.deployd.local"] {
            let answer = get(edge, host, &[]).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(answer.deployment(), old, "{host} right after the rollback");
        }
        daemon.promote(&live).await.expect("promote");
        assert_eq!(
            get(edge, LIVE_HOST, &[]).await.deployment(),
            live,
            "right after the promote"
        );
    }
}

#[tokio::test]
async fn requests_go_round_robin_with_forwarded_headers_and_without_hop_by_hop_ones() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(
            &project.id,
            "production",
            &[("us-east-1", 2), ("eu-central-1", 1)],
        )
        .await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let edge = daemon.edge();

    let mut instances = BTreeSet::new();
    for _ in 0..6 {
        let answer = get(
            edge,
            LIVE_HOST,
            &[
                ("connection", "x-hop"),
                ("x-hop", "must not pass"),
                ("x-end-to-end", "passes"),
            ],
        )
        .await;
        assert_eq!(answer.deployment(), live);
        assert_eq!(answer.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(answer.header("x-forwarded-host"), Some(LIVE_HOST));
        assert_eq!(answer.header("x-forwarded-proto"), Some("http"));
        assert_eq!(answer.header("host"), Some(LIVE_HOST));
        assert_eq!(answer.header("x-end-to-end"), Some("passes"));
        assert_eq!(answer.header("x-hop"), None, "{}", answer.body);
        instances.insert(answer.instance().to_string());
    }
    assert_eq!(instances.len(), 3, "every instance served: {instances:?}");
}

#[tokio::test]
async fn a_dead_instance_is_skipped_and_a_deployment_without_live_ones_is_502() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(&project.id, "production", &[("us-east-1", 2)])
        .await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let edge = daemon.edge();
    let id = DeploymentId::parse(&live, "id").unwrap();
    let region = daemon.region("us-east-1");

    region.crash_instance(&id, 0);
    for _ in 0..4 {
        let answer = get(edge, LIVE_HOST, &[]).await;
        assert_eq!(answer.status, 200, "retried on the other instance");
        assert_eq!(answer.deployment(), live);
    }
    region.crash_instance(&id, 0);
    let answer = get(edge, LIVE_HOST, &[]).await;
    assert_eq!(answer.status, 502, "{answer:?}");
}

#[tokio::test]
async fn a_deployment_in_standby_is_503_and_serves_again_once_woken() {
    let mut config = fast_config();
    config.standby_delay_ms = 50;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    let edge = daemon.edge();

    daemon.wait_desired(&old, DesiredState::Standby).await;
    daemon.drivers_settled().await;
    let answer = get(edge, &deployment_host(&old), &[]).await;
    assert_eq!(answer.status, 503, "{answer:?}");

    // A rollback wakes it, and traffic follows once the rollback answers.
    daemon.rollback(&live, &old).await.expect("rollback");
    let answer = get(edge, LIVE_HOST, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.deployment(), old);
}

#[tokio::test]
async fn after_a_restart_the_edge_serves_what_the_store_says() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    daemon.rollback(&live, &old).await.expect("rollback");
    let daemon = daemon.stop().await.start().await;
    let answer = get(daemon.edge(), LIVE_HOST, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.deployment(), old);
}
