//! One `tracing` span per request: tonic opens it (`Server::trace_fn`)
//! around the whole call with the RPC's name, and each handler records
//! the ids it parsed, so every log line of the call carries them (with
//! `log_format = "json"`, as the `span` and `spans` fields).

use tracing::field::{Empty, display};

/// The span of one request; the id fields are filled in by the handler.
pub fn rpc_span(request: &http::Request<()>) -> tracing::Span {
    tracing::info_span!(
        "rpc",
        rpc = %request.uri().path(),
        workspace_id = Empty,
        project_id = Empty,
        deployment_id = Empty,
        source_deployment_id = Empty,
    )
}

/// Records an id (`workspace_id`, `project_id`, `deployment_id`,
/// `source_deployment_id`) on the current request's span.
pub fn record_id(field: &'static str, id: &impl std::fmt::Display) {
    tracing::Span::current().record(field, display(id));
}
