//! Steady HTTP traffic through the edge while a test switches deployments:
//! clients each keep one connection and send requests back to back, noting
//! when each was sent, its status and which deployment answered. The test
//! notes when each switch started and when it was acknowledged; `verify`
//! then checks that every response was 200 and that every request sent
//! after an acknowledgement (and before the next switch started) reached
//! that switch's target.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Served {
    pub sent: Instant,
    pub status: u16,
    /// The first line of the body: the deployment (or page) that answered.
    pub by: String,
}

#[derive(Debug, Clone)]
pub struct Switch {
    pub started: Instant,
    pub acknowledged: Instant,
    /// What the first line of every later answer must be.
    pub target: String,
}

pub struct Traffic {
    stop: watch::Sender<bool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Served>>>,
    switches: Arc<Mutex<Vec<Switch>>>,
}

impl Traffic {
    pub fn start(edge: SocketAddr, host: &str, clients: usize) -> Self {
        let (stop, stopped) = watch::channel(false);
        let clients = (0..clients)
            .map(|_| tokio::spawn(client(edge, host.to_string(), stopped.clone())))
            .collect();
        Self {
            stop,
            clients,
            switches: Arc::default(),
        }
    }

    /// Runs `switch` (a deploy followed to READY, a rollback, a promote)
    /// and notes it: from its acknowledgement on, `target` must answer.
    pub async fn switch<F: std::future::Future<Output = ()>>(&self, target: &str, switch: F) {
        let started = Instant::now();
        switch.await;
        let acknowledged = Instant::now();
        self.switches.lock().unwrap().push(Switch {
            started,
            acknowledged,
            target: target.to_string(),
        });
    }

    /// Stops the clients and checks every request; returns how many there
    /// were.
    pub async fn verify(self) -> usize {
        let _ = self.stop.send(true);
        let mut served = Vec::new();
        for client in self.clients {
            served.extend(client.await.expect("client"));
        }
        let switches = self.switches.lock().unwrap().clone();
        for request in &served {
            assert_eq!(request.status, 200, "a request failed: {request:?}");
            let Some(i) = switches
                .iter()
                .rposition(|s| s.acknowledged <= request.sent)
            else {
                continue;
            };
            let next_started = switches.get(i + 1).map(|s| s.started);
            if next_started.is_none_or(|started| request.sent < started) {
                assert_eq!(
                    request.by,
                    switches[i].target,
                    "a request sent {:?} after switch {i} was acknowledged reached another deployment",
                    request.sent - switches[i].acknowledged
                );
            }
        }
        served.len()
    }
}

async fn client(edge: SocketAddr, host: String, stopped: watch::Receiver<bool>) -> Vec<Served> {
    let mut served = Vec::new();
    let mut sender = None;
    while !*stopped.borrow() {
        if sender.is_none() {
            sender = Some(super::http::connect(edge).await);
        }
        let Some(s) = sender.as_mut() else { continue };
        let request = Request::builder()
            .uri("/")
            .header("host", &host)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let sent = Instant::now();
        match s.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let text = String::from_utf8_lossy(&body);
                served.push(Served {
                    sent,
                    status,
                    by: text.lines().next().unwrap_or_default().to_string(),
                });
            }
            // The connection went away: count it as a failed request.
            Err(e) => {
                served.push(Served {
                    sent,
                    status: 0,
                    by: e.to_string(),
                });
                sender = None;
            }
        }
    }
    served
}
