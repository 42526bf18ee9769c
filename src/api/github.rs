//! `deployd.v1.GitHubService`: a project's connected repository. A
//! connection is a store write with uniqueness checks (one repository, one
//! project), like creating a project; the project's actor does not use it
//! (the webhook listener and the status reporter read it from the store).

use tonic::{Request, Response, Status};

use crate::api::auth::{self, Rpc};
use crate::api::{Context, convert};
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::github::{RepositoryConnection, RepositoryName};
use crate::model::project::Project;
use crate::model::{Caller, ProjectId, now_millis, validate};
use crate::pb;
use crate::pb::git_hub_service_server::GitHubService;

pub struct GitHub(pub Context);

fn to_pb(connection: &RepositoryConnection) -> pb::RepositoryConnection {
    pb::RepositoryConnection {
        project_id: connection.project_id.to_string(),
        repository: connection.repository.full_name(),
        clone_url: connection.clone_url.clone(),
        context_path: connection.context_path.clone(),
        dockerfile_path: connection.dockerfile_path.clone(),
        connected_at: Some(convert::timestamp(connection.connected_at)),
    }
}

impl GitHub {
    /// The connection of a project the caller reaches.
    fn connection(
        &self,
        caller: &Caller,
        project_id: &ProjectId,
    ) -> Result<(Project, RepositoryConnection), Error> {
        let project = self.0.project_for(caller, project_id)?;
        let connection = self
            .0
            .deps
            .store
            .repository_connection(project_id)?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "project {project_id} has no GitHub repository connected"
                ))
            })?;
        Ok((project, connection))
    }
}

#[tonic::async_trait]
impl GitHubService for GitHub {
    async fn connect_repository(
        &self,
        request: Request<pb::ConnectRepositoryRequest>,
    ) -> Result<Response<pb::ConnectRepositoryResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let project_id = ProjectId::parse(&request.project_id, "project_id")?;
        let repository = RepositoryName::parse(&request.repository, "repository")?;
        let clone_url = if request.clone_url.is_empty() {
            format!(
                "https://github.com/{}/{}.git",
                repository.owner, repository.name
            )
        } else {
            request.clone_url
        };
        validate::repository(&clone_url, self.0.deps.config.repository_rules())?;
        validate::relative_path(&request.context_path, "context_path")?;
        validate::relative_path(&request.dockerfile_path, "dockerfile_path")?;
        let project = self.0.project_for(&caller, &project_id)?;
        let event = auth::audit(&caller, Rpc::ConnectRepository)
            .workspace(&project.workspace_id)
            .project(&project.id);
        let connection = RepositoryConnection {
            project_id,
            repository,
            clone_url,
            context_path: request.context_path,
            dockerfile_path: request.dockerfile_path,
            connected_at: now_millis(),
        };
        self.0
            .deps
            .store
            .commit(vec![
                Mutation::ConnectRepository(connection.clone()),
                Mutation::Audit(Box::new(event)),
            ])
            .await?;
        Ok(Response::new(pb::ConnectRepositoryResponse {
            connection: Some(to_pb(&connection)),
        }))
    }

    async fn get_repository_connection(
        &self,
        request: Request<pb::GetRepositoryConnectionRequest>,
    ) -> Result<Response<pb::GetRepositoryConnectionResponse>, Status> {
        let caller = auth::caller(&request)?;
        let project_id = ProjectId::parse(&request.get_ref().project_id, "project_id")?;
        let (_, connection) = self.connection(&caller, &project_id)?;
        Ok(Response::new(pb::GetRepositoryConnectionResponse {
            connection: Some(to_pb(&connection)),
        }))
    }

    async fn disconnect_repository(
        &self,
        request: Request<pb::DisconnectRepositoryRequest>,
    ) -> Result<Response<pb::DisconnectRepositoryResponse>, Status> {
        let caller = auth::caller(&request)?;
        let project_id = ProjectId::parse(&request.get_ref().project_id, "project_id")?;
        let (project, connection) = self.connection(&caller, &project_id)?;
        let event = auth::audit(&caller, Rpc::DisconnectRepository)
            .workspace(&project.workspace_id)
            .project(&project_id);
        self.0
            .deps
            .store
            .commit(vec![
                Mutation::DisconnectRepository { project_id },
                Mutation::Audit(Box::new(event)),
            ])
            .await?;
        Ok(Response::new(pb::DisconnectRepositoryResponse {
            connection: Some(to_pb(&connection)),
        }))
    }
}

/// What start-up needs from the `[github]` configuration, read before the
/// daemon opens anything, so a missing secret or token file stops it with
/// a clear message.
pub struct GithubSecrets {
    webhook_secret: Option<Vec<u8>>,
    token: Option<String>,
}

impl GithubSecrets {
    pub fn read(config: &crate::config::GithubConfig) -> anyhow::Result<Self> {
        let webhook_secret = match &config.webhook_secret_file {
            Some(path) if config.listen.is_some() => Some(crate::config::read_secret(
                path,
                "github.webhook_secret_file",
            )?),
            _ => None,
        };
        let token = match &config.token_file {
            Some(path) => {
                let bytes = crate::config::read_secret(path, "github.token_file")?;
                Some(String::from_utf8(bytes).map_err(|_| {
                    anyhow::anyhow!("github.token_file {} is not UTF-8", path.display())
                })?)
            }
            None => None,
        };
        Ok(Self {
            webhook_secret,
            token,
        })
    }
}

/// Starts the commit status reporter. Without a token it sends nothing
/// and only settles what connected deployments would be owed.
pub fn start_reporter(
    context: &Context,
    secrets: &GithubSecrets,
) -> anyhow::Result<crate::actors::github::StatusReporter> {
    let config = &context.deps.config.github;
    let api: Option<std::sync::Arc<dyn crate::io::github::CommitStatuses>> = match &secrets.token {
        Some(token) => Some(
            crate::io::github::GitHubApi::new(
                &config.api_base,
                token.clone(),
                config.api_timeout(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => None,
    };
    Ok(crate::actors::github::StatusReporter::start(
        context.deps.store.clone(),
        &context.deps.events,
        api,
        config,
    ))
}

/// Binds and runs the webhook listener when `[github] listen` is set; it
/// stops when shutdown starts.
pub async fn start_webhook(
    context: &Context,
    secrets: &GithubSecrets,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let config = &context.deps.config.github;
    let (Some(listen), Some(secret)) = (config.listen, &secrets.webhook_secret) else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for GitHub webhooks: {e}"))?;
    let address = listener.local_addr()?;
    let hook = crate::webhook::Hook {
        store: context.deps.store.clone(),
        projects: context.projects.clone(),
        secret: secret.clone(),
        max_body_bytes: config.max_body_bytes,
    };
    let mut shutdown = context.shutdown.clone();
    tokio::spawn(crate::webhook::serve(
        listener,
        hook,
        async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        },
        context.deps.config.shutdown_timeout(),
    ));
    Ok(Some(address))
}
