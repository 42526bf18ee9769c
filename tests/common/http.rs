//! A plain HTTP/1.1 client for tests of the edge: one request per
//! connection, over hyper.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// What came back: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The deployment id a simulated instance answers with.
    pub fn deployment(&self) -> &str {
        self.body.lines().next().unwrap_or_default()
    }

    /// The instance id a simulated instance answers with.
    pub fn instance(&self) -> &str {
        self.body.lines().nth(1).unwrap_or_default()
    }

    /// A request header as the instance received it (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .skip(2)
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
    }
}

pub async fn get(edge: SocketAddr, host: &str, headers: &[(&str, &str)]) -> Answer {
    get_path(edge, host, "/", headers).await
}

/// One HTTP/1.1 connection to `address`, driven in the background.
pub async fn connect(address: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

pub async fn get_path(
    edge: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut sender = connect(edge).await;
    let mut request = Request::builder().uri(path).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
