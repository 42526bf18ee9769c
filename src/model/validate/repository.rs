//! Git repository addresses. The address is handed to a builder that runs
//! `git clone` (and through it ssh or curl), so every form those tools would
//! read differently from how it looks is refused here: fragments and
//! queries, hosts or paths that start with `-` (an option to git or ssh),
//! hosts that are numbers in disguise, and credentials, which would be
//! stored and echoed with the deployment. Link-local and cloud metadata
//! addresses are refused unless the operator allows them, since a builder
//! fetching from them would reach the machine it runs on.
//!
//! Errors never quote the whole address: it may carry a token. They quote
//! the host at most.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::MAX_REPOSITORY_LEN;
use crate::error::Error;
use crate::model::quote::quoted;

const FIELD: &str = "git.repository";
const FORMS: &str =
    "use https://host/path, ssh://[user@]host[:port]/path, user@host:path or file:///absolute/path";

/// What the operator allows beyond the default rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepositoryRules {
    /// `allow_link_local_repositories`: accept link-local and metadata hosts.
    pub allow_link_local: bool,
    /// `file://` addresses (the builder reads the daemon's own disk).
    pub allow_file: bool,
}

fn invalid(reason: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{FIELD} {reason}"))
}

fn credentials() -> Error {
    invalid(
        "contains a password or a user for https: credentials do not belong in the repository address; configure them for the builder",
    )
}

/// `https://host/path`, `ssh://[user@]host[:port]/path`, scp-like
/// `user@host:path`, or `file:///absolute/path`.
pub fn repository(value: &str, rules: RepositoryRules) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid("is required"));
    }
    if value.len() > MAX_REPOSITORY_LEN {
        return Err(invalid(format!(
            "is longer than {MAX_REPOSITORY_LEN} bytes"
        )));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain spaces or control characters"));
    }
    if let Some(rest) = value.strip_prefix("https://") {
        url(rest, Scheme::Https, rules)
    } else if let Some(rest) = value.strip_prefix("ssh://") {
        url(rest, Scheme::Ssh, rules)
    } else if let Some(rest) = value.strip_prefix("file://") {
        if !rules.allow_file {
            return Err(invalid(
                "is a file:// address, which this daemon's builder does not accept (allow_file_repositories)",
            ));
        }
        file(rest)
    } else if let Some((scheme, _)) = value.split_once("://") {
        Err(invalid(format!(
            "has the unsupported scheme {}; {FORMS}",
            quoted(scheme)
        )))
    } else {
        scp_like(value, rules)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Ssh,
}

fn no_fragment_or_query(text: &str) -> Result<(), Error> {
    if text.contains('#') {
        return Err(invalid(
            "must not contain a fragment ('#'): git would not fetch what it names",
        ));
    }
    if text.contains('?') {
        return Err(invalid("must not contain a query ('?')"));
    }
    Ok(())
}

fn url(rest: &str, scheme: Scheme, rules: RepositoryRules) -> Result<(), Error> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    // Credentials first: whatever else is wrong, the answer must not hint
    // at them and the caller must learn where they belong.
    let host_and_port = match authority.rsplit_once('@') {
        None => authority,
        Some((user, host_and_port)) => {
            if scheme == Scheme::Https || user.contains(':') {
                return Err(credentials());
            }
            user_name(user)?;
            host_and_port
        }
    };
    no_fragment_or_query(rest)?;
    let (host, port) = split_port(host_and_port)?;
    if let Some(port) = port
        && !port_ok(port)
    {
        return Err(invalid("has a port that is not 1 to 65535"));
    }
    check_host(host, rules)?;
    repository_path(path)
}

fn scp_like(value: &str, rules: RepositoryRules) -> Result<(), Error> {
    let Some((user, rest)) = value.split_once('@') else {
        return Err(invalid(format!("is not a repository address; {FORMS}")));
    };
    if user.contains(':') || user.contains('/') {
        // `user:password@host:path`, or a path that merely contains '@'.
        return Err(if user.contains(':') {
            credentials()
        } else {
            invalid(format!("is not a repository address; {FORMS}"))
        });
    }
    user_name(user)?;
    no_fragment_or_query(rest)?;
    let (host, path) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(invalid("has an unterminated '[' in its host"));
        };
        let Some(path) = after.strip_prefix(':') else {
            return Err(invalid(format!("is not a repository address; {FORMS}")));
        };
        (&rest[..inside.len() + 2], path)
    } else {
        match rest.split_once(':') {
            Some((host, path)) if !host.contains('/') => (host, path),
            _ => return Err(invalid(format!("is not a repository address; {FORMS}"))),
        }
    };
    check_host(host, rules)?;
    repository_path(path)
}

fn file(rest: &str) -> Result<(), Error> {
    no_fragment_or_query(rest)?;
    match rest.strip_prefix('/') {
        Some(path) if !path.is_empty() => Ok(()),
        _ => Err(invalid(
            "file:// addresses must name an absolute local path: file:///path",
        )),
    }
}

fn user_name(user: &str) -> Result<(), Error> {
    if user.is_empty()
        || user.starts_with('-')
        || !user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(
            "has a user name that is empty, starts with '-' or is not made of A-Z, a-z, 0-9, '.', '_', '-'",
        ));
    }
    Ok(())
}

fn repository_path(path: &str) -> Result<(), Error> {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Err(invalid("has no repository path after the host"));
    }
    if path.starts_with('-') {
        return Err(invalid(
            "has a path that starts with '-', which git or ssh would read as an option",
        ));
    }
    Ok(())
}

/// `host[:port]` or `[v6]:port`; the host keeps its brackets.
fn split_port(host_and_port: &str) -> Result<(&str, Option<&str>), Error> {
    if host_and_port.starts_with('[') {
        let Some(end) = host_and_port.find(']') else {
            return Err(invalid("has an unterminated '[' in its host"));
        };
        let (host, after) = host_and_port.split_at(end + 1);
        match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(invalid("has text after its IPv6 host")),
            },
        }
    } else {
        Ok(match host_and_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_and_port, None),
        })
    }
}

fn port_ok(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn check_host(host: &str, rules: RepositoryRules) -> Result<(), Error> {
    if host.is_empty() {
        return Err(invalid("has no host"));
    }
    if host.starts_with('-') {
        return Err(invalid(
            "has a host that starts with '-', which git or ssh would read as an option",
        ));
    }
    let refuse_reserved = || {
        if rules.allow_link_local {
            Ok(())
        } else {
            Err(invalid(format!(
                "host {} is a link-local or cloud metadata address, which a builder must not fetch from; set allow_link_local_repositories = true in the daemon's config to allow it",
                quoted(host)
            )))
        }
    };
    if let Some(inside) = host.strip_prefix('[') {
        let literal = inside.strip_suffix(']').unwrap_or(inside);
        let Ok(address) = literal.parse::<Ipv6Addr>() else {
            return Err(invalid(format!(
                "host {} is not an IPv6 address",
                quoted(host)
            )));
        };
        return if reserved_v6(address) {
            refuse_reserved()
        } else {
            Ok(())
        };
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(format!(
            "host {} is not a host name (A-Z, a-z, 0-9, '.', '_', '-') or an IP address",
            quoted(host)
        )));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if let Ok(address) = name.parse::<Ipv4Addr>() {
        return if reserved_v4(address) {
            refuse_reserved()
        } else {
            Ok(())
        };
    }
    // `2852039166`, `0xa9fea9fe` or `0251.0376.0251.0376` are
    // 169.254.169.254 to curl and ssh; only dotted decimal is read one way.
    let last_label = name.rsplit('.').next().unwrap_or("");
    if last_label.bytes().all(|b| b.is_ascii_digit()) || last_label.starts_with("0x") {
        return Err(invalid(format!(
            "host {} is neither a host name nor a dotted-decimal IPv4 address",
            quoted(host)
        )));
    }
    if name == "metadata" || name == "metadata.google.internal" {
        return refuse_reserved();
    }
    Ok(())
}

/// 169.254.0.0/16, which holds the cloud metadata address 169.254.169.254.
fn reserved_v4(address: Ipv4Addr) -> bool {
    address.is_link_local()
}

/// fe80::/10, AWS's fd00:ec2::254, and IPv4-mapped link-local addresses.
fn reserved_v6(address: Ipv6Addr) -> bool {
    const AWS_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    (address.segments()[0] & 0xffc0) == 0xfe80
        || address == AWS_METADATA
        || address.to_ipv4_mapped().is_some_and(reserved_v4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: RepositoryRules = RepositoryRules {
        allow_link_local: false,
        allow_file: true,
    };
    const LENIENT: RepositoryRules = RepositoryRules {
        allow_link_local: true,
        allow_file: true,
    };

    #[test]
    fn file_addresses_need_the_operators_consent() {
        let no_files = RepositoryRules {
            allow_file: false,
            ..STRICT
        };
        let message = refused("file:///srv/git/web.git", no_files);
        assert!(message.contains("allow_file_repositories"), "{message}");
        assert!(repository("https://github.com/acme/web.git", no_files).is_ok());
    }

    fn refused(value: &str, rules: RepositoryRules) -> String {
        match repository(value, rules) {
            Ok(()) => panic!("{value} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_four_forms_are_accepted() {
        for ok in [
            "https://github.com/acme/web.git",
            "https://git.example.com:8443/team/app",
            "ssh://git.example.com/acme/web.git",
            "ssh://git@git.example.com:2222/acme/web.git",
            "ssh://git@[2001:db8::1]:22/acme/web.git",
            "git@github.com:acme/web.git",
            "deploy@git.internal:/srv/git/web.git",
            "git@[2001:db8::1]:acme/web.git",
            "file:///srv/git/web.git",
            // Self-hosting: loopback and private networks are fine.
            "https://127.0.0.1/acme/web.git",
            "https://10.0.0.5:3000/acme/web.git",
            "ssh://git@[::1]/web.git",
            "git@192.168.1.10:web.git",
            "https://localhost/web.git",
        ] {
            assert_eq!(repository(ok, STRICT), Ok(()), "{ok}");
        }
    }

    #[test]
    fn fragments_queries_and_other_schemes_are_refused() {
        for bad in [
            "",
            "https://github.com/acme/web.git#main",
            "https://github.com/acme/web.git?ref=main",
            "git@github.com:acme/web.git#x",
            "ssh://git.example.com/web?x",
            "file:///srv/web.git#x",
            "http://github.com/acme/web.git",
            "git://github.com/acme/web.git",
            "ftp://x/y",
            "/etc/passwd",
            "../web.git",
            "file://host/web.git",
            "file://",
            "https://",
            "https://github.com",
            "https://github.com/",
            "https://x y/z",
            "https://host:0/x",
            "https://host:99999/x",
            "https://host:/x",
            "https://ho%73t/x",
            "https://[zz::1]/x",
            "https://[fe80::1%25eth0]/x",
            "git@host",
            "@host:path",
            "git@:path",
            "github.com:acme/web.git",
        ] {
            refused(bad, STRICT);
        }
    }

    #[test]
    fn credentials_are_refused_without_being_echoed() {
        for bad in [
            "https://user:s3cret@github.com/acme/web.git",
            "https://token-s3cret@github.com/acme/web.git",
            "ssh://git:s3cret@github.com/acme/web.git",
            "git:s3cret@github.com:acme/web.git",
            "https://user:s3cret@github.com/acme/web.git#x",
        ] {
            let message = refused(bad, STRICT);
            assert!(!message.contains("s3cret"), "{message}");
            assert!(
                message.contains("credentials do not belong in the repository address"),
                "{message}"
            );
        }
    }

    #[test]
    fn leading_dashes_are_refused() {
        for bad in [
            "ssh://-oProxyCommand=touch/x",
            "ssh://git@-oProxyCommand=touch/x",
            "ssh://-oProxyCommand=touch@host/x",
            "git@-oProxyCommand=touch:x",
            "-oProxyCommand=touch@host:x",
            "git@host:-upload-pack=touch",
            "https://-host/x",
            "https://host/-x",
            "https://host//-x",
        ] {
            refused(bad, STRICT);
        }
    }

    #[test]
    fn link_local_and_metadata_hosts_need_the_operator() {
        for reserved in [
            "https://169.254.169.254/latest/meta-data",
            "https://169.254.1.1/x",
            "https://[fe80::1]/x",
            "https://[febf::1]/x",
            "https://[fd00:ec2::254]/x",
            "https://[::ffff:169.254.169.254]/x",
            "https://metadata/x",
            "https://METADATA.google.internal./x",
            "https://metadata.google.internal/computeMetadata/v1",
            "ssh://git@169.254.169.254:22/x",
            "git@169.254.169.254:x",
        ] {
            let message = refused(reserved, STRICT);
            assert!(
                message.contains("allow_link_local_repositories"),
                "{message}"
            );
            assert_eq!(repository(reserved, LENIENT), Ok(()), "{reserved}");
        }
    }

    #[test]
    fn numbers_in_disguise_are_refused_even_when_allowed() {
        for bad in [
            "https://2852039166/x",
            "https://0xa9fea9fe/x",
            "https://0251.0376.0251.0376/x",
            "https://169.254.169.254.0/x",
            "git@1.2.3:x",
        ] {
            refused(bad, LENIENT);
        }
        // A name whose last label has letters is a name.
        assert_eq!(repository("https://169.254.example.com/x", STRICT), Ok(()));
    }
}
