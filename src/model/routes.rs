//! Frontline routes and the decisions that move them. These functions are
//! pure: the project actor applies their result in one store transaction.
//!
//! **Invariant (sticky routes only move forward):** a deploy never takes a
//! `BRANCH`, `ENVIRONMENT`, `COMMIT` or `LIVE` route, nor the live pointer,
//! from a deployment with a higher sequence number ([`plan_deploy`]).
//! Rollback and promote ([`plan_switch`]) are explicit intent and exempt.

use std::collections::BTreeMap;

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

/// What a deployment that just became ready takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployPlan {
    /// Routes to create or reassign, all pointing at the deployment.
    pub routes: Vec<Route>,
    /// Whether `live_deployment_id` moves to the deployment.
    pub takes_live: bool,
}

/// Decides which routes a `READY` deployment takes. `current` holds the
/// project's routes by hostname; the rolled-back flag is read from `project`
/// now, at switch time, not when the deploy started.
pub fn plan_deploy(
    deployment: &Deployment,
    project: &Project,
    current: &BTreeMap<String, Route>,
    names: Hostnames<'_>,
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

    let mut wanted = vec![(names.deployment(&deployment.id), RouteKind::Deployment)];
    if let Some(sha) = deployment.commit_sha() {
        wanted.push((names.commit(sha), RouteKind::Commit));
    }
    if !deployment.branch.is_empty() {
        wanted.push((names.branch(&deployment.branch), RouteKind::Branch));
    }
    wanted.push((
        names.environment(&deployment.environment),
        RouteKind::Environment,
    ));
    if takes_live {
        wanted.push((names.live(), RouteKind::Live));
        for domain in &project.custom_domains {
            wanted.push((domain.clone(), RouteKind::Live));
        }
    }

    let routes = wanted
        .into_iter()
        .filter(|(fqdn, kind)| match current.get(fqdn) {
            None => true,
            // A hostname already used by another kind of route (a branch
            // named like a short sha, say) keeps its first owner.
            Some(existing) if existing.kind != *kind => false,
            Some(_) if *kind == RouteKind::Live => true,
            Some(existing) => existing.deployment_sequence <= deployment.sequence,
        })
        .map(|(fqdn, kind)| Route {
            fqdn,
            project_id: deployment.project_id.clone(),
            environment: deployment.environment.clone(),
            kind,
            deployment_id: deployment.id.clone(),
            deployment_sequence: deployment.sequence,
        })
        .collect();
    DeployPlan { routes, takes_live }
}

/// Every hostname that can point at `deployment`: the ones a deploy gives
/// it, the project's `LIVE` names and its custom domains. Which of them do
/// right now is up to the stored routes.
pub fn candidate_hostnames(
    deployment: &Deployment,
    project: &Project,
    names: Hostnames<'_>,
) -> Vec<String> {
    let mut hostnames = vec![
        names.deployment(&deployment.id),
        names.environment(&deployment.environment),
        names.live(),
    ];
    if let Some(sha) = deployment.commit_sha() {
        hostnames.push(names.commit(sha));
    }
    if !deployment.branch.is_empty() {
        hostnames.push(names.branch(&deployment.branch));
    }
    hostnames.extend(project.custom_domains.iter().cloned());
    hostnames
}

/// The routes a rollback or promote moves to `target`: every `LIVE` and
/// `ENVIRONMENT` route of the target's environment. Empty means the
/// environment has none, which both operations refuse.
pub fn plan_switch(target: &Deployment, current: &BTreeMap<String, Route>) -> Vec<Route> {
    current
        .values()
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
    use crate::model::{DeploymentStatus, GitSource, NewDeployment, Source};

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

    fn deployment(project: &Project, env: &str, sequence: u64) -> Deployment {
        let request = NewDeployment {
            environment: env.into(),
            branch: "main".into(),
            source: Source::Git(GitSource {
                repository: "https://example.test/r.git".into(),
                commit_sha: format!("{sequence:07}"),
                context_path: String::new(),
                dockerfile_path: String::new(),
            }),
            git_commit: None,
            command: vec![],
        };
        let mut deployment = Deployment::new(project.id.clone(), sequence, request, 0);
        deployment.status = DeploymentStatus::Network;
        deployment
    }

    fn apply(current: &mut BTreeMap<String, Route>, plan: &DeployPlan) {
        for route in &plan.routes {
            current.insert(route.fqdn.clone(), route.clone());
        }
    }

    #[test]
    fn production_deploy_takes_every_kind() {
        let p = project();
        let d = deployment(&p, "production", 1);
        let plan = plan_deploy(&d, &p, &BTreeMap::new(), NAMES);
        assert!(plan.takes_live);
        let kinds: Vec<_> = plan.routes.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RouteKind::Deployment,
                RouteKind::Commit,
                RouteKind::Branch,
                RouteKind::Environment,
                RouteKind::Live
            ]
        );
    }

    #[test]
    fn older_deploy_does_not_take_sticky_routes_from_newer() {
        let mut p = project();
        let newer = deployment(&p, "production", 2);
        let older = deployment(&p, "production", 1);
        let mut routes = BTreeMap::new();
        let plan = plan_deploy(&newer, &p, &routes, NAMES);
        apply(&mut routes, &plan);
        p.live = Some(LiveDeployment {
            id: newer.id.clone(),
            sequence: 2,
        });
        let plan = plan_deploy(&older, &p, &routes, NAMES);
        assert!(!plan.takes_live);
        let kinds: Vec<_> = plan.routes.iter().map(|r| r.kind).collect();
        // Its own DEPLOYMENT and COMMIT hostnames are new; nothing sticky.
        assert_eq!(kinds, [RouteKind::Deployment, RouteKind::Commit]);
    }

    #[test]
    fn rolled_back_project_keeps_live_but_moves_environment() {
        let mut p = project();
        p.is_rolled_back = true;
        let d = deployment(&p, "production", 3);
        let plan = plan_deploy(&d, &p, &BTreeMap::new(), NAMES);
        assert!(!plan.takes_live);
        assert!(plan.routes.iter().all(|r| r.kind != RouteKind::Live));
        assert!(plan.routes.iter().any(|r| r.kind == RouteKind::Environment));
    }

    #[test]
    fn preview_never_takes_live() {
        let p = project();
        let d = deployment(&p, "preview", 1);
        let plan = plan_deploy(&d, &p, &BTreeMap::new(), NAMES);
        assert!(!plan.takes_live);
        assert!(plan.routes.iter().all(|r| r.kind != RouteKind::Live));
    }

    #[test]
    fn switch_moves_live_and_environment_of_that_environment_only() {
        let p = project();
        let prod = deployment(&p, "production", 1);
        let preview = deployment(&p, "preview", 2);
        let mut routes = BTreeMap::new();
        let plan = plan_deploy(&prod, &p, &routes, NAMES);
        apply(&mut routes, &plan);
        let plan = plan_deploy(&preview, &p, &routes, NAMES);
        apply(&mut routes, &plan);
        let target = deployment(&p, "production", 3);
        let moved = plan_switch(&target, &routes);
        let kinds: Vec<_> = moved.iter().map(|r| r.kind).collect();
        assert_eq!(kinds.len(), 2, "{moved:?}");
        assert!(kinds.contains(&RouteKind::Live) && kinds.contains(&RouteKind::Environment));
        assert!(moved.iter().all(|r| r.deployment_id == target.id));
    }
}
