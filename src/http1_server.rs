//! What the daemon's three small HTTP/1.1 servers (the edge, the GitHub
//! webhook listener, the metrics endpoint) share: an accept loop that backs
//! off when the process is out of file descriptors, tracks its
//! connections and gives them a grace period at shutdown, and one way to
//! serve a connection with a bound on the time to a request head.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long to pause accepting after an accept failed (out of file
/// descriptors, most likely), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts on `listener` until `shutdown` resolves, running `connection`
/// for each socket in a task of its own; connections still open then get
/// `grace` to finish and are aborted after it. `what` names the server in
/// logs.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    connection: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                connections.spawn(connection(stream, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, server = what, "cannot accept; pausing");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        connections.abort_all();
    }
}

/// Serves HTTP/1.1 on `stream` with `service`; a client that has not sent
/// a whole request head within `header_timeout` is disconnected, so idle
/// or slow connections cannot pile up.
pub async fn serve_connection<S, H>(
    stream: S,
    peer: SocketAddr,
    what: &'static str,
    header_timeout: Duration,
    service: H,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: HttpService<Incoming>,
    H::Error: Into<Box<dyn Error + Send + Sync>>,
    H::ResBody: 'static,
    <H::ResBody as Body>::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, server = what, "connection ended");
    }
}
