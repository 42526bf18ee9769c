//! What generic gRPC tools see: the standard health service, and server
//! reflection (v1 and v1alpha) listing every service and serving the
//! descriptors needed to call them without the .proto files.

mod common;

use common::*;
use deployd::cli::AuthChannel;
use prost::Message;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

const SERVICES: [&str; 7] = [
    "deployd.v1.AdminService",
    "deployd.v1.AuditService",
    "deployd.v1.DeploymentService",
    "deployd.v1.ProjectService",
    "deployd.v1.RoutingService",
    "deployd.v1.TokenService",
    "deployd.v1.WorkspaceService",
];

async fn channel(daemon: &TestDaemon) -> AuthChannel {
    daemon.channel().await
}

#[tokio::test]
async fn health_reports_serving_for_the_daemon_and_each_service() {
    let daemon = TestDaemon::start().await;
    let mut health = HealthClient::new(channel(&daemon).await);
    for service in std::iter::once("").chain(SERVICES) {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_v1_lists_and_describes_every_service() {
    let daemon = TestDaemon::start().await;
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(channel(&daemon).await);
    let requests = vec![
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "deployd.v1.DeploymentService".into(),
                ),
            ),
        },
    ];
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let listed = match responses.next().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => panic!("unexpected {other:?}"),
    };
    for service in SERVICES.iter().chain(&[
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]) {
        assert!(
            listed.iter().any(|s| s == service),
            "{service} in {listed:?}"
        );
    }

    let files = match responses.next().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) => {
            files.file_descriptor_proto
        }
        other => panic!("unexpected {other:?}"),
    };
    let descriptors: Vec<prost_types::FileDescriptorProto> = files
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect();
    let deployd = descriptors
        .iter()
        .find(|f| f.package() == "deployd.v1")
        .expect("deployd.v1 descriptor");
    let methods: Vec<&str> = deployd
        .service
        .iter()
        .find(|s| s.name() == "DeploymentService")
        .unwrap()
        .method
        .iter()
        .map(|m| m.name())
        .collect();
    for method in [
        "CreateDeployment",
        "GetDeployment",
        "ListDeployments",
        "WatchDeployment",
        "Rollback",
        "Promote",
    ] {
        assert!(methods.contains(&method), "{method}");
    }
    let enums: Vec<&str> = deployd.enum_type.iter().map(|e| e.name()).collect();
    assert_eq!(
        enums,
        ["DeploymentStatus", "DesiredState", "RouteKind", "Role"]
    );
    // Clients fetch imports by file name, as grpcurl does: every dependency
    // must be served too.
    assert_eq!(deployd.dependency, ["google/protobuf/timestamp.proto"]);
    for dependency in &deployd.dependency {
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileByFilename(dependency.clone()),
            ),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.next().await.unwrap().unwrap().message_response;
        assert!(
            matches!(
                response,
                Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
            ),
            "{dependency}: {response:?}"
        );
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_every_service() {
    let daemon = TestDaemon::start().await;
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(&daemon).await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let listed = match responses.next().await.unwrap().unwrap().message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => panic!("unexpected {other:?}"),
    };
    for service in SERVICES {
        assert!(
            listed.iter().any(|s| s == service),
            "{service} in {listed:?}"
        );
    }
}

#[tokio::test]
async fn stats_count_commits_and_actors() {
    let daemon = TestDaemon::start().await;
    let mut admin =
        deployd::pb::admin_service_client::AdminServiceClient::new(channel(&daemon).await);
    let before = admin
        .get_stats(deployd::pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let project = daemon.project("acme", "web").await;
    daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let after = admin
        .get_stats(deployd::pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    // Workspace, project, and the deploy's steps: several operations, each
    // in some commit.
    assert!(
        after.committed_operations >= before.committed_operations + 4,
        "{after:?}"
    );
    assert!(after.commits > before.commits);
    assert!(after.committed_operations >= after.commits);
    assert_eq!(after.failed_commits, 0);
    assert_eq!(after.running_project_actors, 1);
    assert_eq!(after.broken_projects, 0);
}
