//! The configuration file as written: serde structures that mirror the YAML, refusing
//! unknown keys. Nothing here is trusted yet; `validate.rs` turns it into `model.rs`.

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listen: RawListen,
    /// Host name agents use; enables `{vault}.vault.{public_host}` Key Vault routing.
    pub public_host: Option<String>,
    #[serde(default)]
    pub tls: RawTls,
    pub state_dir: Option<PathBuf>,
    pub identity: RawIdentity,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub masking: RawMasking,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub approvals: RawApprovals,
    /// The approver console's sign-in (OpenID Connect); without it the console is off.
    pub console: Option<RawConsole>,
    /// Where audit records and approvals are kept. Default: SQLite in the state directory.
    pub store: Option<RawStore>,
    /// Keys replicas must share; without them each keeps its own in its state directory.
    #[serde(default)]
    pub keys: RawKeys,
    /// What one client may ask of the gateway listener (and, `admin_*`, of the admin one).
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Connections served at once on the gateway listener (10000); beyond, new ones wait.
    pub max_connections: Option<usize>,
    /// A request's head must arrive within this (`10s`): slow-header clients are dropped.
    pub header_timeout: Option<String>,
    /// A connection with nothing in flight is closed after this (`120s`).
    pub idle_timeout: Option<String>,
    /// Headers per request (100).
    pub max_headers: Option<usize>,
    /// Bytes of a request's head (64 KiB).
    pub max_header_bytes: Option<usize>,
    /// The largest request body to ARM (4 MiB, ARM's own limit) and to Key Vault (1 MiB).
    pub max_body_bytes: Option<RawBodyLimits>,
    /// Requests per second per principal, on this replica; 0 turns it off.
    pub rate_per_principal: Option<f64>,
    /// How many requests a principal may send at once above the rate (burst).
    pub burst_per_principal: Option<f64>,
    /// Requests per second to the admin listener (API, console, health) from one client
    /// address; 0 turns it off.
    pub admin_rate_per_client: Option<f64>,
    /// How many requests one client address may send the admin listener at once above it.
    pub admin_burst_per_client: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBodyLimits {
    pub arm: Option<usize>,
    pub keyvault: Option<usize>,
}

/// Keys replicas share, as base64 of at least 32 random bytes (`openssl rand -base64 32`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    /// Signs rewritten poll and page URLs: a URL minted by one replica must verify on all.
    pub url_binding: Option<RawSecret>,
    /// Keys the digests in masking placeholders, so they match whichever replica answered.
    pub mask: Option<RawSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `postgres://user@host:5432/db` (replicas share it), or a SQLite file path.
    pub url: RawSecretOrText,
    /// A PostgreSQL schema to keep the tables in (created if missing).
    pub schema: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// How long a held request stays open waiting for a decision (`60s`).
    pub hold: Option<String>,
    /// The most requests held open at once (10000); beyond, agents are told to retry.
    pub max_held: Option<usize>,
    /// The most approvals one principal may have pending at once (20; 0: no cap); beyond,
    /// its new requests for approval are refused with 429.
    pub max_pending_per_principal: Option<u32>,
    /// The admin listener's URL as approvers reach it (links in notifications).
    pub console_url: Option<String>,
    /// How often a held request re-reads its approval without a wake-up (`10s`): the
    /// longest a lost notification between replicas can delay a release.
    pub recheck: Option<String>,
    #[serde(default)]
    pub notify: Vec<RawWebhook>,
    /// `Retry-After` on the gateway's answers to polls of a pending approval (`10s`).
    pub retry_after: Option<String>,
    /// More long-running operations, beyond the built-in table (docs/approvals.md).
    #[serde(default)]
    pub long_running: Vec<RawLongRunning>,
}

/// One long-running operation: `{action: Contoso.Widgets/widgets/write, method: PUT,
/// answer: 201}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLongRunning {
    pub action: String,
    pub method: String,
    /// 201 or 202: what ARM answers first.
    pub answer: u16,
}

/// The console's app registration in Entra ID (a web app with a client secret).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// The app registration's application (client) id.
    pub client_id: String,
    /// Its client secret; a credential, so from the environment or a file.
    pub client_secret: Option<RawSecret>,
    /// The admin listener's URL as people's browsers reach it (`https://host:9443`); the
    /// redirect URI is `{url}/console/callback`. Default: `approvals.console_url`.
    pub url: Option<String>,
    /// What to ask a token for (`{first audience}/.default`): the console calls nothing
    /// with it, it learns who signed in, with the groups and roles policy matches on.
    pub scope: Option<String>,
    /// How long a sign-in lasts (`8h`).
    pub session_lifetime: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: RawSecretOrText,
    /// `json` (default), `slack` or `teams`.
    pub format: Option<String>,
    /// Signs `json` payloads with HMAC-SHA256.
    pub secret: Option<RawSecret>,
    /// Extra CA certificates for the receiver (PEM).
    pub ca_file: Option<PathBuf>,
}

/// A value written inline, or (for values that are credentials, like a Slack webhook URL)
/// from the environment or a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSecretOrText {
    Text(String),
    Secret(RawSecret),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// `fail_closed` (default): a request whose record cannot be committed is refused.
    /// `fail_open`: it is forwarded anyway, with an error logged. Not for production.
    pub on_failure: Option<String>,
    /// The largest body a record holds (bytes, masked); a digest covers the whole.
    pub body_cap_bytes: Option<usize>,
    /// Without `x-portcullis-session`, a pause this long starts a new session (`30m`).
    pub session_idle: Option<String>,
    /// How often the chain's head is signed (`1m`).
    pub checkpoint_every: Option<String>,
    /// The Ed25519 checkpoint key (64 hex characters). Default: generated in the state
    /// directory as `audit-signing.key`, its public half in `audit-signing.key.pub`.
    pub signing_key_file: Option<PathBuf>,
    /// Records older than this are removed in sealed segments (`90d`). Default: kept.
    pub retention: Option<String>,
    /// A cap on the audit database's size; past it, requests fail closed.
    pub max_db_bytes: Option<u64>,
    /// Who may read sessions and records through the admin API (`group:<id>`,
    /// `user:<id>`, `app:<id>`, `role:<name>`), authenticated by their Entra token.
    #[serde(default)]
    pub readers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMasking {
    /// The largest answer the gateway reads to mask (bytes); larger ones that may carry
    /// secrets are withheld. Default 64 MiB.
    pub max_body_bytes: Option<usize>,
    /// Detectors to turn off, by name (e.g. `jwt`).
    #[serde(default)]
    pub disabled_detectors: Vec<String>,
    /// Profiles of your own, beside the built-in catalog.
    #[serde(default)]
    pub profiles: Vec<RawProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub name: String,
    pub actions: Vec<String>,
    pub paths: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub gateway: Option<String>,
    pub admin: Option<String>,
    /// How long a SIGTERM waits for in-flight requests before closing connections (`25s`).
    pub shutdown_grace: Option<String>,
    /// How long a SIGTERM keeps accepting while `/readyz` already says `draining`, so a
    /// load balancer stops sending first (`0s`; a few seconds behind Kubernetes Services).
    pub shutdown_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub authority: Option<String>,
    /// A tenant id, or `common` / `organizations` for multi-tenant.
    pub tenant: Spanned<String>,
    pub allowed_tenants: Option<Vec<String>>,
    pub audiences: Spanned<Vec<String>>,
    pub versions: Option<Vec<u8>>,
    pub clock_skew_secs: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub groups_overage: Option<RawOverage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverage {
    pub graph_url: Option<String>,
    /// The token resource for Graph: default the Graph of `graph_url`'s cloud
    /// (`https://graph.microsoft.us` for US Government...), else `https://graph.microsoft.com`.
    pub graph_resource: Option<String>,
    pub credential: Spanned<String>,
    pub cache_ttl_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub arm_url: Option<String>,
    /// With `{vault}` where the vault name goes.
    pub keyvault_url: Option<String>,
    pub arm_resource: Option<String>,
    pub keyvault_resource: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout_secs: Option<u64>,
    pub default_credential: Option<Spanned<String>>,
    pub credentials: std::collections::BTreeMap<String, RawCredential>,
}

/// Where a secret comes from: never inline in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum RawSecret {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum RawCredential {
    ClientSecret {
        tenant: Option<String>,
        client_id: String,
        client_secret: RawSecret,
        authority: Option<String>,
    },
    ClientCertificate {
        tenant: Option<String>,
        client_id: String,
        /// PEM holding the certificate and its private key.
        certificate_file: PathBuf,
        authority: Option<String>,
    },
    WorkloadIdentity {
        tenant: Option<String>,
        client_id: Option<String>,
        /// Defaults to `AZURE_FEDERATED_TOKEN_FILE`; re-read on every token request.
        token_file: Option<PathBuf>,
        authority: Option<String>,
    },
    ManagedIdentity {
        /// `imds` (VMs, default) or `app_service`.
        protocol: Option<String>,
        endpoint: Option<String>,
        client_id: Option<String>,
        /// App Service only; defaults to the `IDENTITY_HEADER` variable.
        identity_header: Option<RawSecret>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// A policy file whose aliases and rules come first (relative to this file).
    pub include: Option<PathBuf>,
    #[serde(default)]
    pub aliases: RawAliases,
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
    /// The largest request body conditions may read (bytes); default 1 MiB.
    pub max_body_bytes: Option<usize>,
}

/// Readable names for object ids, so rules say `group:ai-agents` (`policy::Aliases`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAliases {
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub apps: std::collections::BTreeMap<String, String>,
    /// Named scope lists, so a shipped policy says `scope:agents` and the configuration
    /// that includes it says where that is.
    #[serde(default)]
    pub scopes: std::collections::BTreeMap<String, Vec<String>>,
}

impl From<RawAliases> for crate::policy::Aliases {
    fn from(raw: RawAliases) -> crate::policy::Aliases {
        crate::policy::Aliases {
            groups: raw.groups,
            users: raw.users,
            apps: raw.apps,
            scopes: raw.scopes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub effect: String,
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub description: Option<String>,
    /// A CEL condition.
    pub when: Option<String>,
    pub approval: Option<RawApproval>,
    /// For approve rules: an approval opens a window (`{window: 30m}`) in which the same
    /// action on the same scope by the same principal passes, instead of passing once.
    pub grant: Option<RawGrant>,
    pub credential: Option<String>,
    /// Masking profiles or detectors whose secrets this (allow) rule lets through.
    #[serde(default)]
    pub unmask: Vec<String>,
    /// `enforce` (default) or `audit`.
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    pub window: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    pub approvers: Vec<String>,
    pub quorum: Option<u32>,
    /// `90s`, `10m`, `2h`; default 10m.
    pub timeout: Option<String>,
    /// `hold`, `async` or `auto` (default): how a pending approval is presented.
    pub style: Option<String>,
}
