//! The GitHub webhook listener (`[github] listen`): an HTTP/1.1 entry
//! point beside [`crate::api`] and [`crate::edge`]. A delivery's body is
//! read up to `max_body_bytes`, its `X-Hub-Signature-256` verified before
//! anything else (401 otherwise, and nothing changes), and a `push` to a
//! connected repository becomes a deployment through the project's actor,
//! exactly as `CreateDeployment` would, with `X-GitHub-Delivery` as the
//! idempotency key: a redelivery answers with the deployment the first
//! delivery created.
//!
//! Answers: 200 `pong` to `ping`; 201 with the deployment for a push that
//! deployed (the same answer for a redelivery); 202 for what is acknowledged and
//! ignored (other events, tags, deleted branches, a repository no project
//! is connected to: a hook on a whole organisation sees those, and GitHub
//! would mark every such delivery as failed on a 404); 400 for a payload
//! that is not a push; 401; 405 for anything but POST; 413; and the
//! daemon's refusals as 409/422/429/503/500.

mod push;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::actors::Projects;
use crate::error::Error;
use crate::http1_server;
use crate::io::store::Store;
use crate::model::auth::{Caller, Role};
use crate::model::deployment::DEFAULT_PORT;
use crate::model::names::fnv1a64;
use crate::model::{
    AuditEvent, GitSource, Idempotency, IdempotencyKey, NewDeployment, Origin, Source, TokenId,
};
use push::{PushAction, PushEvent};

/// A client that has not sent a whole request head within this long is
/// disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What every delivery needs.
pub struct Hook {
    pub store: Store,
    pub projects: Projects,
    pub secret: Vec<u8>,
    pub max_body_bytes: usize,
}

/// Serves deliveries on `listener` until `shutdown` resolves; requests in
/// flight then get `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    hook: Hook,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let hook = Arc::new(hook);
    http1_server::serve(listener, "webhook", shutdown, grace, move |stream, peer| {
        let hook = hook.clone();
        let service = service_fn(move |request| {
            let hook = hook.clone();
            async move { Ok::<_, std::convert::Infallible>(hook.handle(request).await) }
        });
        http1_server::serve_connection(stream, peer, "webhook", HEADER_READ_TIMEOUT, service)
    })
    .await;
}

fn answer(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into() + "\n")));
    *response.status_mut() = status;
    response
}

impl Hook {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::POST {
            return answer(StatusCode::METHOD_NOT_ALLOWED, "deliveries are POSTed");
        }
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return answer(StatusCode::PAYLOAD_TOO_LARGE, "the delivery is too large");
        }
        let body = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return answer(StatusCode::PAYLOAD_TOO_LARGE, "the delivery is too large");
            }
            Err(_) => return answer(StatusCode::BAD_REQUEST, "the body could not be read"),
        };
        let header = |name: &str| parts.headers.get(name).map(|v| v.as_bytes());
        if !signature::verify(&self.secret, header("x-hub-signature-256"), &body) {
            return answer(
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Hub-Signature-256",
            );
        }
        match header("x-github-event") {
            Some(b"ping") => answer(StatusCode::OK, "pong"),
            Some(b"push") => {
                let delivery = header("x-github-delivery")
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .map(IdempotencyKey::parse);
                match delivery {
                    Some(Ok(delivery)) => self.push(&body, delivery).await,
                    _ => answer(
                        StatusCode::BAD_REQUEST,
                        "X-GitHub-Delivery is missing or not 1 to 128 visible ASCII characters",
                    ),
                }
            }
            _ => answer(StatusCode::ACCEPTED, "ignored: not a push"),
        }
    }

    async fn push(&self, body: &[u8], delivery: IdempotencyKey) -> Response<Full<Bytes>> {
        let event: PushEvent = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("not a push payload: {e}")),
        };
        let push = match push::decide(&event) {
            Ok(PushAction::Deploy(push)) => push,
            Ok(PushAction::Ignore(why)) => return answer(StatusCode::ACCEPTED, why),
            Err(why) => return answer(StatusCode::BAD_REQUEST, why),
        };
        let connection = match self.store.connection_of_repository(&push.repository.key()) {
            Ok(Some(connection)) => connection,
            Ok(None) => {
                return answer(
                    StatusCode::ACCEPTED,
                    "ignored: no project is connected to this repository",
                );
            }
            Err(e) => return refusal(&e),
        };
        // The fingerprint covers what the deployment is made of, so a
        // delivery id re-used for another push is refused, not replayed.
        let fingerprint = fnv1a64(
            [
                push.environment,
                &push.branch,
                &push.sha,
                &connection.clone_url,
                &connection.context_path,
                &connection.dockerfile_path,
            ]
            .join("\0")
            .as_bytes(),
        );
        let new = NewDeployment {
            environment: push.environment.to_string(),
            branch: push.branch.clone(),
            source: Source::Git(GitSource {
                repository: connection.clone_url.clone(),
                commit_sha: push.sha.clone(),
                context_path: connection.context_path.clone(),
                dockerfile_path: connection.dockerfile_path.clone(),
            }),
            git_commit: Some(push.commit),
            command: Vec::new(),
            port: DEFAULT_PORT,
        };
        let delivery_id = delivery.as_str().to_string();
        let idempotency = Idempotency {
            key: delivery,
            fingerprint,
        };
        let origin = Origin {
            idempotency: Some(idempotency),
            audit: Some(Box::new(push_audit_event(&delivery_id))),
        };
        match self
            .projects
            .deploy(&connection.project_id, new, origin)
            .await
        {
            Ok(created) => {
                tracing::info!(
                    deployment = %created.id,
                    project = %connection.project_id,
                    branch = %push.branch,
                    environment = push.environment,
                    "push deployed"
                );
                let body = serde_json::json!({
                    "deployment_id": created.id.to_string(),
                    "project_id": connection.project_id.to_string(),
                    "environment": push.environment,
                    "branch": push.branch,
                    "status": created.status.as_str(),
                });
                answer(StatusCode::CREATED, body.to_string())
            }
            Err(e) => refusal(&e),
        }
    }
}

/// The daemon's refusal of a push, as an HTTP answer GitHub records.
fn refusal(error: &Error) -> Response<Full<Bytes>> {
    let status = match error {
        Error::InvalidArgument(_) => StatusCode::UNPROCESSABLE_ENTITY,
        // Never from a deploy: the listener authenticates by signature.
        Error::Unauthenticated(_) | Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) | Error::FailedPrecondition(_) => StatusCode::CONFLICT,
        Error::AlreadyExists(_) | Error::Aborted(_) => StatusCode::CONFLICT,
        Error::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) | Error::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    answer(status, error.to_string())
}

/// Who the audit log names for a deployment a push created: the webhook
/// authenticates deliveries by signature, not by token, so its events carry
/// this reserved token id (no token ever has it: generated ids start with
/// the time in base 36, and `githubweb` as one is far in the future).
pub const WEBHOOK_TOKEN_ID: &str = "tok_githubwebhooks00";

/// The audit event of a push's deployment: the `GitHubPush` "call" by the
/// webhook, naming the delivery (the project, workspace and created
/// deployment are added where the change is decided).
fn push_audit_event(delivery: &str) -> AuditEvent {
    let caller = Caller {
        token_id: TokenId::parse(WEBHOOK_TOKEN_ID, "webhook token id")
            .unwrap_or_else(|_| TokenId::generate()),
        role: Role::Deployer,
        workspace: None,
    };
    AuditEvent::new(&caller, "GitHubPush").id(format!("delivery:{delivery}"))
}
