//! The client subcommands: connect to the daemon, make one call per
//! subcommand, and print the response as text or proto3 JSON. `deploy` and
//! `watch` live in `cli::deploy` because they stream.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cli::args::{
    Command, DeploymentCommand, DeploymentsArgs, DomainCommand, GithubCommand, ProjectCommand,
    RegionsArgs, TlsArgs, TokenCommand, WorkspaceCommand,
};
use crate::cli::output::{self, emit};
use crate::cli::{deploy, render};
use crate::pb;
use crate::pb::admin_service_client::AdminServiceClient;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::deployment_service_client::DeploymentServiceClient;
use crate::pb::git_hub_service_client::GitHubServiceClient;
use crate::pb::project_service_client::ProjectServiceClient;
use crate::pb::routing_service_client::RoutingServiceClient;
use crate::pb::token_service_client::TokenServiceClient;
use crate::pb::workspace_service_client::WorkspaceServiceClient;

/// A failed call, printed as `CODE: message` (e.g. `NOT_FOUND: project
/// prj_... not found`), the way gRPC tools name codes.
#[derive(Debug)]
pub struct RpcError(pub tonic::Status);

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&code_name(self.0.code()))?;
        if !self.0.message().is_empty() {
            write!(f, ": {}", self.0.message())?;
        }
        Ok(())
    }
}

impl std::error::Error for RpcError {}

/// `FailedPrecondition` -> `FAILED_PRECONDITION`, from the Debug name so
/// every code tonic knows is covered without a table to keep in sync.
fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

pub fn rpc<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| RpcError(status).into())
}

/// Sends `authorization: Bearer <token>` with every call (nothing without
/// a token: the daemon then answers `UNAUTHENTICATED`, which says what is
/// missing).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        let value = match token {
            None => None,
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the token holds characters a header cannot"))?,
            ),
        };
        Ok(Self(value))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the token.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// `channel` with `token` on every call.
pub fn with_token(channel: Channel, token: Option<&str>) -> anyhow::Result<AuthChannel> {
    Ok(InterceptedService::new(channel, Bearer::new(token)?))
}

/// Typed clients over one HTTP/2 connection.
#[derive(Clone)]
pub struct Clients {
    channel: AuthChannel,
}

impl Clients {
    /// Connects eagerly so an unreachable daemon is reported as such, with
    /// the address, instead of as the first call's `UNAVAILABLE`.
    pub async fn connect(addr: &str, tls: &TlsArgs, token: Option<&str>) -> anyhow::Result<Self> {
        let uri = endpoint_uri(addr)?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| anyhow::anyhow!("invalid --addr {addr:?}: {e}"))?
            .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = tls_towards(&uri, tls)? {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| anyhow::anyhow!("cannot use TLS towards {addr}: {}", chain(&e)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to deployd at {addr}: {}", chain(&e)))?;
        Ok(Self {
            channel: with_token(channel, token)?,
        })
    }

    pub fn workspaces(&self) -> WorkspaceServiceClient<AuthChannel> {
        WorkspaceServiceClient::new(self.channel.clone())
    }

    pub fn projects(&self) -> ProjectServiceClient<AuthChannel> {
        ProjectServiceClient::new(self.channel.clone())
    }

    pub fn deployments(&self) -> DeploymentServiceClient<AuthChannel> {
        DeploymentServiceClient::new(self.channel.clone())
    }

    pub fn routing(&self) -> RoutingServiceClient<AuthChannel> {
        RoutingServiceClient::new(self.channel.clone())
    }

    pub fn github(&self) -> GitHubServiceClient<AuthChannel> {
        GitHubServiceClient::new(self.channel.clone())
    }

    pub fn admin(&self) -> AdminServiceClient<AuthChannel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn tokens(&self) -> TokenServiceClient<AuthChannel> {
        TokenServiceClient::new(self.channel.clone())
    }

    pub fn audit(&self) -> AuditServiceClient<AuthChannel> {
        AuditServiceClient::new(self.channel.clone())
    }
}

/// Accepts `host:port` as shorthand for `http://host:port`; `https://`
/// speaks TLS.
fn endpoint_uri(addr: &str) -> anyhow::Result<String> {
    match addr.split_once("://") {
        None => Ok(format!("http://{addr}")),
        Some(("http" | "https", _)) => Ok(addr.to_string()),
        Some((scheme, _)) => anyhow::bail!(
            "invalid --addr {addr:?}: unsupported scheme {scheme:?}; use http://HOST:PORT or https://HOST:PORT"
        ),
    }
}

/// The TLS settings for `uri` (`https://` only), from the flags; the TLS
/// flags with a plain-text address are a mistake worth saying.
pub(crate) fn tls_towards(uri: &str, tls: &TlsArgs) -> anyhow::Result<Option<ClientTlsConfig>> {
    if uri.starts_with("https://") {
        client_tls(tls).map(Some)
    } else if tls.ca_file.is_some() || tls.cert_file.is_some() {
        anyhow::bail!("--ca-file and --cert-file need an https:// address; {uri:?} is plain text")
    } else {
        Ok(None)
    }
}

/// The CA to trust (or the system's roots) and the client certificate,
/// read from the files the flags name.
fn client_tls(tls: &TlsArgs) -> anyhow::Result<ClientTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
    };
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(path) => config.ca_certificate(Certificate::from_pem(read(path)?)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

/// tonic's transport error says only "transport error"; the cause (e.g.
/// "Connection refused") is further down the source chain.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Prints `value` as JSON, or as the text `human` renders from it.
pub(crate) fn show<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        output::json_pretty(value)
    } else {
        emit(&human(value))?;
        Ok(())
    }
}

/// Runs one client subcommand. `serve`, `check` and `bench` never reach
/// here.
pub async fn run(
    addr: &str,
    tls: &TlsArgs,
    token: Option<&str>,
    json: bool,
    command: Command,
) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(addr, tls, token).await?;
    match command {
        Command::Serve(_) | Command::Check(_) | Command::Bench(_) => {
            anyhow::bail!("serve, check and bench are not client subcommands")
        }
        Command::Token(TokenCommand::Generate) => {
            anyhow::bail!("token generate is not a client subcommand")
        }
        Command::Token(cmd) => crate::cli::admin::token(&clients, json, cmd).await?,
        Command::Audit(args) => crate::cli::admin::audit(&clients, json, args).await?,
        Command::Workspace(cmd) => workspace(&clients, json, cmd).await?,
        Command::Project(cmd) => project(&clients, json, cmd).await?,
        Command::Projects(args) => {
            // Every page: the listing is for people, and each page is small.
            let mut response = pb::ListProjectsResponse::default();
            loop {
                let request = pb::ListProjectsRequest {
                    workspace_id: args.workspace.clone(),
                    page_token: std::mem::take(&mut response.next_page_token),
                    ..Default::default()
                };
                let page = rpc(clients.projects().list_projects(request).await)?;
                response.projects.extend(page.projects);
                response.next_page_token = page.next_page_token;
                if response.next_page_token.is_empty() {
                    break;
                }
            }
            show(json, &response, |r| render::projects(&r.projects))?;
        }
        Command::Regions(args) => regions(&clients, json, args).await?,
        Command::Domain(DomainCommand::Add {
            project,
            fqdn,
            idempotency,
        }) => {
            let request = pb::AddCustomDomainRequest {
                project_id: project,
                fqdn,
                idempotency_key: idempotency.idempotency_key.unwrap_or_default(),
            };
            let response = rpc(clients.projects().add_custom_domain(request).await)?;
            show(json, &response, |r| {
                let mut text = r.project.as_ref().map(render::project).unwrap_or_default();
                if let Some(route) = &r.route {
                    text.push('\n');
                    text.push_str(&render::routes(std::slice::from_ref(route)));
                }
                if let Some(challenge) = &r.challenge {
                    text.push('\n');
                    text.push_str(&render::domain_challenge(challenge));
                }
                text
            })?;
        }
        Command::Domain(DomainCommand::Verify { project, fqdn }) => {
            let request = pb::VerifyCustomDomainRequest {
                project_id: project,
                fqdn,
            };
            let response = rpc(clients.projects().verify_custom_domain(request).await)?;
            show(json, &response, |r| {
                let mut text = r.project.as_ref().map(render::project).unwrap_or_default();
                if let Some(route) = &r.route {
                    text.push('\n');
                    text.push_str(&render::routes(std::slice::from_ref(route)));
                }
                text
            })?;
        }
        Command::Domain(DomainCommand::Remove { project, fqdn }) => {
            let request = pb::RemoveCustomDomainRequest {
                project_id: project,
                fqdn,
            };
            let response = rpc(clients.projects().remove_custom_domain(request).await)?;
            show(json, &response, |r| {
                r.project.as_ref().map(render::project).unwrap_or_default()
            })?;
        }
        Command::Deploy(args) => return deploy::deploy(&clients, json, *args).await,
        Command::Deployment(DeploymentCommand::Get { id }) => {
            let request = pb::GetDeploymentRequest { deployment_id: id };
            let response = rpc(clients.deployments().get_deployment(request).await)?;
            show(json, &response, |r| {
                r.deployment
                    .as_ref()
                    .map(render::deployment)
                    .unwrap_or_default()
            })?;
        }
        Command::Deployments(args) => deployments(&clients, json, args).await?,
        Command::Watch(args) => return deploy::watch(&clients, json, args.id).await,
        Command::Rollback(args) => {
            let request = pb::RollbackRequest {
                source_deployment_id: args.from,
                target_deployment_id: args.to,
                idempotency_key: args.idempotency_key.unwrap_or_default(),
            };
            let response = rpc(clients.deployments().rollback(request).await)?;
            show(json, &response, |r| {
                render::switched(r.project.as_ref(), &r.routes)
            })?;
        }
        Command::Cancel(args) => {
            let request = pb::CancelDeploymentRequest {
                deployment_id: args.id,
            };
            let response = rpc(clients.deployments().cancel_deployment(request).await)?;
            show(json, &response, |r| {
                r.deployment
                    .as_ref()
                    .map(render::deployment)
                    .unwrap_or_default()
            })?;
        }
        Command::BuildLog(args) => {
            let request = pb::GetBuildLogRequest {
                deployment_id: args.id,
            };
            let response = rpc(clients.deployments().get_build_log(request).await)?;
            show(json, &response, |r| {
                let mut text = String::new();
                if r.truncated {
                    text.push_str("(older lines were dropped)\n");
                }
                text.push_str(&r.lines.join("\n"));
                text
            })?;
        }
        Command::Promote(args) => {
            let request = pb::PromoteRequest {
                target_deployment_id: args.id,
                idempotency_key: args.idempotency_key.unwrap_or_default(),
            };
            let response = rpc(clients.deployments().promote(request).await)?;
            show(json, &response, |r| {
                render::switched(r.project.as_ref(), &r.routes)
            })?;
        }
        Command::Routes(args) => {
            let mut response = pb::ListRoutesResponse::default();
            loop {
                let request = pb::ListRoutesRequest {
                    project_id: args.project.clone(),
                    kind: args.kind.map_or(pb::RouteKind::Unspecified, Into::into) as i32,
                    page_token: std::mem::take(&mut response.next_page_token),
                    ..Default::default()
                };
                let page = rpc(clients.routing().list_routes(request).await)?;
                response.routes.extend(page.routes);
                response.next_page_token = page.next_page_token;
                if response.next_page_token.is_empty() {
                    break;
                }
            }
            show(json, &response, |r| render::routes(&r.routes))?;
        }
        Command::Stats => {
            let response = rpc(clients.admin().get_stats(pb::GetStatsRequest {}).await)?;
            show(json, &response, render::stats)?;
        }
        Command::Github(cmd) => github(&clients, json, cmd).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn github(clients: &Clients, json: bool, command: GithubCommand) -> anyhow::Result<()> {
    let mut client = clients.github();
    let connection = match command {
        GithubCommand::Connect {
            project,
            repo,
            clone_url,
            context,
            dockerfile,
        } => {
            let request = pb::ConnectRepositoryRequest {
                project_id: project,
                repository: repo,
                clone_url: clone_url.unwrap_or_default(),
                context_path: context.unwrap_or_default(),
                dockerfile_path: dockerfile.unwrap_or_default(),
            };
            rpc(client.connect_repository(request).await)?.connection
        }
        GithubCommand::Get { project } => {
            let request = pb::GetRepositoryConnectionRequest {
                project_id: project,
            };
            rpc(client.get_repository_connection(request).await)?.connection
        }
        GithubCommand::Disconnect { project } => {
            let request = pb::DisconnectRepositoryRequest {
                project_id: project,
            };
            rpc(client.disconnect_repository(request).await)?.connection
        }
    };
    let connection = connection.unwrap_or_default();
    show(json, &connection, render::repository_connection)
}

async fn workspace(clients: &Clients, json: bool, command: WorkspaceCommand) -> anyhow::Result<()> {
    let workspace = match command {
        WorkspaceCommand::Create { slug, name } => {
            let request = pb::CreateWorkspaceRequest { slug, name };
            let response = rpc(clients.workspaces().create_workspace(request).await)?;
            if json {
                return output::json_pretty(&response);
            }
            response.workspace
        }
        WorkspaceCommand::Get { id } => {
            let request = pb::GetWorkspaceRequest { workspace_id: id };
            let response = rpc(clients.workspaces().get_workspace(request).await)?;
            if json {
                return output::json_pretty(&response);
            }
            response.workspace
        }
    };
    emit(
        &workspace
            .as_ref()
            .map(render::workspace)
            .unwrap_or_default(),
    )?;
    Ok(())
}

async fn project(clients: &Clients, json: bool, command: ProjectCommand) -> anyhow::Result<()> {
    let project = match command {
        ProjectCommand::Create {
            workspace,
            slug,
            name,
        } => {
            let request = pb::CreateProjectRequest {
                workspace_id: workspace,
                slug,
                name,
            };
            let response = rpc(clients.projects().create_project(request).await)?;
            if json {
                return output::json_pretty(&response);
            }
            response.project
        }
        ProjectCommand::Get { id } => {
            let request = pb::GetProjectRequest { project_id: id };
            let response = rpc(clients.projects().get_project(request).await)?;
            if json {
                return output::json_pretty(&response);
            }
            response.project
        }
    };
    emit(&project.as_ref().map(render::project).unwrap_or_default())?;
    Ok(())
}

async fn regions(clients: &Clients, json: bool, args: RegionsArgs) -> anyhow::Result<()> {
    let mut regions = HashMap::new();
    for (region, replicas) in args.regions {
        // A repeated region would silently keep only the last value.
        if regions.insert(region.clone(), replicas).is_some() {
            anyhow::bail!("region {region} is given more than once");
        }
    }
    let request = pb::SetEnvironmentRegionsRequest {
        project_id: args.project,
        environment_slug: args.env,
        regions,
        idempotency_key: args.idempotency.idempotency_key.unwrap_or_default(),
    };
    let response = rpc(clients.projects().set_environment_regions(request).await)?;
    show(json, &response, |r| {
        r.project.as_ref().map(render::project).unwrap_or_default()
    })
}

async fn deployments(clients: &Clients, json: bool, args: DeploymentsArgs) -> anyhow::Result<()> {
    let request = pb::ListDeploymentsRequest {
        project_id: args.project,
        environment_slug: args.env.unwrap_or_default(),
        status: args
            .status
            .map_or(pb::DeploymentStatus::Unspecified, Into::into) as i32,
        page_size: args.limit.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    };
    let response = rpc(clients.deployments().list_deployments(request).await)?;
    show(json, &response, |r| render::deployments(&r.deployments))?;
    // On stderr, so the table on stdout stays one row per deployment.
    if !json && !response.next_page_token.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "more: --page-token {}",
            response.next_page_token
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names() {
        assert_eq!(
            code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
        let error = RpcError(tonic::Status::failed_precondition("not ready"));
        assert_eq!(error.to_string(), "FAILED_PRECONDITION: not ready");
    }

    #[test]
    fn addresses() {
        let uri = |addr| endpoint_uri(addr).map_err(|e| e.to_string());
        assert_eq!(
            uri("http://127.0.0.1:7070"),
            Ok("http://127.0.0.1:7070".into())
        );
        assert_eq!(uri("localhost:7070"), Ok("http://localhost:7070".into()));
        assert_eq!(
            uri("https://deployd.example.com:7070"),
            Ok("https://deployd.example.com:7070".into())
        );
        assert!(uri("unix:///tmp/sock").is_err());
    }
}
