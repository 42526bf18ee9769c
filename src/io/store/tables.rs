//! Every redb table. Values are records encoded by [`super::codec`]; keys
//! that start with a project id keep a project's rows together so one range
//! scan loads them.

use redb::TableDefinition;

/// `"schema_version"` -> little-endian u32.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Workspace id -> `Workspace`.
pub const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspaces");
/// Workspace slug -> workspace id (slugs are unique).
pub const WORKSPACE_SLUGS: TableDefinition<&str, &str> = TableDefinition::new("workspace_slugs");
/// Project id -> `Project` (live pointer, rolled-back flag, environments).
pub const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
/// (workspace id, project slug) -> project id.
pub const PROJECT_SLUGS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("project_slugs");
/// Deployment id -> `Deployment`.
pub const DEPLOYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deployments");
/// (project id, sequence) -> deployment id: listing in creation order.
pub const PROJECT_DEPLOYMENTS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("project_deployments");
/// (project id, deployment id) for every deployment not yet READY or FAILED:
/// what recovery resumes.
pub const IN_FLIGHT: TableDefinition<(&str, &str), ()> = TableDefinition::new("in_flight");
/// Hostname -> `Route`. A hostname belongs to one project.
pub const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
/// (project id, hostname): a project's routes.
pub const PROJECT_ROUTES: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("project_routes");
/// Custom domain -> project id (claimed before any route exists).
pub const DOMAINS: TableDefinition<&str, &str> = TableDefinition::new("domains");
/// (project id, deployment id) -> `ScheduledChange`: one per deployment.
pub const SCHEDULES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("schedules");
/// (project id, idempotency key) -> `IdempotencyRecord`.
pub const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");
/// (expires at, project id, key): the expiry order of idempotency keys.
pub const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("idempotency_expiry");
