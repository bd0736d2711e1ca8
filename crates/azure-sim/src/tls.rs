//! A local certificate authority and the server certificate it issues, so clients (curl, the
//! Azure SDKs, the gateway) can trust the simulator by trusting one PEM file.
//!
//! With a directory, the CA is kept there (`ca.pem`, `ca.key`) and reused on the next start,
//! so a client configured once keeps working; the server certificate is issued anew each start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The names the server certificate covers. Besides loopback, the Azure host names are
/// included so that a client which resolves them to the simulator (`curl --resolve`) can
/// use Azure's own URLs. Only clients that explicitly trust this CA accept them.
pub const DEFAULT_SERVER_NAMES: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "*.localhost",
    "*.vault.localhost",
    "management.azure.com",
    "login.microsoftonline.com",
    "graph.microsoft.com",
    "*.vault.azure.net",
];

/// A CA that can issue server certificates.
pub struct DevCa {
    cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
}

impl DevCa {
    fn params(common_name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Portcullis development");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    }

    /// A fresh CA held in memory only.
    pub fn generate(common_name: &str) -> Result<DevCa, TlsError> {
        let params = Self::params(common_name);
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(DevCa {
            cert_pem,
            key,
            params,
        })
    }

    /// Loads the CA kept in `dir`, or creates it there (key file mode 0600).
    pub fn load_or_create(dir: &Path, common_name: &str) -> Result<DevCa, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            return Ok(DevCa {
                cert_pem,
                key,
                params: Self::params(common_name),
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ca = Self::generate(common_name)?;
        write_private(&key_path, &ca.key.serialize_pem()).map_err(io(&key_path))?;
        std::fs::write(&cert_path, &ca.cert_pem).map_err(io(&cert_path))?;
        Ok(ca)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses).
    pub fn issue_server(&self, names: &[String]) -> Result<ServerIdentity, TlsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().map_or("localhost", |n| n));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ServerIdentity {
            cert_pem: cert.pem(),
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        })
    }
}

/// A server certificate and its private key.
pub struct ServerIdentity {
    pub cert_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl ServerIdentity {
    /// A rustls server configuration offering HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_ca_is_reused_and_still_issues() {
        let dir = std::env::temp_dir().join(format!("sim-ca-{}", uuid::Uuid::new_v4()));
        let first = DevCa::load_or_create(&dir, "test CA").unwrap();
        let second = DevCa::load_or_create(&dir, "test CA").unwrap();
        assert_eq!(first.cert_pem(), second.cert_pem());
        let id = second.issue_server(&["localhost".into()]).unwrap();
        id.server_config().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
