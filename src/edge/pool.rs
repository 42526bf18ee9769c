//! Idle upstream connections, per instance address, so a proxied request
//! does not pay for a TCP connect and an HTTP/1.1 handshake each time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

/// Idle connections kept per instance; more are closed when they free up.
const MAX_IDLE_PER_INSTANCE: usize = 64;

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>>,
}

impl Pool {
    /// An idle connection to `address` that can take a request now.
    pub fn take(&self, address: SocketAddr) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().ok()?;
        let senders = idle.get_mut(&address)?;
        while let Some(sender) = senders.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
            // Closed by the instance meanwhile: drop it.
        }
        None
    }

    /// Keeps `sender` for the next request once its current response is
    /// done (HTTP/1.1 answers one request at a time per connection).
    pub fn give_back(self: &Arc<Self>, address: SocketAddr, mut sender: SendRequest<Incoming>) {
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            if let Ok(mut idle) = pool.idle.lock() {
                let senders = idle.entry(address).or_default();
                if senders.len() < MAX_IDLE_PER_INSTANCE {
                    senders.push(sender);
                }
            }
        });
    }
}
