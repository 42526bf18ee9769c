//! `deployd.v1.ProjectService`. Creating a project is a store write with a
//! uniqueness check; everything that changes a project afterwards goes
//! through its actor.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use crate::api::{Context, convert};
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::project::Project;
use crate::model::{ProjectId, WorkspaceId, now_millis, validate};
use crate::pb;
use crate::pb::project_service_server::ProjectService;

pub struct Projects(pub Context);

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
        let request = request.into_inner();
        let workspace_id = WorkspaceId::parse(&request.workspace_id, "workspace_id")?;
        validate::slug(&request.slug, "slug")?;
        validate::display_name(&request.name, "name")?;
        let workspace = self
            .0
            .deps
            .store
            .workspace(&workspace_id)?
            .ok_or_else(|| Error::not_found(format!("workspace {workspace_id} not found")))?;
        let project = Project::new(&workspace, request.slug, request.name, now_millis());
        self.0
            .deps
            .store
            .commit(vec![Mutation::CreateProject(project.clone())])
            .await?;
        Ok(Response::new(pb::CreateProjectResponse {
            project: Some(self.to_pb(&project)),
        }))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let id = ProjectId::parse(&request.get_ref().project_id, "project_id")?;
        let project = self.0.project(&id)?;
        Ok(Response::new(pb::GetProjectResponse {
            project: Some(self.to_pb(&project)),
        }))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let id = WorkspaceId::parse(&request.get_ref().workspace_id, "workspace_id")?;
        if self.0.deps.store.workspace(&id)?.is_none() {
            return Err(Error::not_found(format!("workspace {id} not found")).into());
        }
        let projects = self.0.deps.store.projects_of_workspace(&id)?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: projects.iter().map(|p| self.to_pb(p)).collect(),
        }))
    }

    async fn set_environment_regions(
        &self,
        request: Request<pb::SetEnvironmentRegionsRequest>,
    ) -> Result<Response<pb::SetEnvironmentRegionsResponse>, Status> {
        let request = request.into_inner();
        let id = ProjectId::parse(&request.project_id, "project_id")?;
        validate::slug(&request.environment_slug, "environment_slug")?;
        let mut regions = BTreeMap::new();
        for (region, replicas) in request.regions {
            validate::region(&region)?;
            validate::replicas(&region, replicas)?;
            regions.insert(region, replicas);
        }
        let project = self
            .0
            .projects
            .set_environment_regions(&id, request.environment_slug, regions)
            .await?;
        Ok(Response::new(pb::SetEnvironmentRegionsResponse {
            project: Some(self.to_pb(&project)),
        }))
    }

    async fn add_custom_domain(
        &self,
        request: Request<pb::AddCustomDomainRequest>,
    ) -> Result<Response<pb::AddCustomDomainResponse>, Status> {
        let request = request.into_inner();
        let id = ProjectId::parse(&request.project_id, "project_id")?;
        validate::fqdn(&request.fqdn, "fqdn")?;
        let (project, route) = self.0.projects.add_custom_domain(&id, request.fqdn).await?;
        Ok(Response::new(pb::AddCustomDomainResponse {
            project: Some(self.to_pb(&project)),
            route: route.as_ref().map(convert::route),
        }))
    }
}
