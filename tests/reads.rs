//! Reads are paged and filtered: following `next_page_token` returns every
//! matching record once, in the documented order, and a filter returns
//! only what matches.

mod common;

use std::collections::BTreeSet;

use common::*;
use deployd::pb;
use deployd::pb::{DeploymentStatus, RouteKind};

async fn route_pages(
    daemon: &TestDaemon,
    project_id: &str,
    kind: RouteKind,
    page_size: u32,
) -> Vec<Vec<pb::Route>> {
    let mut client = daemon.routing().await;
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_routes(pb::ListRoutesRequest {
                project_id: project_id.into(),
                kind: kind as i32,
                page_size,
                page_token: token,
            })
            .await
            .expect("list routes")
            .into_inner();
        pages.push(page.routes);
        if page.next_page_token.is_empty() {
            return pages;
        }
        assert!(pages.len() < 100, "the pages never end");
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn routes_are_paged_in_kind_then_hostname_order_and_filter_by_kind() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    for (branch, sha) in [("one", SHA_A), ("two", SHA_B), ("three", SHA_A)] {
        let id = daemon
            .create(git_request(&project.id, "preview", branch, sha))
            .await;
        daemon.wait_status(&id, DeploymentStatus::Ready).await;
    }
    let all: Vec<pb::Route> = route_pages(&daemon, &project.id, RouteKind::Unspecified, 1000)
        .await
        .concat();
    // 3 DEPLOYMENT, 3 BRANCH, 2 COMMIT (one moved), 1 ENVIRONMENT.
    assert_eq!(all.len(), 9, "{all:?}");
    let order: Vec<(i32, String)> = all.iter().map(|r| (r.kind, r.fqdn.clone())).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "ordered by kind, then hostname");

    let pages = route_pages(&daemon, &project.id, RouteKind::Unspecified, 2).await;
    assert_eq!(pages.len(), 5);
    assert!(pages.iter().all(|p| p.len() <= 2));
    assert_eq!(pages.concat(), all, "pages add up to the whole listing");

    for kind in [RouteKind::Branch, RouteKind::Deployment, RouteKind::Commit] {
        let of_kind = route_pages(&daemon, &project.id, kind, 2).await.concat();
        let expected: Vec<pb::Route> = all
            .iter()
            .filter(|r| r.kind == kind as i32)
            .cloned()
            .collect();
        assert_eq!(of_kind, expected, "{kind:?}");
    }
    assert!(
        route_pages(&daemon, &project.id, RouteKind::Live, 10)
            .await
            .concat()
            .is_empty(),
        "no LIVE route before a production deploy"
    );
}

#[tokio::test]
async fn a_page_token_is_checked() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let mut client = daemon.routing().await;
    let status = client
        .list_routes(pb::ListRoutesRequest {
            project_id: project.id.clone(),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let status = daemon
        .deployments()
        .await
        .list_deployments(pb::ListDeploymentsRequest {
            project_id: project.id.clone(),
            page_token: "not-a-number".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn projects_are_paged_by_slug() {
    let daemon = TestDaemon::start().await;
    let first = daemon.project("acme", "p0").await;
    let workspace_id = first.workspace_id.clone();
    let mut projects = daemon.projects().await;
    for i in 1..7 {
        projects
            .create_project(pb::CreateProjectRequest {
                workspace_id: workspace_id.clone(),
                slug: format!("p{i}"),
                name: format!("P {i}"),
            })
            .await
            .expect("create project");
    }
    let mut slugs = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = projects
            .list_projects(pb::ListProjectsRequest {
                workspace_id: workspace_id.clone(),
                page_size: 3,
                page_token: token,
            })
            .await
            .expect("list projects")
            .into_inner();
        pages += 1;
        assert!(page.projects.len() <= 3);
        slugs.extend(page.projects.into_iter().map(|p| p.slug));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    assert_eq!(slugs, expected);
}

#[tokio::test]
async fn filtered_deployment_pages_return_exactly_the_matches_newest_first() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let mut ready_preview = Vec::new();
    for i in 0..4 {
        let id = daemon
            .deploy_ready(&project.id, "preview", &format!("nginx:{i}"))
            .await;
        ready_preview.push(id);
        daemon
            .deploy_ready(&project.id, "production", &format!("nginx:p{i}"))
            .await;
    }
    let failed = daemon.failed_deploy(&project.id).await;

    let pages_of = |environment: &'static str, status: DeploymentStatus| {
        let daemon = &daemon;
        let project_id = project.id.clone();
        async move {
            let mut client = daemon.deployments().await;
            let mut ids = Vec::new();
            let mut token = String::new();
            for _ in 0..100 {
                let page = client
                    .list_deployments(pb::ListDeploymentsRequest {
                        project_id: project_id.clone(),
                        environment_slug: environment.into(),
                        status: status as i32,
                        page_size: 2,
                        page_token: token,
                    })
                    .await
                    .expect("list deployments")
                    .into_inner();
                for d in &page.deployments {
                    if !environment.is_empty() {
                        assert_eq!(d.environment_slug, environment);
                    }
                    if status != DeploymentStatus::Unspecified {
                        assert_eq!(d.status, status as i32);
                    }
                }
                ids.extend(page.deployments.into_iter().map(|d| d.id));
                if page.next_page_token.is_empty() {
                    return ids;
                }
                token = page.next_page_token;
            }
            panic!("the pages never end");
        }
    };
    let mut newest_first = ready_preview.clone();
    newest_first.reverse();
    assert_eq!(
        pages_of("preview", DeploymentStatus::Ready).await,
        newest_first
    );
    assert_eq!(pages_of("", DeploymentStatus::Failed).await, vec![failed]);
    assert!(
        pages_of("preview", DeploymentStatus::Failed)
            .await
            .is_empty()
    );
    let production = pages_of("production", DeploymentStatus::Unspecified).await;
    assert_eq!(production.len(), 5, "four READY and the failed one");
    let unique: BTreeSet<&String> = production.iter().collect();
    assert_eq!(unique.len(), 5, "no deployment twice across pages");
}
