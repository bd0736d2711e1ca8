//! The gateway's own Azure credentials as configured (`upstream.credentials`); `config`
//! fills these in and `credential.rs` fetches tokens with them.

use std::path::PathBuf;

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiProtocol {
    Imds,
    AppService,
}

#[derive(Debug)]
pub enum CredentialConfig {
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    ClientCertificate {
        authority: String,
        tenant: String,
        client_id: String,
        certificate_pem: Secret,
    },
    WorkloadIdentity {
        authority: String,
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    ManagedIdentity {
        protocol: MiProtocol,
        endpoint: String,
        client_id: Option<String>,
        identity_header: Option<Secret>,
    },
}
