//! `wss://`: the TLS settings of a connection. Servers are checked against
//! the public web roots, plus any CA certificates the caller adds (a private
//! CA, or a test's own), so a client never has to turn checking off.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::ClientError;

/// The TLS settings for `wss://`: the web roots and the certificates in
/// `extra_ca_pem` (PEM, any number of certificates).
pub fn client_config(extra_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, ClientError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Connect(format!("the extra CA certificates are not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Connect("the extra CA certificates hold no PEM certificate".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ClientError::Connect(format!("an extra CA certificate cannot be used: {e}")))?;
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Connect(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
