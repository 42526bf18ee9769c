//! Idempotency keys: a retry after a lost answer returns the original result
//! and changes nothing, even across a restart; a key re-used for another
//! request is refused; keys expire.

mod common;

use std::time::Duration;

use common::*;
use deployd::pb;
use tonic::Code;
use tonic::metadata::MetadataValue;

fn keyed(mut request: pb::CreateDeploymentRequest, key: &str) -> pb::CreateDeploymentRequest {
    request.idempotency_key = key.into();
    request
}

#[tokio::test]
async fn a_retried_deploy_returns_the_original_and_creates_nothing() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let request = keyed(
        image_request(&project.id, "production", "nginx:1"),
        "deploy-1",
    );
    let first = daemon.create(request.clone()).await;
    let again = daemon.create(request.clone()).await;
    assert_eq!(first, again);
    daemon
        .wait_status(&first, pb::DeploymentStatus::Ready)
        .await;
    let after_ready = daemon
        .deployments()
        .await
        .create_deployment(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after_ready.deployment_id, first);
    assert_eq!(
        after_ready.status,
        pb::DeploymentStatus::Pending as i32,
        "the original answer, not the current state"
    );
    assert_eq!(daemon.list(&project.id).await.len(), 1);

    // The same key with another request is refused and creates nothing.
    let error = daemon
        .deployments()
        .await
        .create_deployment(keyed(
            image_request(&project.id, "production", "nginx:2"),
            "deploy-1",
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{}", error.message());
    assert_eq!(daemon.list(&project.id).await.len(), 1);

    // Keys are per project.
    let other = daemon.project("other", "api").await;
    let other_id = daemon
        .create(keyed(
            image_request(&other.id, "production", "nginx:1"),
            "deploy-1",
        ))
        .await;
    assert_ne!(other_id, first);
}

#[tokio::test]
async fn the_key_may_come_as_metadata() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let with_metadata = |key: &'static str, body: pb::CreateDeploymentRequest| {
        let mut request = tonic::Request::new(body);
        request
            .metadata_mut()
            .insert("idempotency-key", MetadataValue::from_static(key));
        request
    };
    let request = image_request(&project.id, "production", "nginx:1");
    let first = daemon
        .deployments()
        .await
        .create_deployment(with_metadata("k1", request.clone()))
        .await
        .unwrap()
        .into_inner()
        .deployment_id;
    // The field and the metadata name the same key.
    let second = daemon.create(keyed(request.clone(), "k1")).await;
    assert_eq!(first, second);
    // Disagreeing field and metadata are refused.
    let error = daemon
        .deployments()
        .await
        .create_deployment(with_metadata("k1", keyed(request.clone(), "k2")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = daemon
        .deployments()
        .await
        .create_deployment(keyed(request, &"x".repeat(200)))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(daemon.list(&project.id).await.len(), 1);
}

#[tokio::test]
async fn retried_rollback_and_promote_return_the_original_and_change_nothing() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    let mut client = daemon.deployments().await;

    let rollback = pb::RollbackRequest {
        source_deployment_id: live.clone(),
        target_deployment_id: old.clone(),
        idempotency_key: "rollback-1".into(),
    };
    let first = client
        .rollback(rollback.clone())
        .await
        .unwrap()
        .into_inner();
    // Without the key this retry would be refused: the source is not live
    // any more.
    let again = client
        .rollback(rollback.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);

    let promote = pb::PromoteRequest {
        target_deployment_id: live.clone(),
        idempotency_key: "promote-1".into(),
    };
    let promoted = client.promote(promote.clone()).await.unwrap().into_inner();
    let routes = route_map(&daemon.routes(&project.id).await);
    let project_now = daemon.get_project(&project.id).await;
    // A retry of the earlier rollback must not roll back again.
    assert_eq!(client.rollback(rollback).await.unwrap().into_inner(), first);
    assert_eq!(
        client.promote(promote).await.unwrap().into_inner(),
        promoted
    );
    assert_eq!(route_map(&daemon.routes(&project.id).await), routes);
    assert_eq!(daemon.get_project(&project.id).await, project_now);
}

#[tokio::test]
async fn keys_survive_a_restart_and_expire() {
    let mut config = fast_config();
    config.idempotency_ttl_ms = 1_500;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let request = keyed(image_request(&project.id, "production", "nginx:1"), "k");
    let first = daemon.create(request.clone()).await;
    let daemon = daemon.stop().await.start().await;
    assert_eq!(daemon.create(request.clone()).await, first);
    assert_eq!(daemon.list(&project.id).await.len(), 1);

    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let fresh = daemon.create(request).await;
    assert_ne!(fresh, first, "an expired key runs the request again");
    assert_eq!(daemon.list(&project.id).await.len(), 2);
}

/// Settings mutations take keys too: a retried `SetEnvironmentRegions` or
/// `AddCustomDomain` returns the first answer and changes nothing more; the
/// same key with another request is refused.
#[tokio::test]
async fn settings_mutations_take_idempotency_keys() {
    // Domains attached at once, so the answer carries the route.
    let daemon = TestDaemon::start_with(config_without_domain_verification()).await;
    let project = daemon.project("acme", "web").await;
    daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let regions = |key: &str, replicas: u32| pb::SetEnvironmentRegionsRequest {
        project_id: project.id.clone(),
        environment_slug: "production".into(),
        regions: [("us-east-1".to_string(), replicas)].into(),
        idempotency_key: key.into(),
    };
    let mut projects = daemon.projects().await;
    let first = projects
        .set_environment_regions(regions("r1", 2))
        .await
        .unwrap()
        .into_inner();
    let retried = projects
        .set_environment_regions(regions("r1", 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retried);
    let error = projects
        .set_environment_regions(regions("r1", 3))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{}", error.message());
    let stored = daemon.get_project(&project.id).await;
    let production = stored
        .environments
        .iter()
        .find(|e| e.slug == "production")
        .unwrap();
    assert_eq!(production.regions["us-east-1"], 2);

    let domain = |key: &str, fqdn: &str| pb::AddCustomDomainRequest {
        project_id: project.id.clone(),
        fqdn: fqdn.into(),
        idempotency_key: key.into(),
    };
    let first = projects
        .add_custom_domain(domain("d1", "www.example.com"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.route.is_some(), "the project is live");
    // Without a key the second attempt is refused as a duplicate; with the
    // same key it is the first answer again.
    let retried = projects
        .add_custom_domain(domain("d1", "www.example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retried);
    let duplicate = projects
        .add_custom_domain(domain("", "www.example.com"))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let other = projects
        .add_custom_domain(domain("d1", "api.example.com"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument, "{}", other.message());
    let stored = daemon.get_project(&project.id).await;
    assert_eq!(stored.custom_domains, ["www.example.com"]);
    // And they survive a restart like every key.
    let daemon = daemon.stop().await.start().await;
    let again = daemon
        .projects()
        .await
        .add_custom_domain(domain("d1", "www.example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
}
