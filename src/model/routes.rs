//! Frontline routes and the decisions that move them. These functions are
//! pure: the project actor applies their result in one store transaction.
//!
//! **Invariant (sticky routes only move forward):** a deploy never takes a
//! `BRANCH`, `ENVIRONMENT`, `COMMIT` or `LIVE` route, nor the live pointer,
//! from a deployment with a higher sequence number ([`plan_deploy`]).
//! Rollback and promote ([`plan_switch`]) are explicit intent and exempt.

use serde::{Deserialize, Serialize};

use crate::model::names::Hostnames;
use crate::model::{Deployment, DeploymentId, Project, ProjectId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RouteKind {
    Commit,
    Branch,
    Environment,
    Live,
    Deployment,
}

impl RouteKind {
    pub const ALL: [RouteKind; 5] = [
        Self::Commit,
        Self::Branch,
        Self::Environment,
        Self::Live,
        Self::Deployment,
    ];

    /// The name users see (`BRANCH`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "COMMIT",
            Self::Branch => "BRANCH",
            Self::Environment => "ENVIRONMENT",
            Self::Live => "LIVE",
            Self::Deployment => "DEPLOYMENT",
        }
    }

    /// A stable one-byte code, used in index keys on disk.
    pub fn code(self) -> u8 {
        match self {
            Self::Commit => 1,
            Self::Branch => 2,
            Self::Environment => 3,
            Self::Live => 4,
            Self::Deployment => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// `BRANCH`, `ENVIRONMENT` and `LIVE` only move forward and only ever
    /// point at `READY` deployments (invariant 1).
    pub fn is_sticky(self) -> bool {
        matches!(self, Self::Branch | Self::Environment | Self::Live)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub fqdn: String,
    pub project_id: ProjectId,
    pub environment: String,
    pub kind: RouteKind,
    pub deployment_id: DeploymentId,
    /// Sequence of `deployment_id`, so the forward-only rule needs no read.
    pub deployment_sequence: u64,
}

/// Who holds a hostname now, as far as route decisions care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A route exists at the name.
    Route(Route),
    /// Reserved for a project's fixed name, or claimed as its custom
    /// domain, without a route yet.
    Claim {
        project_id: ProjectId,
        kind: RouteKind,
    },
}

impl Holder {
    pub fn project_id(&self) -> &ProjectId {
        match self {
            Holder::Route(route) => &route.project_id,
            Holder::Claim { project_id, .. } => project_id,
        }
    }

    pub fn kind(&self) -> RouteKind {
        match self {
            Holder::Route(route) => route.kind,
            Holder::Claim { kind, .. } => *kind,
        }
    }

    fn is(&self, project: &ProjectId, kind: RouteKind) -> bool {
        self.project_id() == project && self.kind() == kind
    }
}

/// What a deployment that just became ready takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployPlan {
    /// Routes to create or reassign, all pointing at the deployment.
    pub routes: Vec<Route>,
    /// Whether `live_deployment_id` moves to the deployment.
    pub takes_live: bool,
    /// The per-push names the deployment was given (stored with it).
    pub hostnames: Vec<String>,
    /// Deployments a `BRANCH` or `ENVIRONMENT` route moves away from.
    pub displaced: Vec<DeploymentId>,
    /// Names the deployment should have had but that another project or
    /// kind holds, in words for the step's detail. Never silently dropped.
    pub refused: Vec<String>,
}

/// Decides which routes a `READY` deployment takes. `holder` tells who
/// holds a hostname now (this actor's unsettled writes first, then the
/// store); the rolled-back flag is read from `project` now, at switch time,
/// not when the deploy started.
pub fn plan_deploy(
    deployment: &Deployment,
    project: &Project,
    names: Hostnames<'_>,
    holder: impl Fn(&str) -> Option<Holder>,
) -> DeployPlan {
    let is_production = project
        .environment(&deployment.environment)
        .is_some_and(|e| e.is_production());
    let takes_live = is_production
        && !project.is_rolled_back
        && project
            .live
            .as_ref()
            .is_none_or(|live| live.sequence <= deployment.sequence);

    let mut plan = DeployPlan {
        routes: Vec::new(),
        takes_live,
        hostnames: Vec::new(),
        displaced: Vec::new(),
        refused: Vec::new(),
    };
    let mut per_push = vec![(RouteKind::Deployment, deployment.id.short().to_string())];
    if let Some(sha) = deployment.commit_sha() {
        per_push.push((RouteKind::Commit, sha.to_string()));
    }
    if !deployment.branch.is_empty() {
        per_push.push((RouteKind::Branch, deployment.branch.clone()));
    }
    for (kind, part) in per_push {
        let candidates = names.per_push(kind, &part, &project.id);
        let chosen = candidates.iter().find_map(|name| match holder(name) {
            None => Some((name.clone(), None)),
            Some(h) if h.is(&project.id, kind) => Some((name.clone(), Some(h))),
            Some(_) => None,
        });
        match chosen {
            Some((fqdn, current)) => {
                plan.hostnames.push(fqdn.clone());
                plan.take(deployment, fqdn, kind, current);
            }
            None => plan.refused.push(format!(
                "no {} hostname: {} and its alternatives belong to other projects",
                kind.as_str(),
                candidates.first().map(String::as_str).unwrap_or("")
            )),
        }
    }
    let mut fixed = vec![(
        names.environment(&deployment.environment),
        RouteKind::Environment,
    )];
    if takes_live {
        fixed.push((names.live(), RouteKind::Live));
        for domain in &project.custom_domains {
            fixed.push((domain.clone(), RouteKind::Live));
        }
    }
    for (fqdn, kind) in fixed {
        match holder(&fqdn) {
            None => plan.take(deployment, fqdn, kind, None),
            Some(h) if h.is(&project.id, kind) => plan.take(deployment, fqdn, kind, Some(h)),
            Some(_) => plan.refused.push(format!(
                "no {} route: {fqdn} belongs to another project",
                kind.as_str()
            )),
        }
    }
    plan
}

impl DeployPlan {
    /// Takes `fqdn` unless a newer deployment holds it (sticky routes only
    /// move forward; `LIVE` follows `takes_live`, decided above).
    fn take(
        &mut self,
        deployment: &Deployment,
        fqdn: String,
        kind: RouteKind,
        current: Option<Holder>,
    ) {
        if let Some(Holder::Route(existing)) = &current {
            if existing.deployment_id == deployment.id {
                return;
            }
            if kind != RouteKind::Live && existing.deployment_sequence > deployment.sequence {
                return;
            }
            if matches!(kind, RouteKind::Branch | RouteKind::Environment) {
                self.displaced.push(existing.deployment_id.clone());
            }
        }
        self.routes.push(Route {
            fqdn,
            project_id: deployment.project_id.clone(),
            environment: deployment.environment.clone(),
            kind,
            deployment_id: deployment.id.clone(),
            deployment_sequence: deployment.sequence,
        });
    }
}

/// A project's fixed hostnames, reserved when it is created: its `LIVE`
/// name and one `ENVIRONMENT` name per environment.
pub fn fixed_hostnames(project: &Project, names: Hostnames<'_>) -> Vec<(String, RouteKind)> {
    let mut fixed = vec![(names.live(), RouteKind::Live)];
    for environment in &project.environments {
        fixed.push((names.environment(&environment.slug), RouteKind::Environment));
    }
    fixed
}

/// The sticky hostnames `deployment` can hold: its `BRANCH` name and its
/// environment's `ENVIRONMENT` name.
pub fn sticky_hostnames(deployment: &Deployment, names: Hostnames<'_>) -> Vec<String> {
    let mut hostnames = vec![names.environment(&deployment.environment)];
    if !deployment.branch.is_empty() {
        let branch_names = names.per_push(
            RouteKind::Branch,
            &deployment.branch,
            &deployment.project_id,
        );
        hostnames.extend(
            deployment
                .hostnames
                .iter()
                .filter(|h| branch_names.contains(h))
                .cloned(),
        );
    }
    hostnames
}

/// Every hostname that can point at `deployment`: the per-push ones it was
/// given, its environment's name, the project's `LIVE` names and custom
/// domains. Which of them do right now is up to the stored routes.
pub fn candidate_hostnames(
    deployment: &Deployment,
    project: &Project,
    names: Hostnames<'_>,
) -> Vec<String> {
    let mut hostnames = vec![names.environment(&deployment.environment), names.live()];
    if deployment.hostnames.is_empty() {
        // Written before hostnames were stored with the deployment: those
        // always used the plain names.
        hostnames.push(names.deployment(&deployment.id));
        if let Some(sha) = deployment.commit_sha() {
            hostnames.push(names.commit(sha));
        }
        if !deployment.branch.is_empty() {
            hostnames.push(names.branch(&deployment.branch));
        }
    } else {
        hostnames.extend(deployment.hostnames.iter().cloned());
    }
    hostnames.extend(project.custom_domains.iter().cloned());
    hostnames
}

/// The routes a rollback or promote moves to `target`: every `LIVE` and
/// `ENVIRONMENT` route of the target's environment. Empty means the
/// environment has none, which both operations refuse. `fixed` holds the
/// project's `LIVE` and `ENVIRONMENT` routes.
pub fn plan_switch<'a>(
    target: &Deployment,
    fixed: impl IntoIterator<Item = &'a Route>,
) -> Vec<Route> {
    fixed
        .into_iter()
        .filter(|r| {
            r.environment == target.environment
                && matches!(r.kind, RouteKind::Live | RouteKind::Environment)
        })
        .map(|r| Route {
            deployment_id: target.id.clone(),
            deployment_sequence: target.sequence,
            ..r.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::project::{LiveDeployment, Workspace};
    use crate::model::{DeploymentStatus, GitSource, NewDeployment, ProjectId, Source};

    const NAMES: Hostnames<'static> = Hostnames {
        apex: "example.test",
        project_slug: "web",
        workspace_slug: "acme",
    };

    fn project() -> Project {
        let ws = Workspace {
            id: crate::model::WorkspaceId::generate(),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: 0,
        };
        Project::new(&ws, "web".into(), "Web".into(), 0)
    }

    fn deployment_on(project: &Project, env: &str, branch: &str, sequence: u64) -> Deployment {
        let request = NewDeployment {
            environment: env.into(),
            branch: branch.into(),
            source: Source::Git(GitSource {
                repository: "https://example.test/r.git".into(),
                commit_sha: format!("{sequence:07}"),
                context_path: String::new(),
                dockerfile_path: String::new(),
            }),
            git_commit: None,
            command: vec![],
            port: 8080,
        };
        let mut deployment = Deployment::new(project.id.clone(), sequence, request, 0);
        deployment.status = DeploymentStatus::Network;
        deployment
    }

    fn deployment(project: &Project, env: &str, sequence: u64) -> Deployment {
        deployment_on(project, env, "main", sequence)
    }

    type Table = BTreeMap<String, Holder>;

    fn plan(d: &Deployment, p: &Project, table: &Table) -> DeployPlan {
        plan_deploy(d, p, NAMES, |name| table.get(name).cloned())
    }

    fn apply(table: &mut Table, plan: &DeployPlan) {
        for route in &plan.routes {
            table.insert(route.fqdn.clone(), Holder::Route(route.clone()));
        }
    }

    fn kinds(plan: &DeployPlan) -> Vec<RouteKind> {
        plan.routes.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn production_deploy_takes_every_kind() {
        let p = project();
        let d = deployment(&p, "production", 1);
        let plan = plan(&d, &p, &Table::new());
        assert!(plan.takes_live);
        assert_eq!(
            kinds(&plan),
            [
                RouteKind::Deployment,
                RouteKind::Commit,
                RouteKind::Branch,
                RouteKind::Environment,
                RouteKind::Live
            ]
        );
        assert_eq!(plan.hostnames.len(), 3);
        assert!(plan.refused.is_empty() && plan.displaced.is_empty());
    }

    #[test]
    fn older_deploy_does_not_take_sticky_routes_from_newer() {
        let mut p = project();
        let newer = deployment(&p, "production", 2);
        let older = deployment(&p, "production", 1);
        let mut table = Table::new();
        let first = plan(&newer, &p, &table);
        apply(&mut table, &first);
        p.live = Some(LiveDeployment {
            id: newer.id.clone(),
            sequence: 2,
        });
        let second = plan(&older, &p, &table);
        assert!(!second.takes_live);
        // Its own DEPLOYMENT and COMMIT hostnames are new; nothing sticky.
        assert_eq!(kinds(&second), [RouteKind::Deployment, RouteKind::Commit]);
    }

    #[test]
    fn rolled_back_project_keeps_live_but_moves_environment() {
        let mut p = project();
        p.is_rolled_back = true;
        let d = deployment(&p, "production", 3);
        let plan = plan(&d, &p, &Table::new());
        assert!(!plan.takes_live);
        assert!(plan.routes.iter().all(|r| r.kind != RouteKind::Live));
        assert!(plan.routes.iter().any(|r| r.kind == RouteKind::Environment));
    }

    #[test]
    fn preview_never_takes_live() {
        let p = project();
        let d = deployment(&p, "preview", 1);
        let plan = plan(&d, &p, &Table::new());
        assert!(!plan.takes_live);
        assert!(plan.routes.iter().all(|r| r.kind != RouteKind::Live));
    }

    #[test]
    fn a_name_held_by_another_project_takes_a_suffix_instead() {
        let p = project();
        let d = deployment(&p, "preview", 1);
        let stranger = Holder::Claim {
            project_id: ProjectId::generate(),
            kind: RouteKind::Live,
        };
        let mut table = Table::new();
        table.insert(NAMES.branch("main"), stranger.clone());
        let plan = plan(&d, &p, &table);
        let branch = plan
            .routes
            .iter()
            .find(|r| r.kind == RouteKind::Branch)
            .unwrap();
        assert_ne!(branch.fqdn, NAMES.branch("main"));
        assert_eq!(
            branch.fqdn,
            NAMES.per_push(RouteKind::Branch, "main", &p.id)[1]
        );
        assert!(plan.hostnames.contains(&branch.fqdn));
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn a_fixed_name_held_elsewhere_is_refused_out_loud() {
        let p = project();
        let d = deployment(&p, "production", 1);
        let mut table = Table::new();
        table.insert(
            NAMES.live(),
            Holder::Claim {
                project_id: ProjectId::generate(),
                kind: RouteKind::Live,
            },
        );
        let plan = plan(&d, &p, &table);
        assert!(plan.routes.iter().all(|r| r.kind != RouteKind::Live));
        assert_eq!(plan.refused.len(), 1, "{:?}", plan.refused);
        assert!(plan.refused[0].contains(&NAMES.live()));
    }

    #[test]
    fn preview_deploys_report_whom_they_displace() {
        let p = project();
        let first = deployment_on(&p, "preview", "feature", 1);
        let second = deployment_on(&p, "preview", "other", 2);
        let third = deployment_on(&p, "preview", "feature", 3);
        let mut table = Table::new();
        let plan1 = plan(&first, &p, &table);
        apply(&mut table, &plan1);
        let plan2 = plan(&second, &p, &table);
        // Only the ENVIRONMENT route moves from `first`; it keeps BRANCH.
        assert_eq!(plan2.displaced, vec![first.id.clone()]);
        apply(&mut table, &plan2);
        let plan3 = plan(&third, &p, &table);
        assert_eq!(plan3.displaced, vec![first.id.clone(), second.id.clone()]);
    }

    #[test]
    fn switch_moves_live_and_environment_of_that_environment_only() {
        let p = project();
        let prod = deployment(&p, "production", 1);
        let preview = deployment(&p, "preview", 2);
        let mut table = Table::new();
        let first = plan(&prod, &p, &table);
        apply(&mut table, &first);
        let second = plan(&preview, &p, &table);
        apply(&mut table, &second);
        let routes: Vec<Route> = table
            .values()
            .filter_map(|h| match h {
                Holder::Route(r) => Some(r.clone()),
                Holder::Claim { .. } => None,
            })
            .collect();
        let target = deployment(&p, "production", 3);
        let moved = plan_switch(&target, &routes);
        let kinds: Vec<_> = moved.iter().map(|r| r.kind).collect();
        assert_eq!(kinds.len(), 2, "{moved:?}");
        assert!(kinds.contains(&RouteKind::Live) && kinds.contains(&RouteKind::Environment));
        assert!(moved.iter().all(|r| r.deployment_id == target.id));
    }
}
