//! A tiny authoritative DNS server on 127.0.0.1 (UDP, port 0) for the
//! custom domain tests: it answers TXT queries from a map the test
//! changes while it runs, NXDOMAIN for any other name, and counts the
//! queries it got. Messages are hickory-proto's, like the daemon's client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

pub struct TestDns {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<String>>>>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestDns {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let records: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(socket, records.clone(), queries.clone()));
        Self {
            addr,
            records,
            queries,
            task,
        }
    }

    /// Makes `name` hold these TXT strings (one record each); an empty
    /// list removes it.
    pub fn set_txt(&self, name: &str, values: &[&str]) {
        let mut records = self.records.lock().expect("dns records");
        if values.is_empty() {
            records.remove(name);
        } else {
            records.insert(
                name.to_string(),
                values.iter().map(|v| v.to_string()).collect(),
            );
        }
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    socket: UdpSocket,
    records: Arc<Mutex<HashMap<String, Vec<String>>>>,
    queries: Arc<AtomicUsize>,
) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        if query.metadata.message_type != MessageType::Query {
            continue;
        }
        queries.fetch_add(1, Ordering::SeqCst);
        let mut answer = Message::response(query.metadata.id, OpCode::Query);
        answer.metadata.authoritative = true;
        answer.metadata.recursion_desired = query.metadata.recursion_desired;
        answer.add_queries(query.queries.iter().cloned());
        let found = query.queries.first().and_then(|q| {
            let name = q.name().to_ascii().trim_end_matches('.').to_lowercase();
            let values = records.lock().expect("dns records").get(&name).cloned()?;
            Some((q.name().clone(), q.query_type(), values))
        });
        match found {
            Some((name, RecordType::TXT, values)) => {
                for value in values {
                    let txt = RData::TXT(TXT::new(vec![value]));
                    answer.add_answer(Record::from_rdata(name.clone(), 60, txt));
                }
            }
            // The name exists but has no record of that type: NOERROR, no
            // answer.
            Some(_) => {}
            None => answer.metadata.response_code = ResponseCode::NXDomain,
        }
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}
