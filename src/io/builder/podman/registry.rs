//! The one registry call the builder makes itself: which digest a tag
//! names (`GET /v2/NAME/manifests/TAG`, header `Docker-Content-Digest`).
//! It is how a build re-run after a crash adopts the image its first run
//! pushed. Plain HTTP only (an insecure, local registry); for a registry
//! behind TLS the builder relies on podman instead (see `podman.rs`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The manifest types podman pushes (OCI first, as podman does).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// The digest `registry` has for `name:tag`, `None` if it has none.
pub async fn digest(registry: &str, name: &str, tag: &str) -> Result<Option<String>, String> {
    tokio::time::timeout(TIMEOUT, digest_once(registry, name, tag))
        .await
        .map_err(|_| format!("registry {registry} did not answer within {TIMEOUT:?}"))?
}

async fn digest_once(registry: &str, name: &str, tag: &str) -> Result<Option<String>, String> {
    let unreachable = |e: &dyn std::fmt::Display| format!("cannot reach registry {registry}: {e}");
    let stream = tokio::net::TcpStream::connect(registry)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(connection);
    let request = Request::head(format!("/v2/{name}/manifests/{tag}"))
        .header(hyper::header::HOST, registry)
        .header(hyper::header::ACCEPT, ACCEPT)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build a registry request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    match response.status() {
        StatusCode::OK => {
            let digest = response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .filter(|d| is_digest(d))
                .ok_or_else(|| {
                    format!("registry {registry} named no valid digest for {name}:{tag}")
                })?;
            Ok(Some(digest.to_string()))
        }
        StatusCode::NOT_FOUND => Ok(None),
        status => Err(format!(
            "registry {registry} answered {status} for {name}:{tag}"
        )),
    }
}

/// `sha256:` and 64 lower-case hex digits.
pub fn is_digest(value: &str) -> bool {
    value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_digests_are_taken() {
        assert!(is_digest(&format!("sha256:{}", "a1".repeat(32))));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest(&format!("sha512:{}", "a1".repeat(32))));
        assert!(!is_digest(&format!("sha256:{}", "A1".repeat(32))));
    }
}
