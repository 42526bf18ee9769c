//! The built-in edge: an HTTP/1.1 reverse proxy in the daemon that serves
//! every hostname deployd routes (`[edge] listen`). An entry point beside
//! [`crate::api`]: it reads committed routes from the store and instance
//! addresses from [`crate::io::backends`], and decides nothing. See
//! [`proxy`] for how a request finds its instance.

mod pool;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use proxy::Proxy;

use crate::io::backends::Backends;
use crate::io::store::Store;

/// A client that has not sent a whole request head within this long is
/// disconnected, so idle or slow connections cannot pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to pause accepting after the process ran out of file
/// descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the edge on `listener` until `shutdown` resolves; in-flight
/// requests then get `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    backends: Backends,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let proxy = Arc::new(Proxy {
        store,
        backends,
        pool: Arc::default(),
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "edge cannot accept; pausing");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let proxy = proxy.clone();
        connections.spawn(serve_connection(stream, peer, proxy));
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, proxy: Arc<Proxy>) {
    let service = service_fn(move |request| {
        let proxy = proxy.clone();
        async move { proxy.handle(request, peer).await }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "edge connection ended");
    }
}
