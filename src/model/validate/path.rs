//! Paths inside a repository (`git.context_path`, `git.dockerfile_path`).
//! A builder joins them to its checkout and passes them as arguments, so
//! anything it could read as "somewhere else" is refused: absolute paths,
//! `.` and `..`, empty segments, and characters a build tool or a URL
//! parser gives a meaning (`#`, `:`, spaces, backslashes).

use super::MAX_PATH_LEN;
use crate::error::Error;
use crate::model::quote::quoted;

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

/// Empty means the builder's default (the repository root, `Dockerfile`).
/// Otherwise: `/`-separated segments of `A-Z a-z 0-9 . _ -`, none empty,
/// `.` or `..`, and not starting with `-` (which `docker build -f` reads
/// as an option or as standard input).
pub fn relative_path(value: &str, field: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Ok(());
    }
    let reason = if value.len() > MAX_PATH_LEN {
        Some("is longer than 1024 bytes")
    } else if value.starts_with('/') {
        Some("is absolute; give it relative to the repository root")
    } else if value.starts_with('-') {
        Some("starts with '-'")
    } else if !value.bytes().all(|b| is_path_char(b) || b == b'/') {
        Some("may only contain A-Z, a-z, 0-9, '.', '_', '-' and '/' between segments")
    } else if value
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        Some("has an empty, '.' or '..' segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::invalid(format!(
            "{field} {} {reason}",
            quoted(value)
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_are_accepted() {
        for ok in [
            "",
            "services/api",
            "Dockerfile",
            "docker/Dockerfile.prod",
            "a_b/c-d/.hidden",
            "v1.2/x",
        ] {
            assert!(relative_path(ok, "p").is_ok(), "{ok:?} rejected");
        }
    }

    #[test]
    fn paths_a_builder_would_misread_are_refused() {
        for bad in [
            "/etc",
            "a/../b",
            "..",
            ".",
            "./Dockerfile",
            "a/./b",
            "a//b",
            "a/",
            "-",
            "-f",
            "a#b",
            "a:b",
            "a b",
            "a\\b",
            "a\nb",
            "caf\u{e9}",
            "a?b",
        ] {
            let error = relative_path(bad, "git.context_path").expect_err(bad);
            assert!(
                error.to_string().starts_with("git.context_path "),
                "{error}"
            );
        }
        assert!(relative_path(&"a/".repeat(600), "p").is_err());
    }
}
