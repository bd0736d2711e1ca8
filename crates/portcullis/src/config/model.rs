//! The validated configuration the rest of the gateway uses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::identity::settings::{IdentityConfig, OverageConfig, TenantMode};
use crate::policy::Policy;
use crate::secret::Secret;
pub use crate::upstream::settings::{CredentialConfig, MiProtocol};

#[derive(Debug)]
pub struct Config {
    pub listen_gateway: SocketAddr,
    pub listen_admin: SocketAddr,
    pub public_host: Option<String>,
    pub tls: TlsSource,
    pub state_dir: PathBuf,
    pub identity: IdentityConfig,
    pub upstream: UpstreamConfig,
    pub policy: Policy,
    pub masking: MaskingConfig,
    pub audit: AuditConfig,
    pub approvals: ApprovalsSettings,
    /// The approver console's sign-in; `None`: the console is off.
    pub console: Option<ConsoleSettings>,
    pub store: StoreSettings,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How long shutdown keeps accepting after turning unready.
    pub shutdown_delay: Duration,
    /// Keys shared by replicas (`None`: kept in the state directory).
    pub keys: SharedKeys,
    pub limits: Limits,
    /// The file this configuration was loaded from (hot reload watches it).
    pub source_path: Option<PathBuf>,
    /// Things that load but are probably mistakes (rules that can never match, shadowed
    /// rules), each with `file:line`.
    pub warnings: Vec<String>,
}

/// What one client may ask of the gateway listener.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub max_body_arm: usize,
    pub max_body_keyvault: usize,
    /// Requests per second per principal (0: no limit) and the burst above it.
    pub rate_per_principal: f64,
    pub burst_per_principal: f64,
    /// Requests per second per client address on the admin listener (0: no limit) and the
    /// burst above it; answered 429 beyond.
    pub admin_rate_per_client: f64,
    pub admin_burst_per_client: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_body_arm: 4 * 1024 * 1024,
            max_body_keyvault: 1024 * 1024,
            rate_per_principal: 50.0,
            burst_per_principal: 200.0,
            admin_rate_per_client: 50.0,
            admin_burst_per_client: 200.0,
        }
    }
}

#[derive(Default)]
pub struct SharedKeys {
    pub url_binding: Option<Vec<u8>>,
    pub mask: Option<Vec<u8>>,
}

impl std::fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKeys")
            .field("url_binding", &self.url_binding.as_ref().map(|_| "<set>"))
            .field("mask", &self.mask.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[derive(Clone)]
pub enum StoreSettings {
    /// The embedded default.
    Sqlite(PathBuf),
    Postgres {
        url: crate::secret::Secret,
        schema: Option<String>,
    },
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSettings::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            // The URL may carry a password.
            StoreSettings::Postgres { schema, .. } => write!(f, "Postgres(schema {schema:?})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// The console's public base URL, no trailing slash (`None`: from the request's host).
    pub url: Option<String>,
    pub scope: String,
    pub session_lifetime: Duration,
}

#[derive(Debug, Clone)]
pub struct ApprovalsSettings {
    pub hold: Duration,
    pub recheck: Duration,
    pub max_held: usize,
    /// The most approvals one principal may have pending (0: no cap).
    pub max_pending_per_principal: u32,
    pub console_url: Option<String>,
    pub notify: Vec<crate::approval::notify::Webhook>,
    /// Extra CAs for webhook receivers.
    pub notify_cas: Vec<PathBuf>,
    /// `Retry-After` on the gateway's own answers to polls of a pending approval.
    pub retry_after: Duration,
    /// Long-running operations configured beyond the built-in table.
    pub long_running: Vec<crate::approval::lro::LroEntry>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Forward requests whose record could not be committed (loudly). Off by default.
    pub fail_open: bool,
    pub body_cap: usize,
    pub session_idle: Duration,
    pub checkpoint_every: Duration,
    pub signing_key: PathBuf,
    /// Whether the signing key may be generated (only at its default place).
    pub generate_key: bool,
    pub retention: Option<Duration>,
    pub max_db_bytes: Option<u64>,
    /// Who may read the audit trail through the admin API.
    pub readers: Vec<crate::policy::PrincipalMatcher>,
}

#[derive(Debug, Clone)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// A development CA generated on first start and kept in this directory.
    DevCa {
        dir: PathBuf,
    },
}

#[derive(Debug)]
pub struct UpstreamConfig {
    pub arm_url: String,
    pub keyvault_url: String,
    pub arm_resource: String,
    pub keyvault_resource: String,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub default_credential: String,
    pub credentials: BTreeMap<String, CredentialConfig>,
}

impl UpstreamConfig {
    /// The upstream base URL of a vault's data plane.
    pub fn vault_url(&self, vault: &str) -> String {
        self.keyvault_url.replace("{vault}", vault)
    }
}

#[derive(Debug, Clone)]
pub struct MaskingConfig {
    pub max_body_bytes: usize,
    pub detectors: Vec<crate::mask::detect::Detector>,
    /// User-defined profiles, beside the built-in catalog.
    pub profiles: Vec<crate::mask::catalog::OwnedProfile>,
}
