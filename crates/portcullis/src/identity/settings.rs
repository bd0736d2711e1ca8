//! What token validation runs on: the authority and tenants, the audiences and versions
//! accepted, and where overage groups are looked up. `config` fills these in from the
//! `identity:` section.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantMode {
    Single(String),
    /// `common` or `organizations`: issuers carry `{tenantid}`.
    Multi(String),
}

impl TenantMode {
    /// The tenant segment of metadata URLs.
    pub fn path(&self) -> &str {
        match self {
            TenantMode::Single(t) | TenantMode::Multi(t) => t,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// No trailing slash.
    pub authority: String,
    pub tenant: TenantMode,
    /// Lowercased tenant ids whose tokens are accepted.
    pub allowed_tenants: Vec<String>,
    pub audiences: Vec<String>,
    pub versions: Vec<u8>,
    pub clock_skew: Duration,
    pub ca_file: Option<PathBuf>,
    pub overage: Option<OverageConfig>,
}

#[derive(Debug, Clone)]
pub struct OverageConfig {
    pub graph_url: String,
    /// The resource the gateway asks a Graph token for.
    pub graph_resource: String,
    pub credential: String,
    pub cache_ttl: Duration,
}
