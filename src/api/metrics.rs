//! `[metrics] listen`: Prometheus scrapes `GET /metrics` here (HTTP/1.1,
//! plain text format). Gauges that mirror state kept elsewhere (actors
//! running and broken, calls waiting on mailboxes) are read at scrape
//! time; everything else is counted where it happens (`crate::metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::api::Context;
use crate::http1_server;

/// A scraper that sends no request head within this long is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `address` and serves the endpoint until shutdown starts.
pub async fn start(context: &Context, address: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address} for metrics: {e}"))?;
    let local = listener.local_addr()?;
    let context = Arc::new(context.clone());
    let mut shutdown = context.shutdown.clone();
    let stopping = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    // A scrape in flight at shutdown is not worth waiting for.
    tokio::spawn(http1_server::serve(
        listener,
        "metrics",
        stopping,
        Duration::ZERO,
        move |stream, peer| {
            let context = Arc::clone(&context);
            let service = service_fn(move |request| {
                let context = Arc::clone(&context);
                async move { Ok::<_, std::convert::Infallible>(answer(&context, &request)) }
            });
            http1_server::serve_connection(stream, peer, "metrics", HEADER_READ_TIMEOUT, service)
        },
    ));
    Ok(local)
}

fn answer<B>(context: &Context, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try GET /metrics\n".into(),
        );
    }
    let metrics = &context.deps.metrics;
    let projects = &context.projects;
    let (waiting, busiest) = projects.queued_calls();
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    metrics
        .project_actors_running
        .set(gauge(projects.running_actors()));
    metrics
        .project_actors_broken
        .set(gauge(projects.broken_projects()));
    metrics.mailbox_depth.set(gauge(waiting));
    metrics.mailbox_depth_max.set(gauge(busiest));
    match metrics.render() {
        Ok(text) => reply(StatusCode::OK, "text/plain; version=0.0.4", text),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the metrics");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "cannot render the metrics\n".into(),
            )
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
