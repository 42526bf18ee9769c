//! The data file failing under the daemon: a full disk (injected: every
//! write fails with ENOSPC), damage inside a cleanly closed file, damage
//! met while serving, an empty file, and `deployd check` never writing.

mod common;

use std::time::Duration;

use common::storage::{damage_file, health};
use common::*;
use deployd::io::store::check::{check_backend, check_file};
use deployd::io::store::guarded::WritesForbidden;
use deployd::model::DeploymentId;
use deployd::pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const MARKER: &str = "registry.test/damage-me-7f3a";

async fn try_create(
    daemon: &TestDaemon,
    project_id: &str,
    image: &str,
) -> Result<String, tonic::Status> {
    daemon
        .deployments()
        .await
        .create_deployment(image_request(project_id, "production", image))
        .await
        .map(|r| r.into_inner().deployment_id)
}

#[tokio::test]
async fn a_full_disk_refuses_changes_and_writes_resume_without_a_restart() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let before = daemon
        .deploy_ready(&project.id, "production", "registry.test/web:1")
        .await;
    let failures_before = daemon.stats().await.project_actor_failures;

    daemon.handle().store.disk_faults().set_no_space(true);
    let refused = try_create(&daemon, &project.id, "registry.test/web:2")
        .await
        .expect_err("refused while the disk is full");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("the data file cannot be written: no space left on device"),
        "{}",
        refused.message()
    );
    eventually("health NOT_SERVING", Duration::from_secs(5), || async {
        (health(&daemon.addr).await == ServingStatus::NotServing).then_some(())
    })
    .await;
    // Other mutations are refused the same way, with the reason.
    let other = daemon
        .workspaces()
        .await
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "other".into(),
            name: "Other".into(),
        })
        .await
        .expect_err("refused while the disk is full");
    assert_eq!(other.code(), Code::Unavailable, "{other:?}");
    assert!(
        other.message().contains("no space left on device"),
        "{other:?}"
    );

    daemon.handle().store.disk_faults().set_no_space(false);
    let after = eventually(
        "a deployment is accepted again",
        Duration::from_secs(15),
        || async {
            try_create(&daemon, &project.id, "registry.test/web:3")
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(health(&daemon.addr).await, ServingStatus::Serving);
    daemon
        .wait_status(&after, pb::DeploymentStatus::Ready)
        .await;
    assert_eq!(
        daemon.get(&before).await.status,
        pb::DeploymentStatus::Ready as i32
    );
    let stats = daemon.stats().await;
    assert!(stats.failed_commits >= 1, "{stats:?}");
    assert_eq!(
        stats.project_actor_failures, failures_before,
        "a full disk is not a fault of the project"
    );
    assert_eq!(stats.broken_projects, 0);

    // Everything acknowledged survives a restart too.
    let restarted = daemon.stop().await.start().await;
    for id in [&before, &after] {
        assert_eq!(
            restarted.get(id).await.status,
            pb::DeploymentStatus::Ready as i32
        );
    }
    let live = restarted.get_project(&project.id).await;
    assert_eq!(live.live_deployment_id, after);
}

#[tokio::test]
async fn a_damaged_file_is_refused_at_start_and_check_reports_it_without_writing() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    for _ in 0..3 {
        daemon.deploy_ready(&project.id, "production", MARKER).await;
    }
    let stopped = daemon.stop().await;
    let path = stopped.db_path();
    let hits = damage_file(&path, MARKER.as_bytes());
    assert!(hits > 0, "the marker is in the file");
    let damaged = std::fs::read(&path).unwrap();

    let error = refused_start(path.parent().unwrap()).await.to_string();
    assert!(error.contains("is damaged"), "{error}");
    assert!(error.contains("deployd check"), "{error}");
    assert!(error.contains("deployd.redb"), "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "start wrote nothing"
    );

    let report = check_file(&path).expect("check runs");
    assert!(!report.is_sound(), "{}", report.summary());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "check wrote nothing"
    );
}

#[tokio::test]
async fn damage_met_while_serving_stops_writes_and_is_never_a_cancelled_call() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let first = daemon
        .deploy_ready(&project.id, "production", "registry.test/web:1")
        .await;
    let id = DeploymentId::parse(&first, "deployment").unwrap();
    daemon
        .handle()
        .store
        .overwrite_deployment_bytes(&id, &[0x02, 0xff, 0xff, 0xff])
        .unwrap();

    let read = daemon
        .deployments()
        .await
        .get_deployment(pb::GetDeploymentRequest {
            deployment_id: first.clone(),
        })
        .await
        .expect_err("the record cannot be read");
    assert_eq!(read.code(), Code::Unavailable, "{read:?}");
    assert!(
        read.message().contains("the data file is damaged"),
        "{read:?}"
    );
    assert!(read.message().contains("deployd check"), "{read:?}");
    eventually("health NOT_SERVING", Duration::from_secs(5), || async {
        (health(&daemon.addr).await == ServingStatus::NotServing).then_some(())
    })
    .await;

    let commits = daemon.handle().store.stats().snapshot().0;
    let refused = try_create(&daemon, &project.id, "registry.test/web:2")
        .await
        .expect_err("no writes into a damaged file");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("damaged"), "{refused:?}");
    assert_eq!(
        daemon.handle().store.stats().snapshot().0,
        commits,
        "nothing was committed"
    );
}

#[tokio::test]
async fn an_empty_data_file_is_refused_and_left_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployd.redb");
    std::fs::write(&path, b"").unwrap();
    let error = refused_start(dir.path()).await.to_string();
    assert!(error.contains("empty"), "{error}");
    assert!(error.contains("deployd.redb"), "{error}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert!(check_file(&path).is_err(), "check refuses it too");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test]
async fn check_never_writes_and_reads_a_read_only_copy() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    daemon.two_production_deploys(&project.id).await;
    let stopped = daemon.stop().await;
    let path = stopped.db_path();
    let original = std::fs::read(&path).unwrap();

    let report = check_file(&path).expect("check runs");
    assert!(report.is_sound(), "{}", report.summary());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "not one byte changed"
    );

    // Through a backend that refuses every write: permissions do not stop
    // root, this does.
    let file = std::fs::File::open(&path).unwrap();
    let backend = WritesForbidden(redb::backends::FileBackend::new(file).unwrap());
    let report = check_backend(backend).expect("check runs without writing");
    assert!(report.is_sound(), "{}", report.summary());

    // A 0444 copy in a read-only directory.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("deployd.redb");
    std::fs::write(&copy, &original).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let report = check_file(&copy);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = report.expect("check reads a read-only copy");
    assert!(report.is_sound(), "{}", report.summary());
    assert_eq!(std::fs::read(&copy).unwrap(), original);
}

#[tokio::test]
async fn check_refuses_a_file_a_running_daemon_holds() {
    let daemon = TestDaemon::start().await;
    let path = daemon.data_dir().join("deployd.redb");
    let error = check_file(&path).expect_err("the daemon holds the file");
    assert!(error.to_string().contains("in use"), "{error}");
}
