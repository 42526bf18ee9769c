//! What a simulated instance runs: a tiny HTTP/1.1 server on 127.0.0.1
//! that answers every request with its deployment id, its instance id and
//! the request headers it got, one per line. It lets the edge, and the
//! tests of the edge, send real requests without containers.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A running instance server; dropping it stops it the way a process dies:
/// no more connections, and open ones (kept alive by the edge) are cut.
pub struct InstanceServer {
    pub address: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for InstanceServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Binds a port on 127.0.0.1 and serves on it. Must run inside a tokio
/// runtime (the region's driver calls always do).
pub fn start(deployment: &str, instance: &str) -> std::io::Result<InstanceServer> {
    let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let identity = Bytes::from(format!("{deployment}\n{instance}\n"));
    let accept = runtime.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        // Owned by this task, so aborting it aborts every connection.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Ok((stream, _)) = accepted else {
                // Out of descriptors, most likely: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let identity = identity.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| answer(identity.clone(), request));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(InstanceServer { address, accept })
}

async fn answer(
    identity: Bytes,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let mut body = identity.to_vec();
    for (name, value) in request.headers() {
        body.extend_from_slice(name.as_str().as_bytes());
        body.extend_from_slice(b": ");
        body.extend_from_slice(value.as_bytes());
        body.push(b'\n');
    }
    Ok(Response::new(Full::new(Bytes::from(body))))
}
