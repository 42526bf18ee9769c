//! One accepted TCP connection as tonic sees it: the socket, its place
//! under `max_connections`, and the rule that closes it. hyper's HTTP/2
//! server has no handshake or idle timeout of its own, and during a
//! graceful shutdown it waits forever for a peer that never spoke, so the
//! rule lives here, below hyper: once it fires, every read and write fails
//! and hyper drops the connection (and the services it holds).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::transport::Transport;
use super::trim::Gauge;
use super::{Phase, Timeouts};

/// The client's connection preface: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
const PREFACE_LEN: usize = 24;

pub struct Connection {
    stream: Transport,
    info: ConnInfo,
    close: Pin<Box<dyn Future<Output = Closed> + Send>>,
    closed: Option<Closed>,
    preface_left: usize,
    /// Released when hyper drops the connection: the next client in the
    /// accept queue gets its turn.
    _permit: OwnedSemaphorePermit,
}

/// What handlers can reach of their connection (tonic puts it in every
/// request's extensions).
#[derive(Clone)]
pub struct ConnInfo(Arc<State>);

struct State {
    /// Open streams, and since when there have been none.
    streams: Mutex<(usize, Instant)>,
    /// Open streams of every connection.
    all_streams: Arc<Gauge>,
    preface_done: AtomicBool,
    stalled: AtomicBool,
    changed: Notify,
}

#[derive(Clone, Copy, Debug)]
enum Closed {
    Handshake,
    Idle,
    StalledWatch,
    Shutdown,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Closed::Handshake => "no HTTP/2 preface within the handshake timeout",
            Closed::Idle => "no open stream within the idle timeout",
            Closed::StalledWatch => "a watch stream's client stopped reading",
            Closed::Shutdown => "the daemon is shutting down",
        })
    }
}

impl Connection {
    pub(super) fn new(
        stream: Transport,
        permit: OwnedSemaphorePermit,
        phase: watch::Receiver<Phase>,
        timeouts: Timeouts,
        all_streams: Arc<Gauge>,
    ) -> Self {
        let state = Arc::new(State {
            streams: Mutex::new((0, Instant::now())),
            all_streams,
            preface_done: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            changed: Notify::new(),
        });
        Self {
            stream,
            close: Box::pin(until_closed(Arc::clone(&state), phase, timeouts)),
            info: ConnInfo(state),
            closed: None,
            preface_left: PREFACE_LEN,
            _permit: permit,
        }
    }

    /// Fails once the close rule has fired; polling it registers this
    /// task to be woken when it does.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closed.is_none()
            && let Poll::Ready(why) = self.close.as_mut().poll(cx)
        {
            tracing::debug!(reason = %why, "closing a connection");
            self.closed = Some(why);
        }
        match self.closed {
            Some(why) => Err(io::Error::new(io::ErrorKind::TimedOut, why.to_string())),
            None => Ok(()),
        }
    }
}

async fn until_closed(
    state: Arc<State>,
    mut phase: watch::Receiver<Phase>,
    timeouts: Timeouts,
) -> Closed {
    let handshake_by = Instant::now() + timeouts.handshake;
    loop {
        let notified = state.changed.notified();
        if state.stalled.load(Ordering::Acquire) {
            return Closed::StalledWatch;
        }
        let spoke = state.preface_done.load(Ordering::Acquire);
        match *phase.borrow_and_update() {
            Phase::Cut => return Closed::Shutdown,
            Phase::Draining if !spoke => return Closed::Shutdown,
            Phase::Serving | Phase::Draining => {}
        }
        let now = Instant::now();
        if !spoke && now >= handshake_by {
            return Closed::Handshake;
        }
        let idle_by = state.idle_since().map(|since| since + timeouts.idle);
        if idle_by.is_some_and(|by| now >= by) {
            return Closed::Idle;
        }
        let next = [(!spoke).then_some(handshake_by), idle_by]
            .into_iter()
            .flatten()
            .min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = notified => {}
            changed = phase.changed() => {
                if changed.is_err() {
                    return Closed::Shutdown;
                }
            }
        }
    }
}

impl State {
    fn idle_since(&self) -> Option<Instant> {
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        (streams.0 == 0).then_some(streams.1)
    }
}

impl ConnInfo {
    /// Counts a stream as open until the guard drops (when hyper drops the
    /// response body: the stream has ended).
    pub fn stream_opened(&self) -> StreamGuard {
        let mut streams = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.0 += 1;
        self.0.all_streams.opened();
        StreamGuard(Arc::clone(&self.0))
    }

    /// Closes the connection: a stream on it is stuck behind HTTP/2 flow
    /// control because its client stopped reading, and hyper gives the
    /// server no way to reset that one stream (it waits for window forever).
    pub fn close_stalled(&self) {
        self.0.stalled.store(true, Ordering::Release);
        self.0.changed.notify_one();
    }
}

pub struct StreamGuard(Arc<State>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.0 = streams.0.saturating_sub(1);
        self.0.all_streams.closed();
        if streams.0 == 0 {
            streams.1 = Instant::now();
            drop(streams);
            self.0.changed.notify_one();
        }
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.preface_left > 0 {
            let got = buf.filled().len().saturating_sub(before);
            this.preface_left = this.preface_left.saturating_sub(got);
            if this.preface_left == 0 {
                this.info.0.preface_done.store(true, Ordering::Release);
                this.info.0.changed.notify_one();
            }
        }
        read
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
