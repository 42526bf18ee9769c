//! The built-in edge: an HTTP/1.1 reverse proxy in the daemon that serves
//! every hostname deployd routes (`[edge] listen`). An entry point beside
//! [`crate::api`]: it reads committed routes from the store and instance
//! addresses from [`crate::io::backends`], and decides nothing. See
//! [`proxy`] for how a request finds its instance.
//!
//! With `[edge.tls]` it serves HTTPS: each accepted socket does its TLS
//! handshake in its own task (bounded by the header read timeout), and the
//! certificate is reloaded like the API's (`io::tls`).

mod pool;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use proxy::Proxy;

use crate::http1_server;
use crate::io::backends::Backends;
use crate::io::store::Store;
use crate::metrics::EdgeMetrics;

/// A client that has not sent a whole request head within this long is
/// disconnected, so idle or slow connections cannot pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the edge serves with, besides its listener.
pub struct Edge {
    pub store: Store,
    pub backends: Backends,
    /// HTTPS instead of HTTP.
    pub tls: Option<TlsAcceptor>,
    pub metrics: EdgeMetrics,
}

/// Serves the edge on `listener` until `shutdown` resolves; in-flight
/// requests then get `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    edge: Edge,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let proxy = Arc::new(Proxy {
        store: edge.store,
        backends: edge.backends,
        pool: Arc::default(),
        scheme: if edge.tls.is_some() { "https" } else { "http" },
    });
    let metrics = edge.metrics;
    let tls = edge.tls;
    http1_server::serve(listener, "edge", shutdown, grace, move |stream, peer| {
        let proxy = proxy.clone();
        let metrics = metrics.clone();
        let tls = tls.clone();
        async move {
            match tls {
                None => serve_connection(stream, peer, proxy, metrics).await,
                Some(tls) => handshake(tls, stream, peer, proxy, metrics).await,
            }
        }
    })
    .await;
}

async fn handshake(
    tls: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    metrics: EdgeMetrics,
) {
    match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => serve_connection(stream, peer, proxy, metrics).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "edge TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "edge TLS handshake timed out"),
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, proxy: Arc<Proxy>, metrics: EdgeMetrics)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let proxy = proxy.clone();
        let metrics = metrics.clone();
        async move {
            let started = Instant::now();
            let response = proxy.handle(request, peer).await;
            if let Ok(response) = &response {
                // Until the head is ready: the body streams afterwards.
                metrics.observe(response.status().as_u16(), started.elapsed().as_secs_f64());
            }
            response
        }
    });
    http1_server::serve_connection(stream, peer, "edge", HEADER_READ_TIMEOUT, service).await;
}
