//! Scheduled standby: the previous live deployment goes to `STANDBY` after
//! the standby delay, last writer wins, and a rollback or promote wakes a
//! `STANDBY` target before switching (or changes nothing if it cannot).

mod common;

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

#[tokio::test]
async fn the_previous_live_deployment_goes_to_standby_after_the_delay() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(200)).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;

    let standby = daemon.wait_desired(&first, DesiredState::Standby).await;
    assert!(
        standby
            .regions
            .iter()
            .all(|r| r.desired_status == "stopped" && r.instances.is_empty())
    );
    // The live one is untouched, and so are the routes.
    assert_eq!(
        daemon.get(&second).await.desired_state,
        DesiredState::Running as i32
    );
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
}

#[tokio::test]
async fn promote_wakes_a_standby_target_and_schedules_the_previous_live() {
    let daemon = TestDaemon::start_with(config_with_standby_delay(150)).await;
    let project = daemon.project("acme", "web").await;
    let (first, second) = daemon.two_production_deploys(&project.id).await;
    daemon.wait_desired(&first, DesiredState::Standby).await;

    daemon.promote(&first).await.unwrap();
    assert_eq!(
        daemon.get(&first).await.desired_state,
        DesiredState::Running as i32
    );
    daemon.wait_desired(&second, DesiredState::Standby).await;
    assert_eq!(
        daemon.get(&first).await.desired_state,
        DesiredState::Running as i32
    );
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
    daemon.wait_desired(&first, DesiredState::Standby).await;
    assert_eq!(
        daemon.get(&second).await.desired_state,
        DesiredState::Running as i32
    );
}

#[tokio::test]
async fn a_wake_that_fails_changes_nothing() {
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
}
