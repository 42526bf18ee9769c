//! Connections and streams are bounded and cannot be held forever: a
//! client over `max_connections` waits until one closes, a socket that
//! never speaks HTTP/2 or holds no stream is closed, watchers are bounded
//! overall and per deployment, a watch whose client stops reading is ended,
//! and SIGTERM exits within its bound with idle sockets and a never-read
//! watch open, ending the watch with UNAVAILABLE.

mod common;

use std::time::{Duration, Instant};

use common::process::DaemonProcess;
use common::{STUCK_REGION, TestDaemon, config_with_stuck_region, eventually, fast_config};
use deployd::cli::AuthChannel;
use deployd::config::RegionConfig;
use deployd::pb;
use deployd::pb::admin_service_client::AdminServiceClient;
use deployd::pb::deployment_service_client::DeploymentServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// Only guards against a hang; no assertion depends on it.
const HANG_GUARD: Duration = Duration::from_secs(20);

fn socket_addr(daemon_addr: &str) -> String {
    daemon_addr.trim_start_matches("http://").to_string()
}

/// `channel` with `token` on every call.
fn authed(channel: Channel, token: &str) -> AuthChannel {
    deployd::cli::with_token(channel, Some(token)).unwrap()
}

async fn stats_on(channel: AuthChannel) -> Result<pb::GetStatsResponse, tonic::Status> {
    AdminServiceClient::new(channel)
        .get_stats(pb::GetStatsRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// Reads until the server closes the connection; panics on a hang.
async fn read_until_closed(socket: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the daemon closed the connection");
}

#[tokio::test]
async fn a_client_over_max_connections_waits_until_one_closes() {
    let daemon = TestDaemon::start_with(deployd::Config {
        max_connections: 3,
        ..fast_config()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let channel = Endpoint::from_shared(daemon.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let channel = authed(channel, &daemon.token);
        // A call proves the daemon serves this connection (and holds it).
        stats_on(channel.clone()).await.expect("served");
        open.push(channel);
    }
    let stats = stats_on(open[0].clone()).await.unwrap();
    assert_eq!(stats.open_connections, 3);

    let extra = authed(
        Endpoint::from_shared(daemon.addr.clone())
            .unwrap()
            .connect_lazy(),
        &daemon.token,
    );
    let mut waiting = tokio::spawn(stats_on(extra));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut waiting)
            .await
            .is_err(),
        "the fourth connection was served while three were open"
    );

    drop(open.remove(0));
    let served = tokio::time::timeout(HANG_GUARD, waiting)
        .await
        .expect("the fourth connection is served once one closes")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
}

#[tokio::test]
async fn a_call_over_max_streams_per_connection_waits_for_a_stream_to_end() {
    let daemon = TestDaemon::start_with(deployd::Config {
        max_streams_per_connection: 2,
        ..config_with_stuck_region()
    })
    .await;
    let ids = stuck_deployments(&daemon, 1).await;
    let channel = Endpoint::from_shared(daemon.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let channel = authed(channel, &daemon.token);
    let mut client = DeploymentServiceClient::new(channel.clone());
    let first = watch(&mut client, &ids[0]).await.expect("first watch");
    let _second = watch(&mut client, &ids[0]).await.expect("second watch");

    let mut waiting = tokio::spawn(stats_on(channel));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut waiting)
            .await
            .is_err(),
        "a third stream was served on the connection"
    );
    drop(first);
    let served = tokio::time::timeout(HANG_GUARD, waiting)
        .await
        .expect("served once a watch ended")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
}

#[tokio::test]
async fn a_connection_that_never_speaks_http2_is_closed_after_the_handshake_timeout() {
    let daemon = TestDaemon::start_with(deployd::Config {
        handshake_timeout_ms: 200,
        idle_timeout_ms: 600_000,
        ..fast_config()
    })
    .await;
    let probe = Endpoint::from_shared(daemon.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let probe = authed(probe, &daemon.token);
    let open = || {
        let probe = probe.clone();
        async move { stats_on(probe).await.ok().map(|s| s.open_connections) }
    };
    let before = open().await.expect("stats");
    let mut socket = TcpStream::connect(socket_addr(&daemon.addr)).await.unwrap();
    eventually("the daemon accepted it", HANG_GUARD, || async {
        (open().await? > before).then_some(())
    })
    .await;
    let began = Instant::now();
    read_until_closed(&mut socket).await;
    eprintln!("closed after {:?}", began.elapsed());
    eventually("it is gone from the daemon's count", HANG_GUARD, || async {
        (open().await? <= before).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_connection_without_streams_is_closed_after_the_idle_timeout() {
    let daemon = TestDaemon::start_with(deployd::Config {
        handshake_timeout_ms: 600_000,
        idle_timeout_ms: 200,
        ..fast_config()
    })
    .await;
    let mut socket = TcpStream::connect(socket_addr(&daemon.addr)).await.unwrap();
    // The client preface and an empty SETTINGS frame: a valid HTTP/2
    // client that then opens no stream.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    socket.write_all(&hello).await.unwrap();
    read_until_closed(&mut socket).await;

    // A connection with a stream open is not idle: a watch outlives many
    // idle timeouts.
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .create(common::git_request(
            &project.id,
            "production",
            "slow",
            common::SHA_A,
        ))
        .await;
    let mut watch = daemon
        .deployments()
        .await
        .watch_deployment(pb::WatchDeploymentRequest { deployment_id: id })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("snapshot");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(daemon.stats().await.watch_streams, 1, "the watch is open");
}

#[tokio::test]
async fn the_listening_socket_closes_when_the_daemon_stops() {
    let daemon = TestDaemon::start().await;
    let addr = socket_addr(&daemon.addr);
    let _stopped = daemon.stop().await;
    let connected = TcpStream::connect(&addr).await;
    assert!(connected.is_err(), "something still listens on {addr}");
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let daemon = TestDaemon::start_with(deployd::Config {
        handshake_timeout_ms: 600_000,
        idle_timeout_ms: 600_000,
        keepalive_interval_ms: 100,
        keepalive_timeout_ms: 100,
        ..fast_config()
    })
    .await;
    let mut socket = TcpStream::connect(socket_addr(&daemon.addr)).await.unwrap();
    // A valid preface, then silence: no SETTINGS ack, no PING ack.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    socket.write_all(&hello).await.unwrap();
    read_until_closed(&mut socket).await;
}

/// A project whose production deployments never get ready, so watches on
/// them stay open.
async fn stuck_deployments(daemon: &TestDaemon, count: usize) -> Vec<String> {
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(&project.id, "production", &[(STUCK_REGION, 1)])
        .await;
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(
            daemon
                .create(common::image_request(
                    &project.id,
                    "production",
                    &format!("nginx:{i}"),
                ))
                .await,
        );
    }
    ids
}

async fn watch(
    client: &mut DeploymentServiceClient<AuthChannel>,
    id: &str,
) -> Result<tonic::Streaming<pb::WatchDeploymentResponse>, tonic::Status> {
    client
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn watchers_over_the_limits_get_resource_exhausted() {
    let daemon = TestDaemon::start_with(deployd::Config {
        max_watchers: 3,
        max_watchers_per_deployment: 2,
        ..config_with_stuck_region()
    })
    .await;
    let ids = stuck_deployments(&daemon, 2).await;
    let mut client = daemon.deployments().await;

    let first = watch(&mut client, &ids[0]).await.expect("first watch");
    let _second = watch(&mut client, &ids[0]).await.expect("second watch");
    let refused = watch(&mut client, &ids[0])
        .await
        .expect_err("third refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("already has 2 watch streams"),
        "{}",
        refused.message()
    );

    let _third = watch(&mut client, &ids[1])
        .await
        .expect("another deployment");
    let refused = watch(&mut client, &ids[1])
        .await
        .expect_err("over the total");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("too many watch streams"),
        "{}",
        refused.message()
    );
    assert_eq!(daemon.stats().await.watch_streams, 3);

    // A closed watch gives its place back.
    drop(first);
    eventually("a place is free again", HANG_GUARD, || {
        let mut client = client.clone();
        let id = ids[0].clone();
        async move { watch(&mut client, &id).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn a_watch_whose_client_never_reads_is_ended_and_its_connection_closed() {
    let mut config = fast_config();
    // Slow enough that the watch below starts before the deployment is
    // READY, so there are events to send after the snapshot.
    config.regions = [(
        "us-east-1".to_string(),
        RegionConfig::Simulated {
            ready_after_ms: 1500,
            never_ready: false,
            persist: false,
            serve_http: true,
        },
    )]
    .into();
    config.watch_send_timeout_ms = 200;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .create(common::image_request(&project.id, "production", "nginx:1"))
        .await;

    // A zero flow-control window: the client takes no data at all, as if
    // its application never read.
    let stingy = Endpoint::from_shared(daemon.addr.clone())
        .unwrap()
        .initial_stream_window_size(Some(0))
        .connect()
        .await
        .unwrap();
    let stingy = authed(stingy, &daemon.token);
    let mut unread = watch(&mut DeploymentServiceClient::new(stingy), &id)
        .await
        .expect("watch");
    assert_ne!(
        daemon.get(&id).await.status,
        pb::DeploymentStatus::Ready as i32,
        "the watch began before READY, so its snapshot was not terminal"
    );
    assert_eq!(daemon.stats().await.watch_streams, 1);

    daemon.wait_status(&id, pb::DeploymentStatus::Ready).await;
    eventually("the unread watch is dropped", HANG_GUARD, || async {
        (daemon.stats().await.watch_streams == 0).then_some(())
    })
    .await;
    // Its connection was closed, so the client sees an error, not a hang.
    let ended = tokio::time::timeout(HANG_GUARD, async {
        loop {
            match unread.message().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ended");
    assert!(ended.is_err(), "{ended:?}");
}

async fn create_project(channel: AuthChannel) -> pb::Project {
    use deployd::pb::project_service_client::ProjectServiceClient;
    use deployd::pb::workspace_service_client::WorkspaceServiceClient;
    let workspace = WorkspaceServiceClient::new(channel.clone())
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "acme".into(),
            name: "Acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    ProjectServiceClient::new(channel)
        .create_project(pb::CreateProjectRequest {
            workspace_id: workspace.id,
            slug: "web".into(),
            name: "Web".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap()
}

fn process_config(data_dir: &std::path::Path) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{}"
shutdown_timeout_ms = 2000

[edge]
listen = "127.0.0.1:0"

[regions.stuck-1]
driver = "simulated"
never_ready = true
"#,
        data_dir.display()
    )
}

#[tokio::test]
async fn sigterm_exits_in_time_with_idle_sockets_and_ends_watches_with_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("deployd.toml");
    std::fs::write(&config_path, process_config(&dir.path().join("data"))).unwrap();
    let mut daemon = DaemonProcess::spawn(&config_path).await.expect("starts");
    let channel = daemon.channel().await;
    let project = create_project(channel.clone()).await;
    let mut deployments = DeploymentServiceClient::new(channel.clone());
    let id = deployments
        .create_deployment(common::image_request(&project.id, "production", "nginx:1"))
        .await
        .unwrap()
        .into_inner()
        .deployment_id;
    let mut unread = watch(&mut deployments, &id).await.expect("watch");

    let addr = socket_addr(&daemon.addr);
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    eventually("the daemon accepted them all", HANG_GUARD, || {
        let channel = channel.clone();
        async move { (stats_on(channel).await.ok()?.open_connections >= 101).then_some(()) }
    })
    .await;

    let began = Instant::now();
    daemon.terminate();
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.child.wait())
        .await
        .expect("exits")
        .unwrap();
    let took = began.elapsed();
    eprintln!("exit on SIGTERM with 100 idle connections and an unread watch: {took:?}");
    assert!(status.success(), "exit status {status:?}");

    // What was sent before the cut is still there to read, then the status.
    let mut events = 0;
    let cut = loop {
        match unread.message().await {
            Ok(Some(_)) => events += 1,
            Ok(None) => panic!("the watch ended with OK after {events} events"),
            Err(status) => break status,
        }
    };
    assert!(events >= 1, "the snapshot came first");
    assert_eq!(cut.code(), tonic::Code::Unavailable);
    assert_eq!(cut.message(), "the daemon is shutting down");
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The figures in README's "Connections" section, on the real binary:
/// `cargo test --release --test connections -- --ignored --nocapture`.
/// Opens 20,000 watch streams (100 connections of 200), reads the daemon's
/// VmRSS, closes them, reads it again, then times SIGTERM with 100 idle
/// sockets open. Prints; asserts only that things happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run by hand"]
async fn figures_watch_memory_and_sigterm_time() {
    const CONNECTIONS: usize = 100;
    const PER_CONNECTION: usize = 200;
    const DEPLOYMENTS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("deployd.toml");
    let config = process_config(&dir.path().join("data")).replace(
        "shutdown_timeout_ms = 2000",
        "shutdown_timeout_ms = 10000\nmax_watchers = 20000\nmax_watchers_per_deployment = 1000",
    );
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = DaemonProcess::spawn(&config_path).await.expect("starts");
    let pid = daemon.child.id().expect("pid");
    let channel = daemon.channel().await;
    let project = create_project(channel.clone()).await;
    let mut deployments = DeploymentServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    for i in 0..DEPLOYMENTS {
        ids.push(
            deployments
                .create_deployment(common::image_request(
                    &project.id,
                    "production",
                    &format!("nginx:{i}"),
                ))
                .await
                .unwrap()
                .into_inner()
                .deployment_id,
        );
    }
    let idle_rss = vm_rss_kib(pid);

    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let channel = Endpoint::from_shared(daemon.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let channel = authed(channel, &daemon.token);
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = DeploymentServiceClient::new(channel.clone());
            let mut streams = Vec::new();
            for s in 0..PER_CONNECTION {
                let id = &ids[(c * PER_CONNECTION + s) % ids.len()];
                let mut stream = watch(&mut client, id).await.expect("watch");
                stream.message().await.expect("snapshot").expect("snapshot");
                streams.push(stream);
            }
            (channel, streams)
        }));
    }
    let mut open = Vec::new();
    for task in tasks {
        open.push(task.await.unwrap());
    }
    let streams = stats_on(channel.clone()).await.unwrap().watch_streams;
    let open_rss = vm_rss_kib(pid);
    drop(open);
    eventually("every watch ended", Duration::from_secs(60), || {
        let channel = channel.clone();
        async move { (stats_on(channel).await.ok()?.watch_streams == 0).then_some(()) }
    })
    .await;
    // The daemon gives memory back on a 5 s tick; wait for it, bounded.
    let closed_rss = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let rss = vm_rss_kib(pid);
            if rss < open_rss / 2 {
                return rss;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| vm_rss_kib(pid));
    eprintln!(
        "daemon VmRSS: {idle_rss} KiB before, {open_rss} KiB with {streams} watch streams open, \
         {closed_rss} KiB after they closed"
    );

    let addr = socket_addr(&daemon.addr);
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let began = Instant::now();
    daemon.terminate();
    let status = tokio::time::timeout(Duration::from_secs(60), daemon.child.wait())
        .await
        .expect("exits")
        .unwrap();
    eprintln!(
        "SIGTERM to exit with 100 idle connections: {:?} ({status})",
        began.elapsed()
    );
    assert_eq!(streams, (CONNECTIONS * PER_CONNECTION) as u64);
}
