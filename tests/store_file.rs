//! The data file itself: a corrupt or incompatible file is refused, never
//! recreated; `check_file` (behind `deployd check`) verifies integrity and
//! the invariants offline.

mod common;

use common::*;
use deployd::io::store::Mutation;
use deployd::io::store::check::check_file;
use deployd::model::{DeploymentId, ProjectId, Route, RouteKind, ScheduledAction, ScheduledChange};

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployd.redb");
    let garbage = b"this is not a redb file, and it must survive".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let error = refused_start(dir.path()).await;
    assert!(error.to_string().contains("deployd.redb"), "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is untouched"
    );
}

#[tokio::test]
async fn a_file_from_an_incompatible_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployd.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut table = txn.open_table(meta).unwrap();
            table
                .insert("schema_version", 99u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let error = refused_start(dir.path()).await;
    assert!(error.to_string().contains("schema"), "{error}");
}

#[tokio::test]
async fn check_passes_on_a_healthy_file_and_names_a_broken_invariant() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    daemon.rollback(&live, &old).await.unwrap();
    let failed = daemon.failed_deploy(&project.id).await;
    let stopped = daemon.stop().await;

    let report = check_file(&stopped.db_path()).unwrap();
    assert!(report.is_sound(), "{}", report.summary());
    assert_eq!(report.projects, 1);
    assert_eq!(report.deployments, 3);
    assert_eq!(report.unfinished, 0);

    // Point the LIVE hostname at the failed deployment behind the daemon's
    // back: both invariant 1 and 2 are broken, and the check says so.
    stopped
        .write_offline(vec![Mutation::PutRoute(Route {
            fqdn: "web-acme.deployd.local".into(),
            project_id: ProjectId::parse(&project.id, "p").unwrap(),
            environment: "production".into(),
            kind: RouteKind::Live,
            deployment_id: DeploymentId::parse(&failed, "d").unwrap(),
            deployment_sequence: 3,
        })])
        .await;
    let report = check_file(&stopped.db_path()).unwrap();
    assert!(!report.is_sound());
    let text = report.summary();
    assert!(text.contains("which is FAILED"), "{text}");
    assert!(text.contains("but project"), "{text}");
}

#[test]
fn check_refuses_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let error = check_file(&dir.path().join("absent.redb")).unwrap_err();
    assert!(error.to_string().contains("no data file"), "{error}");
    assert!(!dir.path().join("absent.redb").exists(), "not created");
}

#[tokio::test]
async fn check_reports_a_live_project_without_a_live_route() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    daemon.two_production_deploys(&project.id).await;
    let stopped = daemon.stop().await;
    assert!(check_file(&stopped.db_path()).unwrap().is_sound());

    // Lose the LIVE route behind the daemon's back, the way a skipped write
    // would: every other record still says the project is live.
    {
        let db = redb::Database::open(stopped.db_path()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let routes: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("routes");
            let mut table = txn.open_table(routes).unwrap();
            assert!(table.remove("web-acme.deployd.local").unwrap().is_some());
        }
        txn.commit().unwrap();
    }
    let report = check_file(&stopped.db_path()).unwrap();
    let text = report.summary();
    assert!(!report.is_sound(), "{text}");
    assert!(text.contains("has no LIVE route"), "{text}");
}

#[tokio::test]
async fn check_names_every_broken_route_schedule_and_index_entry() {
    let daemon = TestDaemon::start().await;
    let web = daemon.project("acme", "web").await;
    let api = daemon.project("globex", "api").await;
    let (web_old, _web_live) = daemon.two_production_deploys(&web.id).await;
    let api_live = daemon.deploy_ready(&api.id, "production", "nginx:1").await;
    let stopped = daemon.stop().await;
    let healthy = check_file(&stopped.db_path()).unwrap();
    assert!(healthy.is_sound(), "{}", healthy.summary());

    let web_id = ProjectId::parse(&web.id, "p").unwrap();
    let unknown = DeploymentId::parse("dep_zzzzzzzzzzzzzzzz", "d").unwrap();
    let route = |fqdn: &str, environment: &str, deployment: &str| {
        Mutation::PutRoute(Route {
            fqdn: fqdn.into(),
            project_id: web_id.clone(),
            environment: environment.into(),
            kind: RouteKind::Environment,
            deployment_id: DeploymentId::parse(deployment, "d").unwrap(),
            deployment_sequence: 1,
        })
    };
    stopped
        .write_offline(vec![
            route("foreign-acme.deployd.local", "production", &api_live),
            route("staging-web-acme.deployd.local", "staging", &web_old),
            route(
                "lost-web-acme.deployd.local",
                "production",
                unknown.as_str(),
            ),
            Mutation::PutSchedule {
                project_id: web_id.clone(),
                change: ScheduledChange {
                    deployment_id: unknown.clone(),
                    action: ScheduledAction::Standby,
                    due_at: 4_000_000_000_000,
                },
            },
        ])
        .await;
    // A finished deployment still listed as in flight.
    {
        let db = redb::Database::open(stopped.db_path()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let in_flight: redb::TableDefinition<(&str, &str), ()> =
                redb::TableDefinition::new("in_flight");
            let mut table = txn.open_table(in_flight).unwrap();
            table
                .insert((web.id.as_str(), web_old.as_str()), ())
                .unwrap();
        }
        txn.commit().unwrap();
    }

    let report = check_file(&stopped.db_path()).unwrap();
    let text = report.summary();
    assert_eq!(report.routes, healthy.routes + 3, "{text}");
    assert_eq!(report.schedules, healthy.schedules + 1, "{text}");
    for expected in [
        format!("route foreign-acme.deployd.local points at {api_live} of another project"),
        format!("route staging-web-acme.deployd.local (staging) points at {web_old} in production"),
        format!("route lost-web-acme.deployd.local points at unknown deployment {unknown}"),
        format!(
            "project {} has a schedule for unknown deployment {unknown}",
            web.id
        ),
        format!("deployment {web_old} is READY but the in-flight index still lists it"),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(report.problems.len(), 5, "{text}");
}
