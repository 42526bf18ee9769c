//! The switch lane (`switch_listen`): a second gRPC listener that serves
//! only `Rollback` and `Promote` (and health), on a thread and
//! single-threaded async runtime of its own.
//!
//! Under deploy load the main runtime's workers always have a queue of
//! ready tasks (connections, handlers, watch streams, actors), and a
//! request waits behind that queue at every hop: reading it, handling it,
//! writing the answer. On the lane, the connection and the handler run on
//! a runtime with nothing else to do; what a switch still shares with
//! deploys is one hop to its project actor (a cross-runtime wake, picked up
//! within tokio's global-queue interval) and the store writer, whose urgent
//! lane already commits it ahead of queued deploy steps. The thread asks
//! for a higher scheduling priority, like the writer, so the kernel runs it
//! ahead of the main workers when both are ready.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use tonic::Status;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::api::auth::rpc::Rpc;
use crate::api::listener::{Connections, CountStreams};
use crate::api::{Context, auth, deployments, grpc_server};
use crate::pb::deployment_service_server::DeploymentServiceServer;

/// A running lane: where it listens and its thread.
pub struct SwitchLane {
    pub address: SocketAddr,
    thread: JoinHandle<()>,
}

impl SwitchLane {
    /// Binds `address` (an error stops the start) and serves it on a new
    /// thread until `context.shutdown` turns true.
    pub fn start(
        context: &Context,
        address: SocketAddr,
        health: HealthServer<impl Health>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| anyhow::anyhow!("cannot listen on {address} (switch_listen): {e}"))?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let context = context.clone();
        let thread = std::thread::Builder::new()
            .name("deployd-switch-lane".into())
            .spawn(move || {
                crate::io::thread_priority::raise("switch lane");
                runtime.block_on(serve(context, listener, health, tls));
            })?;
        Ok(Self {
            address: bound,
            thread,
        })
    }

    /// Waits (at most `limit`) for the lane to finish once shutdown began.
    pub async fn stopped(self, limit: Duration) {
        let joined = tokio::task::spawn_blocking(move || self.thread.join());
        if tokio::time::timeout(limit, joined).await.is_err() {
            tracing::warn!("the switch lane did not stop in time");
        }
    }
}

async fn serve(
    context: Context,
    listener: std::net::TcpListener,
    health: HealthServer<impl Health>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "the switch lane cannot serve");
            return;
        }
    };
    let config = &context.deps.config;
    let (connections, incoming) = Connections::start(listener, config, tls);
    let connections = std::sync::Arc::new(connections);
    let mut shutdown = context.shutdown.clone();
    let shutdown_timeout = config.shutdown_timeout();
    let router = grpc_server(config)
        .layer(CountStreams)
        .layer(OnlySwitches)
        .layer(auth::layer::Authenticate {
            tokens: context.tokens.clone(),
            open_reflection: false,
            rates: auth::rate::RateLimits::new(&config.quotas),
        })
        .add_service(health)
        .add_service(
            DeploymentServiceServer::new(deployments::Deployments(context.clone()))
                .max_decoding_message_size(config.max_message_bytes),
        );
    let served = router.serve_with_incoming_shutdown(incoming, async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
        connections.drain();
        // Requests still running after the timeout are cut, as on the main
        // listener.
        tokio::spawn(async move {
            tokio::time::sleep(shutdown_timeout).await;
            connections.cut();
        });
    });
    if let Err(e) = served.await {
        tracing::error!(error = %e, "the switch lane stopped with an error");
    }
}

/// Refuses every method but the switches and health, before
/// authentication: the lane is for getting traffic off a bad deploy, and
/// nothing else may queue there.
#[derive(Clone, Copy)]
struct OnlySwitches;

impl<S> tower_layer::Layer<S> for OnlySwitches {
    type Service = SwitchesOnly<S>;

    fn layer(&self, inner: S) -> SwitchesOnly<S> {
        SwitchesOnly(inner)
    }
}

#[derive(Clone)]
struct SwitchesOnly<S>(S);

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for SwitchesOnly<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let switch = matches!(Rpc::from_path(path), Some(Rpc::Rollback | Rpc::Promote));
        if switch || path.starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.0.call(request));
        }
        let status = Status::unimplemented(format!(
            "{path}: this listener (switch_listen) serves only Rollback and Promote; send other calls to the main listener"
        ));
        Box::pin(std::future::ready(Ok(status.into_http::<R>())))
    }
}
