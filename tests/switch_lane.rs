//! The switch lane (`switch_listen`): a second gRPC listener on a runtime of
//! its own that serves `Rollback` and `Promote` (with the same tokens) and
//! nothing else, so a switch never queues behind deploy traffic.

mod common;

use common::http::get;
use common::*;
use deployd::pb;
use deployd::pb::deployment_service_client::DeploymentServiceClient;
use tonic::Code;

const LIVE_HOST: &str = "web-acme.deployd.local";

async fn daemon_with_lane() -> TestDaemon {
    let mut config = fast_config();
    config.switch_listen = Some(([127, 0, 0, 1], 0).into());
    TestDaemon::start_with(config).await
}

async fn lane_client(
    daemon: &TestDaemon,
    token: Option<&str>,
) -> DeploymentServiceClient<deployd::cli::AuthChannel> {
    let lane = daemon
        .handle()
        .switch_lane
        .expect("switch_listen is configured");
    let channel = tonic::transport::Channel::from_shared(format!("http://{lane}"))
        .expect("address")
        .connect()
        .await
        .expect("the switch lane accepts connections");
    DeploymentServiceClient::new(deployd::cli::with_token(channel, token).expect("token"))
}

#[tokio::test]
async fn rollback_and_promote_through_the_lane_move_the_traffic() {
    let daemon = daemon_with_lane().await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    let edge = daemon.edge();
    assert_eq!(get(edge, LIVE_HOST, &[]).await.deployment(), live);
    let mut lane = lane_client(&daemon, Some(&daemon.token)).await;

    let rolled_back = lane
        .rollback(pb::RollbackRequest {
            source_deployment_id: live.clone(),
            target_deployment_id: old.clone(),
            ..Default::default()
        })
        .await
        .expect("rollback through the lane")
        .into_inner();
    assert_eq!(
        rolled_back.project.expect("project").live_deployment_id,
        old
    );
    // Acknowledged: the edge already serves the target.
    assert_eq!(get(edge, LIVE_HOST, &[]).await.deployment(), old);
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        old
    );

    lane.promote(pb::PromoteRequest {
        target_deployment_id: live.clone(),
        ..Default::default()
    })
    .await
    .expect("promote through the lane");
    assert_eq!(get(edge, LIVE_HOST, &[]).await.deployment(), live);
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        live
    );
}

#[tokio::test]
async fn the_lane_serves_nothing_but_switches_and_health() {
    let daemon = daemon_with_lane().await;
    let project = daemon.project("acme", "web").await;
    let mut lane = lane_client(&daemon, Some(&daemon.token)).await;

    let refused = lane
        .create_deployment(image_request(&project.id, "production", "nginx:1"))
        .await
        .expect_err("deploys go to the main listener");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");
    assert!(refused.message().contains("switch_listen"), "{refused:?}");
    let refused = lane
        .list_deployments(pb::ListDeploymentsRequest {
            project_id: project.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("reads go to the main listener");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");
    // Nothing was created, and nothing runs.
    assert!(daemon.list(&project.id).await.is_empty());

    let lane_address = daemon.handle().switch_lane.expect("lane");
    let channel = tonic::transport::Channel::from_shared(format!("http://{lane_address}"))
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is open on the lane")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn the_lane_checks_tokens_like_the_main_listener() {
    let daemon = daemon_with_lane().await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;

    let mut anonymous = lane_client(&daemon, None).await;
    let refused = anonymous
        .rollback(pb::RollbackRequest {
            source_deployment_id: live.clone(),
            target_deployment_id: old.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut wrong = lane_client(&daemon, Some("tok_wrong.secret")).await;
    let refused = wrong
        .promote(pb::PromoteRequest {
            target_deployment_id: old.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a wrong token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // Nothing moved.
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        live
    );
    assert_eq!(get(daemon.edge(), LIVE_HOST, &[]).await.deployment(), live);
}

#[tokio::test]
async fn a_daemon_with_a_lane_stops_cleanly() {
    let daemon = daemon_with_lane().await;
    let lane = daemon.handle().switch_lane.expect("lane");
    daemon.stop().await;
    assert!(
        tokio::net::TcpStream::connect(lane).await.is_err(),
        "the lane stopped listening"
    );
}
