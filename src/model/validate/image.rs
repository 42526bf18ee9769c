//! OCI image references, the source of a prebuilt deployment.

use super::MAX_IMAGE_LEN;
use crate::error::Error;
use crate::model::quote::quoted;

/// An OCI image reference: `[registry[:port]/]path[:tag][@algo:hex]`.
pub fn image(value: &str) -> Result<(), Error> {
    let field = "docker_image.image";
    if value.is_empty() {
        return Err(Error::invalid(format!("{field} is required")));
    }
    let invalid = |why: &str| {
        Err(Error::invalid(format!(
            "{field} {} is not an image reference ({why}); expected [registry/]repository[:tag][@digest]",
            quoted(value)
        )))
    };
    if value.len() > MAX_IMAGE_LEN {
        return invalid("too long");
    }
    let (name_and_tag, digest) = match value.split_once('@') {
        Some((left, digest)) => (left, Some(digest)),
        None => (value, None),
    };
    if let Some(digest) = digest {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return invalid("digest must be algorithm:hex");
        };
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        let hex_ok = hex.len() >= 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !algorithm_ok || !hex_ok {
            return invalid("malformed digest");
        }
    }
    // A ':' after the last '/' starts the tag; earlier ones are a registry port.
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].find(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        let tag_ok = (1..=128).contains(&tag.len())
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !tag_ok {
            return invalid("malformed tag");
        }
    }
    let mut components = name.split('/').peekable();
    let mut first = true;
    while let Some(component) = components.next() {
        let is_registry = first
            && components.peek().is_some()
            && (component.contains(['.', ':']) || component == "localhost");
        first = false;
        let ok = if is_registry {
            !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        } else {
            !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && component
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && component
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if !ok {
            return invalid("malformed repository path");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images() {
        for ok in [
            "nginx",
            "nginx:1.27",
            "library/nginx:latest",
            "ghcr.io/acme/api:v1.2.3",
            "localhost:5000/app",
            "registry.example.com:443/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(image(ok).is_ok(), "{ok} rejected");
        }
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "/nginx",
            "nginx/",
            "a//b",
            "nginx@sha256:xyz",
            "nginx;rm -rf /",
            "nginx latest",
        ] {
            assert!(image(bad).is_err(), "{bad} accepted");
        }
    }
}
