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

/// The listeners' TLS.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// The CA file clients should trust, when it was generated.
    pub ca_file: Option<std::path::PathBuf>,
    /// For configured files: the handle that reloads a renewed certificate.
    pub certificate: Option<Arc<Certificate>>,
}

pub fn server_config(source: &TlsSource, names: &[String]) -> Result<ServerTls, TlsError> {
    match source {
        TlsSource::DevCa { dir } => {
            let ca = azure_sim::tls::DevCa::load_or_create(dir, "Portcullis development CA")?;
            let identity = ca.issue_server(names)?;
            Ok(ServerTls {
                config: identity.server_config()?,
                ca_file: Some(dir.join("ca.pem")),
                certificate: None,
            })
        }
        TlsSource::Files { cert, key } => {
            let certificate = Arc::new(Certificate {
                current: arc_swap::ArcSwap::from_pointee(load(cert, key)?),
                cert: cert.clone(),
                key: key.clone(),
            });
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(certificate.clone());
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok(ServerTls {
                config: Arc::new(config),
                ca_file: None,
                certificate: Some(certificate),
            })
        }
    }
}

/// The configured certificate, swapped whole when its files change (a renewal by
/// cert-manager, certbot...); a renewal that does not load is refused and the old one stays.
#[derive(Debug)]
pub struct Certificate {
    current: arc_swap::ArcSwap<rustls::sign::CertifiedKey>,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Certificate {
    /// Loads the files again and swaps them in when they make a usable certificate.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(load(&self.cert, &self.key)?));
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for Certificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::sign::CertifiedKey, TlsError> {
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
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| pem_err(key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(chain, key_der, &provider)?;
    Ok(certified)
}
