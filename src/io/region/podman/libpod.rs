//! A small client of podman's REST API (libpod, v4) over its unix socket:
//! only the calls the region driver needs, one HTTP/1.1 connection per
//! call. Values from requests (image references, label filters) go into
//! query strings percent-encoded, never into a shell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::io::region::DriverError;

const API: &str = "/v4.0.0/libpod";
/// Bound on one API call; a pull has its own, longer one.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Libpod {
    socket: PathBuf,
}

/// One container as `containers/json` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub names: Vec<String>,
    /// `created`, `running`, `exited`, `stopped`, ...
    pub state: String,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub ports: Option<Vec<PortMapping>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortMapping {
    #[serde(default)]
    pub host_ip: String,
    pub container_port: u16,
    pub host_port: u16,
}

impl ContainerSummary {
    pub fn name(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// Where the container's `container_port` is published on the host.
    pub fn published(&self, container_port: u16) -> Option<std::net::SocketAddr> {
        let mapping = self
            .ports
            .as_ref()?
            .iter()
            .find(|p| p.container_port == container_port)?;
        let ip = if mapping.host_ip.is_empty() {
            "127.0.0.1"
        } else {
            &mapping.host_ip
        };
        format!("{ip}:{}", mapping.host_port).parse().ok()
    }
}

/// What an error answer of the API says.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    cause: String,
}

impl Libpod {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether a podman service answers on the socket.
    pub async fn ping(&self) -> bool {
        matches!(
            self.call(Method::GET, "/_ping", None, Duration::from_secs(2))
                .await,
            Ok((StatusCode::OK, _))
        )
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DriverError> {
        let path = format!("{API}/images/{}/exists", encode(image));
        match self.call(Method::GET, &path, None, CALL_TIMEOUT).await? {
            (StatusCode::NO_CONTENT, _) => Ok(true),
            (StatusCode::NOT_FOUND, _) => Ok(false),
            (status, body) => Err(api_error("look up image", status, &body)),
        }
    }

    /// Pulls `image`. A registry that does not have it is a permanent
    /// failure: waiting will not make the image appear.
    pub async fn pull(&self, image: &str, tls_verify: bool) -> Result<(), DriverError> {
        let path = format!(
            "{API}/images/pull?reference={}&quiet=true&tlsVerify={tls_verify}",
            encode(image)
        );
        let (status, body) = self.call(Method::POST, &path, None, PULL_TIMEOUT).await?;
        // The answer is a stream of JSON objects; a failure is one with an
        // `error` field, sometimes under a 200.
        let failure = String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
        match (status, failure) {
            (StatusCode::OK, None) => Ok(()),
            (_, Some(error)) => Err(DriverError::permanent(format!(
                "image {image} cannot be pulled: {error}"
            ))),
            (status, None) => Err(api_error("pull image", status, &body)),
        }
    }

    /// Every container (running or not) that has all of `labels`.
    pub async fn list(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, DriverError> {
        let filters = serde_json::json!({
            "label": labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        });
        let path = format!(
            "{API}/containers/json?all=true&filters={}",
            encode(&filters.to_string())
        );
        match self.call(Method::GET, &path, None, CALL_TIMEOUT).await? {
            (StatusCode::OK, body) => serde_json::from_slice(&body).map_err(|e| {
                DriverError::transient(format!("podman listed containers unreadably: {e}"))
            }),
            (status, body) => Err(api_error("list containers", status, &body)),
        }
    }

    /// Creates a container from a libpod `SpecGenerator`. A container of
    /// that name already existing is success: names derive from ids, so it
    /// is ours from an earlier call.
    pub async fn create(&self, spec: &serde_json::Value) -> Result<(), DriverError> {
        let path = format!("{API}/containers/create");
        let body = serde_json::to_vec(spec)
            .map_err(|e| DriverError::permanent(format!("cannot encode a container: {e}")))?;
        match self
            .call(Method::POST, &path, Some(body), CALL_TIMEOUT)
            .await?
        {
            (StatusCode::CREATED, _) => Ok(()),
            (_, body) if String::from_utf8_lossy(&body).contains("already in use") => Ok(()),
            (status, body) if status.is_client_error() => Err(DriverError::permanent(format!(
                "podman refused the container: {}",
                error_text(&body)
            ))),
            (status, body) => Err(api_error("create container", status, &body)),
        }
    }

    pub async fn start(&self, name: &str) -> Result<(), DriverError> {
        let path = format!("{API}/containers/{}/start", encode(name));
        match self.call(Method::POST, &path, None, CALL_TIMEOUT).await? {
            (StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED, _) => Ok(()),
            (status, body) => Err(api_error("start container", status, &body)),
        }
    }

    /// Stops a container, giving it `grace` after SIGTERM; one that is
    /// already stopped or gone is fine.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), DriverError> {
        let path = format!(
            "{API}/containers/{}/stop?timeout={}",
            encode(name),
            grace.as_secs()
        );
        let timeout = CALL_TIMEOUT + grace;
        match self.call(Method::POST, &path, None, timeout).await? {
            (StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::NOT_FOUND, _) => {
                Ok(())
            }
            (status, body) => Err(api_error("stop container", status, &body)),
        }
    }

    pub async fn remove(&self, name: &str) -> Result<(), DriverError> {
        let path = format!("{API}/containers/{}?force=true", encode(name));
        match self.call(Method::DELETE, &path, None, CALL_TIMEOUT).await? {
            (status, _) if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            (status, body) => Err(api_error("remove container", status, &body)),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), DriverError> {
        tokio::time::timeout(timeout, self.call_once(method, path, body))
            .await
            .map_err(|_| {
                DriverError::transient(format!("podman did not answer within {timeout:?}"))
            })?
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), DriverError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            DriverError::transient(format!(
                "cannot reach podman at {}: {e}",
                self.socket.display()
            ))
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let has_body = body.is_some();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "podman");
        if has_body {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| DriverError::permanent(format!("cannot build a podman request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        Ok((status, body))
    }
}

fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) if !e.message.is_empty() => e.message,
        Ok(e) if !e.cause.is_empty() => e.cause,
        _ => String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

/// 5xx and unexpected answers: worth retrying.
fn api_error(what: &str, status: StatusCode, body: &[u8]) -> DriverError {
    DriverError::transient(format!(
        "podman could not {what} ({status}): {}",
        error_text(body)
    ))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("localhost/app:v1 &x=y"),
            "localhost%2Fapp%3Av1%20%26x%3Dy"
        );
    }

    #[test]
    fn a_listed_container_tells_its_published_port() {
        let listed: Vec<ContainerSummary> = serde_json::from_str(
            r#"[{"Names":["c1"],"State":"running","ExitCode":0,
                 "Ports":[{"host_ip":"127.0.0.1","container_port":8080,"host_port":40045,"range":1,"protocol":"tcp"}],
                 "Labels":{"deployd.deployment":"dep_x"}}]"#,
        )
        .unwrap();
        let c = &listed[0];
        assert_eq!(c.name(), "c1");
        assert_eq!(c.label("deployd.deployment"), Some("dep_x"));
        assert_eq!(c.published(8080), Some("127.0.0.1:40045".parse().unwrap()));
        assert_eq!(c.published(9090), None);
    }
}
