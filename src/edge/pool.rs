//! Kept-alive upstream connections, per instance address, so a proxied
//! request does not pay for a TCP connect and an HTTP/1.1 handshake each
//! time. A connection goes back into the pool as soon as its response
//! head arrived; it is handed out again once hyper says it can take the
//! next request (its previous response body is done).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

/// Connections kept per instance; more are closed.
const MAX_PER_INSTANCE: usize = 64;

#[derive(Default)]
pub struct Pool {
    connections: Mutex<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>>,
}

impl Pool {
    /// A connection to `address` that can take a request now. Closed ones
    /// are dropped on the way; busy ones stay for later.
    pub fn take(&self, address: SocketAddr) -> Option<SendRequest<Incoming>> {
        let mut connections = self.connections.lock().ok()?;
        let kept = connections.get_mut(&address)?;
        kept.retain(|sender| !sender.is_closed());
        if kept.is_empty() {
            // Instances come and go with deployments: forget their address.
            connections.remove(&address);
            return None;
        }
        let ready = kept.iter().rposition(SendRequest::is_ready)?;
        Some(kept.swap_remove(ready))
    }

    /// Keeps `sender` for a later request to `address`.
    pub fn keep(&self, address: SocketAddr, sender: SendRequest<Incoming>) {
        if let Ok(mut connections) = self.connections.lock() {
            let kept = connections.entry(address).or_default();
            if kept.len() < MAX_PER_INSTANCE {
                kept.push(sender);
            }
        }
    }
}
