//! `deployd.v1.ProjectService`. Creating a project is a store write with
//! uniqueness checks (its slug, and its fixed hostnames, which it reserves)
//! and the workspace's project quota, all checked by the store writer;
//! everything that changes a project afterwards goes through its actor.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use crate::api::auth::{self, Rpc};
use crate::api::{Context, convert, idempotency, record_id};
use crate::error::Error;
use crate::io::dns::TxtResolver;
use crate::io::store::Mutation;
use crate::model::domains::challenge_name;
use crate::model::names::Hostnames;
use crate::model::project::Project;
use crate::model::routes::fixed_hostnames;
use crate::model::{ProjectId, WorkspaceId, now_millis, validate};
use crate::pb;
use crate::pb::project_service_server::ProjectService;

pub struct Projects(pub Context);

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 500;

/// The project of a custom domain request, its id recorded in the span,
/// once the domain is well formed.
fn domain_request(project_id: &str, fqdn: &str) -> Result<ProjectId, Status> {
    let id = ProjectId::parse(project_id, "project_id")?;
    record_id("project_id", &id);
    validate::fqdn(fqdn, "fqdn")?;
    Ok(id)
}

impl Projects {
    fn to_pb(&self, project: &Project) -> pb::Project {
        convert::project(project, self.0.deps.config.region_names())
    }
}

#[tonic::async_trait]
impl ProjectService for Projects {
    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let workspace_id = WorkspaceId::parse(&request.workspace_id, "workspace_id")?;
        record_id("workspace_id", &workspace_id);
        validate::slug(&request.slug, "slug")?;
        validate::display_name(&request.name, "name")?;
        let workspace = self.0.workspace_for(&caller, &workspace_id)?;
        let project = Project::new(&workspace, request.slug, request.name, now_millis());
        let names = Hostnames {
            apex: &self.0.deps.config.apex_domain,
            project_slug: &project.slug,
            workspace_slug: &project.workspace_slug,
        };
        let reserve = fixed_hostnames(&project, names);
        let event = auth::audit(&caller, Rpc::CreateProject)
            .workspace(&workspace.id)
            .project(&project.id);
        self.0
            .deps
            .store
            .commit(vec![
                Mutation::CreateProject {
                    project: project.clone(),
                    reserve,
                },
                // After the create's own checks, so a taken slug is still
                // ALREADY_EXISTS in a full workspace.
                Mutation::ProjectQuota {
                    workspace_id: workspace.id.clone(),
                    max: self.0.deps.config.quotas.max_projects_per_workspace,
                },
                Mutation::Audit(Box::new(event)),
            ])
            .await?;
        Ok(Response::new(pb::CreateProjectResponse {
            project: Some(self.to_pb(&project)),
        }))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let caller = auth::caller(&request)?;
        let id = ProjectId::parse(&request.get_ref().project_id, "project_id")?;
        record_id("project_id", &id);
        let project = self.0.project_for(&caller, &id)?;
        Ok(Response::new(pb::GetProjectResponse {
            project: Some(self.to_pb(&project)),
        }))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let id = WorkspaceId::parse(&request.workspace_id, "workspace_id")?;
        record_id("workspace_id", &id);
        let page_size = convert::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = if request.page_token.is_empty() {
            None
        } else {
            validate::slug(&request.page_token, "page_token")
                .map_err(|_| Error::invalid("page_token is not one this server returned"))?;
            Some(request.page_token)
        };
        let (projects, more) = self
            .0
            .blocking(move |context| {
                context.workspace_for(&caller, &id)?;
                context
                    .deps
                    .store
                    .projects_of_workspace(&id, after.as_deref(), page_size)
            })
            .await?;
        let next_page_token = if more {
            projects.last().map(|p| p.slug.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListProjectsResponse {
            projects: projects.iter().map(|p| self.to_pb(p)).collect(),
            next_page_token,
        }))
    }

    async fn set_environment_regions(
        &self,
        request: Request<pb::SetEnvironmentRegionsRequest>,
    ) -> Result<Response<pb::SetEnvironmentRegionsResponse>, Status> {
        let idempotency = idempotency::extract(
            &request,
            |r| &r.idempotency_key,
            |r| r.idempotency_key.clear(),
        )?;
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let id = ProjectId::parse(&request.project_id, "project_id")?;
        record_id("project_id", &id);
        validate::slug(&request.environment_slug, "environment_slug")?;
        validate::region_count(request.regions.len())?;
        let mut regions = BTreeMap::new();
        for (region, replicas) in request.regions {
            validate::region(&region)?;
            validate::replicas(&region, replicas)?;
            regions.insert(region, replicas);
        }
        self.0.reach_project(&caller, &id)?;
        let event = auth::audit(&caller, Rpc::SetEnvironmentRegions);
        let project = self
            .0
            .projects
            .set_environment_regions(
                &id,
                request.environment_slug,
                regions,
                auth::origin(idempotency, event),
            )
            .await?;
        Ok(Response::new(pb::SetEnvironmentRegionsResponse {
            project: Some(self.to_pb(&project)),
        }))
    }

    async fn add_custom_domain(
        &self,
        request: Request<pb::AddCustomDomainRequest>,
    ) -> Result<Response<pb::AddCustomDomainResponse>, Status> {
        let idempotency = idempotency::extract(
            &request,
            |r| &r.idempotency_key,
            |r| r.idempotency_key.clear(),
        )?;
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let id = domain_request(&request.project_id, &request.fqdn)?;
        self.0.reach_project(&caller, &id)?;
        let event = auth::audit(&caller, Rpc::AddCustomDomain).id(&request.fqdn);
        let added = self
            .0
            .projects
            .add_custom_domain(&id, request.fqdn, auth::origin(idempotency, event))
            .await?;
        Ok(Response::new(pb::AddCustomDomainResponse {
            project: Some(self.to_pb(&added.project)),
            route: added.route.as_ref().map(convert::route),
            challenge: added.challenge.map(|c| pb::DomainChallenge {
                record_name: c.record_name,
                record_value: c.record_value,
            }),
        }))
    }

    /// The DNS lookup runs here, in the request's task, and only its
    /// answer goes to the project's actor: a slow nameserver never holds
    /// up the mailbox.
    async fn verify_custom_domain(
        &self,
        request: Request<pb::VerifyCustomDomainRequest>,
    ) -> Result<Response<pb::VerifyCustomDomainResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let id = domain_request(&request.project_id, &request.fqdn)?;
        let project = self.0.project_for(&caller, &id)?;
        let fqdn = request.fqdn;
        let found = if project.pending_domains.contains(&fqdn) {
            let name = challenge_name(&fqdn);
            TxtResolver::from_config(&self.0.deps.config.domains)
                .txt(&name)
                .await
                .map_err(|e| {
                    Error::Unavailable(format!("cannot look up TXT {name}: {e}; try again"))
                })?
        } else {
            // Attached already, or not claimed: the actor answers without
            // DNS (and from its own memory, which the store may trail).
            Vec::new()
        };
        let event = auth::audit(&caller, Rpc::VerifyCustomDomain).id(&fqdn);
        let verified = self
            .0
            .projects
            .verify_custom_domain(&id, fqdn, found, auth::origin(None, event))
            .await?;
        Ok(Response::new(pb::VerifyCustomDomainResponse {
            project: Some(self.to_pb(&verified.project)),
            route: verified.route.as_ref().map(convert::route),
        }))
    }

    async fn remove_custom_domain(
        &self,
        request: Request<pb::RemoveCustomDomainRequest>,
    ) -> Result<Response<pb::RemoveCustomDomainResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let id = domain_request(&request.project_id, &request.fqdn)?;
        self.0.reach_project(&caller, &id)?;
        let event = auth::audit(&caller, Rpc::RemoveCustomDomain).id(&request.fqdn);
        let project = self
            .0
            .projects
            .remove_custom_domain(&id, request.fqdn, auth::origin(None, event))
            .await?;
        Ok(Response::new(pb::RemoveCustomDomainResponse {
            project: Some(self.to_pb(&project)),
        }))
    }
}
