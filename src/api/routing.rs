//! `deployd.v1.RoutingService`.

use tonic::{Request, Response, Status};

use crate::api::{Context, convert};
use crate::model::ProjectId;
use crate::pb;
use crate::pb::routing_service_server::RoutingService;

pub struct Routing(pub Context);

#[tonic::async_trait]
impl RoutingService for Routing {
    async fn list_routes(
        &self,
        request: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesResponse>, Status> {
        let id = ProjectId::parse(&request.get_ref().project_id, "project_id")?;
        self.0.project(&id)?;
        let routes = self.0.deps.store.routes_of_project(&id)?;
        Ok(Response::new(pb::ListRoutesResponse {
            routes: routes.values().map(convert::route).collect(),
        }))
    }
}
