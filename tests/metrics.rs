//! The Prometheus endpoint (`[metrics] listen`): scraped over HTTP after
//! deploys, a failed deploy, a rollback, a promote and edge requests, the
//! figures an operator pages on are there and add up.

mod common;

use std::collections::BTreeMap;

use common::http::{get, get_path};
use common::*;

/// `name{labels}` -> value, from Prometheus' text format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("a sample line");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not served; got {samples:#?}"))
}

#[tokio::test]
async fn the_endpoint_serves_deploy_rollback_store_actor_driver_and_edge_figures() {
    let mut config = fast_config();
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let daemon = TestDaemon::start_with(config).await;
    let endpoint = daemon.handle().metrics.expect("metrics are enabled");

    let project = daemon.project("acme", "web").await;
    let (older, newer) = daemon.two_production_deploys(&project.id).await;
    daemon.failed_deploy(&project.id).await;
    daemon.rollback(&newer, &older).await.expect("rollback");
    daemon.promote(&newer).await.expect("promote");
    let edge = daemon.edge();
    assert_eq!(get(edge, "web-acme.deployd.local", &[]).await.status, 200);
    assert_eq!(get(edge, "nobody.deployd.local", &[]).await.status, 404);

    let scraped = get_path(endpoint, "localhost", "/metrics", &[]).await;
    assert_eq!(scraped.status, 200, "{scraped:?}");
    let samples = samples(&scraped.body);
    let status = |s: &str| {
        value(
            &samples,
            &format!("deployd_deployment_status_total{{status=\"{s}\"}}"),
        )
    };
    assert_eq!(status("pending"), 3.0);
    assert_eq!(status("building"), 1.0, "the failed deploy is a git build");
    assert_eq!(status("deploying"), 2.0);
    assert_eq!(status("network"), 2.0);
    assert_eq!(status("ready"), 2.0);
    assert_eq!(status("failed"), 1.0);
    let step = |step: &str, outcome: &str| {
        value(
            &samples,
            &format!(
                "deployd_deployment_step_seconds_count{{outcome=\"{outcome}\",step=\"{step}\"}}"
            ),
        )
    };
    assert_eq!(step("deploy", "ok"), 2.0);
    assert_eq!(step("network", "ok"), 2.0);
    assert_eq!(step("build", "failed"), 1.0);
    assert_eq!(step("build", "ok"), 0.0);
    let switch = |op: &str| {
        value(
            &samples,
            &format!("deployd_switch_seconds_count{{operation=\"{op}\"}}"),
        )
    };
    assert_eq!(switch("rollback"), 1.0);
    assert_eq!(switch("promote"), 1.0);
    assert!(
        value(
            &samples,
            "deployd_switch_seconds_sum{operation=\"rollback\"}"
        ) > 0.0
    );

    // Every stored step is a commit; operations per commit sum to the
    // operations the writer reports.
    let commits = value(&samples, "deployd_store_commit_seconds_count");
    assert!(commits >= 10.0, "{commits} commits");
    assert_eq!(
        value(&samples, "deployd_store_operations_per_commit_count"),
        commits
    );
    let (stored_commits, operations, _) = daemon.handle().store.stats().snapshot();
    assert!(commits <= stored_commits as f64);
    assert!(value(&samples, "deployd_store_operations_per_commit_sum") <= operations as f64);

    assert!(value(&samples, "deployd_project_actors{state=\"running\"}") >= 1.0);
    assert_eq!(
        value(&samples, "deployd_project_actors{state=\"broken\"}"),
        0.0
    );
    assert_eq!(value(&samples, "deployd_mailbox_depth"), 0.0);
    assert_eq!(value(&samples, "deployd_mailbox_refusals_total"), 0.0);
    for region in HEALTHY_REGIONS {
        let errors = format!("deployd_driver_errors_total{{region=\"{region}\"}}");
        assert_eq!(value(&samples, &errors), 0.0);
    }
    assert_eq!(
        value(
            &samples,
            "deployd_edge_request_seconds_count{class=\"2xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "deployd_edge_request_seconds_count{class=\"4xx\"}"
        ),
        1.0
    );

    // Only GET /metrics is served.
    assert_eq!(get_path(endpoint, "localhost", "/", &[]).await.status, 404);
}

#[tokio::test]
async fn driver_errors_are_counted_by_region() {
    let mut config = fast_config();
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let daemon = TestDaemon::start_with(config).await;
    let endpoint = daemon.handle().metrics.expect("metrics are enabled");
    let project = daemon.project("acme", "web").await;
    daemon.region("us-east-1").set_unavailable(true);
    let id = daemon
        .create(image_request(&project.id, "production", "nginx:1"))
        .await;
    let samples = eventually(
        "a failed driver call is counted",
        std::time::Duration::from_secs(10),
        || async {
            let samples = samples(&get_path(endpoint, "localhost", "/metrics", &[]).await.body);
            (value(
                &samples,
                "deployd_driver_errors_total{region=\"us-east-1\"}",
            ) >= 1.0)
                .then_some(samples)
        },
    )
    .await;
    assert_eq!(
        value(
            &samples,
            "deployd_driver_errors_total{region=\"eu-central-1\"}"
        ),
        0.0
    );
    // Retried until the region is back.
    daemon.region("us-east-1").set_unavailable(false);
    daemon
        .wait_status(&id, deployd::pb::DeploymentStatus::Ready)
        .await;
}
