//! `deployd.v1.RoutingService`.

use tonic::{Request, Response, Status};

use crate::api::auth;
use crate::api::{Context, convert};
use crate::error::Error;
use crate::model::{ProjectId, RouteKind};
use crate::pb;
use crate::pb::routing_service_server::RoutingService;

pub struct Routing(pub Context);

const DEFAULT_PAGE_SIZE: u32 = 200;
const MAX_PAGE_SIZE: u32 = 1000;

#[tonic::async_trait]
impl RoutingService for Routing {
    async fn list_routes(
        &self,
        request: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let id = ProjectId::parse(&request.project_id, "project_id")?;
        crate::api::record_id("project_id", &id);
        let kind = match pb::RouteKind::try_from(request.kind) {
            Ok(pb::RouteKind::Unspecified) => None,
            Ok(kind) => convert::route_kind_from_pb(kind),
            Err(_) => {
                return Err(Error::invalid(format!(
                    "kind {} is not a RouteKind value",
                    request.kind
                ))
                .into());
            }
        };
        let page_size = convert::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = parse_token(&request.page_token)?;
        if let (Some(kind), Some((after_kind, _))) = (kind, &after)
            && kind != *after_kind
        {
            return Err(Error::invalid("page_token belongs to a listing of another kind").into());
        }
        let page = self
            .0
            .blocking(move |context| {
                context.project_for(&caller, &id)?;
                context
                    .deps
                    .store
                    .routes_of_project(&id, kind, after, page_size)
            })
            .await?;
        Ok(Response::new(pb::ListRoutesResponse {
            routes: page.routes.iter().map(convert::route).collect(),
            next_page_token: page
                .next_after
                .map(|(kind, fqdn)| format!("{}:{fqdn}", kind.code()))
                .unwrap_or_default(),
        }))
    }
}

/// `CODE:HOSTNAME`, as `list_routes` hands it out.
fn parse_token(token: &str) -> Result<Option<(RouteKind, String)>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token is not one this server returned");
    let (code, fqdn) = token.split_once(':').ok_or_else(invalid)?;
    let kind = code
        .parse::<u8>()
        .ok()
        .and_then(RouteKind::from_code)
        .ok_or_else(invalid)?;
    if fqdn.is_empty() || fqdn.len() > 253 {
        return Err(invalid());
    }
    Ok(Some((kind, fqdn.to_string())))
}
