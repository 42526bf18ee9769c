//! `deployd token ...` and `deployd audit`: the token RPCs (admin) and the
//! audit log, with their human views.

use std::io::Write as _;

use crate::cli::args::{AuditArgs, RoleArg, TokenCommand};
use crate::cli::client::{Clients, rpc, show};
use crate::cli::output::{self, Table, fields, or_dash};
use crate::pb;

pub async fn token(clients: &Clients, json: bool, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            workspace,
            role,
            admin,
            description,
        } => {
            let role = match (admin, role) {
                (true, _) => pb::Role::Admin,
                (false, Some(RoleArg::Deployer)) => pb::Role::Deployer,
                (false, Some(RoleArg::Viewer)) => pb::Role::Viewer,
                (false, None) => anyhow::bail!("--role or --admin is required"),
            };
            let request = pb::CreateTokenRequest {
                role: role as i32,
                workspace_id: workspace.unwrap_or_default(),
                description,
            };
            let response = rpc(clients.tokens().create_token(request).await)?;
            show(json, &response, |r| {
                let mut text = r.token.as_ref().map(token_fields).unwrap_or_default();
                text.push_str(&format!(
                    "\nsecret  {}\n(shown once: it is stored only as a hash)",
                    r.secret
                ));
                text
            })
        }
        TokenCommand::Revoke { id } => {
            let request = pb::RevokeTokenRequest { token_id: id };
            let response = rpc(clients.tokens().revoke_token(request).await)?;
            show(json, &response, |r| {
                r.token.as_ref().map(token_fields).unwrap_or_default()
            })
        }
        TokenCommand::List { workspace } => {
            let mut response = pb::ListTokensResponse::default();
            loop {
                let request = pb::ListTokensRequest {
                    workspace_id: workspace.clone().unwrap_or_default(),
                    page_token: std::mem::take(&mut response.next_page_token),
                    ..Default::default()
                };
                let page = rpc(clients.tokens().list_tokens(request).await)?;
                response.tokens.extend(page.tokens);
                response.next_page_token = page.next_page_token;
                if response.next_page_token.is_empty() {
                    break;
                }
            }
            show(json, &response, |r| tokens(&r.tokens))
        }
        TokenCommand::Generate => anyhow::bail!("token generate talks to no daemon"),
    }
}

pub async fn audit(clients: &Clients, json: bool, args: AuditArgs) -> anyhow::Result<()> {
    let request = pb::ListAuditEventsRequest {
        workspace_id: args.workspace.unwrap_or_default(),
        project_id: args.project.unwrap_or_default(),
        page_size: args.limit.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    };
    let response = rpc(clients.audit().list_audit_events(request).await)?;
    show(json, &response, |r| events(&r.events))?;
    if !json && !response.next_page_token.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "more: --page-token {}",
            response.next_page_token
        );
    }
    Ok(())
}

fn role(role: i32) -> String {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Deployer) => "deployer",
        Ok(pb::Role::Viewer) => "viewer",
        _ => "?",
    }
    .to_string()
}

fn token_fields(token: &pb::Token) -> String {
    fields(&[
        ("id", token.id.clone()),
        ("role", role(token.role)),
        ("workspace", or_dash(&token.workspace_id)),
        ("description", or_dash(&token.description)),
        ("created", output::timestamp(token.created_at.as_ref())),
        ("revoked", revoked(token)),
    ])
}

fn revoked(token: &pb::Token) -> String {
    match &token.revoked_at {
        Some(at) => output::timestamp(Some(at)),
        None => "-".to_string(),
    }
}

fn tokens(tokens: &[pb::Token]) -> String {
    let mut table = Table::new(&[
        "ID",
        "ROLE",
        "WORKSPACE",
        "CREATED",
        "REVOKED",
        "DESCRIPTION",
    ]);
    for t in tokens {
        table.row(vec![
            t.id.clone(),
            role(t.role),
            or_dash(&t.workspace_id),
            output::timestamp(t.created_at.as_ref()),
            revoked(t),
            or_dash(&t.description),
        ]);
    }
    table.render()
}

fn events(events: &[pb::AuditEvent]) -> String {
    let mut table = Table::new(&["AT", "TOKEN", "ROLE", "RPC", "PROJECT", "IDS", "RESULT"]);
    for e in events {
        table.row(vec![
            output::timestamp(e.at.as_ref()),
            e.token_id.clone(),
            role(e.role),
            e.rpc.clone(),
            or_dash(&e.project_id),
            or_dash(&e.ids.join(" ")),
            if e.message.is_empty() {
                e.result.clone()
            } else {
                format!("{}: {}", e.result, e.message)
            },
        ]);
    }
    table.render()
}
