//! `WatchDeployment`: a snapshot first, then the step and status changes
//! found by comparing each published snapshot with the previous one, until
//! the deployment is terminal. Snapshots are published only after the commit
//! that holds them, so a watcher never sees a change that could be lost.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::api::{Context, convert};
use crate::error::Error;
use crate::model::{Deployment, DeploymentId};
use crate::pb;
use crate::pb::watch_deployment_response::Event;

type Item = Result<pb::WatchDeploymentResponse, Status>;

pub fn stream(context: Context, id: DeploymentId) -> Result<impl Stream<Item = Item>, Error> {
    // Subscribe before reading, so nothing committed in between is missed.
    let mut updates = context.deps.events.subscribe(&id);
    let current = match context.deps.store.deployment(&id) {
        Ok(Some(deployment)) => deployment,
        Ok(None) => {
            drop(updates);
            context.deps.events.release(&id);
            return Err(Error::not_found(format!("deployment {id} not found")));
        }
        Err(e) => {
            drop(updates);
            context.deps.events.release(&id);
            return Err(e);
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(16);
    let mut shutdown = context.shutdown.clone();
    tokio::spawn(async move {
        let hostnames = context
            .project(&current.project_id)
            .and_then(|project| context.hostnames(&project, &current))
            .unwrap_or_default();
        let snapshot = Event::Snapshot(convert::deployment(&current, hostnames));
        let mut last = Arc::new(current);
        if send(&tx, snapshot).await.is_err() {
            return release(&context, &id, updates);
        }
        while !last.status.is_terminal() {
            let next = tokio::select! {
                next = updates.recv() => next,
                _ = shutdown.changed() => break,
                _ = tx.closed() => break,
            };
            let next = match next {
                Ok(next) => next,
                // Fell behind: the store has the newest state.
                Err(RecvError::Lagged(_)) => match context.deps.store.deployment(&id) {
                    Ok(Some(d)) => Arc::new(d),
                    _ => break,
                },
                Err(RecvError::Closed) => match context.deps.store.deployment(&id) {
                    Ok(Some(d)) if d.status.is_terminal() => Arc::new(d),
                    _ => break,
                },
            };
            for event in changes(&last, &next) {
                if send(&tx, event).await.is_err() {
                    return release(&context, &id, updates);
                }
            }
            last = next;
        }
        release(&context, &id, updates);
    });
    Ok(ReceiverStream::new(rx))
}

fn release(
    context: &Context,
    id: &DeploymentId,
    updates: tokio::sync::broadcast::Receiver<Arc<Deployment>>,
) {
    drop(updates);
    context.deps.events.release(id);
}

async fn send(tx: &tokio::sync::mpsc::Sender<Item>, event: Event) -> Result<(), ()> {
    tx.send(Ok(pb::WatchDeploymentResponse { event: Some(event) }))
        .await
        .map_err(|_| ())
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
