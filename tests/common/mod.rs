//! The test fixture: a real daemon on 127.0.0.1 port 0 with its own data
//! directory, clients for every service, and deadline polls instead of
//! fixed sleeps.

#![allow(dead_code)]

pub mod dns;
pub mod fake_kube;
pub mod github;
pub mod http;
pub mod podman;
pub mod process;
pub mod raw_codec;
pub mod registry;
pub mod storage;
pub mod traffic;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deployd::Config;
use deployd::cli::AuthChannel;
use deployd::config::{BuilderConfig, RegionConfig, SimulatedBuildRule};
use deployd::io::region::simulated::SimulatedRegion;
use deployd::io::store::{Mutation, Store};
use deployd::model::DeploymentId;
use deployd::pb;
use deployd::pb::deployment_service_client::DeploymentServiceClient;
use deployd::pb::git_hub_service_client::GitHubServiceClient;
use deployd::pb::project_service_client::ProjectServiceClient;
use deployd::pb::routing_service_client::RoutingServiceClient;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, ClientTlsConfig};

pub const SHA_A: &str = "aaaaaaa111111111111111111111111111111111";
pub const SHA_B: &str = "bbbbbbb222222222222222222222222222222222";

/// Fast settings: everything settles in tens of milliseconds.
pub fn fast_config() -> Config {
    let region = |ready_after_ms| RegionConfig::Simulated {
        ready_after_ms,
        never_ready: false,
        persist: false,
        serve_http: true,
    };
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        standby_delay_ms: 60_000,
        region_timeout_ms: 5_000,
        readiness_poll_ms: 10,
        call_timeout_ms: 5_000,
        regions: BTreeMap::from([
            ("us-east-1".to_string(), region(5)),
            ("eu-central-1".to_string(), region(10)),
        ]),
        builder: BuilderConfig::Simulated {
            slots: 4,
            duration_ms: 20,
            registry: "registry.test".into(),
            rules: vec![
                build_rule(Some("broken"), None, None, true),
                build_rule(Some("slow"), None, Some(30_000), false),
            ],
        },
        edge: deployd::config::EdgeConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
        },
        ..Config::default()
    }
}

/// `fast_config` plus a region, `stuck-1`, whose instances never get ready.
/// Environments without region settings use every configured region, so
/// tests with this config give their environments explicit regions
/// ([`TestDaemon::set_regions`]).
/// `fast_config` with `[domains] verification = "none"`: a claimed custom
/// domain is attached (and routed) at once, as before verification existed.
/// For tests about what an attached domain does, not about proving it
/// (that is `tests/domains.rs`).
pub fn config_without_domain_verification() -> Config {
    let mut config = fast_config();
    config.domains.verification = deployd::config::DomainVerification::None;
    config
}

pub fn config_with_stuck_region() -> Config {
    let mut config = fast_config();
    config.regions.insert(
        STUCK_REGION.to_string(),
        RegionConfig::Simulated {
            ready_after_ms: 0,
            never_ready: true,
            persist: false,
            serve_http: true,
        },
    );
    config
}

pub const STUCK_REGION: &str = "stuck-1";

pub fn build_rule(
    branch: Option<&str>,
    commit_sha: Option<&str>,
    duration_ms: Option<u64>,
    fail: bool,
) -> SimulatedBuildRule {
    SimulatedBuildRule {
        branch: branch.map(str::to_string),
        commit_sha: commit_sha.map(str::to_string),
        duration_ms,
        fail,
    }
}

/// The regions of `fast_config` that become ready.
pub const HEALTHY_REGIONS: [&str; 2] = ["eu-central-1", "us-east-1"];

pub struct TestDaemon {
    pub addr: String,
    pub config: Config,
    /// An admin token (the bootstrap token of `config`), which every client
    /// accessor below sends.
    pub token: String,
    /// The daemon's insides, for tests that look past the API. Holds the
    /// store open, so it is dropped before the daemon stops.
    handle: Option<deployd::DaemonHandle>,
    data: DataDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// How clients reach a daemon with `[tls]` (`addr` is `https://`).
    client_tls: Option<ClientTlsConfig>,
}

enum DataDir {
    Owned(tempfile::TempDir),
    Borrowed(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Owned(dir) => dir.path(),
            DataDir::Borrowed(path) => path,
        }
    }
}

impl TestDaemon {
    pub async fn start() -> Self {
        Self::start_with(fast_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(config, DataDir::Owned(dir), None).await
    }

    /// A daemon with `[tls]`, reached with `client_tls`.
    pub async fn start_tls(config: Config, client_tls: ClientTlsConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(config, DataDir::Owned(dir), Some(client_tls)).await
    }

    /// A new connection to the daemon (over TLS when it has `[tls]`),
    /// without a token.
    pub async fn raw_channel(&self) -> Result<Channel, tonic::transport::Error> {
        connect(&self.addr, self.client_tls.clone()).await
    }

    /// A daemon on a data directory the test owns (a prepared file).
    pub async fn start_on(config: Config, data_dir: &Path) -> Self {
        Self::start_in(config, DataDir::Borrowed(data_dir.to_path_buf()), None).await
    }

    async fn start_in(
        mut config: Config,
        data: DataDir,
        client_tls: Option<ClientTlsConfig>,
    ) -> Self {
        config.data_dir = data.path().to_path_buf();
        let token = admin_token(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let scheme = if client_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let addr = format!("{scheme}://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (observed, handle) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(deployd::serve_observed(
            listener,
            config.clone(),
            async move {
                let _ = stopped.await;
            },
            move |handle| {
                let _ = observed.send(handle);
            },
        ));
        let handle = match handle.await {
            Ok(handle) => handle,
            Err(_) => match task.await {
                Ok(Err(e)) => panic!("the daemon did not start: {e:#}"),
                other => panic!("the daemon did not start: {other:?}"),
            },
        };
        let daemon = Self {
            addr,
            config,
            token,
            handle: Some(handle),
            data,
            stop: Some(stop),
            task: Some(task),
            client_tls,
        };
        daemon.wait_serving().await;
        daemon
    }

    async fn wait_serving(&self) {
        eventually(
            "daemon reports SERVING",
            Duration::from_secs(10),
            || async move {
                let channel = self.raw_channel().await.ok()?;
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let reply = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .ok()?;
                (reply.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    .then_some(())
            },
        )
        .await;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().to_path_buf()
    }

    /// Stops the daemon and waits until its data file is closed.
    pub async fn stop(mut self) -> StoppedDaemon {
        self.shutdown().await;
        let data = std::mem::replace(&mut self.data, DataDir::Borrowed(PathBuf::new()));
        StoppedDaemon {
            config: self.config.clone(),
            data,
        }
    }

    pub fn handle(&self) -> &deployd::DaemonHandle {
        self.handle.as_ref().expect("the daemon is running")
    }

    /// Where the daemon's edge serves HTTP.
    pub fn edge(&self) -> std::net::SocketAddr {
        self.handle().edge.expect("the edge is enabled")
    }

    async fn shutdown(&mut self) {
        self.handle = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("daemon task")
                .expect("daemon exits cleanly");
        }
    }

    pub async fn workspaces(&self) -> WorkspaceServiceClient<AuthChannel> {
        WorkspaceServiceClient::new(self.channel().await)
    }

    pub async fn projects(&self) -> ProjectServiceClient<AuthChannel> {
        ProjectServiceClient::new(self.channel().await)
    }

    pub async fn deployments(&self) -> DeploymentServiceClient<AuthChannel> {
        DeploymentServiceClient::new(self.channel().await)
    }

    pub async fn github(&self) -> GitHubServiceClient<AuthChannel> {
        GitHubServiceClient::new(self.channel().await)
    }

    /// Where the daemon's GitHub webhook listener serves.
    pub fn webhook(&self) -> std::net::SocketAddr {
        self.handle()
            .webhook
            .expect("the webhook listener is configured")
    }

    pub async fn routing(&self) -> RoutingServiceClient<AuthChannel> {
        RoutingServiceClient::new(self.channel().await)
    }

    /// A connection whose calls carry the admin token.
    pub async fn channel(&self) -> AuthChannel {
        self.channel_with(Some(&self.token)).await
    }

    /// A connection whose calls carry `token` (or none).
    pub async fn channel_with(&self, token: Option<&str>) -> AuthChannel {
        let channel = self.raw_channel().await.expect("connect");
        deployd::cli::with_token(channel, token).expect("token")
    }

    /// Creates a workspace and a project in it; returns the project.
    /// Creates a workspace; returns its id.
    pub async fn workspace(&self, slug: &str) -> String {
        self.workspaces()
            .await
            .create_workspace(pb::CreateWorkspaceRequest {
                slug: slug.into(),
                name: slug.into(),
            })
            .await
            .expect("create workspace")
            .into_inner()
            .workspace
            .expect("workspace")
            .id
    }

    pub async fn project(&self, workspace_slug: &str, project_slug: &str) -> pb::Project {
        let workspace_id = self.workspace(workspace_slug).await;
        self.projects()
            .await
            .create_project(pb::CreateProjectRequest {
                workspace_id,
                slug: project_slug.into(),
                name: project_slug.into(),
            })
            .await
            .expect("create project")
            .into_inner()
            .project
            .expect("project")
    }

    pub async fn set_regions(&self, project_id: &str, env: &str, regions: &[(&str, u32)]) {
        self.projects()
            .await
            .set_environment_regions(pb::SetEnvironmentRegionsRequest {
                project_id: project_id.into(),
                environment_slug: env.into(),
                regions: regions.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
                ..Default::default()
            })
            .await
            .expect("set environment regions");
    }

    pub async fn create(&self, request: pb::CreateDeploymentRequest) -> String {
        self.deployments()
            .await
            .create_deployment(request)
            .await
            .expect("create deployment")
            .into_inner()
            .deployment_id
    }

    pub async fn get(&self, id: &str) -> pb::Deployment {
        self.deployments()
            .await
            .get_deployment(pb::GetDeploymentRequest {
                deployment_id: id.into(),
            })
            .await
            .expect("get deployment")
            .into_inner()
            .deployment
            .expect("deployment")
    }

    pub async fn get_project(&self, id: &str) -> pb::Project {
        self.projects()
            .await
            .get_project(pb::GetProjectRequest {
                project_id: id.into(),
            })
            .await
            .expect("get project")
            .into_inner()
            .project
            .expect("project")
    }

    /// The project's deployments, newest first (one page, up to 50).
    pub async fn list(&self, project_id: &str) -> Vec<pb::Deployment> {
        self.deployments()
            .await
            .list_deployments(pb::ListDeploymentsRequest {
                project_id: project_id.into(),
                ..Default::default()
            })
            .await
            .expect("list deployments")
            .into_inner()
            .deployments
    }

    /// Waits until the deployment's desired state is `state`.
    pub async fn wait_desired(&self, id: &str, state: pb::DesiredState) -> pb::Deployment {
        eventually(
            &format!("{id} is {state:?}"),
            Duration::from_secs(10),
            || async {
                let d = self.get(id).await;
                (d.desired_state == state as i32).then_some(d)
            },
        )
        .await
    }

    pub async fn stats(&self) -> pb::GetStatsResponse {
        deployd::pb::admin_service_client::AdminServiceClient::new(self.channel().await)
            .get_stats(pb::GetStatsRequest {})
            .await
            .expect("stats")
            .into_inner()
    }

    /// Every route of the project (all pages).
    pub async fn routes(&self, project_id: &str) -> Vec<pb::Route> {
        let mut routes = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .routing()
                .await
                .list_routes(pb::ListRoutesRequest {
                    project_id: project_id.into(),
                    page_token,
                    ..Default::default()
                })
                .await
                .expect("list routes")
                .into_inner();
            routes.extend(page.routes);
            if page.next_page_token.is_empty() {
                return routes;
            }
            page_token = page.next_page_token;
        }
    }

    /// The simulated driver of `region`, to look at what it runs.
    pub fn region(&self, region: &str) -> std::sync::Arc<SimulatedRegion> {
        self.handle()
            .regions
            .simulated(region)
            .unwrap_or_else(|| panic!("{region} is not a simulated region"))
    }

    /// Replicas the simulated regions run (or start) for `deployment`, by
    /// region, for every configured region.
    pub fn running(&self, deployment: &str) -> BTreeMap<String, u32> {
        let id = DeploymentId::parse(deployment, "deployment").expect("deployment id");
        self.config
            .regions
            .keys()
            .map(|region| (region.clone(), self.region(region).replicas(&id)))
            .collect()
    }

    /// Waits until every driver call decided so far has been confirmed.
    pub async fn drivers_settled(&self) {
        eventually(
            "the drivers confirm every intent",
            Duration::from_secs(10),
            || async { (self.handle().reconciler.stats().pending == 0).then_some(()) },
        )
        .await;
    }

    /// Waits until the drivers run `replicas` of `deployment` in each
    /// region it is in (0: it runs nowhere), and returns what they run.
    pub async fn wait_running(&self, deployment: &str, replicas: u32) -> BTreeMap<String, u32> {
        eventually(
            &format!("the drivers run {replicas} replica(s) of {deployment} per region"),
            Duration::from_secs(10),
            || async {
                let running = self.running(deployment);
                let stored = self.get(deployment).await;
                let matches = stored
                    .regions
                    .iter()
                    .all(|r| running.get(&r.region).copied().unwrap_or(0) == replicas);
                (matches && self.handle().reconciler.stats().pending == 0).then_some(running)
            },
        )
        .await
    }

    /// Asserts that what the drivers run for `deployment` is what its
    /// stored desired state says: every region's replicas while it is
    /// RUNNING, nothing once it is STANDBY or ARCHIVED.
    pub async fn assert_world_matches(&self, deployment: &str) {
        let stored = self.get(deployment).await;
        let expected: BTreeMap<String, u32> = stored
            .regions
            .iter()
            .map(|r| {
                let replicas = if r.desired_status == "running" {
                    r.desired_replicas
                } else {
                    0
                };
                (r.region.clone(), replicas)
            })
            .collect();
        let running = eventually(
            &format!("the drivers run what {deployment} says"),
            Duration::from_secs(10),
            || async {
                let running: BTreeMap<String, u32> = self
                    .running(deployment)
                    .into_iter()
                    .filter(|(region, _)| expected.contains_key(region))
                    .collect();
                (running == expected).then_some(running)
            },
        )
        .await;
        assert_eq!(running, expected, "{deployment}");
    }

    /// Waits until the deployment reaches `status` (fails fast on another
    /// terminal status).
    pub async fn wait_status(&self, id: &str, status: pb::DeploymentStatus) -> pb::Deployment {
        let deadline = Duration::from_secs(20);
        eventually(&format!("{id} reaches {status:?}"), deadline, || async {
            let d = self.get(id).await;
            let terminal = [
                pb::DeploymentStatus::Ready,
                pb::DeploymentStatus::Failed,
                pb::DeploymentStatus::Cancelled,
            ]
            .map(|s| s as i32)
            .contains(&d.status);
            if d.status == status as i32 {
                Some(d)
            } else if terminal {
                panic!(
                    "{id} ended {:?} ({}), expected {status:?}",
                    pb::DeploymentStatus::try_from(d.status),
                    d.error_message
                );
            } else {
                None
            }
        })
        .await
    }

    /// A production deployment whose build fails (the `broken` branch).
    pub async fn failed_deploy(&self, project_id: &str) -> String {
        let id = self
            .create(git_request(project_id, "production", "broken", SHA_A))
            .await;
        self.wait_status(&id, pb::DeploymentStatus::Failed).await;
        id
    }

    /// Deploys an image to an environment and waits until it is READY.
    pub async fn deploy_ready(&self, project_id: &str, env: &str, image: &str) -> String {
        let id = self.create(image_request(project_id, env, image)).await;
        self.wait_status(&id, pb::DeploymentStatus::Ready).await;
        id
    }

    /// Two READY production deployments, older first; the newer is live.
    pub async fn two_production_deploys(&self, project_id: &str) -> (String, String) {
        let older = self.deploy_ready(project_id, "production", "nginx:1").await;
        let newer = self.deploy_ready(project_id, "production", "nginx:2").await;
        (older, newer)
    }

    pub async fn rollback(
        &self,
        source: &str,
        target: &str,
    ) -> Result<pb::RollbackResponse, tonic::Status> {
        self.deployments()
            .await
            .rollback(pb::RollbackRequest {
                source_deployment_id: source.into(),
                target_deployment_id: target.into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn promote(&self, target: &str) -> Result<pb::PromoteResponse, tonic::Status> {
        self.deployments()
            .await
            .promote(pb::PromoteRequest {
                target_deployment_id: target.into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A stopped daemon whose data directory can be started again.
pub struct StoppedDaemon {
    pub config: Config,
    data: DataDir,
}

impl StoppedDaemon {
    pub fn db_path(&self) -> PathBuf {
        self.data.path().join("deployd.redb")
    }

    /// Opens the data file directly (the daemon is stopped), runs `with` on
    /// the store, and closes the file again.
    pub async fn with_store<T>(&self, with: impl AsyncFnOnce(&Store) -> T) -> T {
        let (store, writer) = Store::open(&self.db_path()).expect("open the data file");
        let value = with(&store).await;
        drop(store);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .expect("writer joins");
        value
    }

    /// Writes behind the daemon's back, for states no API call produces.
    pub async fn write_offline(&self, mutations: Vec<Mutation>) {
        self.with_store(async |store| store.commit(mutations).await.expect("commit"))
            .await;
    }

    pub async fn start(self) -> TestDaemon {
        TestDaemon::start_in(self.config, self.data, None).await
    }

    pub async fn start_with(self, config: Config) -> TestDaemon {
        TestDaemon::start_in(config, self.data, None).await
    }
}

pub fn image_request(project_id: &str, env: &str, image: &str) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        project_id: project_id.into(),
        environment_slug: env.into(),
        branch: "main".into(),
        source: Some(pb::create_deployment_request::Source::DockerImage(
            pb::DockerImage {
                image: image.into(),
            },
        )),
        ..Default::default()
    }
}

pub fn git_request(
    project_id: &str,
    env: &str,
    branch: &str,
    sha: &str,
) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        project_id: project_id.into(),
        environment_slug: env.into(),
        branch: branch.into(),
        source: Some(pb::create_deployment_request::Source::Git(pb::GitSource {
            repository: "https://git.example.test/acme/web.git".into(),
            commit_sha: sha.into(),
            context_path: String::new(),
            dockerfile_path: String::new(),
        })),
        ..Default::default()
    }
}

/// The admin token of `config`: read from its bootstrap token file, or
/// generated and written to a file in its data directory that the config
/// then names (so a restart with the same config accepts it again).
pub fn admin_token(config: &mut Config) -> String {
    if let Some(path) = &config.auth.bootstrap_token_file {
        return std::fs::read_to_string(path)
            .expect("bootstrap token file")
            .trim()
            .to_string();
    }
    let token = deployd::model::auth::NewToken::generate().text;
    std::fs::create_dir_all(&config.data_dir).expect("data dir");
    let path = config.data_dir.join("test-admin.token");
    std::fs::write(&path, &token).expect("token file");
    config.auth.bootstrap_token_file = Some(path);
    token
}

/// Runs the daemon on a data directory that should make it refuse to
/// start, and returns its error.
pub async fn refused_start(data_dir: &Path) -> anyhow::Error {
    let mut config = fast_config();
    config.data_dir = data_dir.to_path_buf();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    deployd::serve(listener, config, std::future::pending())
        .await
        .expect_err("refuses to start")
}

/// Connects to `addr`, over TLS with `tls`.
pub async fn connect(
    addr: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Channel::from_shared(addr.to_string()).expect("address");
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

/// Polls `probe` every 10 ms until it yields a value or `deadline` passes.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls deployment `id` through `deployments` until it is READY; panics
/// with its error if it FAILED, or after `deadline`.
pub async fn ready_through(
    deployments: &DeploymentServiceClient<AuthChannel>,
    id: &str,
    deadline: Duration,
) -> pb::Deployment {
    eventually("the deployment is READY", deadline, || {
        let mut deployments = deployments.clone();
        let deployment_id = id.to_string();
        async move {
            let d = deployments
                .get_deployment(pb::GetDeploymentRequest { deployment_id })
                .await
                .ok()?
                .into_inner()
                .deployment?;
            assert_ne!(
                d.status,
                pb::DeploymentStatus::Failed as i32,
                "{}",
                d.error_message
            );
            (d.status == pb::DeploymentStatus::Ready as i32).then_some(d)
        }
    })
    .await
}

/// Routes by hostname, as (kind, deployment id).
pub fn route_map(routes: &[pb::Route]) -> BTreeMap<String, (i32, String)> {
    routes
        .iter()
        .map(|r| (r.fqdn.clone(), (r.kind, r.deployment_id.clone())))
        .collect()
}

pub fn routes_of_kind(routes: &[pb::Route], kind: pb::RouteKind) -> Vec<&pb::Route> {
    routes.iter().filter(|r| r.kind == kind as i32).collect()
}
