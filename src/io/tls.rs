//! TLS for the daemon's listeners (the gRPC API and the edge): a rustls
//! server configuration (ring provider) built from PEM files, whose
//! certificate and key can be replaced while the daemon runs.
//!
//! The configuration never changes; its [`Certificates`] resolver hands
//! each new handshake the current certified key, and its [`ClientCas`]
//! verifier (with `client_ca_file`) checks client certificates against the
//! current CAs; a reload swaps both in one step. Connections already
//! established keep the session they negotiated, so a reload drops none of
//! them. A reload that fails (a missing file, a key that does not match the
//! certificate, a CA file without a CA) is logged and keeps the previous
//! certificate and CAs.
//!
//! Reloads happen on SIGHUP and when the certificate, key or client CA
//! file changes (modification time, size or inode, checked every
//! `reload_poll_ms`: polling costs a few `stat` calls and no dependency).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
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
    /// With `client_ca_file`: the CAs client certificates must chain to.
    client_cas: Option<Arc<ClientCas>>,
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

/// The client-certificate verifier of every handshake, delegating to the
/// one built from the current client CA file.
pub struct ClientCas {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    /// The delegate's schemes, fixed by the provider (a reload keeps it).
    schemes: Vec<SignatureScheme>,
}

impl fmt::Debug for ClientCas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCas").finish_non_exhaustive()
    }
}

impl ClientCas {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        // A poisoned lock still holds a whole verifier: a swap is one store.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientCertVerifier for ClientCas {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they would have to be borrowed from behind the lock, and
    /// TLS lets the server send none ("any CA"); clients here hold one
    /// certificate, so they have nothing to choose.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
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
        let client_cas = match &files.client_ca_file {
            Some(path) => {
                let verifier = client_verifier(path, &provider)?;
                Some(Arc::new(ClientCas {
                    schemes: verifier.supported_verify_schemes(),
                    current: RwLock::new(verifier),
                }))
            }
            None => None,
        };
        let builder = match &client_cas {
            Some(cas) => builder.with_client_cert_verifier(cas.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(certificates.clone());
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
            client_cas,
            files: files.clone(),
            provider,
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the certificate, key and client CAs again; new handshakes
    /// get them. Either all of them change or none does.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = Arc::new(certified_key(&self.files, &self.provider)?);
        let cas = match (&self.client_cas, &self.files.client_ca_file) {
            (Some(cas), Some(path)) => Some((cas, client_verifier(path, &self.provider)?)),
            _ => None,
        };
        if let Some((cas, verifier)) = cas {
            *cas.current.write().unwrap_or_else(|e| e.into_inner()) = verifier;
        }
        *self
            .certificates
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = key;
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

    fn stamps(&self) -> [Option<(SystemTime, u64, u64)>; 3] {
        [
            Some(&self.files.cert_file),
            Some(&self.files.key_file),
            self.files.client_ca_file.as_ref(),
        ]
        .map(|path| stamp(path?))
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// A verifier of client certificates chaining to the CAs in `path`.
fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).with_context(|| {
            format!("TLS: a certificate in {} is not a valid CA", path.display())
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .with_context(|| format!("TLS: cannot verify clients with {}", path.display()))
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
