//! `WatchDeployment`: a snapshot first, then the step and status changes
//! found by comparing each published snapshot with the previous one (and
//! build output lines as they come), until the deployment is terminal. Snapshots are published only after the commit
//! that holds them, so a watcher never sees a change that could be lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::{self, error::SendTimeoutError};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::actors::{Subscription, Update};
use crate::api::listener::ConnInfo;
use crate::api::{Context, convert};
use crate::error::Error;
use crate::model::{Deployment, DeploymentId};
use crate::pb;
use crate::pb::watch_deployment_response::Event;

type Item = Result<pb::WatchDeploymentResponse, Status>;

/// Events waiting for the client, per stream. hyper takes the next one
/// only when HTTP/2 flow control lets it send, so a client that stops
/// reading fills this and the watch's send times out; keeping it at one
/// keeps each of thousands of streams small.
const BUFFERED: usize = 1;

/// How a watch ended.
enum End {
    /// The deployment is terminal, or it is gone from the store.
    Done,
    /// The client went away.
    ClientGone,
    Shutdown,
    /// The client did not take the next event within the send timeout.
    Stalled,
}

pub fn stream(
    context: Context,
    id: DeploymentId,
    connection: Option<ConnInfo>,
) -> Result<impl Stream<Item = Item>, Error> {
    // Subscribe before reading, so nothing committed in between is missed.
    let subscription = context.deps.events.subscribe(&id)?;
    let current = context
        .deps
        .store
        .deployment(&id)?
        .ok_or_else(|| Error::not_found(format!("deployment {id} not found")))?;
    let (tx, rx) = mpsc::channel::<Item>(BUFFERED);
    let send_timeout = context.deps.config.watch_send_timeout();
    tokio::spawn(async move {
        let sender = Sender {
            tx: &tx,
            timeout: send_timeout,
        };
        match follow(&context, &id, current, subscription, &sender).await {
            End::Done | End::ClientGone => {}
            End::Shutdown => {
                // The client learns the stream was cut, not finished, and
                // retries against the next daemon.
                let _ = tx
                    .send_timeout(
                        Err(Status::unavailable("the daemon is shutting down")),
                        send_timeout,
                    )
                    .await;
            }
            End::Stalled => {
                tracing::info!(
                    deployment = %id,
                    "a watch client stopped reading; closing its connection"
                );
                if let Some(connection) = connection {
                    connection.close_stalled();
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Sends the snapshot, then every change until the watch ends. The
/// subscription is dropped on return, whatever the reason.
async fn follow(
    context: &Context,
    id: &DeploymentId,
    current: Deployment,
    mut subscription: Subscription,
    sender: &Sender<'_>,
) -> End {
    let mut shutdown = context.shutdown.clone();
    let hostnames = context
        .project(&current.project_id)
        .and_then(|project| context.hostnames(&project, &current))
        .unwrap_or_default();
    let snapshot = Event::Snapshot(convert::deployment(&current, hostnames));
    let mut last = Arc::new(current);
    if let Err(end) = sender.send(snapshot).await {
        return end;
    }
    if *shutdown.borrow_and_update() {
        return End::Shutdown;
    }
    while !last.status.is_terminal() {
        let next = tokio::select! {
            next = subscription.updates.recv() => next,
            _ = shutdown.changed() => return End::Shutdown,
            () = sender.tx.closed() => return End::ClientGone,
        };
        let next = match next {
            Ok(Update::Stored(next)) => next,
            Ok(Update::BuildLine(line)) => {
                let event = Event::BuildLog(pb::BuildLogEvent {
                    deployment_id: id.to_string(),
                    line: line.to_string(),
                });
                if let Err(end) = sender.send(event).await {
                    return end;
                }
                continue;
            }
            // Fell behind: the store has the newest state.
            Err(RecvError::Lagged(_)) => match context.deps.store.deployment(id) {
                Ok(Some(d)) => Arc::new(d),
                _ => return End::Done,
            },
            Err(RecvError::Closed) => match context.deps.store.deployment(id) {
                Ok(Some(d)) if d.status.is_terminal() => Arc::new(d),
                _ => return End::Done,
            },
        };
        for event in changes(&last, &next) {
            if let Err(end) = sender.send(event).await {
                return end;
            }
        }
        last = next;
    }
    End::Done
}

struct Sender<'a> {
    tx: &'a mpsc::Sender<Item>,
    timeout: Duration,
}

impl Sender<'_> {
    async fn send(&self, event: Event) -> Result<(), End> {
        let item = Ok(pb::WatchDeploymentResponse { event: Some(event) });
        self.tx
            .send_timeout(item, self.timeout)
            .await
            .map_err(|e| match e {
                SendTimeoutError::Timeout(_) => End::Stalled,
                SendTimeoutError::Closed(_) => End::ClientGone,
            })
    }
}

/// Step events for every new or changed step, then a status event if the
/// status changed.
fn changes(before: &Deployment, after: &Deployment) -> Vec<Event> {
    let mut events: Vec<Event> = after
        .steps
        .iter()
        .enumerate()
        .filter(|(i, step)| before.steps.get(*i) != Some(step))
        .map(|(_, step)| {
            Event::Step(pb::StepEvent {
                deployment_id: after.id.to_string(),
                step: Some(convert::step(step)),
            })
        })
        .collect();
    if before.status != after.status {
        events.push(Event::Status(pb::StatusEvent {
            deployment_id: after.id.to_string(),
            status: convert::status(after.status) as i32,
            error_message: after.error_message.clone().unwrap_or_default(),
        }));
    }
    events
}
