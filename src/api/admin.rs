//! `deployd.v1.AdminService`: counters for operators and load tests.

use tonic::{Request, Response, Status};

use crate::api::Context;
use crate::pb;
use crate::pb::admin_service_server::AdminService;

pub struct Admin(pub Context);

#[tonic::async_trait]
impl AdminService for Admin {
    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let (commits, operations, failed) = self.0.deps.store.stats().snapshot();
        let drivers = self.0.deps.reconciler.stats();
        Ok(Response::new(pb::GetStatsResponse {
            commits,
            committed_operations: operations,
            failed_commits: failed,
            running_project_actors: self.0.projects.running_actors() as u64,
            broken_projects: self.0.projects.broken_projects() as u64,
            watched_deployments: self.0.deps.events.watched() as u64,
            pending_driver_intents: drivers.pending as u64,
            driver_calls: drivers.calls,
            failed_driver_calls: drivers.failed_calls,
            project_actor_failures: self.0.projects.actor_failures(),
            open_connections: self.0.connections.open() as u64,
            watch_streams: self.0.deps.events.watchers() as u64,
        }))
    }
}
