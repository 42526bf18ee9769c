//! The authentication layer in front of every service: it reads the
//! bearer token, refuses a request without a valid one (`UNAUTHENTICATED`)
//! or whose role the method's rule does not allow (`PERMISSION_DENIED`),
//! and hands the [`Caller`] to the handler in the request's extensions.
//! The handler then checks every id of the request against it. Health is
//! open (probes carry no token); reflection is open only when configured.
//! A workspace token over its rate (`rate.rs`) is `RESOURCE_EXHAUSTED`
//! before the handler runs, so the refused call changes nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;

use crate::api::auth::rate::RateLimits;
use crate::api::auth::rpc::{Access, Rpc};
use crate::api::auth::tokens::Tokens;
use crate::error::Error;
use crate::model::{Caller, Role};

#[derive(Clone)]
pub struct Authenticate {
    pub tokens: Tokens,
    pub open_reflection: bool,
    pub rates: RateLimits,
}

impl<S> tower_layer::Layer<S> for Authenticate {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            rules: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    rules: Authenticate,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for Authenticated<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.rules.admit(&request) {
            Ok(Some(caller)) => {
                request.extensions_mut().insert(caller);
            }
            Ok(None) => {}
            Err(error) => {
                let response = Status::from(error).into_http::<R>();
                return Box::pin(std::future::ready(Ok(response)));
            }
        }
        Box::pin(self.inner.call(request))
    }
}

impl Authenticate {
    /// `Ok(None)`: an open method. `Ok(Some)`: who calls, allowed by the
    /// method's rule.
    fn admit<B>(&self, request: &http::Request<B>) -> Result<Option<Caller>, Error> {
        let path = request.uri().path();
        if path.starts_with("/grpc.health.v1.Health/") {
            return Ok(None);
        }
        let reflection = path.starts_with("/grpc.reflection.");
        if reflection && self.open_reflection {
            return Ok(None);
        }
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = self.tokens.authenticate(header)?;
        // Before the role check: a token spraying calls it may not make
        // costs the daemon as much as any other.
        self.rates.admit(&caller)?;
        if reflection {
            return Ok(Some(caller));
        }
        // A method without a rule is refused to everyone, admins included:
        // forgetting a rule closes the method instead of opening it.
        let Some(rpc) = Rpc::from_path(path) else {
            return Err(Error::PermissionDenied(format!(
                "{} has no authorization rule",
                crate::model::quote::quoted(path)
            )));
        };
        allowed(&caller, rpc)?;
        Ok(Some(caller))
    }
}

/// The role check, before any id is looked at: a refusal here says nothing
/// about whether the ids of the request exist.
fn allowed(caller: &Caller, rpc: Rpc) -> Result<(), Error> {
    let ok = match (rpc.access(), caller.role) {
        (_, Role::Admin) => true,
        (Access::Read, _) => true,
        (Access::Write, Role::Deployer) => true,
        (Access::Write, Role::Viewer) | (Access::Admin, _) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "a {} token may not call {}",
            caller.role.as_str(),
            rpc.name()
        )))
    }
}
