//! One proxied request: the `Host` header names a route, the route a
//! deployment, the deployment its running instances; the request goes to
//! the next instance in round robin order (over an idle kept-alive
//! connection when there is one), and to the one after it if the
//! connection cannot be made. The body is only consumed once a request is
//! written to a connection, which is what makes that retry safe.
//!
//! Routes are read from redb for every request (one point lookup), so the
//! edge can never be behind a commit: once a rollback or promote has been
//! acknowledged, its routes are what the next request sees.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::pool::Pool;
use crate::io::backends::Backends;
use crate::io::store::Store;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// How long the edge waits for an instance to accept a connection before
/// trying the next one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers that describe one connection, not the message: never forwarded
/// (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

#[derive(Clone)]
pub struct Proxy {
    pub store: Store,
    pub backends: Backends,
    pub pool: Arc<Pool>,
    /// `X-Forwarded-Proto`: `https` behind `[edge.tls]`.
    pub scheme: &'static str,
}

impl Proxy {
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, std::convert::Infallible> {
        Ok(self.route(request, peer).await)
    }

    async fn route(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let Some(host) = request_host(&request) else {
            return plain(StatusCode::BAD_REQUEST, "the request names no host\n");
        };
        let route = match self.store.routes_named(std::slice::from_ref(&host)) {
            Ok(mut found) => found.pop(),
            Err(e) => {
                tracing::warn!(%host, error = %e, "edge cannot read its routes");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the route table cannot be read\n",
                );
            }
        };
        let Some(route) = route else {
            return plain(StatusCode::NOT_FOUND, "no deployment serves this host\n");
        };
        let candidates = self.backends.rotation(&route.deployment_id);
        if candidates.is_empty() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "no instance of this deployment is running\n",
            );
        }
        let (parts, body) = request.into_parts();
        let mut upstream = Request::from_parts(parts, body);
        prepare_upstream(&mut upstream, &host, peer.ip(), self.scheme);
        for address in candidates {
            // Idle connections first; a request comes back unsent from one
            // the instance closed meanwhile, and goes on to the next.
            while let Some(sender) = self.pool.take(address) {
                match self.send(address, sender, upstream).await {
                    Sent::Answered(response) => return response,
                    Sent::Unsent(request) => upstream = request,
                }
            }
            let stream =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%address, error = %e, "instance refused; trying the next");
                        continue;
                    }
                    Err(_) => {
                        tracing::debug!(%address, "instance did not answer; trying the next");
                        continue;
                    }
                };
            let _ = stream.set_nodelay(true);
            let sender = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok((sender, connection)) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "upstream connection ended");
                        }
                    });
                    sender
                }
                Err(e) => return bad_gateway(&e),
            };
            match self.send(address, sender, upstream).await {
                Sent::Answered(response) => return response,
                Sent::Unsent(request) => upstream = request,
            }
        }
        plain(
            StatusCode::BAD_GATEWAY,
            "no instance of this deployment accepted the connection\n",
        )
    }

    /// Sends `request` on `sender`; the request comes back if it was never
    /// written (the connection was closed), so it can go elsewhere.
    async fn send(
        &self,
        address: SocketAddr,
        mut sender: SendRequest<Incoming>,
        request: Request<Incoming>,
    ) -> Sent {
        match sender.try_send_request(request).await {
            Ok(response) => {
                self.pool.keep(address, sender);
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Sent::Answered(Response::from_parts(parts, body.boxed()))
            }
            Err(mut failed) => match failed.take_message() {
                Some(request) => Sent::Unsent(request),
                None => Sent::Answered(bad_gateway(failed.error())),
            },
        }
    }
}

enum Sent {
    Answered(Response<Body>),
    Unsent(Request<Incoming>),
}

fn bad_gateway(error: &hyper::Error) -> Response<Body> {
    tracing::debug!(%error, "upstream request failed");
    plain(StatusCode::BAD_GATEWAY, "the instance did not answer\n")
}

/// The host a request is for, lower case, without port or trailing dot.
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())?;
    let without_port = match raw.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => raw,
    };
    let host = without_port.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Origin-form URI, no hop-by-hop headers, and the `X-Forwarded-*` headers
/// an application needs to know who asked and for what.
fn prepare_upstream<B>(request: &mut Request<B>, host: &str, client: IpAddr, scheme: &str) {
    if let Some(path) = request.uri().path_and_query().cloned()
        && let Ok(uri) = hyper::Uri::builder().path_and_query(path).build()
    {
        *request.uri_mut() = uri;
    }
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client.to_string(),
    };
    for (name, value) in [
        ("x-forwarded-for", forwarded_for.as_str()),
        ("x-forwarded-host", host),
        ("x-forwarded-proto", scheme),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // hyper frames the body itself; a forwarded Transfer-Encoding would
    // contradict it.
    headers.remove(header::TRANSFER_ENCODING);
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str) -> Request<()> {
        Request::builder()
            .uri("/path?q=1")
            .header(header::HOST, host)
            .header(header::CONNECTION, "keep-alive, x-secret")
            .header("x-secret", "hop")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "end to end")
            .body(())
            .unwrap()
    }

    #[test]
    fn host_is_normalised() {
        assert_eq!(
            request_host(&request("Web-ACME.deployd.local:8080")).as_deref(),
            Some("web-acme.deployd.local")
        );
        assert_eq!(
            request_host(&request("web-acme.deployd.local.")).as_deref(),
            Some("web-acme.deployd.local")
        );
        assert_eq!(request_host(&request("")), None);
    }

    #[test]
    fn upstream_requests_lose_hop_by_hop_headers_and_say_who_asked() {
        let mut upstream = request("web-acme.deployd.local");
        upstream
            .headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        prepare_upstream(
            &mut upstream,
            "web-acme.deployd.local",
            IpAddr::from([127, 0, 0, 1]),
            "http",
        );
        let headers = upstream.headers();
        for gone in ["connection", "keep-alive", "x-secret"] {
            assert!(!headers.contains_key(gone), "{gone}");
        }
        assert_eq!(headers["x-kept"], "end to end");
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(headers["x-forwarded-host"], "web-acme.deployd.local");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers[header::HOST], "web-acme.deployd.local");
        assert_eq!(upstream.uri(), "/path?q=1");
    }
}
