//! TLS for the listener (`--tls-cert`, `--tls-key`): the server speaks
//! `https://` and `wss://` itself, without a proxy in front.
//!
//! The certificate and key are PEM files, read at start (a bad file stops
//! the start with a message naming it) and again on every reload (SIGHUP),
//! so a renewed certificate is used without a restart. A reload swaps the
//! acceptor that new connections use; connections already open keep theirs.
//! A reload that fails (a half-written file, a key that does not match the
//! certificate) keeps the certificate in use and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} holds no PEM certificate (--tls-cert wants the certificate chain, leaf first)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (--tls-key wants a PKCS#8, PKCS#1 or SEC1 key)", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {message}", path.display())]
    BadPem { path: PathBuf, message: String },
    #[error("the certificate and key cannot be used together: {0}")]
    Rejected(rustls::Error),
}

/// The certificate in use, and where it is reloaded from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<TlsAcceptor>,
}

impl Tls {
    /// Reads `cert` and `key`; an error says which file and what is wrong.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>, TlsError> {
        let acceptor = acceptor(cert, key)?;
        Ok(Arc::new(Tls { cert: cert.to_owned(), key: key.to_owned(), current: RwLock::new(acceptor) }))
    }

    /// Reads the files again; new connections get the new certificate. On
    /// an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = acceptor(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// What a new connection is accepted with.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads on every SIGHUP until the process ends, logging the outcome.
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangups = signal(SignalKind::hangup())?;
            let tls = Arc::downgrade(self);
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let Some(tls) = tls.upgrade() else { return };
                    match tls.reload() {
                        Ok(()) => tracing::info!(cert = %tls.cert.display(), "SIGHUP: reloaded the TLS certificate and key"),
                        Err(e) => tracing::error!("SIGHUP: kept the TLS certificate in use, the new one cannot be used: {e}"),
                    }
                }
            });
        }
        Ok(())
    }
}

/// Without TLS there is nothing to reload, but SIGHUP still arrives (an
/// operator's habit, a closed terminal) and its default action would end the
/// process: it is logged instead.
pub fn ignore_sighup() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: nothing to reload, this server has no --tls-cert");
            }
        });
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let bad_pem = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::BadPem { path: path.to_owned(), message: e.to_string() };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?).collect::<Result<Vec<_>, _>>().map_err(|e| bad_pem(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.to_owned() });
    }
    let key_der = match PrivateKeyDer::from_pem_slice(&read(key)?) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(TlsError::NoKey { path: key.to_owned() }),
        Err(e) => return Err(bad_pem(key, e)),
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(TlsError::Rejected)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
