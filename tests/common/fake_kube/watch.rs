//! The fake's WATCH: `GET …?watch=true&resourceVersion=N` streams, as JSON
//! lines, every `ADDED`/`MODIFIED`/`DELETED` event after version `N` of the
//! resource (in one namespace or all, filtered by label selector), then
//! each new one as it happens, until `timeoutSeconds` ends it.
//!
//! Faults a real cluster has: a watch cut after N events or after a time
//! (a connection reset: the body ends with an error), and an expired
//! version (410 Gone), as an `ERROR` event or as the HTTP status.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::{Body, State, Target, matches_selector, query_param, respond, status_body};

/// How an expired version reaches a watcher ([`super::FakeKube::expire_versions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// An `ERROR` event carrying a 410 Status, and the watch ends (what an
    /// API server sends a watcher that fell behind its window); a watch
    /// from an older version gets the same event at once.
    Event,
    /// Open watches are cut, and a watch from an older version is answered
    /// with HTTP 410.
    Status,
}

#[derive(Default)]
pub(super) struct WatchFaults {
    pub(super) drop_after_events: Option<u32>,
    pub(super) drop_after: Option<Duration>,
    /// One entry per expiry, in order: a watch acts on those made while it
    /// is open; the last says how a too-old version is answered.
    pub(super) expired: Vec<Gone>,
}

/// Which events one watch sends.
struct Filter {
    resource: String,
    namespace: Option<String>,
    selector: String,
}

impl Filter {
    fn matches(&self, (resource, namespace, _): &super::Key, object: &Value) -> bool {
        *resource == self.resource
            && self.namespace.as_ref().is_none_or(|ns| ns == namespace)
            && matches_selector(object, &self.selector)
    }
}

type Frames = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

pub(super) fn serve_watch(
    state: &mut State,
    shared: &Arc<Mutex<State>>,
    target: &Target,
    query: &str,
) -> (u16, Response<Body>) {
    // No version (or "0"): from now.
    let from = query_param(query, "resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(state.next_version);
    let too_old = from < state.compacted;
    let gone_as = state
        .watch_faults
        .expired
        .last()
        .copied()
        .unwrap_or(Gone::Event);
    if too_old && gone_as == Gone::Status {
        return (410, respond(410, expired_status(from)));
    }
    let timeout = query_param(query, "timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let (frames, body) = mpsc::channel(64);
    let watch = Watch {
        filter: Filter {
            resource: target.resource.clone(),
            namespace: target.namespace.clone(),
            selector: query_param(query, "labelSelector").unwrap_or_default(),
        },
        from,
        end_at: Instant::now() + timeout,
        cut_at: state
            .watch_faults
            .drop_after
            .map(|after| Instant::now() + after),
        cut_after_events: state.watch_faults.drop_after_events,
        expired_seen: state.watch_faults.expired.len(),
    };
    if too_old {
        let line = json!({ "type": "ERROR", "object": expired_status(from) });
        let _ = frames.try_send(Ok(line_frame(&line)));
    } else {
        let changes = state.changed.subscribe();
        tokio::spawn(watch.stream(shared.clone(), changes, frames));
    }
    let response = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(ReceiverStream::new(body)).boxed())
        .unwrap_or_default();
    (200, response)
}

fn expired_status(from: u64) -> Value {
    status_body(410, "Expired", &format!("too old resource version: {from}"))
}

fn line_frame(value: &Value) -> Frame<Bytes> {
    Frame::data(Bytes::from(format!("{value}\n")))
}

/// A connection reset, as the client sees it: the body ends in an error.
/// hyper drops what it has not written yet when a body fails, so the
/// events already sent are given time to leave first: a reset loses no
/// event the server had sent, as with TCP. (Were one lost anyway, the
/// client would get it again on resuming.)
async fn cut(frames: &Frames) {
    for _ in 0..1000 {
        if frames.capacity() == frames.max_capacity() {
            break;
        }
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let _ = frames
        .send(Err(std::io::Error::other("watch cut by the test")))
        .await;
}

struct Watch {
    filter: Filter,
    /// The last version this watch has considered.
    from: u64,
    /// `timeoutSeconds`: a clean end.
    end_at: Instant,
    cut_at: Option<Instant>,
    cut_after_events: Option<u32>,
    expired_seen: usize,
}

impl Watch {
    async fn stream(
        mut self,
        shared: Arc<Mutex<State>>,
        mut changes: tokio::sync::watch::Receiver<u64>,
        frames: Frames,
    ) {
        let mut sent = 0_u32;
        loop {
            changes.borrow_and_update();
            let (lines, expired) = {
                let Ok(state) = shared.lock() else {
                    return;
                };
                let expired = state.watch_faults.expired.get(self.expired_seen).copied();
                let lines: Vec<Value> = state
                    .history
                    .iter()
                    .filter(|e| e.version > self.from && self.filter.matches(&e.key, &e.object))
                    .map(|e| json!({ "type": e.kind, "object": e.object }))
                    .collect();
                self.from = state.next_version;
                (lines, expired)
            };
            match expired {
                Some(Gone::Event) => {
                    let line = json!({ "type": "ERROR", "object": expired_status(self.from) });
                    let _ = frames.send(Ok(line_frame(&line))).await;
                    return;
                }
                Some(Gone::Status) => {
                    cut(&frames).await;
                    return;
                }
                None => {}
            }
            for line in &lines {
                if frames.send(Ok(line_frame(line))).await.is_err() {
                    return;
                }
                sent += 1;
                if self.cut_after_events.is_some_and(|n| sent >= n) {
                    cut(&frames).await;
                    return;
                }
            }
            let cut_first = self.cut_at.filter(|cut_at| *cut_at < self.end_at);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(cut_first.unwrap_or(self.end_at)) => {
                    if cut_first.is_some() {
                        cut(&frames).await;
                    }
                    // Dropping `frames` ends the body cleanly.
                    return;
                }
                () = frames.closed() => return,
            }
        }
    }
}
