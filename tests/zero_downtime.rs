//! Zero downtime through the edge, with simulated instances: 16 clients
//! keep requesting the LIVE hostname while the test deploys, rolls back,
//! promotes and rolls back to a STANDBY target (woken first). Every answer
//! is 200, and every request sent after an acknowledgement is served by
//! the new target.

mod common;

use common::traffic::Traffic;
use common::*;
use deployd::pb::DesiredState;

const LIVE_HOST: &str = "web-acme.deployd.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_every_switch_without_a_failed_request() {
    let mut config = fast_config();
    config.standby_delay_ms = 1_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let first = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let traffic = Traffic::start(daemon.edge(), LIVE_HOST, 16);

    let second = daemon
        .create(image_request(&project.id, "production", "nginx:2"))
        .await;
    traffic
        .switch(&second, async {
            daemon
                .wait_status(&second, deployd::pb::DeploymentStatus::Ready)
                .await;
        })
        .await;
    traffic
        .switch(&first, async {
            daemon.rollback(&second, &first).await.expect("rollback");
        })
        .await;
    traffic
        .switch(&second, async {
            daemon.promote(&second).await.expect("promote");
        })
        .await;
    // The promote scheduled the first deployment for standby.
    daemon.wait_desired(&first, DesiredState::Standby).await;
    daemon.drivers_settled().await;
    assert!(daemon.running(&first).values().all(|r| *r == 0));
    traffic
        .switch(&first, async {
            daemon
                .rollback(&second, &first)
                .await
                .expect("rollback to a standby target");
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let requests = traffic.verify().await;
    assert!(requests > 100, "only {requests} requests were sent");
    eprintln!("{requests} requests, all 200, each after an acknowledgement at its target");
}
