//! Bad input, fuzzed: every RPC's request type through the real gRPC
//! server, as arbitrary bytes and as well-typed messages with arbitrary
//! field values (mixed with valid ids and values, so that requests get past
//! the first check). Nothing may panic or answer `INTERNAL`/`UNKNOWN`; a
//! refusal has one of the documented codes and changes nothing: no write
//! lands in the store and the project reads back the same.
//!
//! `cargo test` runs a bounded number of cases (64 per property, a few
//! seconds); `PROPTEST_CASES=5000 cargo test --test fuzz_requests` runs
//! more.

mod common;

use std::time::Duration;

use common::raw_codec::RawCodec;
use common::*;
use deployd::cli::AuthChannel;
use deployd::pb;
use deployd::pb::create_deployment_request::Source;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use tonic::Code;
use tonic::codegen::Bytes;
use tonic::codegen::http::uri::PathAndQuery;

/// Codes a refusal may have (README, "Errors"). `OUT_OF_RANGE` is tonic's
/// answer to a message over `max_message_bytes`.
const REFUSALS: [Code; 6] = [
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
    Code::OutOfRange,
];

const PATHS: [&str; 27] = [
    "/deployd.v1.WorkspaceService/CreateWorkspace",
    "/deployd.v1.WorkspaceService/GetWorkspace",
    "/deployd.v1.ProjectService/CreateProject",
    "/deployd.v1.ProjectService/GetProject",
    "/deployd.v1.ProjectService/ListProjects",
    "/deployd.v1.ProjectService/SetEnvironmentRegions",
    "/deployd.v1.ProjectService/AddCustomDomain",
    "/deployd.v1.DeploymentService/CreateDeployment",
    "/deployd.v1.DeploymentService/GetDeployment",
    "/deployd.v1.DeploymentService/ListDeployments",
    "/deployd.v1.DeploymentService/WatchDeployment",
    "/deployd.v1.DeploymentService/Rollback",
    "/deployd.v1.DeploymentService/Promote",
    "/deployd.v1.RoutingService/ListRoutes",
    "/deployd.v1.AdminService/GetStats",
    "/grpc.health.v1.Health/Check",
    "/deployd.v1.DeploymentService/CancelDeployment",
    "/deployd.v1.DeploymentService/GetBuildLog",
    "/deployd.v1.TokenService/CreateToken",
    "/deployd.v1.TokenService/RevokeToken",
    "/deployd.v1.TokenService/ListTokens",
    "/deployd.v1.AuditService/ListAuditEvents",
    "/deployd.v1.GitHubService/ConnectRepository",
    "/deployd.v1.GitHubService/GetRepositoryConnection",
    "/deployd.v1.GitHubService/DisconnectRepository",
    "/deployd.v1.ProjectService/VerifyCustomDomain",
    "/deployd.v1.ProjectService/RemoveCustomDomain",
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// The properties reach every method of `deployd.v1`: a new RPC without
/// a path here fails this test.
#[test]
fn every_rpc_of_the_proto_is_fuzzed() {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let methods: std::collections::BTreeSet<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "deployd.v1")
        .flat_map(|f| &f.service)
        .flat_map(|s| {
            s.method
                .iter()
                .map(move |m| format!("/deployd.v1.{}/{}", s.name(), m.name()))
        })
        .collect();
    let fuzzed: std::collections::BTreeSet<String> = PATHS
        .iter()
        .filter(|p| p.starts_with("/deployd.v1."))
        .map(|p| p.to_string())
        .collect();
    assert_eq!(fuzzed, methods);
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        // Shrunk failures are printed; nothing is written into the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

/// The daemon under test and the ids that make requests get further.
struct Target {
    daemon: TestDaemon,
    /// The daemon's nameserver (no records: a verification finds nothing,
    /// and nothing is asked of a nameserver off this machine).
    _dns: common::dns::TestDns,
    channel: AuthChannel,
    workspace: String,
    project: String,
    live: String,
}

impl Target {
    async fn start() -> Self {
        // No standby within a long run: a timer's write would look like a
        // refused request's.
        let dns = common::dns::TestDns::start().await;
        let mut config = deployd::Config {
            standby_delay_ms: 24 * 60 * 60 * 1000,
            ..fast_config()
        };
        config.domains.resolver = Some(dns.addr);
        let daemon = TestDaemon::start_with(config).await;
        let project = daemon.project("acme", "web").await;
        let live = daemon
            .deploy_ready(&project.id, "production", "nginx:1")
            .await;
        daemon.drivers_settled().await;
        // Every call carries the admin token: what is fuzzed here is the
        // request, not the caller.
        let channel = daemon.channel().await;
        Self {
            _dns: dns,
            channel,
            workspace: project.workspace_id.clone(),
            project: project.id,
            live,
            daemon,
        }
    }

    /// What a refused request must leave as it was: the writes that landed
    /// (in all, any project) and the known project as the API shows it.
    async fn snapshot(&self) -> Snapshot {
        Snapshot {
            landed: self.daemon.handle().store.stats().landed(),
            project: self.daemon.get_project(&self.project).await,
            deployments: self.daemon.list(&self.project).await,
            routes: self.daemon.routes(&self.project).await,
        }
    }

    /// After a request that was accepted: wait until what it started is
    /// over (every deployment READY or FAILED, the drivers confirmed), so
    /// the next case's snapshot is not overtaken by background work.
    async fn settle(&self) {
        eventually("accepted work settles", Duration::from_secs(20), || async {
            let done = self.daemon.list(&self.project).await.iter().all(|d| {
                [pb::DeploymentStatus::Ready, pb::DeploymentStatus::Failed]
                    .map(|s| s as i32)
                    .contains(&d.status)
            });
            let idle = self.daemon.handle().reconciler.stats().pending == 0;
            (done && idle).then_some(())
        })
        .await;
        self.daemon.drivers_settled().await;
    }

    /// Sends `body` to `path` and checks the answer and the state.
    async fn check(&self, path: &'static str, body: Bytes) -> Result<(), TestCaseError> {
        let before = self.snapshot().await;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| TestCaseError::fail(format!("channel: {e}")))?;
        let request = tonic::Request::new(body);
        let answer = if path.ends_with("/WatchDeployment") {
            // The first message or the refusal is enough; the stream is
            // dropped after it.
            match grpc
                .server_streaming(request, PathAndQuery::from_static(path), RawCodec)
                .await
            {
                Ok(mut stream) => stream.get_mut().message().await.map(drop),
                Err(status) => Err(status),
            }
        } else {
            grpc.unary(request, PathAndQuery::from_static(path), RawCodec)
                .await
                .map(drop)
        };
        match answer {
            Ok(()) => {
                self.settle().await;
                Ok(())
            }
            Err(status) => {
                // tonic-health's own codec answers INTERNAL for a body it
                // cannot decode (README, "Errors"); deployd's services use
                // `pb::codec`, which says INVALID_ARGUMENT.
                let health_decode = path.starts_with("/grpc.health")
                    && status.code() == Code::Internal
                    && status.message().starts_with("failed to decode");
                prop_assert!(
                    REFUSALS.contains(&status.code()) || health_decode,
                    "{path}: {:?}: {}",
                    status.code(),
                    status.message()
                );
                prop_assert!(!status.message().is_empty(), "{path}: a refusal says why");
                let after = self.snapshot().await;
                prop_assert!(
                    before.landed == after.landed,
                    "{path}: refused ({:?}) but a write landed",
                    status.code()
                );
                prop_assert!(before == after, "{path}: refused but the project changed");
                Ok(())
            }
        }
    }
}

/// What a refusal must leave unchanged. (Compared as values: the maps in
/// a project encode in no fixed order.)
#[derive(PartialEq)]
struct Snapshot {
    landed: u64,
    project: pb::Project,
    deployments: Vec<pb::Deployment>,
    routes: Vec<pb::Route>,
}

/// Strings a fuzzer should try: anything, DNS-ish, long, and valid values.
fn text(valid: Vec<String>) -> BoxedStrategy<String> {
    let valid = if valid.is_empty() {
        vec![String::new()]
    } else {
        valid
    };
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-z0-9.-]{0,70}",
        1 => ".{0,40}".prop_map(|s| s.repeat(120)),
        1 => "[\\x00-\\x1f\\x7f-\\u{10ffff}]{1,20}",
        3 => proptest::sample::select(valid),
    ]
    .boxed()
}

fn id_of(target: &Target) -> BoxedStrategy<String> {
    text(vec![
        target.workspace.clone(),
        target.project.clone(),
        target.live.clone(),
        "dep_0000000000000000".into(),
        "prj_0000000000000000".into(),
    ])
}

/// A well-typed request with arbitrary fields, encoded, for one RPC.
fn typed_request(target: &Target) -> BoxedStrategy<(&'static str, Bytes)> {
    let id = id_of(target);
    let slug = text(vec!["production".into(), "preview".into(), "web".into()]);
    let name = text(vec!["Web".into()]);
    let key = text(vec!["key-1".into()]);
    let region = text(vec!["us-east-1".into(), "eu-central-1".into()]);
    let workspace = (slug.clone(), name.clone())
        .prop_map(|(slug, name)| msg(PATHS[0], pb::CreateWorkspaceRequest { slug, name }));
    let get_workspace = id
        .clone()
        .prop_map(|workspace_id| msg(PATHS[1], pb::GetWorkspaceRequest { workspace_id }));
    let project =
        (id.clone(), slug.clone(), name.clone()).prop_map(|(workspace_id, slug, name)| {
            msg(
                PATHS[2],
                pb::CreateProjectRequest {
                    workspace_id,
                    slug,
                    name,
                },
            )
        });
    let get_project = id
        .clone()
        .prop_map(|project_id| msg(PATHS[3], pb::GetProjectRequest { project_id }));
    let list_projects = (id.clone(), any::<u32>(), text(vec![])).prop_map(
        |(workspace_id, page_size, page_token)| {
            msg(
                PATHS[4],
                pb::ListProjectsRequest {
                    workspace_id,
                    page_size,
                    page_token,
                },
            )
        },
    );
    let regions = (
        id.clone(),
        slug.clone(),
        btree_map(region.clone(), any::<u32>(), 0..80),
        key.clone(),
    )
        .prop_map(|(project_id, environment_slug, regions, idempotency_key)| {
            msg(
                PATHS[5],
                pb::SetEnvironmentRegionsRequest {
                    project_id,
                    environment_slug,
                    regions: regions.into_iter().collect(),
                    idempotency_key,
                },
            )
        });
    let domain = (
        id.clone(),
        text(vec!["www.example.com".into()]),
        key.clone(),
    )
        .prop_map(|(project_id, fqdn, idempotency_key)| {
            msg(
                PATHS[6],
                pb::AddCustomDomainRequest {
                    project_id,
                    fqdn,
                    idempotency_key,
                },
            )
        });
    let source = prop_oneof![
        Just(None),
        text(vec!["nginx:1".into()])
            .prop_map(|image| Some(Source::DockerImage(pb::DockerImage { image }))),
        (
            text(vec!["https://git.example.test/acme/web.git".into()]),
            text(vec![SHA_A.into()]),
            text(vec!["".into(), "app".into()]),
            text(vec!["".into(), "Dockerfile".into()]),
        )
            .prop_map(|(repository, commit_sha, context_path, dockerfile_path)| {
                Some(Source::Git(pb::GitSource {
                    repository,
                    commit_sha,
                    context_path,
                    dockerfile_path,
                }))
            }),
    ];
    let commit = proptest::option::of(
        (
            text(vec![SHA_A.into()]),
            text(vec![]),
            text(vec![]),
            text(vec![]),
            proptest::option::of((any::<i64>(), any::<i32>())),
        )
            .prop_map(
                |(sha, message, author_name, author_email, at)| pb::GitCommit {
                    sha,
                    message,
                    author_name,
                    author_email,
                    committed_at: at
                        .map(|(seconds, nanos)| pbjson_types::Timestamp { seconds, nanos }),
                },
            ),
    );
    let deploy = (
        (id.clone(), slug.clone(), text(vec!["main".into()])),
        source,
        commit,
        vec(text(vec![]), 0..70),
        key.clone(),
        any::<u32>(),
    )
        .prop_map(
            |(
                (project_id, environment_slug, branch),
                source,
                git_commit,
                command,
                idempotency_key,
                port,
            )| {
                msg(
                    PATHS[7],
                    pb::CreateDeploymentRequest {
                        project_id,
                        environment_slug,
                        branch,
                        source,
                        git_commit,
                        command,
                        idempotency_key,
                        port,
                    },
                )
            },
        );
    let get_deployment = id
        .clone()
        .prop_map(|deployment_id| msg(PATHS[8], pb::GetDeploymentRequest { deployment_id }));
    let list = (
        id.clone(),
        slug.clone(),
        any::<i32>(),
        any::<u32>(),
        text(vec!["1".into()]),
    )
        .prop_map(
            |(project_id, environment_slug, status, page_size, page_token)| {
                msg(
                    PATHS[9],
                    pb::ListDeploymentsRequest {
                        project_id,
                        environment_slug,
                        status,
                        page_size,
                        page_token,
                    },
                )
            },
        );
    let watch = id
        .clone()
        .prop_map(|deployment_id| msg(PATHS[10], pb::WatchDeploymentRequest { deployment_id }));
    let rollback = (id.clone(), id.clone(), key.clone()).prop_map(
        |(source_deployment_id, target_deployment_id, idempotency_key)| {
            msg(
                PATHS[11],
                pb::RollbackRequest {
                    source_deployment_id,
                    target_deployment_id,
                    idempotency_key,
                },
            )
        },
    );
    let promote = (id.clone(), key).prop_map(|(target_deployment_id, idempotency_key)| {
        msg(
            PATHS[12],
            pb::PromoteRequest {
                target_deployment_id,
                idempotency_key,
            },
        )
    });
    let cancel = id
        .clone()
        .prop_map(|deployment_id| msg(PATHS[16], pb::CancelDeploymentRequest { deployment_id }));
    let build_log = id
        .clone()
        .prop_map(|deployment_id| msg(PATHS[17], pb::GetBuildLogRequest { deployment_id }));
    let create_token = (any::<i32>(), id.clone(), text(vec!["ci".into()])).prop_map(
        |(role, workspace_id, description)| {
            msg(
                PATHS[18],
                pb::CreateTokenRequest {
                    role,
                    workspace_id,
                    description,
                },
            )
        },
    );
    let revoke = text(vec!["tok_0000000000000000".into()])
        .prop_map(|token_id| msg(PATHS[19], pb::RevokeTokenRequest { token_id }));
    let tokens = (id.clone(), any::<u32>(), text(vec![])).prop_map(
        |(workspace_id, page_size, page_token)| {
            msg(
                PATHS[20],
                pb::ListTokensRequest {
                    workspace_id,
                    page_size,
                    page_token,
                },
            )
        },
    );
    let audit = (id.clone(), id.clone(), any::<u32>(), text(vec![])).prop_map(
        |(workspace_id, project_id, page_size, page_token)| {
            msg(
                PATHS[21],
                pb::ListAuditEventsRequest {
                    workspace_id,
                    project_id,
                    page_size,
                    page_token,
                },
            )
        },
    );
    let connect = (
        id.clone(),
        text(vec!["acme/web".into()]),
        text(vec!["https://git.example.test/acme/web.git".into()]),
        text(vec!["app".into()]),
        text(vec!["Dockerfile".into()]),
    )
        .prop_map(
            |(project_id, repository, clone_url, context_path, dockerfile_path)| {
                msg(
                    PATHS[22],
                    pb::ConnectRepositoryRequest {
                        project_id,
                        repository,
                        clone_url,
                        context_path,
                        dockerfile_path,
                    },
                )
            },
        );
    let connection = id
        .clone()
        .prop_map(|project_id| msg(PATHS[23], pb::GetRepositoryConnectionRequest { project_id }));
    let disconnect = id
        .clone()
        .prop_map(|project_id| msg(PATHS[24], pb::DisconnectRepositoryRequest { project_id }));
    let verify =
        (id.clone(), text(vec!["www.example.com".into()])).prop_map(|(project_id, fqdn)| {
            msg(
                PATHS[25],
                pb::VerifyCustomDomainRequest { project_id, fqdn },
            )
        });
    let remove =
        (id.clone(), text(vec!["www.example.com".into()])).prop_map(|(project_id, fqdn)| {
            msg(
                PATHS[26],
                pb::RemoveCustomDomainRequest { project_id, fqdn },
            )
        });
    let routes = (id, any::<i32>(), any::<u32>(), text(vec![])).prop_map(
        |(project_id, kind, page_size, page_token)| {
            msg(
                PATHS[13],
                pb::ListRoutesRequest {
                    project_id,
                    kind,
                    page_size,
                    page_token,
                },
            )
        },
    );
    prop_oneof![
        workspace,
        get_workspace,
        project,
        get_project,
        list_projects,
        regions,
        domain,
        deploy,
        get_deployment,
        list,
        watch,
        rollback,
        promote,
        routes,
        cancel,
        build_log,
        create_token,
        revoke,
        tokens,
        audit,
        connect,
        connection,
        disconnect,
        verify,
        remove,
    ]
    .boxed()
}

fn msg(path: &'static str, message: impl prost::Message) -> (&'static str, Bytes) {
    (path, Bytes::from(message.encode_to_vec()))
}

/// Bytes for any RPC: random, or a valid message of another type, or a
/// valid message with random bytes appended (unknown or broken fields).
fn raw_request() -> impl Strategy<Value = (&'static str, Bytes)> {
    let body = prop_oneof![
        vec(any::<u8>(), 0..512),
        // Field tags and wire types a message could hold, then junk.
        (vec((1u8..=20, 0u8..=7), 1..8), vec(any::<u8>(), 0..64)).prop_map(|(fields, tail)| {
            let mut bytes: Vec<u8> = fields.into_iter().map(|(f, w)| (f << 3) | w).collect();
            bytes.extend(tail);
            bytes
        }),
    ];
    (proptest::sample::select(PATHS.to_vec()), body)
        .prop_map(|(path, body)| (path, Bytes::from(body)))
}

fn run_property(strategy: impl Fn(&Target) -> BoxedStrategy<(&'static str, Bytes)>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let target = runtime.block_on(Target::start());
    let strategy = strategy(&target);
    let outcome = runner().run(&strategy, |(path, body)| {
        runtime.block_on(target.check(path, body))
    });
    // The daemon survived every case: it still deploys.
    runtime.block_on(async {
        target
            .daemon
            .deploy_ready(&target.project, "preview", "nginx:2")
            .await;
    });
    match outcome {
        Ok(()) => {}
        // The input can be megabytes; its path and head say enough.
        Err(TestError::Fail(reason, (path, body))) => {
            let head = &body[..body.len().min(200)];
            panic!(
                "{reason}\nminimal input: {path} {} bytes: {head:?}",
                body.len()
            );
        }
        Err(TestError::Abort(reason)) => panic!("{reason}"),
    }
}

#[test]
fn arbitrary_bytes_to_every_rpc_are_refused_cleanly_and_change_nothing() {
    run_property(|_| raw_request().boxed());
}

#[test]
fn arbitrary_field_values_of_every_request_type_are_refused_cleanly_and_change_nothing() {
    run_property(typed_request);
}

#[tokio::test]
async fn a_message_over_max_message_bytes_is_refused_before_decoding() {
    let daemon = TestDaemon::start_with(deployd::Config {
        max_message_bytes: 16 * 1024,
        ..fast_config()
    })
    .await;
    let project = daemon.project("acme", "web").await;
    let mut request = image_request(&project.id, "production", "nginx:1");
    request.command = vec!["x".repeat(4096); 5];
    let status = daemon
        .deployments()
        .await
        .create_deployment(request.clone())
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    assert!(daemon.list(&project.id).await.is_empty());
    // Under the limit, the same request is fine.
    request.command.truncate(3);
    daemon.create(request).await;
}
