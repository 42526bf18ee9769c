//! `deployd.v1.WorkspaceService`.

use tonic::{Request, Response, Status};

use crate::api::auth::{self, Rpc};
use crate::api::{Context, convert};
use crate::io::store::Mutation;
use crate::model::{Workspace, WorkspaceId, now_millis, validate};
use crate::pb;
use crate::pb::workspace_service_server::WorkspaceService;

pub struct Workspaces(pub Context);

#[tonic::async_trait]
impl WorkspaceService for Workspaces {
    async fn create_workspace(
        &self,
        request: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::CreateWorkspaceResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        validate::slug(&request.slug, "slug")?;
        validate::display_name(&request.name, "name")?;
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            slug: request.slug,
            name: request.name,
            created_at: now_millis(),
        };
        self.0
            .deps
            .store
            .commit(vec![
                Mutation::CreateWorkspace(workspace.clone()),
                Mutation::Audit(Box::new(
                    auth::audit(&caller, Rpc::CreateWorkspace).workspace(&workspace.id),
                )),
            ])
            .await?;
        Ok(Response::new(pb::CreateWorkspaceResponse {
            workspace: Some(convert::workspace(&workspace)),
        }))
    }

    async fn get_workspace(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::GetWorkspaceResponse>, Status> {
        let caller = auth::caller(&request)?;
        let id = WorkspaceId::parse(&request.get_ref().workspace_id, "workspace_id")?;
        crate::api::record_id("workspace_id", &id);
        let workspace = self.0.workspace_for(&caller, &id)?;
        Ok(Response::new(pb::GetWorkspaceResponse {
            workspace: Some(convert::workspace(&workspace)),
        }))
    }
}
