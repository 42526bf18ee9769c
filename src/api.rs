//! The gRPC edge: one tonic service per file, request validation, and
//! [`serve`], which wires the daemon together and runs it until shutdown.

mod admin;
mod convert;
mod deployments;
mod idempotency;
mod projects;
mod routing;
mod status;
mod watch;
mod workspaces;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::actors::{Deps, Projects};
use crate::config::Config;
use crate::error::Error;
use crate::io::store::Store;
use crate::model::names::Hostnames;
use crate::model::routes::candidate_hostnames;
use crate::model::{Deployment, DeploymentId, ProjectId, project::Project};
use crate::pb;
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::deployment_service_server::DeploymentServiceServer;
use crate::pb::project_service_server::ProjectServiceServer;
use crate::pb::routing_service_server::RoutingServiceServer;
use crate::pb::workspace_service_server::WorkspaceServiceServer;

/// What every service handler shares.
#[derive(Clone)]
pub struct Context {
    pub deps: Deps,
    pub projects: Projects,
    /// Flips to `true` when shutdown starts, so long streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    fn project(&self, id: &ProjectId) -> Result<Project, Error> {
        self.deps
            .store
            .project(id)?
            .ok_or_else(|| Error::not_found(format!("project {id} not found")))
    }

    /// The hostnames that point at `deployment` (of `project`) now: a
    /// handful of point lookups, whatever the length of the project's
    /// history.
    fn hostnames(&self, project: &Project, deployment: &Deployment) -> Result<Vec<String>, Error> {
        let names = Hostnames {
            apex: &self.deps.config.apex_domain,
            project_slug: &project.slug,
            workspace_slug: &project.workspace_slug,
        };
        let candidates = candidate_hostnames(deployment, project, names);
        let mut hostnames: Vec<String> = self
            .deps
            .store
            .routes_named(&candidates)?
            .into_iter()
            .filter(|r| r.deployment_id == deployment.id)
            .map(|r| r.fqdn)
            .collect();
        hostnames.sort();
        hostnames.dedup();
        Ok(hostnames)
    }

    fn deployment(&self, id: &DeploymentId, role: &str) -> Result<Deployment, Error> {
        self.deps
            .store
            .deployment(id)?
            .ok_or_else(|| Error::not_found(format!("{role} {id} not found")))
    }
}

/// What an embedding program (the load generator) can observe of a running
/// daemon.
#[derive(Clone)]
pub struct DaemonHandle {
    pub store: Store,
    pub projects: Projects,
}

/// Runs the daemon on `listener` until `shutdown` resolves: opens the store,
/// starts the actors, serves gRPC (with health and reflection), resumes
/// unfinished work, and reports `SERVING` only once that is done. On
/// shutdown it stops accepting, stops the actors and waits until every
/// acknowledged change is on disk and the data file is closed.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_observed(listener, config, shutdown, |_| {}).await
}

/// [`serve`], handing `observe` a [`DaemonHandle`] once the daemon is
/// serving.
pub async fn serve_observed(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    observe: impl FnOnce(DaemonHandle),
) -> anyhow::Result<()> {
    config.validate()?;
    let shutdown_timeout = config.shutdown_timeout();
    let (store, writer) =
        Store::open_with_cache(&config.db_path(), config.store_cache_mib * 1024 * 1024)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let deps = Deps::new(config, store);
    let projects = Projects::start(deps.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let context = Context {
        deps,
        projects: projects.clone(),
        shutdown: shutdown_rx,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, tonic_health::ServingStatus::NotServing).await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let router = Server::builder()
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(WorkspaceServiceServer::new(workspaces::Workspaces(
            context.clone(),
        )))
        .add_service(ProjectServiceServer::new(projects::Projects(
            context.clone(),
        )))
        .add_service(DeploymentServiceServer::new(deployments::Deployments(
            context.clone(),
        )))
        .add_service(RoutingServiceServer::new(routing::Routing(context.clone())))
        .add_service(AdminServiceServer::new(admin::Admin(context.clone())));
    let local = listener.local_addr().ok();
    let (draining_tx, draining) = tokio::sync::oneshot::channel::<()>();
    // Without TCP_NODELAY, small gRPC replies wait for the peer's delayed
    // ACK (~40 ms): every rollback would take that long.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
        let _ = draining_tx.send(());
    }));

    let resumed = projects
        .recover()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    set_health(&health, tonic_health::ServingStatus::Serving).await;
    tracing::info!(address = ?local, resumed_projects = resumed, "deployd is serving");
    observe(DaemonHandle {
        store: context.deps.store.clone(),
        projects: projects.clone(),
    });

    // After the shutdown signal, in-flight requests get `shutdown_timeout`
    // to finish. Whatever they acknowledged is durable already, so cutting
    // the rest off loses nothing that was promised.
    let served = tokio::select! {
        served = &mut server => served,
        () = async {
            if draining.await.is_ok() {
                tokio::time::sleep(shutdown_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("requests still running after the shutdown timeout; stopping anyway");
            server.abort();
            Ok(Ok(()))
        }
    };
    set_health(&health, tonic_health::ServingStatus::NotServing).await;
    projects.shutdown(shutdown_timeout).await;
    drop(context);
    drop(projects);
    // The writer exits once the last store handle is gone, after committing
    // everything already queued.
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || writer.join()),
    )
    .await;
    served??;
    tracing::info!("deployd stopped");
    Ok(())
}

async fn set_health(
    health: &tonic_health::server::HealthReporter,
    status: tonic_health::ServingStatus,
) {
    health.set_service_status("", status).await;
    for service in [
        "deployd.v1.WorkspaceService",
        "deployd.v1.ProjectService",
        "deployd.v1.DeploymentService",
        "deployd.v1.RoutingService",
        "deployd.v1.AdminService",
    ] {
        health.set_service_status(service, status).await;
    }
}
