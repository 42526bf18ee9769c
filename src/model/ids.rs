//! Ids: a type prefix and 16 characters of `[0-9a-z]`: 9 characters of
//! milliseconds since the epoch, then 7 random ones (about 36 bits). The
//! time prefix makes new ids sort after old ones, so new records land at the
//! end of redb's B-trees instead of dirtying a random page per insert; the
//! random part keeps ids made in the same millisecond apart. Every character
//! is DNS-safe, so a deployment's id can appear in its `DEPLOYMENT`
//! hostname. Parsing is the only way to build an id from input.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::quote::quoted;

const RANDOM_LEN: usize = 16;
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

macro_rules! id_type {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ": `", $prefix, "` and 16 characters of `[0-9a-z]`.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(generate_with_prefix($prefix))
            }

            /// Validates user input; `field` names the request field in errors.
            pub fn parse(value: &str, field: &str) -> Result<Self, Error> {
                parse_with_prefix(value, $prefix, field, $what).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The random part, safe to use inside a DNS label.
            pub fn short(&self) -> &str {
                &self.0[$prefix.len()..]
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(WorkspaceId, "ws_", "workspace");
id_type!(ProjectId, "prj_", "project");
id_type!(DeploymentId, "dep_", "deployment");
id_type!(TokenId, "tok_", "token");
id_type!(AuditEventId, "aud_", "audit event");

const TIME_LEN: usize = 9;

fn generate_with_prefix(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + RANDOM_LEN);
    id.push_str(prefix);
    let mut time = [b'0'; TIME_LEN];
    let mut millis = crate::model::now_millis();
    for slot in time.iter_mut().rev() {
        *slot = ALPHABET[(millis % 36) as usize];
        millis /= 36;
    }
    id.extend(time.iter().map(|&b| b as char));
    let mut rng = rand::rng();
    for _ in TIME_LEN..RANDOM_LEN {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}

fn parse_with_prefix(value: &str, prefix: &str, field: &str, what: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    let well_formed = value.len() == prefix.len() + RANDOM_LEN
        && value.starts_with(prefix)
        && value[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    if !well_formed {
        return Err(Error::invalid(format!(
            "{field} {} is not a {what} id (expected {prefix} and 16 characters of 0-9, a-z)",
            quoted(value)
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = DeploymentId::generate();
        assert_eq!(DeploymentId::parse(id.as_str(), "id"), Ok(id.clone()));
        assert_eq!(id.short().len(), 16);
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let first = DeploymentId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = DeploymentId::generate();
        assert!(first < second, "{first} < {second}");
    }

    #[test]
    fn rejects_wrong_prefix_length_and_charset() {
        for bad in [
            "",
            "dep_",
            "prj_0123456789abcdef",
            "dep_0123456789ABCDEF",
            "dep_0123456789abcde",
            "dep_0123456789abcdef0",
            "dep_0123456789abcd-f",
        ] {
            assert!(DeploymentId::parse(bad, "id").is_err(), "{bad:?} accepted");
        }
    }
}
