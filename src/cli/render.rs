//! Human-readable views of the API's messages: key/value blocks for one
//! object, tables for lists. Each function returns the text; printing is
//! the caller's.

use std::collections::{BTreeMap, HashMap};

use crate::cli::output::{self, Table, fields, or_dash};
use crate::pb;

pub fn workspace(ws: &pb::Workspace) -> String {
    fields(&[
        ("id", ws.id.clone()),
        ("slug", ws.slug.clone()),
        ("name", ws.name.clone()),
        ("created", output::timestamp(ws.created_at.as_ref())),
    ])
}

pub fn repository_connection(connection: &pb::RepositoryConnection) -> String {
    fields(&[
        ("project", connection.project_id.clone()),
        ("repository", connection.repository.clone()),
        ("clone url", connection.clone_url.clone()),
        ("context", or_dash(&connection.context_path)),
        ("dockerfile", or_dash(&connection.dockerfile_path)),
        (
            "connected",
            output::timestamp(connection.connected_at.as_ref()),
        ),
    ])
}

pub fn project(project: &pb::Project) -> String {
    let mut text = fields(&[
        ("id", project.id.clone()),
        ("workspace", project.workspace_id.clone()),
        ("slug", project.slug.clone()),
        ("name", project.name.clone()),
        ("live", live(project)),
        ("rolled back", yes_no(project.is_rolled_back)),
        ("domains", or_dash(&project.custom_domains.join("\n"))),
        (
            "pending domains",
            or_dash(&project.pending_custom_domains.join("\n")),
        ),
        ("created", output::timestamp(project.created_at.as_ref())),
    ]);
    text.push('\n');
    text.push_str(&environments(&project.environments));
    text
}

/// What to do for a pending custom domain.
pub fn domain_challenge(challenge: &pb::DomainChallenge) -> String {
    let mut text = fields(&[
        ("record", challenge.record_name.clone()),
        ("type", "TXT".to_string()),
        ("value", challenge.record_value.clone()),
    ]);
    text.push_str(
        "\nThe domain is pending: create this DNS record, then run `deployd domain verify`.\n",
    );
    text
}

fn live(project: &pb::Project) -> String {
    if project.live_deployment_id.is_empty() {
        "none".to_string()
    } else {
        project.live_deployment_id.clone()
    }
}

fn environments(environments: &[pb::Environment]) -> String {
    let mut table = Table::new(&["ENVIRONMENT", "PRODUCTION", "REGIONS"]);
    for env in environments {
        let mut regions = region_list(&env.effective_regions);
        // An empty explicit map means "follow the daemon's region list",
        // which changes when the daemon's config does; say so.
        if env.regions.is_empty() {
            regions.push_str(" (default)");
        }
        table.row(vec![env.slug.clone(), yes_no(env.is_production), regions]);
    }
    table.render()
}

/// `region=replicas` pairs, sorted by region.
fn region_list(regions: &HashMap<String, u32>) -> String {
    let sorted: BTreeMap<_, _> = regions.iter().collect();
    let pairs: Vec<String> = sorted.iter().map(|(r, n)| format!("{r}={n}")).collect();
    if pairs.is_empty() {
        "-".to_string()
    } else {
        pairs.join(" ")
    }
}

pub fn projects(projects: &[pb::Project]) -> String {
    let mut table = Table::new(&["ID", "SLUG", "NAME", "LIVE", "CREATED"]);
    for p in projects {
        table.row(vec![
            p.id.clone(),
            p.slug.clone(),
            p.name.clone(),
            live(p),
            output::timestamp(p.created_at.as_ref()),
        ]);
    }
    table.render()
}

pub fn deployment(d: &pb::Deployment) -> String {
    let mut pairs = vec![
        ("id", d.id.clone()),
        ("project", d.project_id.clone()),
        ("environment", d.environment_slug.clone()),
        ("status", output::status(d.status)),
        ("state", output::desired_state(d.desired_state)),
        ("sequence", d.sequence.to_string()),
        ("branch", or_dash(&d.branch)),
        ("source", source(d.source.as_ref())),
        ("image", or_dash(&d.image)),
    ];
    if !d.build_id.is_empty() {
        pairs.push(("build", d.build_id.clone()));
    }
    if let Some(commit) = &d.git_commit {
        pairs.push(("commit", commit_line(commit)));
    }
    if !d.command.is_empty() {
        pairs.push(("command", d.command.join(" ")));
    }
    if !d.error_message.is_empty() {
        pairs.push(("error", d.error_message.clone()));
    }
    if !d.superseded_by.is_empty() {
        pairs.push(("superseded by", d.superseded_by.clone()));
    }
    pairs.push(("hostnames", or_dash(&d.hostnames.join("\n"))));
    pairs.push(("created", output::timestamp(d.created_at.as_ref())));
    pairs.push(("updated", output::timestamp(d.updated_at.as_ref())));
    let mut text = fields(&pairs);
    if !d.steps.is_empty() {
        text.push('\n');
        text.push_str(&steps(&d.steps));
    }
    if !d.regions.is_empty() {
        text.push('\n');
        text.push_str(&topology(&d.regions));
    }
    text
}

fn source(source: Option<&pb::deployment::Source>) -> String {
    match source {
        None => "-".to_string(),
        Some(pb::deployment::Source::DockerImage(image)) => format!("image {}", image.image),
        Some(pb::deployment::Source::Git(git)) => {
            let mut text = format!("git {} @ {}", git.repository, git.commit_sha);
            if !git.context_path.is_empty() {
                text.push_str(&format!(", context {}", git.context_path));
            }
            if !git.dockerfile_path.is_empty() {
                text.push_str(&format!(", dockerfile {}", git.dockerfile_path));
            }
            text
        }
    }
}

fn commit_line(commit: &pb::GitCommit) -> String {
    let mut parts = Vec::new();
    if !commit.sha.is_empty() {
        parts.push(commit.sha.chars().take(12).collect::<String>());
    }
    if let Some(first_line) = commit.message.lines().next().filter(|l| !l.is_empty()) {
        parts.push(format!("{first_line:?}"));
    }
    match (
        commit.author_name.is_empty(),
        commit.author_email.is_empty(),
    ) {
        (false, false) => parts.push(format!(
            "by {} <{}>",
            commit.author_name, commit.author_email
        )),
        (false, true) => parts.push(format!("by {}", commit.author_name)),
        (true, false) => parts.push(format!("by <{}>", commit.author_email)),
        (true, true) => {}
    }
    or_dash(&parts.join(" "))
}

fn steps(steps: &[pb::Step]) -> String {
    let mut table = Table::new(&["STEP", "STARTED", "TOOK", "RESULT"]);
    for step in steps {
        let took = match (&step.started_at, &step.finished_at) {
            (Some(start), Some(end)) => output::elapsed(start, end),
            _ => "-".to_string(),
        };
        let result = if !step.error.is_empty() {
            format!("failed: {}", step.error)
        } else if step.finished_at.is_some() {
            "done".to_string()
        } else if step.detail.is_empty() {
            "running".to_string()
        } else {
            format!("running: {}", step.detail)
        };
        table.row(vec![
            step.name.clone(),
            output::timestamp(step.started_at.as_ref()),
            took,
            result,
        ]);
    }
    table.render()
}

fn topology(regions: &[pb::RegionTopology]) -> String {
    let mut table = Table::new(&["REGION", "REPLICAS", "DESIRED", "READY", "INSTANCES"]);
    for region in regions {
        table.row(vec![
            region.region.clone(),
            region.desired_replicas.to_string(),
            or_dash(&region.desired_status),
            yes_no(region.ready),
            instances(&region.instances),
        ]);
    }
    table.render()
}

/// Counts per instance status, e.g. `2 running, 1 starting`.
fn instances(instances: &[pb::Instance]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for instance in instances {
        *counts.entry(instance.status.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    or_dash(&parts.join(", "))
}

pub fn deployments(deployments: &[pb::Deployment]) -> String {
    let mut table = Table::new(&["ID", "ENV", "STATUS", "BRANCH", "IMAGE", "CREATED"]);
    for d in deployments {
        table.row(vec![
            d.id.clone(),
            d.environment_slug.clone(),
            output::status(d.status),
            or_dash(&d.branch),
            or_dash(&d.image),
            output::timestamp(d.created_at.as_ref()),
        ]);
    }
    table.render()
}

pub fn routes(routes: &[pb::Route]) -> String {
    let mut table = Table::new(&["KIND", "FQDN", "DEPLOYMENT", "ENV"]);
    for route in routes {
        table.row(vec![
            output::route_kind(route.kind),
            route.fqdn.clone(),
            route.deployment_id.clone(),
            route.environment_slug.clone(),
        ]);
    }
    table.render()
}

/// After a rollback or promote: where the project now stands, then the
/// routes that moved.
pub fn switched(project: Option<&pb::Project>, routes: &[pb::Route]) -> String {
    let mut text = match project {
        Some(p) => fields(&[
            ("project", p.id.clone()),
            ("live", live(p)),
            ("rolled back", yes_no(p.is_rolled_back)),
        ]),
        None => String::new(),
    };
    text.push('\n');
    text.push_str(&self::routes(routes));
    text
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

pub fn stats(stats: &pb::GetStatsResponse) -> String {
    let per_commit = stats.committed_operations as f64 / stats.commits.max(1) as f64;
    format!(
        "commits                 {}\noperations committed    {} ({per_commit:.1} per commit)\nfailed commits          {}\nproject actors running  {}\nbroken projects         {}\nwatched deployments     {}\nwatch streams           {}\nopen connections        {}\n",
        stats.commits,
        stats.committed_operations,
        stats.failed_commits,
        stats.running_project_actors,
        stats.broken_projects,
        stats.watched_deployments,
        stats.watch_streams,
        stats.open_connections
    )
}
