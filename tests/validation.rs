//! Bad input: every malformed, oversize or unknown field gets a clear
//! INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION / ALREADY_EXISTS and
//! changes nothing. One table, one checker.

mod common;

use common::raw_codec::RawCodec;
use common::*;
use deployd::pb;
use deployd::pb::create_deployment_request::Source;
use tonic::Code;
use tonic::codegen::Bytes;
use tonic::codegen::http::uri::PathAndQuery;

#[allow(clippy::large_enum_variant)] // a test table, built once
enum Call {
    Workspace(pb::CreateWorkspaceRequest),
    GetWorkspace(&'static str),
    Project(pb::CreateProjectRequest),
    GetProject(String),
    ListProjects(String),
    Regions(pb::SetEnvironmentRegionsRequest),
    Domain(pb::AddCustomDomainRequest),
    Verify(pb::VerifyCustomDomainRequest),
    Remove(pb::RemoveCustomDomainRequest),
    Deploy(pb::CreateDeploymentRequest),
    GetDeployment(String),
    List(pb::ListDeploymentsRequest),
    Watch(String),
    Routes(String),
}

async fn run(daemon: &TestDaemon, call: Call) -> Result<(), tonic::Status> {
    match call {
        Call::Workspace(r) => daemon
            .workspaces()
            .await
            .create_workspace(r)
            .await
            .map(drop),
        Call::GetWorkspace(id) => daemon
            .workspaces()
            .await
            .get_workspace(pb::GetWorkspaceRequest {
                workspace_id: id.into(),
            })
            .await
            .map(drop),
        Call::Project(r) => daemon.projects().await.create_project(r).await.map(drop),
        Call::GetProject(id) => daemon
            .projects()
            .await
            .get_project(pb::GetProjectRequest { project_id: id })
            .await
            .map(drop),
        Call::ListProjects(id) => daemon
            .projects()
            .await
            .list_projects(pb::ListProjectsRequest {
                workspace_id: id,
                ..Default::default()
            })
            .await
            .map(drop),
        Call::Regions(r) => daemon
            .projects()
            .await
            .set_environment_regions(r)
            .await
            .map(drop),
        Call::Domain(r) => daemon.projects().await.add_custom_domain(r).await.map(drop),
        Call::Verify(r) => daemon
            .projects()
            .await
            .verify_custom_domain(r)
            .await
            .map(drop),
        Call::Remove(r) => daemon
            .projects()
            .await
            .remove_custom_domain(r)
            .await
            .map(drop),
        Call::Deploy(r) => daemon
            .deployments()
            .await
            .create_deployment(r)
            .await
            .map(drop),
        Call::GetDeployment(id) => daemon
            .deployments()
            .await
            .get_deployment(pb::GetDeploymentRequest { deployment_id: id })
            .await
            .map(drop),
        Call::List(r) => daemon
            .deployments()
            .await
            .list_deployments(r)
            .await
            .map(drop),
        Call::Watch(id) => daemon
            .deployments()
            .await
            .watch_deployment(pb::WatchDeploymentRequest { deployment_id: id })
            .await
            .map(drop),
        Call::Routes(id) => daemon
            .routing()
            .await
            .list_routes(pb::ListRoutesRequest {
                project_id: id,
                ..Default::default()
            })
            .await
            .map(drop),
    }
}

fn deploy_with(project: &str, edit: impl FnOnce(&mut pb::CreateDeploymentRequest)) -> Call {
    let mut request = git_request(project, "production", "main", SHA_A);
    edit(&mut request);
    Call::Deploy(request)
}

fn git(edit: impl FnOnce(&mut pb::GitSource)) -> impl FnOnce(&mut pb::CreateDeploymentRequest) {
    move |r| {
        if let Some(Source::Git(git)) = &mut r.source {
            edit(git);
        }
    }
}

fn image(image: &str) -> impl FnOnce(&mut pb::CreateDeploymentRequest) + use<> {
    let image = image.to_string();
    move |r| r.source = Some(Source::DockerImage(pb::DockerImage { image }))
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_code_and_changes_nothing() {
    // "taken.example.com" must be attached to the other project at once.
    let daemon = TestDaemon::start_with(config_without_domain_verification()).await;
    let project = daemon.project("acme", "web").await;
    let other = daemon.project("other", "api").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: other.id.clone(),
            fqdn: "taken.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let p = project.id.as_str();
    let unknown_project = "prj_0000000000000000".to_string();
    let unknown_workspace = "ws_0000000000000000";
    let huge = "x".repeat(100_000);

    let cases: Vec<(&str, Call, Code)> = vec![
        // Workspaces
        (
            "workspace: empty slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "".into(),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: upper-case slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "Acme".into(),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: slug ends with -",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "acme-".into(),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: oversize slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "a".repeat(33),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: empty name",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "new".into(),
                name: " ".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: oversize name",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "new".into(),
                name: huge.clone(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: control characters",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "new".into(),
                name: "a\nb".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: duplicate slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "acme".into(),
                name: "n".into(),
            }),
            Code::AlreadyExists,
        ),
        (
            "workspace: malformed id",
            Call::GetWorkspace("acme"),
            Code::InvalidArgument,
        ),
        (
            "workspace: unknown id",
            Call::GetWorkspace(unknown_workspace),
            Code::NotFound,
        ),
        // Projects
        (
            "project: empty workspace id",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: "".into(),
                slug: "x".into(),
                name: "x".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "project: unknown workspace",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: unknown_workspace.into(),
                slug: "x".into(),
                name: "x".into(),
            }),
            Code::NotFound,
        ),
        (
            "project: bad slug",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: project.workspace_id.clone(),
                slug: "no_underscores".into(),
                name: "x".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "project: duplicate slug",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: project.workspace_id.clone(),
                slug: "web".into(),
                name: "x".into(),
            }),
            Code::AlreadyExists,
        ),
        (
            "project: malformed id",
            Call::GetProject("web".into()),
            Code::InvalidArgument,
        ),
        (
            "project: unknown id",
            Call::GetProject(unknown_project.clone()),
            Code::NotFound,
        ),
        (
            "projects: unknown workspace",
            Call::ListProjects(unknown_workspace.into()),
            Code::NotFound,
        ),
        (
            "regions: unknown region",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("mars-1".to_string(), 1)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: zero replicas",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("us-east-1".to_string(), 0)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: too many replicas",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("us-east-1".to_string(), 10_000)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: malformed region",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("US EAST".to_string(), 1)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: unknown environment",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "staging".into(),
                regions: Default::default(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "regions: unknown project",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: unknown_project.clone(),
                environment_slug: "production".into(),
                regions: Default::default(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "domain: not a domain",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "localhost".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "domain: upper case",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "WWW.example.com".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "domain: under the apex",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "evil-acme.deployd.local".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "domain: taken by another project",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "taken.example.com".into(),
                ..Default::default()
            }),
            Code::AlreadyExists,
        ),
        (
            "domain: oversize",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: format!("{}.com", "a.".repeat(200)),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "verify: not a domain",
            Call::Verify(pb::VerifyCustomDomainRequest {
                project_id: p.into(),
                fqdn: "localhost".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "verify: unknown project",
            Call::Verify(pb::VerifyCustomDomainRequest {
                project_id: unknown_project.clone(),
                fqdn: "www.example.com".into(),
            }),
            Code::NotFound,
        ),
        (
            "verify: not claimed by the project",
            Call::Verify(pb::VerifyCustomDomainRequest {
                project_id: p.into(),
                fqdn: "taken.example.com".into(),
            }),
            Code::FailedPrecondition,
        ),
        (
            "remove: not a domain",
            Call::Remove(pb::RemoveCustomDomainRequest {
                project_id: p.into(),
                fqdn: "localhost".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "remove: unknown project",
            Call::Remove(pb::RemoveCustomDomainRequest {
                project_id: unknown_project.clone(),
                fqdn: "www.example.com".into(),
            }),
            Code::NotFound,
        ),
        (
            "remove: neither attached nor claimed",
            Call::Remove(pb::RemoveCustomDomainRequest {
                project_id: p.into(),
                fqdn: "never.example.com".into(),
            }),
            Code::NotFound,
        ),
        // Deployments
        (
            "deploy: empty project",
            deploy_with(p, |r| r.project_id.clear()),
            Code::InvalidArgument,
        ),
        (
            "deploy: unknown project",
            deploy_with(p, |r| r.project_id = unknown_project.clone()),
            Code::NotFound,
        ),
        (
            "deploy: empty environment",
            deploy_with(p, |r| r.environment_slug.clear()),
            Code::InvalidArgument,
        ),
        (
            "deploy: unknown environment",
            deploy_with(p, |r| r.environment_slug = "staging".into()),
            Code::NotFound,
        ),
        (
            "deploy: no source",
            deploy_with(p, |r| r.source = None),
            Code::InvalidArgument,
        ),
        (
            "deploy: git without branch",
            deploy_with(p, |r| r.branch.clear()),
            Code::InvalidArgument,
        ),
        (
            "deploy: bad branch",
            deploy_with(p, |r| r.branch = "a..b".into()),
            Code::InvalidArgument,
        ),
        (
            "deploy: branch with a shell",
            deploy_with(p, |r| r.branch = "main; rm -rf /".into()),
            Code::InvalidArgument,
        ),
        (
            "deploy: oversize branch",
            deploy_with(p, |r| r.branch = "b".repeat(300)),
            Code::InvalidArgument,
        ),
        (
            "deploy: short sha",
            deploy_with(p, git(|g| g.commit_sha = "abc".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: non-hex sha",
            deploy_with(p, git(|g| g.commit_sha = "zzzzzzz".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: empty repository",
            deploy_with(p, git(|g| g.repository.clear())),
            Code::InvalidArgument,
        ),
        (
            "deploy: repository with spaces",
            deploy_with(p, git(|g| g.repository = "https://x y".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: local path repository",
            deploy_with(p, git(|g| g.repository = "/etc/passwd".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: context escapes",
            deploy_with(p, git(|g| g.context_path = "../..".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: absolute dockerfile",
            deploy_with(p, git(|g| g.dockerfile_path = "/Dockerfile".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: repository with a fragment",
            deploy_with(p, git(|g| g.repository.push_str("#main"))),
            Code::InvalidArgument,
        ),
        (
            "deploy: repository with a query",
            deploy_with(p, git(|g| g.repository.push_str("?ref=main"))),
            Code::InvalidArgument,
        ),
        (
            "deploy: plain http repository",
            deploy_with(
                p,
                git(|g| g.repository = "http://git.example.test/a.git".into()),
            ),
            Code::InvalidArgument,
        ),
        (
            "deploy: credentials in the repository",
            deploy_with(
                p,
                git(|g| g.repository = "https://me:hunter2@git.example.test/a.git".into()),
            ),
            Code::InvalidArgument,
        ),
        (
            "deploy: ssh option as a host",
            deploy_with(
                p,
                git(|g| g.repository = "ssh://-oProxyCommand=touch%20x/a.git".into()),
            ),
            Code::InvalidArgument,
        ),
        (
            "deploy: option as an scp path",
            deploy_with(
                p,
                git(|g| g.repository = "git@git.example.test:--upload-pack=x".into()),
            ),
            Code::InvalidArgument,
        ),
        (
            "deploy: metadata repository",
            deploy_with(
                p,
                git(|g| g.repository = "https://169.254.169.254/latest/meta-data".into()),
            ),
            Code::InvalidArgument,
        ),
        (
            "deploy: link-local v6 repository",
            deploy_with(
                p,
                git(|g| g.repository = "ssh://git@[fe80::1]/a.git".into()),
            ),
            Code::InvalidArgument,
        ),
        (
            "deploy: decimal metadata address",
            deploy_with(p, git(|g| g.repository = "https://2852039166/a.git".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: context with a '.' segment",
            deploy_with(p, git(|g| g.context_path = "./app".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: dockerfile with '#'",
            deploy_with(p, git(|g| g.dockerfile_path = "Dockerfile#x".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: context with ':'",
            deploy_with(p, git(|g| g.context_path = "c:app".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: dockerfile with a space",
            deploy_with(p, git(|g| g.dockerfile_path = "my Dockerfile".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: context with an empty segment",
            deploy_with(p, git(|g| g.context_path = "app/".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: commit time after 9999",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    committed_at: Some(pbjson_types::Timestamp {
                        seconds: 253_402_300_800,
                        nanos: 0,
                    }),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: commit time with negative nanos",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    committed_at: Some(pbjson_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: -1,
                    }),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "list: 1 MB environment filter",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                environment_slug: "e".repeat(1 << 20),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: empty image",
            deploy_with(p, image("")),
            Code::InvalidArgument,
        ),
        (
            "deploy: malformed image",
            deploy_with(p, image("nginx:latest; curl evil")),
            Code::InvalidArgument,
        ),
        (
            "deploy: upper-case image",
            deploy_with(p, image("NGINX")),
            Code::InvalidArgument,
        ),
        (
            "deploy: oversize image",
            deploy_with(p, image(&format!("nginx:{}", "1".repeat(600)))),
            Code::InvalidArgument,
        ),
        (
            "deploy: bad commit metadata sha",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    sha: "xyz".into(),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: oversize commit message",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    message: huge.clone(),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: negative commit time",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    committed_at: Some(pbjson_types::Timestamp {
                        seconds: -5,
                        nanos: 0,
                    }),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: too many command args",
            deploy_with(p, |r| r.command = vec!["x".into(); 65]),
            Code::InvalidArgument,
        ),
        (
            "deploy: NUL in command",
            deploy_with(p, |r| r.command = vec!["a\0b".into()]),
            Code::InvalidArgument,
        ),
        (
            "get: malformed id",
            Call::GetDeployment("dep_../../etc".into()),
            Code::InvalidArgument,
        ),
        (
            "get: empty id",
            Call::GetDeployment(String::new()),
            Code::InvalidArgument,
        ),
        (
            "get: unknown id",
            Call::GetDeployment("dep_0000000000000000".into()),
            Code::NotFound,
        ),
        (
            "list: unknown status",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                status: 99,
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "list: page too large",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                page_size: 100_000,
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "list: bad page token",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                page_token: "garbage".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "list: unknown environment",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                environment_slug: "staging".into(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "list: unknown project",
            Call::List(pb::ListDeploymentsRequest {
                project_id: unknown_project.clone(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "watch: malformed id",
            Call::Watch("nope".into()),
            Code::InvalidArgument,
        ),
        (
            "watch: unknown id",
            Call::Watch("dep_0000000000000000".into()),
            Code::NotFound,
        ),
        (
            "routes: malformed id",
            Call::Routes("".into()),
            Code::InvalidArgument,
        ),
        (
            "routes: unknown project",
            Call::Routes(unknown_project.clone()),
            Code::NotFound,
        ),
    ];

    let project_before = daemon.get_project(p).await;
    let routes_before = daemon.routes(p).await;
    let deployments_before = daemon.list(p).await;
    for (name, call, code) in cases {
        let status = run(&daemon, call).await.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {}", status.message());
        assert!(
            !status.message().is_empty() && status.message().len() < 300,
            "{name}: message should be short and say what is wrong: {}",
            status.message()
        );
    }
    assert_eq!(daemon.get_project(p).await, project_before);
    assert_eq!(daemon.routes(p).await, routes_before);
    assert_eq!(daemon.list(p).await, deployments_before);
    assert_eq!(daemon.get_project(p).await.live_deployment_id, live);
    // The daemon is still fine.
    daemon.deploy_ready(p, "preview", "nginx:2").await;
}

#[tokio::test]
async fn huge_inputs_get_short_errors() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let p = project.id.as_str();
    let mb = |c: &str| c.repeat(1 << 20);
    let cases: Vec<(&str, Call)> = vec![
        (
            "list: environment filter",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                environment_slug: mb("e"),
                ..Default::default()
            }),
        ),
        (
            "list: project id",
            Call::List(pb::ListDeploymentsRequest {
                project_id: mb("p"),
                ..Default::default()
            }),
        ),
        ("get: deployment id", Call::GetDeployment(mb("d"))),
        ("projects: workspace id", Call::ListProjects(mb("w"))),
        (
            "workspace: slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: mb("s"),
                name: "n".into(),
            }),
        ),
        (
            "domain: fqdn",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: mb("a."),
                ..Default::default()
            }),
        ),
        (
            "verify: fqdn",
            Call::Verify(pb::VerifyCustomDomainRequest {
                project_id: p.into(),
                fqdn: mb("a."),
            }),
        ),
        (
            "remove: fqdn",
            Call::Remove(pb::RemoveCustomDomainRequest {
                project_id: p.into(),
                fqdn: mb("a."),
            }),
        ),
        (
            "regions: region name",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [(mb("r"), 1)].into(),
                ..Default::default()
            }),
        ),
        ("deploy: branch", deploy_with(p, |r| r.branch = mb("b"))),
        ("deploy: image", deploy_with(p, image(&mb("i")))),
        (
            "deploy: repository",
            deploy_with(p, git(|g| g.repository = format!("https://{}", mb("h")))),
        ),
        (
            "deploy: context path",
            deploy_with(p, git(|g| g.context_path = mb("c#"))),
        ),
        (
            "deploy: commit sha",
            deploy_with(p, git(|g| g.commit_sha = mb("z"))),
        ),
        (
            "deploy: environment",
            deploy_with(p, |r| r.environment_slug = mb("\u{1b}")),
        ),
        (
            "deploy: idempotency key",
            deploy_with(p, |r| r.idempotency_key = mb("k")),
        ),
    ];
    for (name, call) in cases {
        let status = run(&daemon, call).await.expect_err(name);
        assert!(
            matches!(status.code(), Code::InvalidArgument | Code::NotFound),
            "{name}: {status:?}"
        );
        assert!(
            status.message().len() < 300,
            "{name}: a {} byte message",
            status.message().len()
        );
        assert!(!status.message().contains('\u{1b}'), "{name}");
    }
    assert!(daemon.list(p).await.is_empty());
}

#[tokio::test]
async fn credentials_in_a_repository_are_refused_and_never_echoed() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    for repository in [
        "https://deployer:hunter2@git.example.test/acme/web.git",
        "https://ghp_hunter2@git.example.test/acme/web.git",
        "ssh://git:hunter2@git.example.test/acme/web.git",
    ] {
        let mut request = git_request(&project.id, "production", "main", SHA_A);
        if let Some(Source::Git(git)) = &mut request.source {
            git.repository = repository.into();
        }
        let status = daemon
            .deployments()
            .await
            .create_deployment(request)
            .await
            .expect_err(repository);
        assert_eq!(status.code(), Code::InvalidArgument, "{repository}");
        assert!(
            !status.message().contains("hunter2"),
            "{}",
            status.message()
        );
        assert!(
            status
                .message()
                .contains("credentials do not belong in the repository address"),
            "{}",
            status.message()
        );
    }
    assert!(daemon.list(&project.id).await.is_empty());
}

#[tokio::test]
async fn link_local_repositories_are_accepted_when_the_operator_allows_them() {
    let mut config = fast_config();
    config.allow_link_local_repositories = true;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let mut request = git_request(&project.id, "production", "main", SHA_A);
    if let Some(Source::Git(git)) = &mut request.source {
        git.repository = "https://169.254.10.20/acme/web.git".into();
    }
    let id = daemon.create(request).await;
    let stored = daemon.get(&id).await;
    match stored.source {
        Some(pb::deployment::Source::Git(git)) => {
            assert_eq!(git.repository, "https://169.254.10.20/acme/web.git")
        }
        other => panic!("unexpected source {other:?}"),
    }
}

#[tokio::test]
async fn an_out_of_range_commit_time_is_refused_by_name_and_stores_nothing() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let before = daemon.list(&project.id).await;
    for seconds in [-62_135_596_800, 253_402_300_800, i64::MAX] {
        let mut request = git_request(&project.id, "production", "main", SHA_A);
        request.git_commit = Some(pb::GitCommit {
            sha: SHA_A.into(),
            committed_at: Some(pbjson_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        });
        let status = daemon
            .deployments()
            .await
            .create_deployment(request)
            .await
            .expect_err("out of range");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("git_commit.committed_at"),
            "{}",
            status.message()
        );
    }
    assert_eq!(daemon.list(&project.id).await, before);
    // The last representable second is fine.
    let mut request = git_request(&project.id, "production", "main", SHA_A);
    request.git_commit = Some(pb::GitCommit {
        committed_at: Some(pbjson_types::Timestamp {
            seconds: 253_402_300_799,
            nanos: 999_999_999,
        }),
        ..Default::default()
    });
    let id = daemon.create(request).await;
    let committed_at = daemon
        .get(&id)
        .await
        .git_commit
        .and_then(|c| c.committed_at)
        .map(|t| t.seconds);
    assert_eq!(committed_at, Some(253_402_300_799));
}

#[tokio::test]
async fn an_undecodable_request_is_invalid_argument_and_changes_nothing() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let channel = daemon.channel().await;
    // Wire type 7 does not exist; a truncated length-delimited field; a
    // string field holding invalid UTF-8.
    let garbage: [&'static [u8]; 3] = [b"\xff\xff\xff\xff", b"\x0a\x50ab", b"\x0a\x02\xc3\x28"];
    for (path, body) in [
        ("/deployd.v1.DeploymentService/CreateDeployment", garbage[0]),
        ("/deployd.v1.DeploymentService/CreateDeployment", garbage[1]),
        ("/deployd.v1.DeploymentService/ListDeployments", garbage[2]),
        ("/deployd.v1.WorkspaceService/CreateWorkspace", garbage[0]),
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let status = grpc
            .unary(
                tonic::Request::new(Bytes::from_static(body)),
                PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
            .expect_err(path);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path}: {}",
            status.message()
        );
    }
    assert!(daemon.list(&project.id).await.is_empty());
    // The same connection still serves well-formed requests.
    daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
}

#[tokio::test]
async fn the_cli_shows_terminal_escapes_in_stored_strings_as_text() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let mut request = git_request(&project.id, "production", "main", SHA_A);
    request.git_commit = Some(pb::GitCommit {
        sha: SHA_A.into(),
        message: "fix\u{1b}]0;pwned\u{7}".into(),
        author_name: "eve\u{1b}[2J\u{9b}31m\u{202e}".into(),
        author_email: "eve@example.test".into(),
        committed_at: None,
    });
    let id = daemon.create(request).await;
    let mut outputs = Vec::new();
    for args in [
        vec!["deployment", "get", id.as_str()],
        vec!["deployments", "--project", project.id.as_str()],
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
            .arg("--addr")
            .arg(&daemon.addr)
            .env("DEPLOYD_TOKEN", &daemon.token)
            .args(&args)
            .output()
            .await
            .expect("run the cli");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(String::from_utf8(output.stdout).expect("utf-8"));
    }
    let shown = &outputs[0];
    assert!(
        shown.contains("eve\\u{1b}[2J\\u{9b}31m\\u{202e}"),
        "{shown}"
    );
    for text in &outputs {
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}']),
            "{text:?}"
        );
    }
    // JSON stays JSON: the author reads back exactly.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args(["--addr", &daemon.addr, "--token", &daemon.token])
        .args(["--json", "deployment", "get", &id])
        .output()
        .await
        .expect("run the cli");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let author = json
        .pointer("/deployment/gitCommit/authorName")
        .and_then(|v| v.as_str());
    assert_eq!(author, Some("eve\u{1b}[2J\u{9b}31m\u{202e}"), "{json}");
}
