//! A data file written by the previous version (schema 1, record format 1:
//! `tests/fixtures/schema1`, made by `deployd` at commit d455284 with a
//! workspace, a project with two production deployments and a preview one,
//! a custom domain and a keyed rollback) is migrated on the first start and
//! reads back exactly: nothing is misread, keyed retries still return their
//! original answers, and the daemon goes on working on it.

mod common;

use std::collections::BTreeSet;

use common::*;
use deployd::pb;
use serde::Deserialize;

#[derive(Deserialize)]
struct Manifest {
    project_id: String,
    first: String,
    second: String,
    preview: String,
    second_key: String,
    rollback_key: String,
    /// (fqdn, kind name, deployment) as the old daemon listed them.
    rollback_routes: Vec<(String, String, String)>,
    routes: Vec<(String, String, String)>,
    first_hostnames: Vec<String>,
}

fn fixture() -> (tempfile::TempDir, Manifest) {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema1");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(here.join("deployd.redb"), dir.path().join("deployd.redb")).expect("copy");
    keep_idempotency_keys_alive(&dir.path().join("deployd.redb"));
    let manifest = std::fs::read(here.join("manifest.json")).expect("manifest");
    (
        dir,
        serde_json::from_slice(&manifest).expect("manifest json"),
    )
}

/// The fixture's idempotency records expire a day after it was made; a
/// test that retries them must not depend on the day it runs. Each record
/// (a format byte, then postcard) ends with `expires_at` as a varint, which
/// is replaced with one a day from now, so the keyed retries below are
/// within their lifetime whenever the test runs.
fn keep_idempotency_keys_alive(file: &std::path::Path) {
    const IDEMPOTENCY: redb::TableDefinition<(&str, &str), &[u8]> =
        redb::TableDefinition::new("idempotency");
    let db = redb::Database::open(file).expect("fixture opens");
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(IDEMPOTENCY).expect("idempotency table");
        let mut records = Vec::new();
        for entry in redb::ReadableTable::iter(&table).expect("iter") {
            let (key, value) = entry.expect("row");
            let (project, idempotency_key) = key.value();
            records.push((
                project.to_string(),
                idempotency_key.to_string(),
                value.value().to_vec(),
            ));
        }
        assert!(!records.is_empty(), "the fixture has keyed requests");
        let later = deployd::model::now_millis() + 24 * 60 * 60 * 1000;
        for (project, idempotency_key, mut record) in records {
            // The last varint: its final byte has the high bit clear, the
            // ones before it in the same varint have it set.
            let mut start = record.len() - 1;
            while start > 0 && record[start - 1] & 0x80 != 0 {
                start -= 1;
            }
            record.truncate(start);
            let mut value = later;
            while value >= 0x80 {
                record.push((value as u8) | 0x80);
                value >>= 7;
            }
            record.push(value as u8);
            table
                .insert(
                    (project.as_str(), idempotency_key.as_str()),
                    record.as_slice(),
                )
                .expect("rewrite");
        }
    }
    txn.commit().expect("commit");
}

fn kind_name(kind: i32) -> String {
    pb::RouteKind::try_from(kind)
        .map(|k| k.as_str_name().to_string())
        .unwrap_or_default()
}

fn triples(routes: &[pb::Route]) -> BTreeSet<(String, String, String)> {
    routes
        .iter()
        .map(|r| (r.fqdn.clone(), kind_name(r.kind), r.deployment_id.clone()))
        .collect()
}

#[tokio::test]
async fn a_schema_1_file_is_migrated_and_reads_back_exactly() {
    let (dir, m) = fixture();
    let daemon = TestDaemon::start_on(fast_config(), dir.path()).await;

    let project = daemon.get_project(&m.project_id).await;
    assert_eq!(project.live_deployment_id, m.first);
    assert!(project.is_rolled_back);
    assert_eq!(project.custom_domains, ["www.example.com"]);

    let routes = daemon.routes(&m.project_id).await;
    let expected: BTreeSet<_> = m.routes.iter().cloned().collect();
    assert_eq!(triples(&routes), expected);

    let first = daemon.get(&m.first).await;
    let mut hostnames = first.hostnames.clone();
    hostnames.sort();
    assert_eq!(hostnames, m.first_hostnames);
    assert_eq!(
        first.port, 8080,
        "format 1 deployments get the default port"
    );
    assert!(
        first
            .regions
            .iter()
            .all(|r| r.instances.iter().all(|i| i.address.is_empty()))
    );

    // The listings' new indexes were built from the old records.
    let ready = daemon
        .deployments()
        .await
        .list_deployments(pb::ListDeploymentsRequest {
            project_id: m.project_id.clone(),
            status: pb::DeploymentStatus::Ready as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deployments;
    let ids: Vec<_> = ready.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [m.preview.as_str(), m.second.as_str(), m.first.as_str()]
    );
    let preview = daemon
        .deployments()
        .await
        .list_deployments(pb::ListDeploymentsRequest {
            project_id: m.project_id.clone(),
            environment_slug: "preview".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deployments;
    assert_eq!(preview.len(), 1);

    // Keyed retries of requests made against the old version answer as
    // they did then (format 1 idempotency records are read).
    let mut deployments = daemon.deployments().await;
    let retried = deployments
        .rollback(pb::RollbackRequest {
            source_deployment_id: m.second.clone(),
            target_deployment_id: m.first.clone(),
            idempotency_key: m.rollback_key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let expected: BTreeSet<_> = m.rollback_routes.iter().cloned().collect();
    assert_eq!(triples(&retried.routes), expected);
    let project_after = retried.project.unwrap();
    assert_eq!(project_after.live_deployment_id, m.first);
    assert!(project_after.is_rolled_back);
    let again = deployments
        .create_deployment(pb::CreateDeploymentRequest {
            idempotency_key: m.second_key.clone(),
            ..image_request(&m.project_id, "production", "nginx:2")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.deployment_id, m.second);

    // The migrated project reserved its fixed names on start: another
    // project cannot take them.
    let clash = daemon
        .projects()
        .await
        .create_project(pb::CreateProjectRequest {
            workspace_id: project.workspace_id.clone(),
            slug: "web".into(),
            name: "again".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(clash.code(), tonic::Code::AlreadyExists);

    // And it goes on working: a new deploy, a confirmation, the regions.
    let newest = daemon
        .deploy_ready(&m.project_id, "production", "nginx:3")
        .await;
    daemon.promote(&m.first).await.unwrap();
    assert!(!daemon.get_project(&m.project_id).await.is_rolled_back);
    daemon.assert_world_matches(&newest).await;
    daemon.assert_world_matches(&m.first).await;
    drop(dir);
}
