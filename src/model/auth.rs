//! Bearer tokens, roles and the caller a token stands for.
//!
//! A token reads `tok_<16 characters>.<64 hex digits>`: its id (public,
//! named in lists and the audit log) and a secret of 32 bytes from `rand`'s
//! thread-local generator (ChaCha seeded from the operating system). Only
//! the SHA-256 of the secret is stored. A fast hash is enough here: slow
//! key derivation (bcrypt, Argon2) exists to make guessing *low-entropy*
//! passwords expensive, and a 256-bit random secret cannot be guessed
//! whatever the hash costs, so the check stays a microsecond on every call
//! (the rollback path included).

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{TokenId, UnixMillis, WorkspaceId};

const SECRET_BYTES: usize = 32;
const SECRET_HEX_LEN: usize = SECRET_BYTES * 2;

/// What a token may do. A workspace token (`Deployer`, `Viewer`) reaches
/// only its workspace; `Admin` reaches everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Workspaces, tokens, statistics, every workspace's projects.
    Admin,
    /// Reads, and every change to its workspace's projects and deployments.
    Deployer,
    /// Reads of its workspace only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
        }
    }
}

/// Who sent a request: the token that authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: TokenId,
    pub role: Role,
    /// `None` for an admin token.
    pub workspace: Option<WorkspaceId>,
}

impl Caller {
    /// Whether this caller may see anything of `workspace`.
    pub fn reaches(&self, workspace: &WorkspaceId) -> bool {
        self.role == Role::Admin || self.workspace.as_ref() == Some(workspace)
    }
}

/// A token as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub role: Role,
    pub workspace: Option<WorkspaceId>,
    pub description: String,
    pub secret_sha256: [u8; 32],
    pub created_at: UnixMillis,
    /// The token that created this one (`None`: the bootstrap token).
    pub created_by: Option<TokenId>,
    pub revoked_at: Option<UnixMillis>,
}

impl TokenRecord {
    pub fn caller(&self) -> Caller {
        Caller {
            token_id: self.id.clone(),
            role: self.role,
            workspace: self.workspace.clone(),
        }
    }
}

/// A new token: the text to hand out once, and its hash to store.
pub struct NewToken {
    pub id: TokenId,
    /// `tok_....<secret>`: shown once, stored nowhere.
    pub text: String,
    pub secret_sha256: [u8; 32],
}

impl NewToken {
    pub fn generate() -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill(&mut secret[..]);
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let id = TokenId::generate();
        Self {
            text: format!("{id}.{hex}"),
            secret_sha256: hash_secret(&hex),
            id,
        }
    }
}

/// Splits a presented token into its id and secret; `None` if it does not
/// have the shape of one (no hint about which part is wrong).
pub fn parse_token(text: &str) -> Option<(TokenId, &str)> {
    let (id, secret) = text.split_once('.')?;
    let id = TokenId::parse(id, "token").ok()?;
    let well_formed = secret.len() == SECRET_HEX_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(Sha256::digest(secret.as_bytes()).as_slice());
    hash
}

/// Compares two hashes in time independent of where they differ.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_match_their_hash() {
        let token = NewToken::generate();
        let (id, secret) = parse_token(&token.text).expect("parses");
        assert_eq!(id, token.id);
        assert!(same_hash(&hash_secret(secret), &token.secret_sha256));
        let other = NewToken::generate();
        assert_ne!(other.text, token.text);
        assert!(!same_hash(&other.secret_sha256, &token.secret_sha256));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = NewToken::generate().text;
        let (id, secret) = good.split_once('.').expect("dot");
        for bad in [
            String::new(),
            id.to_string(),
            format!("{id}."),
            format!("{id}.{}", &secret[1..]),
            format!("{id}.{}", secret.to_uppercase()),
            format!("{id}.{secret}0"),
            format!("dep_{}.{secret}", &id[4..]),
            format!("{id}:{secret}"),
        ] {
            assert!(parse_token(&bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn admins_reach_every_workspace_and_others_only_theirs() {
        let ws = WorkspaceId::generate();
        let other = WorkspaceId::generate();
        let admin = Caller {
            token_id: TokenId::generate(),
            role: Role::Admin,
            workspace: None,
        };
        let viewer = Caller {
            token_id: TokenId::generate(),
            role: Role::Viewer,
            workspace: Some(ws.clone()),
        };
        assert!(admin.reaches(&ws) && admin.reaches(&other));
        assert!(viewer.reaches(&ws) && !viewer.reaches(&other));
    }
}
