//! Scheduled standby and waking, checked on the world and not only on the
//! store: after a standby the regions run nothing, after a wake they run
//! the desired replicas, a scale-down is retried until the region confirms
//! and never wins over a wake, a wake that cannot finish scales its target
//! back down, and a restart re-applies every stored desired state.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use deployd::config::RegionConfig;
use deployd::pb::{DesiredState, RouteKind};
use tonic::Code;

fn config_with_standby_delay(ms: u64) -> deployd::Config {
    let mut config = fast_config();
    config.standby_delay_ms = ms;
    config
}

fn each_region(replicas: u32) -> BTreeMap<String, u32> {
    HEALTHY_REGIONS
        .iter()
        .map(|r| (r.to_string(), replicas))
        .collect()
}

#[tokio::test]
async fn the_previous_live_deployment_goes_to_standby_after_the_delay_and_stops_running() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(200)).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    assert_eq!(daemon.wait_running(&first, 1).await, each_region(1));

    let standby = daemon.wait_desired(&first, DesiredState::Standby).await;
    assert!(
        standby
            .regions
            .iter()
            .all(|r| r.desired_status == "stopped" && r.instances.is_empty())
    );
    // The world follows: nothing of `first` runs any more.
    assert_eq!(daemon.wait_running(&first, 0).await, each_region(0));
    // The live one is untouched, in the store and in the regions.
    assert_eq!(
        daemon.get(&second).await.desired_state,
        DesiredState::Running as i32
    );
    assert_eq!(daemon.running(&second), each_region(1));
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        second
    );
}

#[tokio::test]
async fn rollback_to_a_standby_deployment_wakes_it_first() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(100)).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    daemon.wait_desired(&first, DesiredState::Standby).await;
    daemon.wait_running(&first, 0).await;

    let response = daemon.rollback(&second, &first).await.unwrap();
    assert_eq!(response.project.unwrap().live_deployment_id, first);
    let woken = daemon.get(&first).await;
    assert_eq!(woken.desired_state, DesiredState::Running as i32);
    assert!(
        woken
            .regions
            .iter()
            .all(|r| r.ready && r.desired_status == "running")
    );
    assert!(woken.regions.iter().all(|r| !r.instances.is_empty()));
    // Acknowledged means it runs: the switch waited for the wake.
    assert_eq!(daemon.running(&first), each_region(1));
    let wake = woken
        .steps
        .iter()
        .find(|s| s.name == "wake")
        .expect("wake step");
    assert!(wake.finished_at.is_some() && wake.error.is_empty());
    let routes = daemon.routes(&project.id).await;
    assert_eq!(
        routes_of_kind(&routes, RouteKind::Live)[0].deployment_id,
        first
    );

    // Rollback does not schedule the source: it stays warm for a roll forward.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        daemon.get(&second).await.desired_state,
        DesiredState::Running as i32
    );
    assert_eq!(daemon.running(&second), each_region(1));
}

#[tokio::test]
async fn promote_wakes_a_standby_target_and_schedules_the_previous_live() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(150)).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    daemon.wait_desired(&first, DesiredState::Standby).await;
    daemon.wait_running(&first, 0).await;

    daemon.promote(&first).await.unwrap();
    assert_eq!(
        daemon.get(&first).await.desired_state,
        DesiredState::Running as i32
    );
    assert_eq!(daemon.running(&first), each_region(1));
    daemon.wait_desired(&second, DesiredState::Standby).await;
    daemon.wait_running(&second, 0).await;
    assert_eq!(daemon.running(&first), each_region(1));
}

/// Confirming a rollback (promoting the live deployment of a rolled-back
/// project) schedules the deployment rolled back from: its capacity does
/// not leak.
#[tokio::test]
async fn confirming_a_rollback_stands_by_the_deployment_rolled_back_from() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(150)).await;
    let project = daemon.project("acme", "web").await;
    let first = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let second = daemon
        .deploy_ready(&project.id, "production", "nginx:2")
        .await;
    // Roll back before `first`'s own schedule fires (the rollback clears
    // it), then confirm.
    daemon.rollback(&second, &first).await.unwrap();
    let confirmed = daemon.promote(&first).await.unwrap();
    assert!(!confirmed.project.unwrap().is_rolled_back);
    daemon.wait_desired(&second, DesiredState::Standby).await;
    daemon.wait_running(&second, 0).await;
    assert_eq!(daemon.running(&first), each_region(1));
    daemon.assert_world_matches(&first).await;
}

/// Each stop of being live schedules afresh, and a newer schedule replaces
/// an older one: the first schedule of `first` must not fire.
#[tokio::test]
async fn schedules_are_last_writer_wins() {
    let delay = 1_500;
    let daemon = TestDaemon::start_with(config_with_standby_delay(delay)).await;
    let project = daemon.project("acme", "web").await;
    let first = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let t0 = tokio::time::Instant::now();
    let second = daemon
        .deploy_ready(&project.id, "production", "nginx:2")
        .await;
    // `first` is scheduled for t0 + delay. Promote it back (clears that),
    // then promote `second` again (schedules `first` afresh).
    daemon.promote(&first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.promote(&second).await.unwrap();

    tokio::time::sleep_until(t0 + Duration::from_millis(delay + 300)).await;
    assert_eq!(
        daemon.get(&first).await.desired_state,
        DesiredState::Running as i32,
        "the replaced schedule did not fire"
    );
    assert_eq!(daemon.running(&first), each_region(1));
    daemon.wait_desired(&first, DesiredState::Standby).await;
    daemon.wait_running(&first, 0).await;
    assert_eq!(
        daemon.get(&second).await.desired_state,
        DesiredState::Running as i32
    );
}

#[tokio::test]
async fn a_wake_that_fails_changes_nothing_and_scales_the_target_back_down() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(100)).await;
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(&project.id, "production", &[("us-east-1", 1)])
        .await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    daemon.wait_desired(&first, DesiredState::Standby).await;
    let routes_before = route_map(&daemon.routes(&project.id).await);

    // Same file, but us-east-1 can no longer run anything.
    let stopped = daemon.stop().await;
    let mut config = stopped.config.clone();
    config.region_timeout_ms = 300;
    config.regions.insert(
        "us-east-1".into(),
        RegionConfig::Simulated {
            ready_after_ms: 0,
            never_ready: true,
            persist: false,
            serve_http: true,
        },
    );
    let daemon = stopped.start_with(config).await;

    let error = daemon.rollback(&second, &first).await.unwrap_err();
    assert_eq!(
        error.code(),
        Code::FailedPrecondition,
        "{}",
        error.message()
    );
    assert!(error.message().contains("woken"), "{}", error.message());
    let stored = daemon.get_project(&project.id).await;
    assert_eq!(stored.live_deployment_id, second);
    assert!(!stored.is_rolled_back);
    assert_eq!(route_map(&daemon.routes(&project.id).await), routes_before);
    let target = daemon.get(&first).await;
    assert_eq!(target.desired_state, DesiredState::Standby as i32);
    assert!(target.steps.iter().all(|s| s.name != "wake"));
    // The wake had asked the region for a replica; it is taken back.
    daemon.wait_running(&first, 0).await;
    assert_eq!(daemon.running(&second)["us-east-1"], 1);
}

/// A region that cannot be reached keeps a decided scale-down pending; it
/// is retried until the region confirms, and the store says STANDBY all
/// along.
#[tokio::test]
async fn a_scale_down_is_retried_until_the_region_confirms() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(300)).await;
    let project = daemon.project("acme", "web").await;
    let (first, _second) = daemon.two_production_deploys(&project.id).await;
    daemon.region("us-east-1").set_unavailable(true);
    daemon.wait_desired(&first, DesiredState::Standby).await;
    eventually(
        "eu-central-1 scales down",
        Duration::from_secs(5),
        || async { (daemon.running(&first)["eu-central-1"] == 0).then_some(()) },
    )
    .await;
    assert_eq!(daemon.running(&first)["us-east-1"], 1, "unreachable");
    assert_eq!(daemon.handle().reconciler.stats().pending, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        daemon.handle().reconciler.stats().failed_calls > 0,
        "retried"
    );

    daemon.region("us-east-1").set_unavailable(false);
    assert_eq!(daemon.wait_running(&first, 0).await, each_region(0));
}

/// A wake of a deployment whose scale-down is still being retried wins:
/// the deployment ends up running, stored and in every region.
#[tokio::test]
async fn a_wake_wins_over_a_scale_down_still_in_flight() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(300)).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    daemon.region("us-east-1").set_unavailable(true);
    daemon.wait_desired(&first, DesiredState::Standby).await;
    assert_eq!(daemon.handle().reconciler.stats().pending, 1);

    let rollback = {
        let channel = daemon.channel().await;
        let (second, first) = (second.clone(), first.clone());
        tokio::spawn(async move {
            let mut client =
                deployd::pb::deployment_service_client::DeploymentServiceClient::new(channel);
            client
                .rollback(deployd::pb::RollbackRequest {
                    source_deployment_id: second,
                    target_deployment_id: first,
                    ..Default::default()
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.region("us-east-1").set_unavailable(false);
    let response = rollback.await.unwrap().unwrap().into_inner();
    assert_eq!(response.project.unwrap().live_deployment_id, first);
    daemon.drivers_settled().await;
    assert_eq!(daemon.running(&first), each_region(1));
    daemon.assert_world_matches(&first).await;
}

/// A rollback whose target is still waking when someone promotes another
/// deployment is refused at the re-check with ABORTED, and the target goes
/// back to zero.
#[tokio::test]
async fn a_wake_refused_at_the_recheck_is_aborted_and_scaled_back_down() {
    let mut config = config_with_standby_delay(100);
    config.regions.insert(
        "eu-central-1".into(),
        RegionConfig::Simulated {
            ready_after_ms: 600,
            never_ready: false,
            persist: false,
            serve_http: true,
        },
    );
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let first = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let second = daemon
        .deploy_ready(&project.id, "production", "nginx:2")
        .await;
    daemon.wait_desired(&first, DesiredState::Standby).await;
    let third = daemon
        .deploy_ready(&project.id, "production", "nginx:3")
        .await;

    let rollback = {
        let channel = daemon.channel().await;
        let (third, first) = (third.clone(), first.clone());
        tokio::spawn(async move {
            let mut client =
                deployd::pb::deployment_service_client::DeploymentServiceClient::new(channel);
            client
                .rollback(deployd::pb::RollbackRequest {
                    source_deployment_id: third,
                    target_deployment_id: first,
                    ..Default::default()
                })
                .await
        })
    };
    // While `first` wakes, `second` (still running) is promoted.
    eventually("the wake starts", Duration::from_secs(5), || async {
        (daemon.running(&first)["us-east-1"] == 1).then_some(())
    })
    .await;
    daemon.promote(&second).await.unwrap();
    let error = rollback.await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::Aborted, "{}", error.message());
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        second
    );
    assert_eq!(
        daemon.get(&first).await.desired_state,
        DesiredState::Standby as i32
    );
    daemon.wait_running(&first, 0).await;
}

/// At start the daemon re-applies every stored desired state the drivers
/// have not confirmed: a scale-down cut short by a restart still happens.
/// The regions keep their state in files here, like a real cluster that
/// outlives the daemon.
#[tokio::test]
async fn a_restart_re_applies_stored_desired_state_to_the_drivers() {
    let mut config = config_with_standby_delay(200);
    for region in config.regions.values_mut() {
        if let RegionConfig::Simulated { persist, .. } = region {
            *persist = true;
        }
    }
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    daemon.region("us-east-1").set_unavailable(true);
    daemon.wait_desired(&first, DesiredState::Standby).await;
    eventually(
        "eu-central-1 scales down",
        Duration::from_secs(5),
        || async { (daemon.running(&first)["eu-central-1"] == 0).then_some(()) },
    )
    .await;
    assert_eq!(daemon.running(&first)["us-east-1"], 1, "not confirmed");

    // The region files still hold `first` in us-east-1.
    let daemon = daemon.stop().await.start().await;
    assert_eq!(daemon.wait_running(&first, 0).await, each_region(0));
    assert_eq!(daemon.running(&second), each_region(1));
    daemon.assert_world_matches(&second).await;
}
