//! The gRPC edge: one tonic service per file, request validation, and
//! [`serve`], which wires the daemon together and runs it until shutdown.

mod admin;
mod audit;
pub mod auth;
mod convert;
mod deployments;
mod github;
mod idempotency;
pub mod listener;
mod metrics;
mod projects;
mod routing;
mod spans;
mod status;
pub mod switch_lane;
mod tokens;
mod watch;
mod workspaces;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::actors::{Deps, Projects, Reconciler};
use crate::api::listener::{Connections, CountStreams};
use crate::config::Config;
use crate::error::Error;
use crate::io::region::Regions;
use crate::io::store::Store;
use crate::io::tls::{ALPN_H2, ALPN_HTTP1, ServerTls};
use crate::model::names::Hostnames;
use crate::model::routes::{candidate_hostnames, fixed_hostnames};
use crate::model::{Deployment, DeploymentId, ProjectId, project::Project};
use crate::pb;
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::audit_service_server::AuditServiceServer;
use crate::pb::deployment_service_server::DeploymentServiceServer;
use crate::pb::git_hub_service_server::GitHubServiceServer;
use crate::pb::project_service_server::ProjectServiceServer;
use crate::pb::routing_service_server::RoutingServiceServer;
use crate::pb::token_service_server::TokenServiceServer;
use crate::pb::workspace_service_server::WorkspaceServiceServer;

use spans::record_id;

/// What every service handler shares.
#[derive(Clone)]
pub struct Context {
    pub deps: Deps,
    pub projects: Projects,
    /// Flips to `true` when shutdown starts, so long streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub connections: Arc<Connections>,
    /// The tokens requests are checked against (in memory).
    pub tokens: auth::tokens::Tokens,
}

impl Context {
    /// Runs a read on the blocking pool: a listing or a handful of lookups
    /// never holds up the async workers that actors and replies run on.
    async fn blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Context) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let context = self.clone();
        tokio::task::spawn_blocking(move || read(&context))
            .await
            .map_err(|e| Error::internal(format!("a read task failed: {e}")))?
    }

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

/// The HTTP/2 settings and per-request span every gRPC listener (the main
/// one and the switch lane) shares.
fn grpc_server(config: &Config) -> Server {
    Server::builder()
        .max_concurrent_streams(config.max_streams_per_connection)
        .http2_keepalive_interval(Some(config.keepalive_interval()))
        .http2_keepalive_timeout(Some(config.keepalive_timeout()))
        .trace_fn(spans::rpc_span)
}

/// What an embedding program (the load generator, tests) can observe of a
/// running daemon: the store, the actors, and the region drivers with the
/// reconciler that calls them.
#[derive(Clone)]
pub struct DaemonHandle {
    pub store: Store,
    pub projects: Projects,
    pub regions: Regions,
    pub reconciler: Reconciler,
    /// Counters of the periodic resync (orphans, drift).
    pub resync: Arc<crate::actors::resync::ResyncStats>,
    /// Where the edge serves HTTP, when it is enabled.
    pub edge: Option<std::net::SocketAddr>,
    /// Where Prometheus scrapes `/metrics`, when `[metrics] listen` is set.
    pub metrics: Option<std::net::SocketAddr>,
    /// The admin token generated at this data file's first start (none
    /// configured): its only appearance. `deployd serve` prints it.
    pub bootstrap_token: Option<String>,
    /// Where the GitHub webhook listener serves, when configured.
    pub webhook: Option<std::net::SocketAddr>,
    /// Where the switch lane serves, when `switch_listen` is set.
    pub switch_lane: Option<std::net::SocketAddr>,
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
    let began = std::time::Instant::now();
    config.validate()?;
    let github_secrets = github::GithubSecrets::read(&config.github)?;
    for (setting, address) in config.plaintext_non_loopback() {
        tracing::warn!(%address, setting, "serving plain text on a non-loopback address (allow_plaintext_non_loopback)");
    }
    // Certificates first: a bad file stops the start before anything else.
    let load = |tls: &Option<crate::config::TlsConfig>, alpn| {
        tls.as_ref()
            .map(|tls| ServerTls::load(tls, alpn).map(Arc::new))
            .transpose()
    };
    let api_tls = load(&config.tls, ALPN_H2)?;
    let edge_tls = load(&config.edge.tls, ALPN_HTTP1)?;
    let shutdown_timeout = config.shutdown_timeout();
    crate::io::thread_priority::choose(config.switch_path_priority);
    let (store, writer) =
        Store::open_with_cache(&config.db_path(), config.store_cache_mib * 1024 * 1024)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let deps = Deps::new(config, store);
    reserve_fixed_hostnames(&deps).await?;
    let (tokens, bootstrap_token) = load_tokens(&deps).await?;
    let projects = Projects::start(deps.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let local = listener.local_addr().ok();
    let (connections, incoming) = Connections::start(
        listener,
        &deps.config,
        api_tls.as_ref().map(|t| t.acceptor()),
    );
    for (name, tls) in [("api", &api_tls), ("edge", &edge_tls)] {
        if let Some(tls) = tls {
            Arc::clone(tls).watch(name, shutdown_rx.clone());
        }
    }
    let connections = Arc::new(connections);
    let context = Context {
        deps,
        projects: projects.clone(),
        shutdown: shutdown_rx,
        connections: Arc::clone(&connections),
        tokens,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, tonic_health::ServingStatus::NotServing).await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let config = &context.deps.config;
    // Requests over this size are refused before they are decoded.
    let max = config.max_message_bytes;
    let router = grpc_server(config)
        .layer(CountStreams)
        .layer(auth::layer::Authenticate {
            tokens: context.tokens.clone(),
            open_reflection: config.auth.open_reflection,
            rates: auth::rate::RateLimits::new(&config.quotas),
        })
        .add_service(health_service.clone())
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(
            WorkspaceServiceServer::new(workspaces::Workspaces(context.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            ProjectServiceServer::new(projects::Projects(context.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            DeploymentServiceServer::new(deployments::Deployments(context.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            RoutingServiceServer::new(routing::Routing(context.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            AdminServiceServer::new(admin::Admin(context.clone())).max_decoding_message_size(max),
        )
        .add_service(
            TokenServiceServer::new(tokens::Tokens(context.clone())).max_decoding_message_size(max),
        )
        .add_service(
            AuditServiceServer::new(audit::Audit(context.clone())).max_decoding_message_size(max),
        )
        .add_service(
            GitHubServiceServer::new(github::GitHub(context.clone()))
                .max_decoding_message_size(max),
        );
    let switch_lane = match config.switch_listen {
        Some(address) => Some(switch_lane::SwitchLane::start(
            &context,
            address,
            health_service.clone(),
            api_tls.as_ref().map(|t| t.acceptor()),
        )?),
        None => None,
    };
    let (draining_tx, draining) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let draining_connections = Arc::clone(&connections);
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
        draining_connections.drain();
        let _ = draining_tx.send(tokio::time::Instant::now());
    }));

    // Drivers first: every stored desired state is applied again (stopped
    // stays stopped, running runs), with its stored intent number, so that
    // intents decided by the actors resuming below are newer and win.
    let reapplied = context
        .deps
        .reconciler
        .resume()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let resumed = projects
        .recover()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let edge = start_edge(&context, edge_tls.map(|t| t.acceptor())).await?;
    let resync = crate::actors::resync::Resync::start(context.deps.clone());
    let metrics = match context.deps.config.metrics.listen {
        Some(address) => Some(metrics::start(&context, address).await?),
        None => None,
    };
    tokio::spawn(audit::prune_periodically(
        context.deps.store.clone(),
        context.deps.config.audit.retention(),
        context.shutdown.clone(),
    ));
    // After recovery, so the reporter's first pass sees the outbox rows of
    // resumed work; it sends what was owed when the daemon stopped.
    let reporter = github::start_reporter(&context, &github_secrets)?;
    let webhook = github::start_webhook(&context, &github_secrets).await?;
    // SERVING before anyone is told the daemon serves (`observe`); the
    // follower keeps it in step with the store from then on.
    if context.deps.store.state().is_writable() {
        set_health(&health, tonic_health::ServingStatus::Serving).await;
    }
    let follower = tokio::spawn(follow_store(
        health.clone(),
        context.deps.store.watch_state(),
    ));
    tracing::info!(
        address = ?local,
        edge = ?edge,
        webhook = ?webhook,
        metrics = ?metrics,
        tls = api_tls.is_some(),
        resumed_projects = resumed,
        reapplied_workloads = reapplied,
        started_in_ms = began.elapsed().as_millis() as u64,
        "deployd is serving"
    );
    observe(DaemonHandle {
        store: context.deps.store.clone(),
        projects: projects.clone(),
        regions: context.deps.regions.clone(),
        reconciler: context.deps.reconciler.clone(),
        resync: resync.stats.clone(),
        edge,
        metrics,
        bootstrap_token,
        webhook,
        switch_lane: switch_lane.as_ref().map(|lane| lane.address),
    });

    // After the shutdown signal, in-flight requests get `shutdown_timeout`
    // to finish. Whatever they acknowledged is durable already, so cutting
    // the rest off loses nothing that was promised. Every step after has a
    // deadline too, so the process exits within `shutdown_timeout` + 1 s
    // whatever clients do.
    let mut began = None;
    let served = tokio::select! {
        served = &mut server => served,
        () = async {
            match draining.await {
                Ok(at) => {
                    began = Some(at);
                    tokio::time::sleep_until(at + shutdown_timeout).await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        } => {
            tracing::warn!("requests still running after the shutdown timeout; closing their connections");
            connections.cut();
            // Cut connections fail their next read or write at once; the
            // abort is only a backstop.
            match tokio::time::timeout(CUT_GRACE, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    follower.abort();
    let began = began.unwrap_or_else(tokio::time::Instant::now);
    let budget = |after: Duration| {
        (began + shutdown_timeout + after)
            .saturating_duration_since(tokio::time::Instant::now())
            .max(MIN_STEP)
    };
    set_health(&health, tonic_health::ServingStatus::NotServing).await;
    if let Some(lane) = switch_lane {
        lane.stopped(budget(Duration::ZERO)).await;
    }
    resync.stop().await;
    projects.shutdown(budget(ACTORS_BY)).await;
    context.deps.reconciler.stop();
    // The reporter holds the store open; what it had not settled stays in
    // the outbox for the next start.
    reporter.stop();
    drop(context);
    drop(projects);
    // The writer exits once the last store handle is gone, after committing
    // everything already queued.
    if tokio::time::timeout(
        budget(WRITER_BY),
        tokio::task::spawn_blocking(move || writer.join()),
    )
    .await
    .is_err()
    {
        tracing::warn!("the store writer did not finish in time; exiting without it");
    }
    served??;
    tracing::info!("deployd stopped");
    Ok(())
}

/// How long start-up waits for the drivers to report where the instances
/// of running deployments listen before the edge accepts requests anyway
/// (a region that is down must not keep every other from being served).
const EDGE_SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Binds and runs the edge, once start-up's re-apply has told it where
/// instances are; it stops when shutdown starts.
async fn start_edge(
    context: &Context,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let config = &context.deps.config.edge;
    if !config.enabled {
        return Ok(None);
    }
    if !context.deps.reconciler.settle(EDGE_SETTLE_LIMIT).await {
        tracing::warn!("some regions have not confirmed their workloads; the edge starts anyway");
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the edge: {e}", config.listen))?;
    let address = listener.local_addr()?;
    let mut shutdown = context.shutdown.clone();
    let edge = crate::edge::Edge {
        store: context.deps.store.clone(),
        backends: context.deps.backends.clone(),
        tls,
        metrics: context.deps.metrics.edge.clone(),
    };
    tokio::spawn(crate::edge::serve(
        listener,
        edge,
        async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        },
        context.deps.config.shutdown_timeout(),
    ));
    Ok(Some(address))
}
/// How long cut connections get to close before the server task is
/// aborted.
const CUT_GRACE: Duration = Duration::from_millis(200);
/// Past `shutdown_timeout`, when the actors and then the store writer must
/// have stopped: the documented bound is `shutdown_timeout` + 1 s.
const ACTORS_BY: Duration = Duration::from_millis(500);
const WRITER_BY: Duration = Duration::from_millis(900);
/// Every step gets at least this, even when earlier ones used its share.
const MIN_STEP: Duration = Duration::from_millis(50);

/// The token table: every stored token, and the bootstrap admin token,
/// from the configured file or, at a data file's first start without one,
/// generated (its text returned, to be shown once).
async fn load_tokens(deps: &Deps) -> anyhow::Result<(auth::tokens::Tokens, Option<String>)> {
    let store = deps.store.clone();
    let tokens = tokio::task::spawn_blocking(move || auth::tokens::Tokens::load(&store))
        .await?
        .map_err(|e| anyhow::anyhow!("cannot read the tokens: {e}"))?;
    if let Some(path) = &deps.config.auth.bootstrap_token_file {
        tokens.insert(&auth::tokens::from_file(path)?);
        return Ok((tokens, None));
    }
    match auth::tokens::generate_once(&deps.store).await? {
        Some((record, text)) => {
            tokens.insert(&record);
            Ok((tokens, Some(text)))
        }
        None => Ok((tokens, None)),
    }
}

/// Reserves the fixed hostnames of projects made before reservations
/// existed, or before the apex domain changed (a no-op scan otherwise).
async fn reserve_fixed_hostnames(deps: &Deps) -> anyhow::Result<()> {
    let apex = deps.config.apex_domain.clone();
    let store = deps.store.clone();
    let mutations = tokio::task::spawn_blocking(move || {
        store.unreserved_projects(&apex, |project| {
            let names = Hostnames {
                apex: &apex,
                project_slug: &project.slug,
                workspace_slug: &project.workspace_slug,
            };
            fixed_hostnames(project, names)
        })
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !mutations.is_empty() {
        deps.store
            .commit(mutations)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reserve fixed hostnames: {e}"))?;
    }
    Ok(())
}

/// Once serving, health says `SERVING` exactly while the data file can be
/// written: a load balancer then sends changes elsewhere while the disk is
/// full or the file damaged, and back once writes go through again.
async fn follow_store(
    health: tonic_health::server::HealthReporter,
    mut state: tokio::sync::watch::Receiver<crate::io::store::StoreState>,
) {
    loop {
        let status = if state.borrow_and_update().is_writable() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        set_health(&health, status).await;
        if state.changed().await.is_err() {
            return;
        }
    }
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
        "deployd.v1.TokenService",
        "deployd.v1.AuditService",
        "deployd.v1.GitHubService",
    ] {
        health.set_service_status(service, status).await;
    }
}
