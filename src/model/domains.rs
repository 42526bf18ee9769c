//! Custom domain verification: the TXT record that proves a project may
//! serve a domain, and the rule that decides whether what DNS answered is
//! that proof. Pure: the lookup itself is `io::dns`.
//!
//! Each project has one random token (`Project::domain_token`, made at its
//! first claim). A domain is the project's once the TXT record
//! `_deployd-challenge.<domain>` holds it: only whoever controls the
//! domain's DNS can put it there, and no other project knows the value.

use rand::Rng;

use crate::error::Error;

/// The label put in front of a domain to name its challenge record.
pub const CHALLENGE_LABEL: &str = "_deployd-challenge";

/// Random bytes in a token (128 bits: not guessable, short enough to type).
const TOKEN_BYTES: usize = 16;

/// The TXT record a claimed domain waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainChallenge {
    /// `_deployd-challenge.<domain>`.
    pub record_name: String,
    /// The project's token, the whole content of one TXT string.
    pub record_value: String,
}

impl DomainChallenge {
    pub fn new(fqdn: &str, token: &str) -> Self {
        Self {
            record_name: challenge_name(fqdn),
            record_value: token.to_string(),
        }
    }

    /// Whether the TXT strings DNS answered with prove the claim: one of
    /// them is the token, exactly (surrounding spaces aside, which some DNS
    /// panels add).
    pub fn is_proven_by(&self, found: &[String]) -> bool {
        found.iter().any(|value| value.trim() == self.record_value)
    }

    /// The refusal when DNS did not hold the token: what was expected and
    /// what was there.
    pub fn not_proven(&self, found: &[String]) -> Error {
        let seen = if found.is_empty() {
            "no TXT record".to_string()
        } else {
            let values: Vec<String> = found
                .iter()
                .take(5)
                .map(|v| crate::model::quote::quoted(v))
                .collect();
            format!("TXT {}", values.join(", "))
        };
        Error::FailedPrecondition(format!(
            "{} must be a TXT record with the value {:?} before the domain can be verified; DNS answered {seen}",
            self.record_name, self.record_value
        ))
    }
}

/// `_deployd-challenge.<domain>`.
pub fn challenge_name(fqdn: &str) -> String {
    format!("{CHALLENGE_LABEL}.{fqdn}")
}

/// Whether a domain leaves room for its challenge label within DNS's 253
/// characters.
pub fn has_room_for_challenge(fqdn: &str) -> bool {
    challenge_name(fqdn).len() <= 253
}

/// A new project token: `deployd-verify=` and 32 hex digits.
pub fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill(&mut bytes[..]);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("deployd-verify={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_proves_a_claim() {
        let token = generate_token();
        assert!(token.starts_with("deployd-verify=") && token.len() == 15 + 32);
        assert_ne!(token, generate_token());
        let challenge = DomainChallenge::new("www.example.com", &token);
        assert_eq!(challenge.record_name, "_deployd-challenge.www.example.com");
        assert!(!challenge.is_proven_by(&[]));
        assert!(!challenge.is_proven_by(&["deployd-verify=other".into()]));
        assert!(!challenge.is_proven_by(&[format!("{token}x")]));
        assert!(challenge.is_proven_by(&["v=spf1 -all".into(), format!(" {token} ")]));
    }

    #[test]
    fn the_refusal_names_the_record_and_what_was_found() {
        let challenge = DomainChallenge::new("example.com", "deployd-verify=ab");
        let none = challenge.not_proven(&[]).to_string();
        assert!(none.contains("_deployd-challenge.example.com"), "{none}");
        assert!(none.contains("deployd-verify=ab") && none.contains("no TXT record"));
        let wrong = challenge.not_proven(&["nope".into()]).to_string();
        assert!(wrong.contains("\"nope\""), "{wrong}");
    }

    #[test]
    fn a_long_domain_has_no_room_for_its_challenge() {
        assert!(has_room_for_challenge("example.com"));
        let long = format!(
            "{}.{}.com",
            vec!["a".repeat(63); 3].join("."),
            "b".repeat(46)
        );
        assert!(long.len() <= 253 && !has_room_for_challenge(&long));
    }
}
