//! Validation of every user-supplied string. Each function names the field in
//! its error and says what a valid value looks like. Validation happens once,
//! at the API edge; everything below trusts the types it is given. Values
//! quoted into errors go through `model::quote::quoted`, so a message stays
//! short whatever was sent. The larger topics have their own modules:
//! images, repository addresses, paths inside a repository and timestamps.

mod image;
mod path;
mod repository;
mod time;

pub use image::image;
pub use path::relative_path;
pub use repository::{RepositoryRules, repository};
pub use time::timestamp;

use crate::error::Error;
use crate::model::quote::quoted;

pub const MAX_SLUG_LEN: usize = 32;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_BRANCH_LEN: usize = 255;
pub const MAX_IMAGE_LEN: usize = 512;
pub const MAX_REPOSITORY_LEN: usize = 2048;
pub const MAX_PATH_LEN: usize = 1024;
pub const MAX_COMMAND_ARGS: usize = 64;
pub const MAX_COMMAND_ARG_LEN: usize = 4096;
pub const MAX_COMMIT_MESSAGE_LEN: usize = 16 * 1024;
pub const MAX_REPLICAS: u32 = 100;
/// Entries of an environment's region map (a request names at most this
/// many regions, whatever the daemon serves).
pub const MAX_REGIONS: usize = 64;
/// `git_commit.author_name` and `author_email`.
pub const MAX_AUTHOR_LEN: usize = 256;

fn is_label_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// A DNS label of at most `max` characters: `a-z`, `0-9`, `-`, not starting
/// or ending with `-`.
fn dns_label(value: &str, field: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    if value.len() > max
        || !value.bytes().all(is_label_char)
        || value.starts_with('-')
        || value.ends_with('-')
    {
        return Err(Error::invalid(format!(
            "{field} {} is invalid: use 1 to {max} characters of a-z, 0-9 and '-', not starting or ending with '-'",
            quoted(value)
        )));
    }
    Ok(())
}

/// Workspace, project and environment slugs.
pub fn slug(value: &str, field: &str) -> Result<(), Error> {
    dns_label(value, field, MAX_SLUG_LEN)
}

pub fn region(value: &str) -> Result<(), Error> {
    dns_label(value, "region", 63)
}

/// A display name: 1 to 128 characters, no control characters.
pub fn display_name(value: &str, field: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{field} is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// A git object name: 7 to 64 lower-case hex characters (SHA-1 or SHA-256,
/// possibly abbreviated).
pub fn commit_sha(value: &str, field: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    let ok = (7..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(Error::invalid(format!(
            "{field} {} is not a commit sha: use 7 to 64 lower-case hex characters",
            quoted(value)
        )));
    }
    Ok(())
}

/// A branch name under git's ref-name rules (`git check-ref-format`).
pub fn branch(value: &str) -> Result<(), Error> {
    let field = "branch";
    if value.is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    let reason = if value.len() > MAX_BRANCH_LEN {
        Some("is longer than 255 bytes")
    } else if value
        .chars()
        .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
    {
        Some("contains a space, a control character or one of ~ ^ : ? * [ \\")
    } else if value.starts_with('-') || value.starts_with('/') || value.ends_with('/') {
        Some("starts with '-' or '/', or ends with '/'")
    } else if value.contains("..") || value.contains("//") || value.contains("@{") {
        Some("contains '..', '//' or '@{'")
    } else if value.ends_with('.') || value.ends_with(".lock") || value == "@" {
        Some("ends with '.' or '.lock', or is '@'")
    } else if value
        .split('/')
        .any(|part| part.starts_with('.') || part.is_empty())
    {
        Some("has a path component that is empty or starts with '.'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::invalid(format!(
            "{field} {} is not a valid git branch name: it {reason}",
            quoted(value)
        ))),
        None => Ok(()),
    }
}

/// A command override: at most 64 arguments of at most 4096 bytes, no NUL.
/// Arguments go to the container runtime as an argv list, never to a shell.
pub fn command(args: &[String]) -> Result<(), Error> {
    if args.len() > MAX_COMMAND_ARGS {
        return Err(Error::invalid(format!(
            "command has {} arguments; at most {MAX_COMMAND_ARGS} are allowed",
            args.len()
        )));
    }
    for (i, arg) in args.iter().enumerate() {
        if arg.len() > MAX_COMMAND_ARG_LEN || arg.contains('\0') {
            return Err(Error::invalid(format!(
                "command[{i}] must be at most {MAX_COMMAND_ARG_LEN} bytes without NUL characters"
            )));
        }
    }
    Ok(())
}

/// Free text such as a commit message or author: bounded, no NUL.
pub fn free_text(value: &str, field: &str, max: usize) -> Result<(), Error> {
    if value.len() > max || value.contains('\0') {
        return Err(Error::invalid(format!(
            "{field} must be at most {max} bytes without NUL characters"
        )));
    }
    Ok(())
}

/// The number of entries of a region map.
pub fn region_count(count: usize) -> Result<(), Error> {
    if count > MAX_REGIONS {
        return Err(Error::invalid(format!(
            "regions has {count} entries; at most {MAX_REGIONS} are allowed"
        )));
    }
    Ok(())
}

pub fn replicas(region: &str, count: u32) -> Result<(), Error> {
    if !(1..=MAX_REPLICAS).contains(&count) {
        return Err(Error::invalid(format!(
            "replicas for region {} must be between 1 and {MAX_REPLICAS}, got {count}",
            quoted(region)
        )));
    }
    Ok(())
}

/// A fully qualified domain name: 2 to 127 labels, at most 253 characters,
/// lower case, no trailing dot.
pub fn fqdn(value: &str, field: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    let labels: Vec<&str> = value.split('.').collect();
    let ok = value.len() <= 253
        && labels.len() >= 2
        && labels
            .iter()
            .all(|label| dns_label(label, field, 63).is_ok())
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_lowercase()));
    if !ok {
        return Err(Error::invalid(format!(
            "{field} {} is not a fully qualified domain name (lower-case labels of a-z, 0-9 and '-', separated by dots)",
            quoted(value)
        )));
    }
    Ok(())
}

/// The apex must leave room for a 63-character label in front of it.
/// An OCI registry address as the builder pushes to it: `HOST[:PORT]`,
/// a DNS name or IPv4 address, nothing else (no scheme, no path).
pub fn registry_address(value: &str) -> Result<(), Error> {
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "registry {} is not HOST or HOST:PORT",
            quoted(value)
        )))
    }
}

pub fn apex_domain(value: &str) -> Result<(), Error> {
    fqdn(value, "apex_domain")?;
    if value.len() > 253 - 64 {
        return Err(Error::invalid("apex_domain is longer than 189 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches() {
        for ok in ["main", "feature/login", "release-1.2", "UPPER_case"] {
            assert!(branch(ok).is_ok(), "{ok} rejected");
        }
        for bad in [
            "", "-x", "a..b", "a b", "x.lock", "a/", "/a", "a//b", "a/.b", "@", "a@{1}", "a~1",
        ] {
            assert!(branch(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn slugs_and_domains() {
        assert!(slug("web-app", "slug").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(33)] {
            assert!(slug(bad, "slug").is_err(), "{bad} accepted");
        }
        assert!(fqdn("www.example.com", "fqdn").is_ok());
        for bad in [
            "example",
            "exa mple.com",
            "a..com",
            "-a.com",
            "EXAMPLE.com",
            "a.123",
        ] {
            assert!(fqdn(bad, "fqdn").is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn shas() {
        assert!(commit_sha("abc1234", "sha").is_ok());
        for bad in ["abc123", "ABC1234", "xyz1234", &"a".repeat(65)] {
            assert!(commit_sha(bad, "sha").is_err(), "{bad} accepted");
        }
    }
}
