//! `deployd.v1.DeploymentService`: request validation and routing of each
//! mutation to the owning project's actor. Reads go straight to the store.

use std::pin::Pin;
use std::time::Instant;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::actors::project::messages::{NewDeployment, SwitchOutcome};
use crate::api::auth::{self, Rpc};
use crate::api::listener::ConnInfo;
use crate::api::{Context, convert, idempotency, record_id, watch};
use crate::error::Error;
use crate::io::store::DeploymentFilter;
use crate::model::deployment::DEFAULT_PORT;
use crate::model::quote::quoted;
use crate::model::validate::{self, MAX_AUTHOR_LEN, MAX_COMMIT_MESSAGE_LEN, RepositoryRules};
use crate::model::{DeploymentId, GitCommit, GitSource, Origin, ProjectId, Source};
use crate::pb;
use crate::pb::deployment_service_server::DeploymentService;

pub struct Deployments(pub Context);

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;

impl Deployments {
    fn switch_response(&self, outcome: &SwitchOutcome) -> (Option<pb::Project>, Vec<pb::Route>) {
        (
            Some(convert::project(
                &outcome.project,
                self.0.deps.config.region_names(),
            )),
            outcome.routes.iter().map(convert::route).collect(),
        )
    }
}

fn parse_create(
    request: pb::CreateDeploymentRequest,
    repository_rules: RepositoryRules,
) -> Result<(ProjectId, NewDeployment), Error> {
    let project_id = ProjectId::parse(&request.project_id, "project_id")?;
    validate::slug(&request.environment_slug, "environment_slug")?;
    if !request.branch.is_empty() {
        validate::branch(&request.branch)?;
    }
    let source = match request.source {
        None => {
            return Err(Error::invalid(
                "source is required: set either git or docker_image",
            ));
        }
        Some(pb::create_deployment_request::Source::Git(git)) => {
            validate::repository(&git.repository, repository_rules)?;
            validate::commit_sha(&git.commit_sha, "git.commit_sha")?;
            validate::relative_path(&git.context_path, "git.context_path")?;
            validate::relative_path(&git.dockerfile_path, "git.dockerfile_path")?;
            if request.branch.is_empty() {
                return Err(Error::invalid("branch is required for a git source"));
            }
            Source::Git(GitSource {
                repository: git.repository,
                commit_sha: git.commit_sha,
                context_path: git.context_path,
                dockerfile_path: git.dockerfile_path,
            })
        }
        Some(pb::create_deployment_request::Source::DockerImage(image)) => {
            validate::image(&image.image)?;
            Source::Image(image.image)
        }
    };
    let git_commit = match request.git_commit {
        None => None,
        Some(commit) => {
            if !commit.sha.is_empty() {
                validate::commit_sha(&commit.sha, "git_commit.sha")?;
            }
            validate::free_text(
                &commit.message,
                "git_commit.message",
                MAX_COMMIT_MESSAGE_LEN,
            )?;
            validate::free_text(
                &commit.author_name,
                "git_commit.author_name",
                MAX_AUTHOR_LEN,
            )?;
            validate::free_text(
                &commit.author_email,
                "git_commit.author_email",
                MAX_AUTHOR_LEN,
            )?;
            let committed_at = match &commit.committed_at {
                None => None,
                Some(ts) => Some(validate::timestamp(
                    ts.seconds,
                    ts.nanos,
                    "git_commit.committed_at",
                )?),
            };
            Some(GitCommit {
                sha: commit.sha,
                message: commit.message,
                author_name: commit.author_name,
                author_email: commit.author_email,
                committed_at,
            })
        }
    };
    validate::command(&request.command)?;
    let port = match request.port {
        0 => DEFAULT_PORT,
        port => u16::try_from(port)
            .map_err(|_| Error::invalid(format!("port {port} is not a TCP port (1 to 65535)")))?,
    };
    Ok((
        project_id,
        NewDeployment {
            environment: request.environment_slug,
            branch: request.branch,
            source,
            git_commit,
            command: request.command,
            port,
        },
    ))
}

#[tonic::async_trait]
impl DeploymentService for Deployments {
    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::CreateDeploymentResponse>, Status> {
        let idempotency = idempotency::extract(
            &request,
            |r| &r.idempotency_key,
            |r| r.idempotency_key.clear(),
        )?;
        let caller = auth::caller(&request)?;
        let (project_id, new) =
            parse_create(request.into_inner(), self.0.deps.config.repository_rules())?;
        record_id("project_id", &project_id);
        self.0.reach_project(&caller, &project_id)?;
        let event = auth::audit(&caller, Rpc::CreateDeployment);
        let created = self
            .0
            .projects
            .deploy(&project_id, new, auth::origin(idempotency, event))
            .await?;
        record_id("deployment_id", &created.id);
        Ok(Response::new(pb::CreateDeploymentResponse {
            deployment_id: created.id.to_string(),
            status: convert::status(created.status) as i32,
        }))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::GetDeploymentResponse>, Status> {
        let caller = auth::caller(&request)?;
        let id = DeploymentId::parse(&request.get_ref().deployment_id, "deployment_id")?;
        record_id("deployment_id", &id);
        let deployment = self
            .0
            .blocking(move |context| {
                let deployment = context.deployment(&id, "deployment")?;
                let project = context.project(&deployment.project_id)?;
                if !caller.reaches(&project.workspace_id) {
                    return Err(Error::not_found(format!("deployment {id} not found")));
                }
                let hostnames = context.hostnames(&project, &deployment)?;
                Ok(convert::deployment(&deployment, hostnames))
            })
            .await?;
        Ok(Response::new(pb::GetDeploymentResponse {
            deployment: Some(deployment),
        }))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let project_id = ProjectId::parse(&request.project_id, "project_id")?;
        record_id("project_id", &project_id);
        let status = match pb::DeploymentStatus::try_from(request.status) {
            Ok(status) => convert::status_from_pb(status),
            Err(_) => {
                return Err(Error::invalid(format!(
                    "status {} is not a DeploymentStatus value",
                    request.status
                ))
                .into());
            }
        };
        let page_size = convert::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let before = if request.page_token.is_empty() {
            None
        } else {
            Some(
                request
                    .page_token
                    .parse::<u64>()
                    .map_err(|_| Error::invalid("page_token is not one this server returned"))?,
            )
        };
        let environment =
            (!request.environment_slug.is_empty()).then_some(request.environment_slug);
        if let Some(environment) = &environment {
            validate::slug(environment, "environment_slug")?;
        }
        let filter = DeploymentFilter {
            environment,
            status,
        };
        let page = self
            .0
            .blocking(move |context| {
                let project = context.project_for(&caller, &project_id)?;
                if let Some(environment) = &filter.environment
                    && project.environment(environment).is_none()
                {
                    return Err(Error::not_found(format!(
                        "project {project_id} has no environment {}",
                        quoted(environment)
                    )));
                }
                let page = context.deps.store.deployments_of_project(
                    &project_id,
                    &filter,
                    before,
                    page_size,
                )?;
                let deployments = page
                    .deployments
                    .iter()
                    .map(|d| Ok(convert::deployment(d, context.hostnames(&project, d)?)))
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok((deployments, page.next_before))
            })
            .await?;
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: page.0,
            next_page_token: page.1.map(|s| s.to_string()).unwrap_or_default(),
        }))
    }

    type WatchDeploymentStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchDeploymentResponse, Status>> + Send>>;

    async fn watch_deployment(
        &self,
        request: Request<pb::WatchDeploymentRequest>,
    ) -> Result<Response<Self::WatchDeploymentStream>, Status> {
        let caller = auth::caller(&request)?;
        let id = DeploymentId::parse(&request.get_ref().deployment_id, "deployment_id")?;
        record_id("deployment_id", &id);
        self.0.deployment_for(&caller, &id, "deployment")?;
        let connection = request.extensions().get::<ConnInfo>().cloned();
        let stream = watch::stream(self.0.clone(), id, connection)?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let started = Instant::now();
        let idempotency = idempotency::extract(
            &request,
            |r| &r.idempotency_key,
            |r| r.idempotency_key.clear(),
        )?;
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        if request.source_deployment_id.is_empty() || request.target_deployment_id.is_empty() {
            return Err(Error::invalid(
                "source_deployment_id and target_deployment_id are both required",
            )
            .into());
        }
        let source = DeploymentId::parse(&request.source_deployment_id, "source_deployment_id")?;
        let target = DeploymentId::parse(&request.target_deployment_id, "target_deployment_id")?;
        record_id("source_deployment_id", &source);
        record_id("deployment_id", &target);
        if source == target {
            return Err(Error::invalid("source and target are the same deployment").into());
        }
        self.0
            .deployment_for(&caller, &source, "source deployment")?;
        let project = self
            .0
            .deployment_for(&caller, &target, "target deployment")?
            .project_id;
        let event = auth::audit(&caller, Rpc::Rollback).id(&source).id(&target);
        record_id("project_id", &project);
        let outcome = self
            .0
            .projects
            .rollback(&project, source, target, auth::origin(idempotency, event))
            .await?;
        let metrics = &self.0.deps.metrics;
        metrics
            .rollback_seconds
            .observe(started.elapsed().as_secs_f64());
        // In the request's span: the RPC, the project and both ids.
        tracing::info!("rolled back");
        let (project, routes) = self.switch_response(&outcome);
        Ok(Response::new(pb::RollbackResponse { project, routes }))
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::PromoteResponse>, Status> {
        let started = Instant::now();
        let idempotency = idempotency::extract(
            &request,
            |r| &r.idempotency_key,
            |r| r.idempotency_key.clear(),
        )?;
        let caller = auth::caller(&request)?;
        let target = DeploymentId::parse(
            &request.get_ref().target_deployment_id,
            "target_deployment_id",
        )?;
        record_id("deployment_id", &target);
        let project = self
            .0
            .deployment_for(&caller, &target, "target deployment")?
            .project_id;
        let event = auth::audit(&caller, Rpc::Promote).id(&target);
        record_id("project_id", &project);
        let outcome = self
            .0
            .projects
            .promote(&project, target, auth::origin(idempotency, event))
            .await?;
        let metrics = &self.0.deps.metrics;
        metrics
            .promote_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!("promoted");
        let (project, routes) = self.switch_response(&outcome);
        Ok(Response::new(pb::PromoteResponse { project, routes }))
    }

    async fn cancel_deployment(
        &self,
        request: Request<pb::CancelDeploymentRequest>,
    ) -> Result<Response<pb::CancelDeploymentResponse>, Status> {
        let caller = auth::caller(&request)?;
        let id = DeploymentId::parse(&request.get_ref().deployment_id, "deployment_id")?;
        let project_id = self
            .0
            .deployment_for(&caller, &id, "deployment")?
            .project_id;
        let origin = Origin {
            idempotency: None,
            audit: Some(Box::new(
                auth::audit(&caller, Rpc::CancelDeployment).id(&id),
            )),
        };
        let deployment = self.0.projects.cancel(&project_id, id, origin).await?;
        let deployment = self
            .0
            .blocking(move |context| {
                let project = context.project(&deployment.project_id)?;
                let hostnames = context.hostnames(&project, &deployment)?;
                Ok(convert::deployment(&deployment, hostnames))
            })
            .await?;
        Ok(Response::new(pb::CancelDeploymentResponse {
            deployment: Some(deployment),
        }))
    }

    async fn get_build_log(
        &self,
        request: Request<pb::GetBuildLogRequest>,
    ) -> Result<Response<pb::GetBuildLogResponse>, Status> {
        let caller = auth::caller(&request)?;
        let id = DeploymentId::parse(&request.get_ref().deployment_id, "deployment_id")?;
        let text = self
            .0
            .blocking(move |context| {
                context.deployment_for(&caller, &id, "deployment")?;
                context
                    .deps
                    .build_logs
                    .read(&id)?
                    .ok_or_else(|| Error::not_found(format!("no build log of {id} is kept")))
            })
            .await?;
        Ok(Response::new(pb::GetBuildLogResponse {
            lines: text.lines,
            truncated: text.truncated,
        }))
    }
}
