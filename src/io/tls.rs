//! TLS for the daemon's listeners (the gRPC API and the edge): a rustls
//! server configuration (ring provider) built from PEM files, whose
//! certificate and key can be replaced while the daemon runs.
//!
//! The configuration never changes; its [`Certificates`] resolver hands
//! each new handshake the current certified key, which a reload swaps in
//! one step. Connections already established keep the session they
//! negotiated, so a reload drops none of them. A reload that fails (a
//! missing file, a key that does not match the certificate) is logged and
//! keeps the previous certificate.
//!
//! Reloads happen on SIGHUP and when the certificate or key file changes
//! (modification time, size or inode, checked every `reload_poll_ms`:
//! polling costs two `stat` calls and no dependency).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// ALPN of the gRPC API (HTTP/2 only) and of the edge (HTTP/1.1 only).
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// One listener's TLS: the acceptor to wrap accepted sockets with, and
/// what a reload needs.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    certificates: Arc<Certificates>,
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
}

/// The certified key every new handshake gets.
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a whole key: a swap is one store.
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        Some(Arc::clone(&current))
    }
}

impl ServerTls {
    /// Reads the files and builds the server configuration, offering
    /// `alpn`. With `client_ca_file`, every client must present a
    /// certificate signed by one of its CAs.
    pub fn load(files: &TlsConfig, alpn: &[u8]) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificates = Arc::new(Certificates {
            current: RwLock::new(Arc::new(certified_key(files, &provider)?)),
        });
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("TLS: no protocol version in common with the ring provider")?;
        let builder = match &files.client_ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots.add(cert).with_context(|| {
                        format!("TLS: a certificate in {} is not a valid CA", path.display())
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .with_context(|| {
                            format!("TLS: cannot verify clients with {}", path.display())
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(certificates.clone());
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
            files: files.clone(),
            provider,
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the certificate and key again; new handshakes get them.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = Arc::new(certified_key(&self.files, &self.provider)?);
        let mut current = self
            .certificates
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *current = key;
        Ok(())
    }

    /// Reloads on SIGHUP and when a file changes, until `stop` turns true.
    pub fn watch(self: Arc<Self>, name: &'static str, mut stop: watch::Receiver<bool>) {
        tokio::spawn(async move {
            let mut hangup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "cannot handle SIGHUP; TLS files are reloaded when they change only");
                    None
                }
            };
            let mut seen = self.stamps();
            loop {
                let hung_up = async {
                    match &mut hangup {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let why = tokio::select! {
                    _ = stop.wait_for(|stopping| *stopping) => return,
                    _ = hung_up => "SIGHUP",
                    () = tokio::time::sleep(self.files.reload_poll()) => {
                        let now = self.stamps();
                        if now == seen {
                            continue;
                        }
                        "a file changed"
                    }
                };
                // Remembered whatever the outcome: a half-written pair is
                // retried when its other file changes, not every poll.
                seen = self.stamps();
                match self.reload() {
                    Ok(()) => {
                        tracing::info!(listener = name, reason = why, "TLS certificate reloaded")
                    }
                    Err(e) => tracing::error!(
                        listener = name,
                        reason = why,
                        error = format!("{e:#}"),
                        "TLS certificate not reloaded; the previous one stays"
                    ),
                }
            }
        });
    }

    fn stamps(&self) -> [Option<(SystemTime, u64, u64)>; 2] {
        [&self.files.cert_file, &self.files.key_file].map(|path| stamp(path))
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("TLS: cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("TLS: {} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("TLS: {} holds no certificate", path.display());
    }
    Ok(certs)
}

fn certified_key(files: &TlsConfig, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = read_certs(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).with_context(|| {
        format!(
            "TLS: cannot read a private key from {}",
            files.key_file.display()
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("TLS: unusable private key in {}", files.key_file.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| {
        format!(
            "TLS: the key in {} does not belong to the certificate in {}",
            files.key_file.display(),
            files.cert_file.display()
        )
    })?;
    Ok(certified)
}
