//! Migration of schema 1 files, run once by `init_schema` inside the
//! transaction that sets schema 2, so a crash leaves either the old file or
//! the migrated one. Records themselves are upgraded as they are read
//! (`codec`); this builds the indexes schema 2 added from them:
//!
//! - `project_route_kinds` from every route (replaces `project_routes`);
//! - `deployments_by_environment` and `deployments_by_status` from every
//!   deployment;
//! - `workloads` for every deployment that runs somewhere, so the first
//!   start re-applies them to the drivers.
//!
//! It costs one pass over routes and deployments (about a second per
//! 100,000 deployments on the development machine), once.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::error::Error;
use crate::io::store::codec::decode;
use crate::io::store::state::storage;
use crate::io::store::tables::*;
use crate::model::{Deployment, Route};

pub(crate) fn from_v1(txn: &WriteTransaction) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let routes = txn.open_table(ROUTES).map_err(storage)?;
    let mut by_kind = txn.open_table(PROJECT_ROUTE_KINDS).map_err(storage)?;
    for entry in routes.iter().map_err(storage)? {
        let (_, bytes) = entry.map_err(storage)?;
        let route: Route = decode(bytes.value())?;
        by_kind
            .insert(
                (
                    route.project_id.as_str(),
                    route.kind.code(),
                    route.fqdn.as_str(),
                ),
                (),
            )
            .map_err(storage)?;
    }
    let route_count = routes.len().map_err(storage)?;
    drop(routes);
    drop(by_kind);
    txn.delete_table(PROJECT_ROUTES_V1).map_err(storage)?;

    let deployments = txn.open_table(DEPLOYMENTS).map_err(storage)?;
    let mut by_environment = txn
        .open_table(DEPLOYMENTS_BY_ENVIRONMENT)
        .map_err(storage)?;
    let mut by_status = txn.open_table(DEPLOYMENTS_BY_STATUS).map_err(storage)?;
    let mut workloads = txn.open_table(WORKLOADS).map_err(storage)?;
    for entry in deployments.iter().map_err(storage)? {
        let (_, bytes) = entry.map_err(storage)?;
        let d: Deployment = decode(bytes.value())?;
        let (project, id) = (d.project_id.as_str(), d.id.as_str());
        by_environment
            .insert((project, d.environment.as_str(), d.sequence), id)
            .map_err(storage)?;
        if d.status.is_terminal() {
            by_status
                .insert(
                    (project, d.status.code(), d.sequence),
                    (id, d.environment.as_str()),
                )
                .map_err(storage)?;
        }
        if d.runs_anywhere() {
            workloads.insert(id, 0).map_err(storage)?;
        }
    }
    tracing::info!(
        routes = route_count,
        deployments = deployments.len().map_err(storage)?,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "migrated the data file from schema 1 to 2"
    );
    Ok(())
}
