//! The command-line grammar: every subcommand and flag of `deployd`, as clap
//! derive types. Parsing only; what each command does lives in `serve`,
//! `client` and `deploy`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pb;

/// deployd: build, deploy, route, roll back and promote, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "deployd", version, propagate_version = true)]
pub struct Cli {
    /// Address of the daemon the client subcommands talk to.
    #[arg(
        long,
        global = true,
        env = "DEPLOYD_ADDR",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    pub addr: String,

    /// Bearer token for the daemon (`tok_....`); every call but health
    /// needs one.
    #[arg(
        long,
        global = true,
        env = "DEPLOYD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Print responses as proto3 JSON (one object per line for streams).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Verify a stopped daemon's data file: integrity and invariants.
    Check(CheckArgs),
    /// Create or show a workspace.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Create or show a project.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// List the projects of a workspace.
    Projects(ProjectsArgs),
    /// Set the regions (and replicas per region) of an environment.
    Regions(RegionsArgs),
    /// Manage custom domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Create a deployment from an image or a git commit.
    Deploy(Box<DeployArgs>),
    /// Show a deployment.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// List the deployments of a project, newest first.
    Deployments(DeploymentsArgs),
    /// Follow a deployment until it is ready, failed or cancelled.
    Watch(WatchArgs),
    /// Point the live routes back at an earlier deployment.
    Rollback(RollbackArgs),
    /// Make a deployment live (and end a rollback).
    Promote(PromoteArgs),
    /// Stop a deployment that is not yet ready (its build or rollout).
    Cancel(CancelArgs),
    /// Print the kept output of a deployment's build.
    BuildLog(BuildLogArgs),
    /// List the routes of a project.
    Routes(RoutesArgs),
    /// Show the daemon's counters (commits, operations per commit, actors).
    Stats,
    /// Create, revoke and list bearer tokens (admin), or generate one for a
    /// bootstrap file.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List the audit log: every change, who made it and how it ended.
    Audit(AuditArgs),
    /// Connect a project to a GitHub repository (pushes deploy it).
    #[command(subcommand)]
    Github(GithubCommand),
    /// Run the load generator (see the README's Performance section).
    Bench(Box<crate::cli::bench::BenchArgs>),
}

/// TLS towards a daemon with `[tls]` (an `https://` address).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// PEM file of the CA that signed the daemon's certificate; without
    /// it, the system's trusted roots.
    #[arg(long, global = true, env = "DEPLOYD_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for a daemon that requires one.
    #[arg(
        long,
        global = true,
        env = "DEPLOYD_CERT_FILE",
        value_name = "FILE",
        requires = "key_file"
    )]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "DEPLOYD_KEY_FILE",
        value_name = "FILE",
        requires = "cert_file"
    )]
    pub key_file: Option<PathBuf>,
}

/// Where the daemon's configuration comes from; shared by `serve` and
/// `check` so both find the same data file.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML file read over the embedded defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the state (overrides `data_dir` in the config).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on (overrides `listen` in the config). Port 0
    /// picks a free port; the `listening on` line on stdout names it.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub dump_config: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace.
    Create {
        /// DNS label, unique across the daemon.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Show a workspace.
    Get {
        #[arg(value_name = "WORKSPACE_ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project in a workspace.
    Create {
        #[arg(long, value_name = "WORKSPACE_ID")]
        workspace: String,
        /// DNS label, unique within the workspace.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Show a project, its live deployment and its environments.
    Get {
        #[arg(value_name = "PROJECT_ID")]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ProjectsArgs {
    #[arg(long, value_name = "WORKSPACE_ID")]
    pub workspace: String,
}

/// A key that makes a retried mutation return the original answer.
#[derive(Debug, Args)]
pub struct IdempotencyArgs {
    /// A retry with the same key and request returns the first answer.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegionsArgs {
    #[arg(long, value_name = "PROJECT_ID")]
    pub project: String,
    /// Environment slug, e.g. production or preview.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Replicas per region, e.g. us-east-1=2. None resets the environment
    /// to every configured region with one replica each.
    #[arg(value_name = "REGION=REPLICAS", value_parser = parse_region)]
    pub regions: Vec<(String, u32)>,
    #[command(flatten)]
    pub idempotency: IdempotencyArgs,
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Claim a custom domain for the project's production deployment.
    /// Unless the daemon skips verification, prints the TXT record to
    /// create; then run `deployd domain verify`.
    Add {
        #[arg(long, value_name = "PROJECT_ID")]
        project: String,
        /// Fully qualified domain name, outside the daemon's apex domain.
        fqdn: String,
        #[command(flatten)]
        idempotency: IdempotencyArgs,
    },
    /// Check the domain's TXT record and, if it holds the project's
    /// token, serve the project's production deployment on it.
    Verify {
        #[arg(long, value_name = "PROJECT_ID")]
        project: String,
        /// A domain claimed with `deployd domain add`.
        fqdn: String,
    },
    /// Give up a custom domain, attached or pending: the project stops
    /// serving it at once and any project may claim it.
    Remove {
        #[arg(long, value_name = "PROJECT_ID")]
        project: String,
        /// A domain attached to, or claimed by, the project.
        fqdn: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GithubCommand {
    /// Connect the project to a repository; pushes to it become
    /// deployments (default branch: production, others: preview).
    Connect {
        #[arg(long, value_name = "PROJECT_ID")]
        project: String,
        /// GitHub's full name of the repository.
        #[arg(long, value_name = "OWNER/NAME")]
        repo: String,
        /// Where the builder fetches commits (default
        /// https://github.com/OWNER/NAME.git).
        #[arg(long, value_name = "URL")]
        clone_url: Option<String>,
        /// Build context inside the repository.
        #[arg(long, value_name = "PATH")]
        context: Option<String>,
        /// Dockerfile path inside the repository.
        #[arg(long, value_name = "PATH")]
        dockerfile: Option<String>,
    },
    /// Show the project's repository.
    Get {
        #[arg(long, value_name = "PROJECT_ID")]
        project: String,
    },
    /// Disconnect the project from its repository.
    Disconnect {
        #[arg(long, value_name = "PROJECT_ID")]
        project: String,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["image", "repo"]))]
pub struct DeployArgs {
    /// Project to deploy.
    #[arg(long, value_name = "PROJECT_ID")]
    pub project: String,
    /// Environment slug, e.g. production or preview.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Deploy a prebuilt OCI image.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Build from this git repository (needs --sha and --branch).
    #[arg(long, value_name = "URL", requires = "sha")]
    pub repo: Option<String>,
    /// Commit to build (lower-case hex).
    #[arg(long, value_name = "SHA", requires = "repo")]
    pub sha: Option<String>,
    /// Build context inside the repository.
    #[arg(long, value_name = "PATH", requires = "repo")]
    pub context: Option<String>,
    /// Dockerfile inside the repository.
    #[arg(long, value_name = "PATH", requires = "repo")]
    pub dockerfile: Option<String>,
    /// Git branch (required with --repo).
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Commit message, shown with the deployment.
    #[arg(long, value_name = "MESSAGE")]
    pub commit_message: Option<String>,
    /// Commit author's name.
    #[arg(long, value_name = "NAME")]
    pub author_name: Option<String>,
    /// Commit author's email address.
    #[arg(long, value_name = "EMAIL")]
    pub author_email: Option<String>,
    /// Follow the deployment; exit 0 if it becomes ready, 2 if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Makes a retry safe: the same key and request return the first
    /// answer instead of creating a second deployment.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// The port the application listens on (it gets it as PORT; default
    /// 8080).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Command (argv) that replaces the image's default arguments.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Show a deployment: steps, regions and hostnames.
    Get {
        #[arg(value_name = "DEPLOYMENT_ID")]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    #[arg(long, value_name = "PROJECT_ID")]
    pub project: String,
    /// Only this environment.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Only deployments with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Page size (the daemon's default is 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusFilter {
    Pending,
    Building,
    Deploying,
    Network,
    Ready,
    Failed,
}

impl From<StatusFilter> for pb::DeploymentStatus {
    fn from(status: StatusFilter) -> Self {
        match status {
            StatusFilter::Pending => Self::Pending,
            StatusFilter::Building => Self::Building,
            StatusFilter::Deploying => Self::Deploying,
            StatusFilter::Network => Self::Network,
            StatusFilter::Ready => Self::Ready,
            StatusFilter::Failed => Self::Failed,
        }
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(value_name = "DEPLOYMENT_ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The project's current live deployment.
    #[arg(long, value_name = "SOURCE_ID")]
    pub from: String,
    /// A ready deployment of the same project and environment.
    #[arg(long, value_name = "TARGET_ID")]
    pub to: String,
    /// Makes a retry safe: the same key and request return the first answer.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[arg(value_name = "DEPLOYMENT_ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct BuildLogArgs {
    #[arg(value_name = "DEPLOYMENT_ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[arg(value_name = "DEPLOYMENT_ID")]
    pub id: String,
    /// Makes a retry safe: the same key and request return the first answer.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// The workspace a deployer or viewer token reaches.
        #[arg(long, value_name = "WORKSPACE_ID", required_unless_present = "admin")]
        workspace: Option<String>,
        /// What the token may do in its workspace.
        #[arg(
            long,
            value_enum,
            required_unless_present = "admin",
            conflicts_with = "admin"
        )]
        role: Option<RoleArg>,
        /// An admin token (no workspace): workspaces, tokens, everything.
        #[arg(long, conflicts_with = "workspace")]
        admin: bool,
        /// What the token is for, shown in lists.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Revoke a token: it is refused from the answer on.
    Revoke {
        #[arg(value_name = "TOKEN_ID")]
        id: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_name = "WORKSPACE_ID")]
        workspace: Option<String>,
    },
    /// Print a new random token, for `[auth] bootstrap_token_file`; talks
    /// to no daemon.
    Generate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Deployer,
    Viewer,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this workspace's events.
    #[arg(long, value_name = "WORKSPACE_ID")]
    pub workspace: Option<String>,
    /// Only this project's events.
    #[arg(long, value_name = "PROJECT_ID")]
    pub project: Option<String>,
    /// Page size (the daemon's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[arg(long, value_name = "PROJECT_ID")]
    pub project: String,
    /// Only routes of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<KindFilter>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindFilter {
    Commit,
    Branch,
    Environment,
    Live,
    Deployment,
}

impl From<KindFilter> for pb::RouteKind {
    fn from(kind: KindFilter) -> Self {
        match kind {
            KindFilter::Commit => Self::Commit,
            KindFilter::Branch => Self::Branch,
            KindFilter::Environment => Self::Environment,
            KindFilter::Live => Self::Live,
            KindFilter::Deployment => Self::Deployment,
        }
    }
}

/// Parses `REGION=REPLICAS`. Region names and replica limits are the
/// daemon's to judge; this only rejects what cannot be a pair at all.
fn parse_region(pair: &str) -> Result<(String, u32), String> {
    let (region, replicas) = pair
        .split_once('=')
        .ok_or_else(|| "expected REGION=REPLICAS, e.g. us-east-1=2".to_string())?;
    if region.is_empty() {
        return Err("the region name before '=' is empty".to_string());
    }
    let replicas = replicas
        .parse::<u32>()
        .map_err(|_| format!("replicas {replicas:?} is not a whole number"))?;
    Ok((region.to_string(), replicas))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn token_create_needs_a_workspace_and_role_or_admin() {
        let parses = |args: &[&str]| {
            let mut argv = vec!["deployd", "token", "create"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).is_ok()
        };
        assert!(parses(&["--workspace", "ws_x", "--role", "deployer"]));
        assert!(parses(&["--workspace", "ws_x", "--role", "viewer"]));
        assert!(parses(&["--admin"]));
        assert!(!parses(&[]));
        assert!(!parses(&["--role", "viewer"]));
        assert!(!parses(&["--workspace", "ws_x"]));
        assert!(!parses(&["--admin", "--role", "viewer"]));
        assert!(!parses(&["--admin", "--workspace", "ws_x"]));
        assert!(!parses(&["--workspace", "ws_x", "--role", "admin"]));
    }

    #[test]
    fn region_pairs() {
        assert_eq!(parse_region("us-east-1=2"), Ok(("us-east-1".into(), 2)));
        assert!(parse_region("us-east-1").is_err());
        assert!(parse_region("=2").is_err());
        assert!(parse_region("us-east-1=two").is_err());
        assert!(parse_region("us-east-1=-1").is_err());
    }

    #[test]
    fn deploy_needs_exactly_one_source() {
        let base = ["deployd", "deploy", "--project", "p", "--env", "production"];
        assert!(Cli::try_parse_from(base).is_err());
        let both = [
            &base[..],
            &["--image", "x", "--repo", "r", "--sha", "abc1234"],
        ]
        .concat();
        assert!(Cli::try_parse_from(both).is_err());
        let git_without_sha = [&base[..], &["--repo", "r"]].concat();
        assert!(Cli::try_parse_from(git_without_sha).is_err());
        let with_command = [&base[..], &["--image", "x", "--", "serve", "--port", "80"]].concat();
        let cli = Cli::try_parse_from(with_command).map_err(|e| e.to_string());
        match cli.map(|c| c.command) {
            Ok(Command::Deploy(args)) => assert_eq!(args.command, ["serve", "--port", "80"]),
            other => panic!("unexpected parse: {other:?}"),
        }
    }
}
