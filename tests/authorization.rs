//! The authorization table: every RPC, called with no token, a wrong
//! token, another workspace's token, a viewer's, a deployer's and an
//! admin's, answers the code its rule says; and every refused call changed
//! nothing. A method of the proto without a row here fails the test, so a
//! new RPC cannot go untested.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use deployd::cli::AuthChannel;
use deployd::pb;
use deployd::pb::admin_service_client::AdminServiceClient;
use deployd::pb::audit_service_client::AuditServiceClient;
use deployd::pb::deployment_service_client::DeploymentServiceClient;
use deployd::pb::git_hub_service_client::GitHubServiceClient;
use deployd::pb::project_service_client::ProjectServiceClient;
use deployd::pb::routing_service_client::RoutingServiceClient;
use deployd::pb::token_service_client::TokenServiceClient;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use prost::Message as _;
use tonic::Code;

/// A custom domain of project A whose TXT record holds A's token.
const PROVEN_DOMAIN: &str = "proven.example.com";
/// A pending claim that the `RemoveCustomDomain` row removes and claims again.
const REMOVABLE_DOMAIN: &str = "removable.example.com";

/// What a method needs, as the README's roles table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Read,
    Write,
    Admin,
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Nobody,
    WrongToken,
    OtherWorkspace,
    Viewer,
    Deployer,
    Admin,
}

const EVERYONE: [Who; 6] = [
    Who::Nobody,
    Who::WrongToken,
    Who::OtherWorkspace,
    Who::Viewer,
    Who::Deployer,
    Who::Admin,
];

/// The code a call must get. Another workspace's token is refused by role
/// first (an admin method), and otherwise cannot tell workspace A's ids
/// from ids that do not exist.
fn expected(needs: Needs, who: Who) -> Code {
    match (who, needs) {
        (Who::Nobody | Who::WrongToken, _) => Code::Unauthenticated,
        (_, Needs::Admin) if !matches!(who, Who::Admin) => Code::PermissionDenied,
        (Who::Viewer, Needs::Write) => Code::PermissionDenied,
        (Who::OtherWorkspace, Needs::Write) => Code::NotFound,
        (Who::OtherWorkspace, Needs::Read) => Code::NotFound,
        _ => Code::Ok,
    }
}

/// Workspace A with a project and two READY production deployments (the
/// newer live), workspace B, and a token of each kind.
struct Fixture {
    workspace_a: String,
    project_a: String,
    older: String,
    newer: String,
    /// A preview deployment whose build takes ten minutes: still
    /// `BUILDING`, so it can be cancelled, and it has a build log.
    building: String,
    /// An admin's connection, for rows that must set something up first.
    admin: AuthChannel,
    /// A deployer token of A that rows may revoke.
    spare_token: String,
    counter: AtomicU32,
}

impl Fixture {
    fn unique(&self, what: &str) -> String {
        format!("{what}{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

type Call = Box<
    dyn Fn(
            AuthChannel,
            Arc<Fixture>,
        ) -> Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>
        + Send
        + Sync,
>;

struct Row {
    method: &'static str,
    needs: Needs,
    call: Call,
}

macro_rules! row {
    ($method:literal, $needs:expr, $client:ident, |$c:ident, $fx:ident| $body:expr) => {
        Row {
            method: $method,
            needs: $needs,
            call: Box::new(move |channel: AuthChannel, $fx: Arc<Fixture>| {
                Box::pin(async move {
                    let mut $c = $client::new(channel);
                    $body.await.map(drop)
                })
            }),
        }
    };
}

fn table() -> Vec<Row> {
    vec![
        row!(
            "WorkspaceService/CreateWorkspace",
            Needs::Admin,
            WorkspaceServiceClient,
            |c, fx| {
                c.create_workspace(pb::CreateWorkspaceRequest {
                    slug: fx.unique("ws"),
                    name: "W".into(),
                })
            }
        ),
        row!(
            "WorkspaceService/GetWorkspace",
            Needs::Read,
            WorkspaceServiceClient,
            |c, fx| {
                c.get_workspace(pb::GetWorkspaceRequest {
                    workspace_id: fx.workspace_a.clone(),
                })
            }
        ),
        row!(
            "ProjectService/CreateProject",
            Needs::Write,
            ProjectServiceClient,
            |c, fx| {
                c.create_project(pb::CreateProjectRequest {
                    workspace_id: fx.workspace_a.clone(),
                    slug: fx.unique("p"),
                    name: "P".into(),
                })
            }
        ),
        row!(
            "ProjectService/GetProject",
            Needs::Read,
            ProjectServiceClient,
            |c, fx| {
                c.get_project(pb::GetProjectRequest {
                    project_id: fx.project_a.clone(),
                })
            }
        ),
        row!(
            "ProjectService/ListProjects",
            Needs::Read,
            ProjectServiceClient,
            |c, fx| {
                c.list_projects(pb::ListProjectsRequest {
                    workspace_id: fx.workspace_a.clone(),
                    ..Default::default()
                })
            }
        ),
        row!(
            "ProjectService/SetEnvironmentRegions",
            Needs::Write,
            ProjectServiceClient,
            |c, fx| {
                c.set_environment_regions(pb::SetEnvironmentRegionsRequest {
                    project_id: fx.project_a.clone(),
                    environment_slug: "preview".into(),
                    regions: [("us-east-1".to_string(), 1)].into(),
                    ..Default::default()
                })
            }
        ),
        row!(
            "ProjectService/AddCustomDomain",
            Needs::Write,
            ProjectServiceClient,
            |c, fx| {
                c.add_custom_domain(pb::AddCustomDomainRequest {
                    project_id: fx.project_a.clone(),
                    fqdn: format!("{}.example.com", fx.unique("www")),
                    ..Default::default()
                })
            }
        ),
        // The fixture claimed the domain and put the project's token in
        // the test DNS server: the first allowed call attaches it, the
        // next ones answer it again.
        row!(
            "ProjectService/VerifyCustomDomain",
            Needs::Write,
            ProjectServiceClient,
            |c, fx| {
                c.verify_custom_domain(pb::VerifyCustomDomainRequest {
                    project_id: fx.project_a.clone(),
                    fqdn: PROVEN_DOMAIN.into(),
                })
            }
        ),
        // An admin claims the domain (again, when an allowed call removed
        // it) before each call, so each call has a claim to remove; the
        // fixture claimed it first, so for a refused call the admin's
        // claim is a repeat that stores nothing.
        Row {
            method: "ProjectService/RemoveCustomDomain",
            needs: Needs::Write,
            call: Box::new(move |channel: AuthChannel, fx: Arc<Fixture>| {
                Box::pin(async move {
                    ProjectServiceClient::new(fx.admin.clone())
                        .add_custom_domain(pb::AddCustomDomainRequest {
                            project_id: fx.project_a.clone(),
                            fqdn: REMOVABLE_DOMAIN.into(),
                            ..Default::default()
                        })
                        .await
                        .expect("an admin claims the domain");
                    ProjectServiceClient::new(channel)
                        .remove_custom_domain(pb::RemoveCustomDomainRequest {
                            project_id: fx.project_a.clone(),
                            fqdn: REMOVABLE_DOMAIN.into(),
                        })
                        .await
                        .map(drop)
                })
            }),
        },
        row!(
            "DeploymentService/CreateDeployment",
            Needs::Write,
            DeploymentServiceClient,
            |c, fx| { c.create_deployment(image_request(&fx.project_a, "preview", "nginx:1",)) }
        ),
        row!(
            "DeploymentService/GetDeployment",
            Needs::Read,
            DeploymentServiceClient,
            |c, fx| {
                c.get_deployment(pb::GetDeploymentRequest {
                    deployment_id: fx.older.clone(),
                })
            }
        ),
        row!(
            "DeploymentService/ListDeployments",
            Needs::Read,
            DeploymentServiceClient,
            |c, fx| {
                c.list_deployments(pb::ListDeploymentsRequest {
                    project_id: fx.project_a.clone(),
                    ..Default::default()
                })
            }
        ),
        row!(
            "DeploymentService/WatchDeployment",
            Needs::Read,
            DeploymentServiceClient,
            |c, fx| {
                c.watch_deployment(pb::WatchDeploymentRequest {
                    deployment_id: fx.older.clone(),
                })
            }
        ),
        // The same key makes every allowed rollback (and promote) after the
        // first an idempotent replay, so each answers OK.
        row!(
            "DeploymentService/Rollback",
            Needs::Write,
            DeploymentServiceClient,
            |c, fx| {
                c.rollback(pb::RollbackRequest {
                    source_deployment_id: fx.newer.clone(),
                    target_deployment_id: fx.older.clone(),
                    idempotency_key: "table-rollback".into(),
                })
            }
        ),
        row!(
            "DeploymentService/Promote",
            Needs::Write,
            DeploymentServiceClient,
            |c, fx| {
                c.promote(pb::PromoteRequest {
                    target_deployment_id: fx.newer.clone(),
                    idempotency_key: "table-promote".into(),
                })
            }
        ),
        row!(
            "RoutingService/ListRoutes",
            Needs::Read,
            RoutingServiceClient,
            |c, fx| {
                c.list_routes(pb::ListRoutesRequest {
                    project_id: fx.project_a.clone(),
                    ..Default::default()
                })
            }
        ),
        row!(
            "AdminService/GetStats",
            Needs::Admin,
            AdminServiceClient,
            |c, _fx| { c.get_stats(pb::GetStatsRequest {}) }
        ),
        row!(
            "TokenService/CreateToken",
            Needs::Admin,
            TokenServiceClient,
            |c, fx| {
                c.create_token(pb::CreateTokenRequest {
                    role: pb::Role::Viewer as i32,
                    workspace_id: fx.workspace_a.clone(),
                    description: String::new(),
                })
            }
        ),
        row!(
            "TokenService/RevokeToken",
            Needs::Admin,
            TokenServiceClient,
            |c, fx| {
                c.revoke_token(pb::RevokeTokenRequest {
                    token_id: fx.spare_token.clone(),
                })
            }
        ),
        row!(
            "TokenService/ListTokens",
            Needs::Admin,
            TokenServiceClient,
            |c, _fx| { c.list_tokens(pb::ListTokensRequest::default()) }
        ),
        // Cancel is idempotent: the deployer's call cancels, the admin's
        // answers the same.
        row!(
            "DeploymentService/CancelDeployment",
            Needs::Write,
            DeploymentServiceClient,
            |c, fx| {
                c.cancel_deployment(pb::CancelDeploymentRequest {
                    deployment_id: fx.building.clone(),
                })
            }
        ),
        row!(
            "DeploymentService/GetBuildLog",
            Needs::Read,
            DeploymentServiceClient,
            |c, fx| {
                c.get_build_log(pb::GetBuildLogRequest {
                    deployment_id: fx.building.clone(),
                })
            }
        ),
        // Connecting again replaces the project's connection with the same
        // one, so every allowed call answers OK.
        row!(
            "GitHubService/ConnectRepository",
            Needs::Write,
            GitHubServiceClient,
            |c, fx| { c.connect_repository(connect_request(&fx)) }
        ),
        row!(
            "GitHubService/GetRepositoryConnection",
            Needs::Read,
            GitHubServiceClient,
            |c, fx| {
                c.get_repository_connection(pb::GetRepositoryConnectionRequest {
                    project_id: fx.project_a.clone(),
                })
            }
        ),
        // An admin connects the repository again when an allowed call
        // removed it, so each call has a connection to remove (and a
        // refused call finds one already there, so nothing is written).
        Row {
            method: "GitHubService/DisconnectRepository",
            needs: Needs::Write,
            call: Box::new(move |channel: AuthChannel, fx: Arc<Fixture>| {
                Box::pin(async move {
                    let mut admin = GitHubServiceClient::new(fx.admin.clone());
                    let connected = admin
                        .get_repository_connection(pb::GetRepositoryConnectionRequest {
                            project_id: fx.project_a.clone(),
                        })
                        .await
                        .is_ok();
                    if !connected {
                        admin
                            .connect_repository(connect_request(&fx))
                            .await
                            .expect("an admin connects the repository");
                    }
                    GitHubServiceClient::new(channel)
                        .disconnect_repository(pb::DisconnectRepositoryRequest {
                            project_id: fx.project_a.clone(),
                        })
                        .await
                        .map(drop)
                })
            }),
        },
        row!(
            "AuditService/ListAuditEvents",
            Needs::Read,
            AuditServiceClient,
            |c, fx| {
                c.list_audit_events(pb::ListAuditEventsRequest {
                    workspace_id: fx.workspace_a.clone(),
                    ..Default::default()
                })
            }
        ),
    ]
}

fn connect_request(fx: &Fixture) -> pb::ConnectRepositoryRequest {
    pb::ConnectRepositoryRequest {
        project_id: fx.project_a.clone(),
        repository: "team-a/web".into(),
        ..Default::default()
    }
}

/// Every method of `deployd.v1`, as `Service/Method`.
fn every_method() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    set.file
        .iter()
        .filter(|f| f.package() == "deployd.v1")
        .flat_map(|f| &f.service)
        .flat_map(|s| {
            s.method
                .iter()
                .map(move |m| format!("{}/{}", s.name(), m.name()))
        })
        .collect()
}

pub async fn create_token(
    daemon: &TestDaemon,
    role: pb::Role,
    workspace: &str,
) -> pb::CreateTokenResponse {
    TokenServiceClient::new(daemon.channel().await)
        .create_token(pb::CreateTokenRequest {
            role: role as i32,
            workspace_id: workspace.into(),
            description: "test".into(),
        })
        .await
        .expect("create token")
        .into_inner()
}

/// `project` with its maps in a stable order, for comparison.
fn stable(mut project: pb::Project) -> String {
    let environments: Vec<String> = project
        .environments
        .iter()
        .map(|e| {
            format!(
                "{}:{:?}",
                e.slug,
                e.regions.iter().collect::<BTreeMap<_, _>>()
            )
        })
        .collect();
    project.environments.clear();
    format!("{project:?} {environments:?}")
}

/// What an admin can read of the state a refused call might have changed.
async fn snapshot(daemon: &TestDaemon, fx: &Fixture) -> String {
    let channel = daemon.channel().await;
    let audit = AuditServiceClient::new(channel.clone())
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner();
    let project = stable(daemon.get_project(&fx.project_a).await);
    // Ids only: deployments made by allowed calls go on deploying. The
    // building one's status too: a refused cancel must leave it building.
    let deployments: Vec<String> = daemon
        .list(&fx.project_a)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    let building = daemon.get(&fx.building).await.status;
    let projects = ProjectServiceClient::new(channel.clone())
        .list_projects(pb::ListProjectsRequest {
            workspace_id: fx.workspace_a.clone(),
            ..Default::default()
        })
        .await
        .expect("projects")
        .into_inner()
        .projects
        .into_iter()
        .map(stable)
        .collect::<Vec<_>>();
    let tokens = TokenServiceClient::new(channel)
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .expect("tokens")
        .into_inner();
    format!("{audit:?}\n{project:?}\n{deployments:?}\n{building}\n{projects:?}\n{tokens:?}")
}

#[tokio::test]
async fn every_rpc_answers_each_caller_as_its_rule_says_and_refusals_change_nothing() {
    let table = table();
    let rows: BTreeSet<String> = table.iter().map(|r| r.method.to_string()).collect();
    assert_eq!(rows, every_method(), "the table must have one row per RPC");

    let mut config = fast_config();
    if let deployd::config::BuilderConfig::Simulated { rules, .. } = &mut config.builder {
        rules.push(build_rule(Some("held"), None, Some(600_000), false));
    }
    let dns = common::dns::TestDns::start().await;
    config.domains.resolver = Some(dns.addr);
    let daemon = TestDaemon::start_with(config).await;
    let project_a = daemon.project("team-a", "web").await;
    let challenge = daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: project_a.id.clone(),
            fqdn: PROVEN_DOMAIN.into(),
            ..Default::default()
        })
        .await
        .expect("claim")
        .into_inner()
        .challenge
        .expect("challenge");
    dns.set_txt(&challenge.record_name, &[&challenge.record_value]);
    daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: project_a.id.clone(),
            fqdn: REMOVABLE_DOMAIN.into(),
            ..Default::default()
        })
        .await
        .expect("claim the domain to remove");
    let workspace_b = daemon
        .workspaces()
        .await
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "team-b".into(),
            name: "B".into(),
        })
        .await
        .expect("workspace b")
        .into_inner()
        .workspace
        .expect("workspace");
    let (older, newer) = daemon.two_production_deploys(&project_a.id).await;
    let building = daemon
        .create(git_request(
            &project_a.id,
            "preview",
            "held",
            "0123456789abcdef0123456789abcdef01234567",
        ))
        .await;
    daemon
        .wait_status(&building, pb::DeploymentStatus::Building)
        .await;
    let a = project_a.workspace_id.clone();
    let viewer = create_token(&daemon, pb::Role::Viewer, &a).await.secret;
    let deployer = create_token(&daemon, pb::Role::Deployer, &a).await.secret;
    let other = create_token(&daemon, pb::Role::Deployer, &workspace_b.id)
        .await
        .secret;
    let spare = create_token(&daemon, pb::Role::Deployer, &a).await;
    let wrong = deployd::model::auth::NewToken::generate().text;
    let fixture = Arc::new(Fixture {
        workspace_a: a,
        project_a: project_a.id.clone(),
        older,
        newer,
        building,
        admin: daemon.channel().await,
        spare_token: spare.token.expect("token").id,
        counter: AtomicU32::new(0),
    });

    for row in &table {
        let before = snapshot(&daemon, &fixture).await;
        for who in EVERYONE {
            let token = match who {
                Who::Nobody => None,
                Who::WrongToken => Some(wrong.as_str()),
                Who::OtherWorkspace => Some(other.as_str()),
                Who::Viewer => Some(viewer.as_str()),
                Who::Deployer => Some(deployer.as_str()),
                Who::Admin => Some(daemon.token.as_str()),
            };
            let want = expected(row.needs, who);
            if want == Code::Ok {
                continue;
            }
            let got = (row.call)(daemon.channel_with(token).await, fixture.clone()).await;
            let code = got.as_ref().err().map_or(Code::Ok, |s| s.code());
            assert_eq!(code, want, "{} by {who:?}: {got:?}", row.method);
            if want == Code::NotFound {
                // The words of a missing id: nothing says it exists.
                let message = got
                    .err()
                    .map(|s| s.message().to_string())
                    .unwrap_or_default();
                assert!(message.ends_with("not found"), "{}: {message}", row.method);
            }
        }
        assert_eq!(
            snapshot(&daemon, &fixture).await,
            before,
            "a refused {} changed something",
            row.method
        );
        for who in EVERYONE {
            if expected(row.needs, who) != Code::Ok {
                continue;
            }
            let token = match who {
                Who::Viewer => viewer.as_str(),
                Who::Deployer => deployer.as_str(),
                _ => daemon.token.as_str(),
            };
            let got = (row.call)(daemon.channel_with(Some(token)).await, fixture.clone()).await;
            assert!(got.is_ok(), "{} by {who:?}: {got:?}", row.method);
        }
    }
}
