//! TXT lookups for custom domain verification: a small DNS client over UDP
//! (TCP when the answer is truncated) that asks one recursive nameserver,
//! the configured `[domains] resolver` or the first of `/etc/resolv.conf`.
//! Messages are built and parsed by `hickory-proto`; there is no cache and
//! no retry policy beyond a second UDP try, because a verification is a
//! rare, user-started request whose failure the user simply repeats.
//!
//! This is slow I/O: the API handler calls it, never a project actor, and
//! hands the actor only what DNS answered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::config::DomainsConfig;

/// Where `Nameserver::System` reads its address.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// UDP tries before giving up on a nameserver that does not answer.
const UDP_TRIES: usize = 2;
/// Large enough for any UDP DNS answer (EDNS allows up to 4096 bytes).
const UDP_BUFFER: usize = 4096;

/// Asks one nameserver for TXT records.
#[derive(Debug, Clone)]
pub struct TxtResolver {
    nameserver: Nameserver,
    timeout: Duration,
}

#[derive(Debug, Clone)]
enum Nameserver {
    Fixed(SocketAddr),
    /// The first `nameserver` of `/etc/resolv.conf`, read at each lookup
    /// so that a changed file needs no restart.
    System,
}

/// Why DNS gave no answer: none of these says anything about the record,
/// so the caller may try again.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no nameserver: {0}")]
    NoNameserver(String),
    #[error("nameserver {server} did not answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("cannot reach nameserver {server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("nameserver {server} answered {code}")]
    Failed {
        server: SocketAddr,
        code: ResponseCode,
    },
    #[error("{0}")]
    Protocol(String),
}

impl TxtResolver {
    pub fn from_config(config: &DomainsConfig) -> Self {
        Self {
            nameserver: config
                .resolver
                .map_or(Nameserver::System, Nameserver::Fixed),
            timeout: config.lookup_timeout(),
        }
    }

    /// The TXT strings at `name`: one string per record, its
    /// character-strings joined (long values are split into 255-byte
    /// pieces). A name that does not exist, or has no TXT record, is an
    /// empty list: an answer, not an error.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let server = match &self.nameserver {
            Nameserver::Fixed(server) => *server,
            Nameserver::System => system_nameserver(Path::new(RESOLV_CONF))?,
        };
        let query = txt_query(name)?;
        let bytes = query
            .to_vec()
            .map_err(|e| LookupError::Protocol(format!("cannot encode a DNS query: {e}")))?;
        let mut answer = self.over_udp(server, &bytes, query.metadata.id).await?;
        if answer.metadata.truncation {
            answer = self.over_tcp(server, &bytes, query.metadata.id).await?;
        }
        match answer.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(txt_strings(&answer)),
            code => Err(LookupError::Failed { server, code }),
        }
    }

    async fn over_udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
    ) -> Result<Message, LookupError> {
        let io = |source| LookupError::Io { server, source };
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        // Connected: the kernel drops datagrams from anyone else.
        socket.connect(server).await.map_err(io)?;
        let mut buffer = vec![0u8; UDP_BUFFER];
        for _ in 0..UDP_TRIES {
            socket.send(query).await.map_err(io)?;
            let deadline = tokio::time::Instant::now() + self.timeout;
            // Datagrams that are not the answer to this query (a late
            // answer to the first try, garbage) are skipped.
            while let Ok(received) =
                tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await
            {
                let length = received.map_err(io)?;
                if let Some(answer) = answer_to(id, &buffer[..length]) {
                    return Ok(answer);
                }
            }
        }
        Err(LookupError::Timeout {
            server,
            timeout: self.timeout,
        })
    }

    async fn over_tcp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
    ) -> Result<Message, LookupError> {
        let io = |source| LookupError::Io { server, source };
        let exchange = async {
            let mut stream = TcpStream::connect(server).await.map_err(io)?;
            let length = u16::try_from(query.len())
                .map_err(|_| LookupError::Protocol("DNS query too long".into()))?;
            let mut framed = length.to_be_bytes().to_vec();
            framed.extend_from_slice(query);
            stream.write_all(&framed).await.map_err(io)?;
            let length = stream.read_u16().await.map_err(io)?;
            let mut answer = vec![0u8; usize::from(length)];
            stream.read_exact(&mut answer).await.map_err(io)?;
            answer_to(id, &answer).ok_or_else(|| {
                LookupError::Protocol(format!("nameserver {server} sent a malformed answer"))
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| LookupError::Timeout {
                server,
                timeout: self.timeout,
            })?
    }
}

fn txt_query(name: &str) -> Result<Message, LookupError> {
    let mut fqdn = Name::from_ascii(name)
        .map_err(|e| LookupError::Protocol(format!("{name} is not a DNS name: {e}")))?;
    fqdn.set_fqdn(true);
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(fqdn, RecordType::TXT));
    Ok(query)
}

/// The message in `bytes` if it is the answer to query `id`.
fn answer_to(id: u16, bytes: &[u8]) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    (message.metadata.id == id && message.metadata.message_type == MessageType::Response)
        .then_some(message)
}

/// Every TXT record of the answer section. A recursive resolver puts there
/// only what answers the query (a CNAME chain's target included).
fn txt_strings(answer: &Message) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => {
                let joined: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
                Some(String::from_utf8_lossy(&joined).into_owned())
            }
            _ => None,
        })
        .collect()
}

/// The first usable `nameserver` line of a resolv.conf file, port 53.
fn system_nameserver(path: &Path) -> Result<SocketAddr, LookupError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        LookupError::NoNameserver(format!(
            "cannot read {}: {e}; set [domains] resolver",
            path.display()
        ))
    })?;
    first_nameserver(&text).ok_or_else(|| {
        LookupError::NoNameserver(format!(
            "{} names no nameserver; set [domains] resolver",
            path.display()
        ))
    })
}

fn first_nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "nameserver" {
            return None;
        }
        // An IPv6 address may carry a zone (`fe80::1%eth0`), which
        // `IpAddr` does not parse; such a server is skipped.
        let address: IpAddr = words.next()?.parse().ok()?;
        Some(SocketAddr::new(address, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_parsable_nameserver_is_used() {
        let conf = "# comment\nsearch example.com\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        assert_eq!(first_nameserver(conf), Some("10.0.0.2:53".parse().unwrap()));
        assert_eq!(first_nameserver("search x\n"), None);
    }

    #[test]
    fn only_the_answer_to_our_query_counts() {
        let query = txt_query("_deployd-challenge.example.com").expect("query");
        let id = query.metadata.id;
        let mut answer = query.clone().into_response();
        let bytes = answer.to_vec().expect("encode");
        assert!(answer_to(id, &bytes).is_some());
        assert!(answer_to(id.wrapping_add(1), &bytes).is_none());
        assert!(
            answer_to(id, &query.to_vec().expect("encode")).is_none(),
            "a query is no answer"
        );
        assert!(answer_to(id, b"garbage").is_none());
        answer.metadata.response_code = ResponseCode::NXDomain;
        assert!(txt_strings(&answer).is_empty());
    }
}
