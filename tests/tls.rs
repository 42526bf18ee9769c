//! TLS on the gRPC API and the edge, with certificates made at test time
//! (rcgen): a handshake and a call; a reload (file change, SIGHUP) that new
//! connections see while an open one keeps working; a required client
//! certificate, and a client CA file replaced while the daemon runs; HTTPS through the edge; and no plain text off loopback
//! without the opt-in.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use deployd::cli::{AuthChannel, with_token};
use deployd::config::TlsConfig;
use deployd::pb;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA that signs server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` (a server name, or a client's), and for
    /// 127.0.0.1 (an IP address as the CLI is given it).
    fn leaf(&self, name: &str) -> Leaf {
        let names = vec![name.to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes `leaf` where the daemon reads it, atomically (rename), as a
/// deployment tool would.
fn install(leaf: &Leaf, dir: &Path) -> TlsConfig {
    let files = TlsConfig {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
        client_ca_file: None,
        reload_poll_ms: 20,
    };
    for (path, text) in [(&files.cert_file, &leaf.cert), (&files.key_file, &leaf.key)] {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text).expect("write");
        std::fs::rename(&temporary, path).expect("rename");
    }
    files
}

fn trusting(ca: &Ca) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
}

async fn create_workspace(channel: AuthChannel, slug: &str) -> Result<(), tonic::Status> {
    WorkspaceServiceClient::new(channel)
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: slug.into(),
            name: slug.into(),
        })
        .await
        .map(drop)
}

/// `channel` with the daemon's admin token.
fn authorized(daemon: &TestDaemon, channel: Channel) -> AuthChannel {
    with_token(channel, Some(&daemon.token)).expect("token")
}

/// Whether a fresh connection trusting only `ca` gets a call through.
async fn new_connection_trusts(daemon: &TestDaemon, ca: &Ca, slug: &str) -> bool {
    match connect(&daemon.addr, Some(trusting(ca))).await {
        Ok(channel) => create_workspace(authorized(daemon, channel), slug)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_api_speaks_tls_and_refuses_plain_text() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("test ca");
    let mut config = fast_config();
    config.tls = Some(install(&ca.leaf("localhost"), dir.path()));
    let daemon = TestDaemon::start_tls(config, trusting(&ca)).await;
    assert!(daemon.addr.starts_with("https://"));

    create_workspace(daemon.channel().await, "acme")
        .await
        .expect("a call over TLS");
    let project = daemon.project("other", "web").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    assert_eq!(
        daemon.get(&live).await.status,
        pb::DeploymentStatus::Ready as i32
    );

    // A plain-text client gets nowhere.
    let plain = daemon.addr.replace("https://", "http://");
    let refused = match connect(&plain, None).await {
        Ok(channel) => create_workspace(authorized(&daemon, channel), "plain")
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plain-text call went through");
    // A client that does not trust the daemon's CA is refused too.
    assert!(!new_connection_trusts(&daemon, &Ca::new("another ca"), "untrusted").await);
}

#[tokio::test]
async fn a_changed_certificate_file_is_served_to_new_connections_while_open_ones_keep_working() {
    let dir = tempfile::tempdir().expect("dir");
    let (first, second) = (Ca::new("first ca"), Ca::new("second ca"));
    let mut config = fast_config();
    config.tls = Some(install(&first.leaf("localhost"), dir.path()));
    let daemon = TestDaemon::start_tls(config, trusting(&first)).await;
    let open = daemon.channel().await;
    create_workspace(open.clone(), "before")
        .await
        .expect("call");

    install(&second.leaf("localhost"), dir.path());
    let mut n = 0;
    eventually(
        "new connections get the new certificate",
        Duration::from_secs(10),
        || {
            n += 1;
            let slug = format!("after-{n}");
            let second = &second;
            let daemon = &daemon;
            async move {
                new_connection_trusts(daemon, second, &slug)
                    .await
                    .then_some(())
            }
        },
    )
    .await;
    assert!(!new_connection_trusts(&daemon, &first, "old-ca").await);
    // The open connection still works. It trusts only the first CA, so a
    // reconnect (which would meet the new certificate) would fail: this
    // call went over the connection opened before the reload.
    create_workspace(open, "still-open")
        .await
        .expect("the open connection");
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let (first, second) = (Ca::new("first ca"), Ca::new("second ca"));
    let mut config = fast_config();
    let mut files = install(&first.leaf("localhost"), dir.path());
    // Only the signal can trigger a reload within this test.
    files.reload_poll_ms = 3_600_000;
    config.tls = Some(files);
    let daemon = TestDaemon::start_tls(config, trusting(&first)).await;
    let open = daemon.channel().await;
    create_workspace(open.clone(), "before")
        .await
        .expect("call");

    install(&second.leaf("localhost"), dir.path());
    assert!(
        new_connection_trusts(&daemon, &first, "not-yet").await,
        "no reload before the signal"
    );
    // The daemon's handler is installed (it started), so the signal does
    // not end the test process.
    // SAFETY: kill(2) on our own pid with a handled signal.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let mut n = 0;
    eventually("SIGHUP reloads", Duration::from_secs(10), || {
        n += 1;
        let slug = format!("after-{n}");
        let (second, daemon) = (&second, &daemon);
        async move {
            new_connection_trusts(daemon, second, &slug)
                .await
                .then_some(())
        }
    })
    .await;
    create_workspace(open, "still-open")
        .await
        .expect("the open connection");
}

#[tokio::test]
async fn a_required_client_certificate_that_is_missing_or_foreign_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let client_ca_file = dir.path().join("clients.pem");
    std::fs::write(&client_ca_file, client_ca.pem()).expect("write");
    let mut files = install(&server_ca.leaf("localhost"), dir.path());
    files.client_ca_file = Some(client_ca_file);
    let mut config = fast_config();
    config.tls = Some(files);
    let with =
        |leaf: &Leaf| trusting(&server_ca).identity(Identity::from_pem(&leaf.cert, &leaf.key));
    let daemon = TestDaemon::start_tls(config, with(&client_ca.leaf("operator"))).await;

    create_workspace(daemon.channel().await, "acme")
        .await
        .expect("a client with a certificate of the client CA");
    for (what, tls) in [
        ("no client certificate", trusting(&server_ca)),
        (
            "a certificate of another CA",
            with(&Ca::new("rogue ca").leaf("mallory")),
        ),
    ] {
        let refused = match connect(&daemon.addr, Some(tls)).await {
            Ok(channel) => create_workspace(authorized(&daemon, channel), "refused")
                .await
                .is_err(),
            Err(_) => true,
        };
        assert!(refused, "{what}: the call went through");
    }
}

#[tokio::test]
async fn a_replaced_client_ca_file_is_used_for_new_connections() {
    let dir = tempfile::tempdir().expect("dir");
    let server_ca = Ca::new("server ca");
    let (old_clients, new_clients) = (Ca::new("old client ca"), Ca::new("new client ca"));
    let client_ca_file = dir.path().join("clients.pem");
    std::fs::write(&client_ca_file, old_clients.pem()).expect("write");
    let mut files = install(&server_ca.leaf("localhost"), dir.path());
    files.client_ca_file = Some(client_ca_file.clone());
    let mut config = fast_config();
    config.tls = Some(files);
    let with =
        |leaf: &Leaf| trusting(&server_ca).identity(Identity::from_pem(&leaf.cert, &leaf.key));
    let (old_operator, new_operator) = (old_clients.leaf("old"), new_clients.leaf("new"));
    let daemon = TestDaemon::start_tls(config, with(&old_operator)).await;
    let open = daemon.channel().await;
    create_workspace(open.clone(), "before")
        .await
        .expect("a client of the old CA, before the change");
    let new_connection_passes = |leaf: &Leaf, slug: String| {
        let tls = with(leaf);
        let daemon = &daemon;
        async move {
            match connect(&daemon.addr, Some(tls)).await {
                Ok(channel) => create_workspace(authorized(daemon, channel), &slug)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    };
    assert!(
        !new_connection_passes(&new_operator, "too-early".into()).await,
        "a client of the new CA before the change"
    );

    let temporary = client_ca_file.with_extension("tmp");
    std::fs::write(&temporary, new_clients.pem()).expect("write");
    std::fs::rename(&temporary, &client_ca_file).expect("rename");
    let mut n = 0;
    eventually(
        "a client of the new CA gets in",
        Duration::from_secs(10),
        || {
            n += 1;
            let passes = new_connection_passes(&new_operator, format!("after-{n}"));
            async move { passes.await.then_some(()) }
        },
    )
    .await;
    assert!(
        !new_connection_passes(&old_operator, "old-ca".into()).await,
        "a new connection with a certificate of the replaced CA"
    );
    create_workspace(open, "still-open")
        .await
        .expect("the connection opened before the change");
}

#[tokio::test]
async fn the_edge_serves_https() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("edge ca");
    let mut config = fast_config();
    config.edge.tls = Some(install(&ca.leaf("web-acme.deployd.local"), dir.path()));
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;

    let (status, body) = https_get(daemon.edge(), &ca, "web-acme.deployd.local").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.lines().next(), Some(live.as_str()));
    assert!(
        body.lines().any(|l| l == "x-forwarded-proto: https"),
        "{body}"
    );
    // Plain HTTP to the TLS port is not served.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::spawn(common::http::get(
            daemon.edge(),
            "web-acme.deployd.local",
            &[],
        )),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(ref answer)) if answer.status == 200),
        "plain HTTP was served: {plain:?}"
    );
}

#[tokio::test]
async fn plain_text_off_loopback_needs_the_opt_in() {
    let mut config = fast_config();
    config.listen = "0.0.0.0:0".parse().unwrap();
    let error = config.validate().expect_err("refused").to_string();
    assert!(error.contains("allow_plaintext_non_loopback"), "{error}");
    assert!(error.contains("listen"), "{error}");
    let mut edge = fast_config();
    edge.edge.listen = "0.0.0.0:0".parse().unwrap();
    assert!(edge.validate().is_err());
    let mut metrics = fast_config();
    metrics.metrics.listen = Some("0.0.0.0:0".parse().unwrap());
    assert!(metrics.validate().is_err());

    // With TLS on the API, only the edge would still be plain text.
    let mut tls = fast_config();
    tls.listen = "0.0.0.0:0".parse().unwrap();
    tls.tls = Some(TlsConfig {
        cert_file: PathBuf::from("cert.pem"),
        key_file: PathBuf::from("key.pem"),
        client_ca_file: None,
        reload_poll_ms: 2_000,
    });
    tls.validate().expect("TLS on a public address is fine");

    // The opt-in: the daemon starts (on a loopback socket here).
    config.allow_plaintext_non_loopback = true;
    config.validate().expect("opted in");
    let daemon = TestDaemon::start_with(config).await;
    daemon.project("acme", "web").await;
}

/// One HTTPS request to the edge, trusting `ca`.
async fn https_get(edge: std::net::SocketAddr, ca: &Ca, host: &str) -> (u16, String) {
    use http_body_util::{BodyExt as _, Empty};
    use tokio_rustls::rustls;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ca.issuer.der().to_vec(),
        ))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(edge).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .uri("/")
        .header("host", host)
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_cli_speaks_tls_with_a_ca_file() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new("cli ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write");
    let mut config = fast_config();
    config.tls = Some(install(&ca.leaf("localhost"), dir.path()));
    let daemon = TestDaemon::start_tls(config, trusting(&ca)).await;
    // The daemon runs on this test's runtime: the CLI must not block it.
    let cli = async |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
            .args(args)
            .env_remove("DEPLOYD_CA_FILE")
            .env("DEPLOYD_TOKEN", &daemon.token)
            .output()
            .await
            .expect("run the cli")
    };
    let ca_path = ca_file.to_str().expect("utf-8 path");
    let created = cli(&[
        "--addr",
        &daemon.addr,
        "--ca-file",
        ca_path,
        "--json",
        "workspace",
        "create",
        "--slug",
        "cli",
        "--name",
        "Cli",
    ])
    .await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    assert_eq!(
        json.pointer("/workspace/slug").and_then(|s| s.as_str()),
        Some("cli")
    );

    // Without the CA the daemon's certificate is not trusted; plain text
    // to a TLS port does not work either.
    let untrusted = cli(&[
        "--addr",
        &daemon.addr,
        "workspace",
        "get",
        "ws_0000000000000000",
    ])
    .await;
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    let plain = daemon.addr.replace("https://", "http://");
    let plain = cli(&["--addr", &plain, "workspace", "get", "ws_0000000000000000"]).await;
    assert!(!plain.status.success());
}
