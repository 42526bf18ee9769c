//! `deployd.v1.TokenService` (admin only, by its rule in `auth/rpc.rs`):
//! tokens are created, revoked and listed here. A token's text is in the
//! answer to `CreateToken` and nowhere else; the store keeps its hash.
//! The in-memory token table changes after the commit and before the
//! answer.

use tonic::{Request, Response, Status};

use crate::api::auth::{self, Rpc};
use crate::api::{Context, convert};
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::auth::NewToken;
use crate::model::{Role, TokenId, TokenRecord, WorkspaceId, now_millis, validate};
use crate::pb;
use crate::pb::token_service_server::TokenService;

pub struct Tokens(pub Context);

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 500;

pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Deployer => pb::Role::Deployer,
        Role::Viewer => pb::Role::Viewer,
    }
}

fn token_to_pb(token: &TokenRecord) -> pb::Token {
    pb::Token {
        id: token.id.to_string(),
        role: role_to_pb(token.role) as i32,
        workspace_id: token
            .workspace
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        description: token.description.clone(),
        created_at: Some(convert::timestamp(token.created_at)),
        created_by: token
            .created_by
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        revoked_at: token.revoked_at.map(convert::timestamp),
    }
}

#[tonic::async_trait]
impl TokenService for Tokens {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let role = match pb::Role::try_from(request.role) {
            Ok(pb::Role::Admin) => Role::Admin,
            Ok(pb::Role::Deployer) => Role::Deployer,
            Ok(pb::Role::Viewer) => Role::Viewer,
            _ => {
                return Err(Error::invalid(
                    "role must be ROLE_ADMIN, ROLE_DEPLOYER or ROLE_VIEWER",
                )
                .into());
            }
        };
        validate::free_text(&request.description, "description", 256)?;
        let workspace = match (role, request.workspace_id.is_empty()) {
            (Role::Admin, true) => None,
            (Role::Admin, false) => {
                return Err(Error::invalid(
                    "an admin token reaches every workspace; leave workspace_id empty",
                )
                .into());
            }
            (_, true) => {
                return Err(Error::invalid(format!(
                    "workspace_id is required for a {} token",
                    role.as_str()
                ))
                .into());
            }
            (_, false) => {
                let id = WorkspaceId::parse(&request.workspace_id, "workspace_id")?;
                self.0.workspace_for(&caller, &id)?;
                Some(id)
            }
        };
        let token = NewToken::generate();
        let record = TokenRecord {
            id: token.id.clone(),
            role,
            workspace,
            description: request.description,
            secret_sha256: token.secret_sha256,
            created_at: now_millis(),
            created_by: Some(caller.token_id.clone()),
            revoked_at: None,
        };
        let mut event = auth::audit(&caller, Rpc::CreateToken).id(&record.id);
        event.workspace_id.clone_from(&record.workspace);
        self.0
            .deps
            .store
            .commit(vec![
                Mutation::PutToken(record.clone()),
                Mutation::Audit(Box::new(event)),
            ])
            .await?;
        self.0.tokens.insert(&record);
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_to_pb(&record)),
            secret: token.text,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = auth::caller(&request)?;
        let id = TokenId::parse(&request.get_ref().token_id, "token_id")?;
        let mut record = self
            .0
            .blocking(|context| context.deps.store.tokens())
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::not_found(format!("token {id} not found")))?;
        if record.revoked_at.is_none() {
            record.revoked_at = Some(now_millis());
            let mut event = auth::audit(&caller, Rpc::RevokeToken).id(&record.id);
            event.workspace_id.clone_from(&record.workspace);
            self.0
                .deps
                .store
                .commit(vec![
                    Mutation::PutToken(record.clone()),
                    Mutation::Audit(Box::new(event)),
                ])
                .await?;
            self.0.tokens.insert(&record);
        }
        Ok(Response::new(pb::RevokeTokenResponse {
            token: Some(token_to_pb(&record)),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let request = request.into_inner();
        let workspace = if request.workspace_id.is_empty() {
            None
        } else {
            Some(WorkspaceId::parse(&request.workspace_id, "workspace_id")?)
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(
                TokenId::parse(&request.page_token, "page_token")
                    .map_err(|_| Error::invalid("page_token is not one this server returned"))?,
            )
        };
        let page_size = convert::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        // Tokens are made by hand, so there are few: one read of them all.
        let mut tokens: Vec<TokenRecord> = self
            .0
            .blocking(|context| context.deps.store.tokens())
            .await?
            .into_iter()
            .filter(|t| workspace.is_none() || t.workspace == workspace)
            .filter(|t| after.as_ref().is_none_or(|after| t.id > *after))
            .collect();
        tokens.sort_by(|a, b| a.id.cmp(&b.id));
        let more = tokens.len() > page_size;
        tokens.truncate(page_size);
        Ok(Response::new(pb::ListTokensResponse {
            next_page_token: match tokens.last() {
                Some(last) if more => last.id.to_string(),
                _ => String::new(),
            },
            tokens: tokens.iter().map(token_to_pb).collect(),
        }))
    }
}
