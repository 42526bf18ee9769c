//! A fake GitHub for the webhook and commit status tests: an HTTP/1.1
//! server on 127.0.0.1:0 that records every request and answers with the
//! status codes a test queues (201 otherwise), signed deliveries posted to
//! the daemon's webhook listener, and the config that points the daemon at
//! both.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use deployd::Config;
use deployd::webhook::signature::sign;

pub const SECRET: &[u8] = b"webhook secret";
pub const TOKEN: &str = "ghp_test_token";

/// One request GitHub's API received, and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: String,
    pub body: serde_json::Value,
    pub answered: u16,
}

impl Recorded {
    pub fn state(&self) -> &str {
        self.body["state"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct Fake {
    requests: Vec<Recorded>,
    /// Answers for the next requests, in order; then `default`.
    queued: VecDeque<u16>,
    default: Option<u16>,
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub addr: SocketAddr,
    state: Arc<Mutex<Fake>>,
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitHub");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(Fake::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| record(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next requests get these answers, in order.
    pub fn answer_next(&self, codes: &[u16]) {
        self.state.lock().unwrap().queued.extend(codes);
    }

    /// Every request after the queued answers gets `code` (201 unless set).
    pub fn answer_always(&self, code: u16) {
        self.state.lock().unwrap().default = Some(code);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The commit statuses posted for `sha` in `owner/name`, in order.
    pub fn statuses(&self, repository: &str, sha: &str) -> Vec<Recorded> {
        let path = format!("/repos/{repository}/statuses/{sha}");
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// The statuses for `sha` that GitHub accepted (answered 2xx).
    pub fn accepted(&self, repository: &str, sha: &str) -> Vec<Recorded> {
        self.statuses(repository, sha)
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }
}

async fn record(
    state: Arc<Mutex<Fake>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = request.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let answered = {
        let mut fake = state.lock().unwrap();
        let answered = fake.queued.pop_front().or(fake.default).unwrap_or(201);
        fake.requests.push(Recorded {
            method,
            path,
            authorization,
            body,
            answered,
        });
        answered
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = hyper::StatusCode::from_u16(answered).expect("status code");
    Ok(response)
}

/// Secret and token files, and the config that uses them and `fake`.
pub struct GithubFiles {
    _dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    pub token_file: PathBuf,
}

impl GithubFiles {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret_file = dir.path().join("webhook-secret");
        let token_file = dir.path().join("token");
        // A final newline, as `echo` writes: it is not part of the secret.
        std::fs::write(&secret_file, [SECRET, b"\n"].concat()).expect("write secret");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
        Self {
            _dir: dir,
            secret_file,
            token_file,
        }
    }

    /// `base` with the webhook listener on 127.0.0.1:0 and statuses going
    /// to `fake`, retried quickly.
    pub fn config(&self, mut base: Config, fake: &FakeGitHub) -> Config {
        base.github.listen = Some("127.0.0.1:0".parse().unwrap());
        base.github.webhook_secret_file = Some(self.secret_file.clone());
        base.github.token_file = Some(self.token_file.clone());
        base.github.api_base = fake.api_base();
        base.github.status_retry_ms = 20;
        base.github.status_retry_max_ms = 200;
        base
    }
}

/// What the webhook listener answered.
#[derive(Debug)]
pub struct Delivered {
    pub status: u16,
    pub body: String,
}

impl Delivered {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn deployment_id(&self) -> String {
        self.json()["deployment_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no deployment in {self:?}"))
            .to_string()
    }
}

/// How a test delivery is signed.
pub enum Signature {
    Good,
    Missing,
    WrongSecret,
    Header(String),
}

/// Posts one delivery to the webhook listener at `addr`.
pub async fn deliver(
    addr: SocketAddr,
    event: &str,
    delivery: &str,
    body: &serde_json::Value,
    signature: Signature,
) -> Delivered {
    let body = body.to_string();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the webhook listener");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method("POST")
        .uri("/github")
        .header("host", "deployd.test")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery);
    let signature = match signature {
        Signature::Good => Some(sign(SECRET, body.as_bytes())),
        Signature::Missing => None,
        Signature::WrongSecret => Some(sign(b"not the secret", body.as_bytes())),
        Signature::Header(value) => Some(value),
    };
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Delivered {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A push payload as GitHub sends it (the fields deployd reads, and a few
/// it does not).
pub fn push(repository: &str, git_ref: &str, after: &str) -> serde_json::Value {
    serde_json::json!({
        "ref": git_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "created": true,
        "deleted": false,
        "forced": false,
        "repository": {
            "id": 1,
            "full_name": repository,
            "default_branch": "main",
            "clone_url": format!("https://github.com/{repository}.git"),
        },
        "head_commit": {
            "id": after,
            "message": "Update the page",
            "timestamp": "2026-01-02T03:04:05Z",
            "author": {"name": "Ada", "email": "ada@example.com"},
        },
        "pusher": {"name": "ada"},
    })
}
