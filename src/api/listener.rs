//! The accept loop: hands tonic one [`Connection`] at a time, never more
//! than `max_connections` at once, and backs off when the process runs out
//! of file descriptors instead of spinning on `accept`.
//!
//! A permit is taken *before* `accept`, so a client over the limit waits in
//! the kernel's accept queue and is served as soon as a connection closes
//! (the permit lives in the connection and is released on drop).

mod connection;
mod streams;
mod transport;
mod trim;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Config;

pub use connection::{ConnInfo, Connection};
pub use streams::CountStreams;
use transport::Transport;

/// Where the daemon is in its life, as the connections see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Shutdown began: connections that never spoke HTTP/2 close now; the
    /// others are drained by tonic (GOAWAY, then close when streams end).
    Draining,
    /// The shutdown timeout passed: every connection closes now.
    Cut,
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub handshake: Duration,
    pub idle: Duration,
}

/// The serving side's handle on its connections.
pub struct Connections {
    phase: watch::Sender<Phase>,
    permits: Arc<Semaphore>,
    max: usize,
}

impl Connections {
    /// Starts accepting on `listener`. The returned stream is what tonic
    /// serves; dropping it stops the accept loop and closes the socket.
    /// With `tls`, each socket is handed over once its handshake is done
    /// (in a task of its own, within the handshake timeout, so a slow
    /// client holds up nobody else).
    pub fn start(
        listener: TcpListener,
        config: &Config,
        tls: Option<TlsAcceptor>,
    ) -> (Self, ReceiverStream<io::Result<Connection>>) {
        let (phase, _) = watch::channel(Phase::Serving);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let timeouts = Timeouts {
            handshake: config.handshake_timeout(),
            idle: config.idle_timeout(),
        };
        let streams = Arc::new(trim::Gauge::default());
        tokio::spawn(trim::after_streams_fall(
            Arc::clone(&streams),
            phase.subscribe(),
        ));
        let (tx, rx) = mpsc::channel(1);
        let phases = phase.clone();
        let accepted = Arc::clone(&permits);
        tokio::spawn(async move {
            let (raw_tx, mut raw_rx) = mpsc::channel::<(TcpStream, OwnedSemaphorePermit)>(1);
            let wrap = async move {
                loop {
                    // Ends with tonic's interest in new connections, so the
                    // accept loop (and the listening socket) go too.
                    let (stream, permit) = tokio::select! {
                        next = raw_rx.recv() => match next {
                            Some(next) => next,
                            None => return,
                        },
                        () = tx.closed() => return,
                    };
                    // Without TCP_NODELAY, small gRPC replies wait for the
                    // peer's delayed ACK (~40 ms).
                    let _ = stream.set_nodelay(true);
                    let phase = phases.subscribe();
                    let streams = Arc::clone(&streams);
                    let Some(tls) = &tls else {
                        let stream = Transport::Plain(stream);
                        let connection = Connection::new(stream, permit, phase, timeouts, streams);
                        if tx.send(Ok(connection)).await.is_err() {
                            return;
                        }
                        continue;
                    };
                    let (tls, tx) = (tls.clone(), tx.clone());
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(timeouts.handshake, tls.accept(stream));
                        let stream = match handshake.await {
                            Ok(Ok(stream)) => Transport::Tls(Box::new(stream)),
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("no TLS handshake within the handshake timeout");
                                return;
                            }
                        };
                        let connection = Connection::new(stream, permit, phase, timeouts, streams);
                        let _ = tx.send(Ok(connection)).await;
                    });
                }
            };
            tokio::join!(
                accept_loop(Tcp(listener), accepted, raw_tx, Backoff::default()),
                wrap
            );
        });
        let connections = Self {
            phase,
            permits,
            max: config.max_connections,
        };
        (connections, ReceiverStream::new(rx))
    }

    pub fn drain(&self) {
        self.phase.send_replace(Phase::Draining);
    }

    pub fn cut(&self) {
        self.phase.send_replace(Phase::Cut);
    }

    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }
}

/// Something that accepts connections; the real one is a TCP listener,
/// tests inject errors.
pub trait Accept: Send + 'static {
    type Conn: Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

struct Tcp(TcpListener);

impl Accept for Tcp {
    type Conn = TcpStream;

    async fn accept(&mut self) -> io::Result<TcpStream> {
        self.0.accept().await.map(|(stream, _)| stream)
    }
}

/// Accepts until `out` is closed; returns the backoff record (for tests).
pub async fn accept_loop<A: Accept>(
    mut source: A,
    permits: Arc<Semaphore>,
    out: mpsc::Sender<(A::Conn, OwnedSemaphorePermit)>,
    mut backoff: Backoff,
) -> Backoff {
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return backoff,
            },
            () = out.closed() => return backoff,
        };
        let accepted = tokio::select! {
            accepted = source.accept() => accepted,
            () = out.closed() => return backoff,
        };
        match accepted {
            Ok(conn) => {
                if backoff.succeeded() {
                    tracing::info!("accepting connections again");
                }
                if out.send((conn, permit)).await.is_err() {
                    return backoff;
                }
            }
            Err(e) if out_of_descriptors(&e) => {
                let (delay, first) = backoff.failed();
                if first {
                    tracing::warn!(
                        error = %e,
                        "cannot accept connections: out of file descriptors; retrying with backoff"
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = out.closed() => return backoff,
                }
            }
            // A peer that reset before we accepted it, and the like: the
            // next accept is unaffected.
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Delays between accepts while descriptors are exhausted: 10 ms doubling
/// to 1 s, reset by the next successful accept. An episode is one run of
/// failures; it is logged once.
#[derive(Debug, Default)]
pub struct Backoff {
    next: Option<Duration>,
    episodes: u64,
    failures: u64,
}

impl Backoff {
    /// The delay before the next accept, and whether this failure starts
    /// an episode.
    fn failed(&mut self) -> (Duration, bool) {
        self.failures += 1;
        match self.next {
            None => {
                self.episodes += 1;
                self.next = Some((FIRST_DELAY * 2).min(MAX_DELAY));
                (FIRST_DELAY, true)
            }
            Some(delay) => {
                self.next = Some((delay * 2).min(MAX_DELAY));
                (delay, false)
            }
        }
    }

    /// Whether this success ends an episode.
    fn succeeded(&mut self) -> bool {
        self.next.take().is_some()
    }

    pub fn episodes(&self) -> u64 {
        self.episodes
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Plays a script of accept results, then never accepts again.
    struct Script(VecDeque<io::Result<u32>>);

    impl Accept for Script {
        type Conn = u32;

        async fn accept(&mut self) -> io::Result<u32> {
            match self.0.pop_front() {
                Some(result) => result,
                None => std::future::pending().await,
            }
        }
    }

    fn emfile() -> io::Result<u32> {
        Err(io::Error::from_raw_os_error(libc::EMFILE))
    }

    #[test]
    fn delays_double_up_to_one_second_and_reset_on_success() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..10)
            .map(|_| backoff.failed().0.as_millis() as u64)
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert!(backoff.succeeded());
        assert!(
            !backoff.succeeded(),
            "a success outside an episode ends none"
        );
        assert_eq!(backoff.failed(), (FIRST_DELAY, true));
        assert_eq!(backoff.episodes(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_sleeps_through_descriptor_exhaustion_and_counts_one_episode_per_run() {
        let script = Script(VecDeque::from([
            emfile(),
            emfile(),
            Err(io::Error::from_raw_os_error(libc::ENFILE)),
            emfile(),
            Ok(1),
            // Not a descriptor problem: retried at once, no backoff.
            Err(io::Error::from_raw_os_error(libc::ECONNABORTED)),
            Ok(2),
            emfile(),
            Ok(3),
        ]));
        let (tx, mut rx) = mpsc::channel(8);
        let permits = Arc::new(Semaphore::new(8));
        let began = tokio::time::Instant::now();
        let running = tokio::spawn(accept_loop(script, permits, tx, Backoff::default()));

        let mut accepted = Vec::new();
        for _ in 0..3 {
            let (conn, _permit) = rx.recv().await.expect("accepted");
            accepted.push((conn, began.elapsed().as_millis()));
        }
        // 10 + 20 + 40 + 80 ms before the first; the episode after it
        // starts again at 10 ms.
        assert_eq!(accepted, [(1, 150), (2, 150), (3, 160)]);
        drop(rx);
        let backoff = running.await.expect("loop ends when nobody listens");
        assert_eq!(backoff.episodes(), 2);
        assert_eq!(backoff.failures(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn no_accept_happens_while_every_permit_is_held() {
        let script = Script(VecDeque::from([Ok(1), Ok(2)]));
        let (tx, mut rx) = mpsc::channel(8);
        let permits = Arc::new(Semaphore::new(1));
        tokio::spawn(accept_loop(
            script,
            Arc::clone(&permits),
            tx,
            Backoff::default(),
        ));
        let (first, permit) = rx.recv().await.expect("first");
        assert_eq!(first, 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rx.try_recv().is_err(), "the second waits for a permit");
        drop(permit);
        let (second, _permit) = rx.recv().await.expect("second after a close");
        assert_eq!(second, 2);
    }
}
