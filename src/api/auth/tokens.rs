//! The tokens the daemon accepts, in memory: every request is checked
//! against this table (a hash-map lookup and one SHA-256 of 64 bytes),
//! never against redb. It is loaded from the store at start and changed by
//! the token RPCs right after their commit, before they answer, so a
//! revoked token is refused from the moment the revocation is
//! acknowledged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::error::Error;
use crate::io::store::{Mutation, Store};
use crate::model::auth::{NewToken, hash_secret, parse_token, same_hash};
use crate::model::{Caller, Role, TokenId, TokenRecord, now_millis};

/// What a request without a usable token hears; the same words whatever
/// was wrong, so a guess learns nothing.
const INVALID: &str = "the bearer token is invalid or revoked";

#[derive(Clone, Default)]
pub struct Tokens {
    // A std lock: nothing is awaited while it is held, and writes (token
    // RPCs) are rare next to reads (every request).
    active: Arc<RwLock<HashMap<TokenId, Active>>>,
}

struct Active {
    secret_sha256: [u8; 32],
    caller: Caller,
}

impl Tokens {
    /// Every token of the store that is not revoked.
    pub fn load(store: &Store) -> Result<Self, Error> {
        let tokens = Self::default();
        for token in store.tokens()? {
            tokens.insert(&token);
        }
        Ok(tokens)
    }

    /// Accepts `token` from now on (or forgets it, if it is revoked).
    pub fn insert(&self, token: &TokenRecord) {
        let Ok(mut active) = self.active.write() else {
            return;
        };
        if token.revoked_at.is_some() {
            active.remove(&token.id);
        } else {
            active.insert(
                token.id.clone(),
                Active {
                    secret_sha256: token.secret_sha256,
                    caller: token.caller(),
                },
            );
        }
    }

    /// The caller an `authorization` header value stands for.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Caller, Error> {
        let Some(header) = header else {
            return Err(Error::Unauthenticated(
                "this call needs a token: send `authorization: Bearer <token>`".into(),
            ));
        };
        let invalid = || Error::Unauthenticated(INVALID.into());
        let (scheme, token) = header.trim().split_once(' ').ok_or_else(invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(invalid());
        }
        let (id, secret) = parse_token(token.trim()).ok_or_else(invalid)?;
        let presented = hash_secret(secret);
        let active = self
            .active
            .read()
            .map_err(|_| Error::internal("the token table lock is poisoned"))?;
        match active.get(&id) {
            Some(entry) if same_hash(&entry.secret_sha256, &presented) => Ok(entry.caller.clone()),
            _ => Err(invalid()),
        }
    }
}

/// The bootstrap admin token, from the file the config names: accepted
/// while the file is configured, never stored (the file is its store).
pub fn from_file(path: &Path) -> anyhow::Result<TokenRecord> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the bootstrap token file {}: {e}",
            path.display()
        )
    })?;
    let (id, secret) = parse_token(text.trim()).ok_or_else(|| {
        anyhow::anyhow!(
            "the bootstrap token file {} does not hold a token (tok_<16 characters>.<64 hex digits>); `deployd token generate` prints a new one",
            path.display()
        )
    })?;
    Ok(TokenRecord {
        id,
        role: Role::Admin,
        workspace: None,
        description: format!("bootstrap token from {}", path.display()),
        secret_sha256: hash_secret(secret),
        created_at: now_millis(),
        created_by: None,
        revoked_at: None,
    })
}

/// At the first start without a bootstrap file, an admin token is made and
/// stored (hashed); its text is returned once, for the operator, and
/// written nowhere. Later starts make none, whatever happened to it.
pub async fn generate_once(store: &Store) -> anyhow::Result<Option<(TokenRecord, String)>> {
    if store
        .bootstrap_issued()
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        return Ok(None);
    }
    let token = NewToken::generate();
    let record = TokenRecord {
        id: token.id,
        role: Role::Admin,
        workspace: None,
        description: "bootstrap token printed at the first start".into(),
        secret_sha256: token.secret_sha256,
        created_at: now_millis(),
        created_by: None,
        revoked_at: None,
    };
    store
        .commit(vec![
            Mutation::PutToken(record.clone()),
            Mutation::MarkBootstrapIssued,
        ])
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the bootstrap token: {e}"))?;
    Ok(Some((record, token.text)))
}
