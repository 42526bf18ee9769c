//! Every redb table. Values are records encoded by [`super::codec`]; keys
//! that start with a project id keep a project's rows together so one range
//! scan loads them.

use redb::TableDefinition;

/// `"schema_version"` -> little-endian u32; `"reserved_apex"` -> the apex
/// domain under which every project's fixed hostnames were last reserved.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const RESERVED_APEX_KEY: &str = "reserved_apex";
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
/// (project id, environment, sequence) -> deployment id: the listing of one
/// environment, written once when the deployment is created.
pub const DEPLOYMENTS_BY_ENVIRONMENT: TableDefinition<(&str, &str, u64), &str> =
    TableDefinition::new("deployments_by_environment");
/// (project id, terminal status code, sequence) -> (deployment id,
/// environment): the listing of `READY` or `FAILED` deployments, written
/// once when a deployment ends. Unfinished ones are found through
/// [`IN_FLIGHT`].
pub const DEPLOYMENTS_BY_STATUS: TableDefinition<(&str, u8, u64), (&str, &str)> =
    TableDefinition::new("deployments_by_status");
/// Deployment id -> intent number: deployments whose workloads the drivers
/// may still hold (running, or a scale-down not yet confirmed). Start-up
/// re-applies the stored desired state of each; a confirmed scale-down
/// removes its row (only if no newer intent replaced it).
pub const WORKLOADS: TableDefinition<&str, u64> = TableDefinition::new("workloads");
/// (project id, deployment id) for every deployment not yet READY or FAILED:
/// what recovery resumes.
pub const IN_FLIGHT: TableDefinition<(&str, &str), ()> = TableDefinition::new("in_flight");
/// Hostname -> `Route`. A hostname belongs to one project.
pub const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
/// (project id, hostname): a project's routes (schema 1 only; schema 2
/// replaced it with [`PROJECT_ROUTE_KINDS`]).
pub const PROJECT_ROUTES_V1: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("project_routes");
/// (project id, route kind code, hostname): a project's routes by kind, so
/// a page of one kind (and the fixed routes an actor loads) costs the same
/// however many routes of other kinds the project has.
pub const PROJECT_ROUTE_KINDS: TableDefinition<(&str, u8, &str), ()> =
    TableDefinition::new("project_route_kinds");
/// Hostname -> (project id, route kind code): a project's fixed names
/// (`LIVE`, one `ENVIRONMENT` per environment), reserved when it is created
/// so no other project's name can take them first.
pub const RESERVED_HOSTNAMES: TableDefinition<&str, (&str, u8)> =
    TableDefinition::new("reserved_hostnames");
/// Custom domain -> project id (claimed before any route exists).
pub const DOMAINS: TableDefinition<&str, &str> = TableDefinition::new("domains");
/// (project id, deployment id) -> `ScheduledChange`: one per deployment.
pub const SCHEDULES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("schedules");
/// (project id, idempotency key) -> `IdempotencyRecord`.
pub const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");
/// (expires at, project id, key): the expiry order of idempotency keys.
pub const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// Token id -> `TokenRecord` (the SHA-256 of the secret, never the secret;
/// revoked tokens stay, with `revoked_at`, so the audit log can name them).
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// `META` key: a bootstrap admin token was generated (and printed) once.
pub const BOOTSTRAP_ISSUED_KEY: &str = "bootstrap_token_issued";
/// (at, event id) -> `AuditEvent`, oldest first: pruning by age is a range
/// from the start.
pub const AUDIT: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("audit");
/// (workspace id, at, event id): one workspace's events.
pub const AUDIT_BY_WORKSPACE: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("audit_by_workspace");
/// (project id, at, event id): one project's events.
pub const AUDIT_BY_PROJECT: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("audit_by_project");
