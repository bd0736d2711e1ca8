//! The gateway's server certificate: configured files, or a development CA generated on
//! first start and kept in the state directory (clients trust its `ca.pem`).

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSource;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("development CA: {0}")]
    DevCa(#[from] azure_sim::tls::TlsError),
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server configuration, and the CA file clients should trust when it was generated.
pub fn server_config(
    source: &TlsSource,
    names: &[String],
) -> Result<(Arc<rustls::ServerConfig>, Option<std::path::PathBuf>), TlsError> {
    match source {
        TlsSource::DevCa { dir } => {
            let ca = azure_sim::tls::DevCa::load_or_create(dir, "Portcullis development CA")?;
            let identity = ca.issue_server(names)?;
            Ok((identity.server_config()?, Some(dir.join("ca.pem"))))
        }
        TlsSource::Files { cert, key } => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|source| TlsError::Read {
                    path: p.display().to_string(),
                    source,
                })
            };
            let pem_err = |p: &std::path::Path, m: String| TlsError::Pem {
                path: p.display().to_string(),
                message: m,
            };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<_, _>>()
                .map_err(|e| pem_err(cert, e.to_string()))?;
            if chain.is_empty() {
                return Err(pem_err(cert, "no certificate".into()));
            }
            let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| pem_err(key, e.to_string()))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key_der)?;
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok((Arc::new(config), None))
        }
    }
}
