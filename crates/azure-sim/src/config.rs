//! The simulator's world description: who exists in the tenant, which APIs tokens can be
//! issued for, and the knobs that make it behave like a slow or a fast Azure.
//!
//! Identifiers are derived from names with UUID v5, so the same configuration always yields the
//! same tenant, subscription, object ids and client ids (deterministic seed data). Client
//! secrets are the exception: they are random per start unless the configuration sets them,
//! so no usable credential is ever committed.

use std::path::Path;

use rand::Rng;
use serde::Deserialize;
use uuid::Uuid;

/// Namespace for every derived identifier.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_2a5e_8a7b_4c3d_9e0f_a1b2_c3d4_e5f6);

/// A stable GUID for a named thing of a kind (`tenant`, `app`, `group`...).
/// A group's display name in the directory: the demo's groups have people's names for them
/// (so a policy alias and Graph's name can be told apart), others are called by their name.
pub fn group_display_name(name: &str) -> String {
    match name {
        "approvers" => "Cloud Approvers".to_owned(),
        "ai-agents" => "AI Agents".to_owned(),
        other => other.to_owned(),
    }
}

pub fn derived_id(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{kind}/{}", name.to_ascii_lowercase()).as_bytes(),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading simulator config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("simulator config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("simulator config: {0}")]
    Invalid(String),
}

// === the file's shape ===

/// The YAML file, as written. Every field is optional; absent ones take the defaults of
/// [`SimConfig::default`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub tenant: Option<String>,
    pub tenant_domain: Option<String>,
    pub subscription: Option<String>,
    pub principals: Option<Vec<RawPrincipal>>,
    pub apis: Option<Vec<RawApi>>,
    pub page_size: Option<usize>,
    pub lro_polls: Option<u32>,
    pub retry_after_secs: Option<u32>,
    pub token_lifetime_secs: Option<i64>,
    pub keyvault_dns_suffix: Option<String>,
    pub v1_issuer_base: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrincipal {
    pub name: String,
    pub kind: PrincipalKind,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub secret: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub name: String,
    pub identifiers: Vec<String>,
    pub version: u8,
    pub app_id: Option<Uuid>,
}

// === the normalized form ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A service principal authenticating with its own credential.
    App,
    /// A human, whose tokens come from the test-only mint endpoint.
    User,
    /// A managed identity, whose tokens come from the IMDS / App Service endpoints.
    ManagedIdentity,
}

#[derive(Clone)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub display_name: String,
    /// The immutable object id (`oid`).
    pub object_id: Uuid,
    /// The application (client) id: apps and managed identities only.
    pub app_id: Option<Uuid>,
    /// Client secret (apps only). Never printed by `Debug`.
    pub secret: Option<String>,
    /// Group object ids.
    pub groups: Vec<Uuid>,
    pub group_names: Vec<String>,
    /// App role values assigned to this principal on every API.
    pub roles: Vec<String>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("object_id", &self.object_id)
            .field("app_id", &self.app_id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("groups", &self.group_names)
            .field("roles", &self.roles)
            .finish()
    }
}

/// An API (resource) that tokens can be issued for.
#[derive(Debug, Clone)]
pub struct Api {
    pub name: String,
    /// Identifier URIs; a request for any of them yields a token for this API.
    pub identifiers: Vec<String>,
    /// `accessTokenAcceptedVersion`: 1 (aud = identifier URI) or 2 (aud = client id).
    pub version: u8,
    pub app_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub tenant_name: String,
    pub tenant_id: Uuid,
    pub tenant_domain: String,
    pub subscription_name: String,
    pub subscription_id: Uuid,
    pub principals: Vec<Principal>,
    pub apis: Vec<Api>,
    /// Items per page of every list endpoint (kept small so paging is always exercised).
    pub page_size: usize,
    /// How many status polls a long-running operation answers `InProgress` before it ends.
    pub lro_polls: u32,
    /// `Retry-After` on long-running operations, in seconds.
    pub retry_after_secs: u32,
    pub token_lifetime_secs: i64,
    pub keyvault_dns_suffix: String,
    /// v1 tokens are issued as `{v1_issuer_base}/{tid}/`, as Entra does with sts.windows.net.
    pub v1_issuer_base: String,
    /// Shared secret of the App Service managed-identity protocol (`X-IDENTITY-HEADER`).
    pub identity_header: String,
    /// Fast mode: no artificial delays, long-running operations end on the first poll.
    pub fast: bool,
}

/// The principals every default simulator has.
fn default_principals() -> Vec<RawPrincipal> {
    let p = |name: &str, kind, groups: &[&str], roles: &[&str]| RawPrincipal {
        name: name.to_owned(),
        kind,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        secret: None,
        display_name: None,
    };
    // What a tenant's directory would call them: an app registration's display name is what
    // its owner typed, a person's is their full name.
    let named = |mut r: RawPrincipal, display: &str| {
        r.display_name = Some(display.to_owned());
        r
    };
    use PrincipalKind::*;
    // An agent in more than 200 groups: its tokens carry the overage claim instead.
    let mut overage_groups: Vec<String> = vec!["ai-agents".into()];
    overage_groups.extend((1..=220).map(|i| format!("bulk-group-{i:03}")));
    let overage_refs: Vec<&str> = overage_groups.iter().map(String::as_str).collect();
    vec![
        p("portcullis-baseline", App, &[], &[]),
        p("portcullis-elevated", App, &[], &[]),
        named(
            p("agent", App, &["ai-agents"], &["Agent.Invoke"]),
            "build-agent",
        ),
        named(p("other-agent", App, &[], &[]), "report-agent"),
        // The approver console's app registration: people sign in through it.
        named(p("portcullis-console", App, &[], &[]), "Portcullis console"),
        named(
            p("overage-agent", App, &overage_refs, &["Agent.Invoke"]),
            "fleet-agent",
        ),
        named(p("alice", User, &["approvers"], &[]), "Alice Example"),
        named(p("bob", User, &["approvers"], &[]), "Bob Example"),
        named(p("carol", User, &[], &[]), "Carol Example"),
        p("gateway-identity", ManagedIdentity, &[], &[]),
    ]
}

fn default_apis() -> Vec<RawApi> {
    let a = |name: &str, ids: &[&str], version, app_id: Option<&str>| RawApi {
        name: name.to_owned(),
        identifiers: ids.iter().map(|s| s.to_string()).collect(),
        version,
        app_id: app_id.map(|s| s.parse().expect("literal guid")),
    };
    vec![
        a(
            "arm",
            &[
                "https://management.azure.com/",
                "https://management.azure.com",
                "https://management.core.windows.net/",
                "https://management.core.windows.net",
            ],
            1,
            Some("797f4846-ba00-4fd7-ba43-dac1f8f63013"),
        ),
        a(
            "keyvault",
            &["https://vault.azure.net", "https://vault.azure.net/"],
            1,
            Some("cfa8b339-82a2-471a-a3c9-0fc0be7a4093"),
        ),
        a(
            "graph",
            &[
                "https://graph.microsoft.com",
                "https://graph.microsoft.com/",
                "00000003-0000-0000-c000-000000000000",
            ],
            1,
            Some("00000003-0000-0000-c000-000000000000"),
        ),
        a(
            "storage",
            &["https://storage.azure.com", "https://storage.azure.com/"],
            1,
            Some("e406a681-f3d4-42a8-90b6-c2b029497af1"),
        ),
        // What workload identities present to exchange for Entra tokens.
        a("token-exchange", &["api://AzureADTokenExchange"], 1, None),
        // The gateway's own API, as an organisation would register it (v2 tokens).
        a("portcullis", &["api://portcullis"], 2, None),
        // The same API registered for v1 tokens, so both formats are exercised.
        a("portcullis-v1", &["api://portcullis-v1"], 1, None),
    ]
}

fn random_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::from_raw(RawConfig::default()).expect("the default configuration is valid")
    }
}

impl SimConfig {
    /// Reads a YAML configuration file; unknown keys are refused with their position.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let raw: RawConfig = serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        SimConfig::from_raw(raw)
    }

    pub fn from_raw(raw: RawConfig) -> Result<SimConfig, ConfigError> {
        let tenant_name = raw.tenant.unwrap_or_else(|| "contoso".to_owned());
        let tenant_id = derived_id("tenant", &tenant_name);
        let subscription_name = raw.subscription.unwrap_or_else(|| "demo".to_owned());
        let mut principals = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for rp in raw.principals.unwrap_or_else(default_principals) {
            if !seen.insert(rp.name.to_ascii_lowercase()) {
                return Err(ConfigError::Invalid(format!(
                    "principal '{}' is defined twice",
                    rp.name
                )));
            }
            let app_id = match rp.kind {
                PrincipalKind::User => None,
                _ => Some(derived_id("app", &rp.name)),
            };
            let secret = match rp.kind {
                PrincipalKind::App => Some(rp.secret.unwrap_or_else(random_secret)),
                _ => None,
            };
            principals.push(Principal {
                display_name: rp.display_name.unwrap_or_else(|| rp.name.clone()),
                object_id: derived_id("principal", &rp.name),
                app_id,
                secret,
                groups: rp.groups.iter().map(|g| derived_id("group", g)).collect(),
                group_names: rp.groups,
                roles: rp.roles,
                kind: rp.kind,
                name: rp.name,
            });
        }
        let apis = raw
            .apis
            .unwrap_or_else(default_apis)
            .into_iter()
            .map(|a| {
                if a.version != 1 && a.version != 2 {
                    return Err(ConfigError::Invalid(format!(
                        "api '{}': version must be 1 or 2",
                        a.name
                    )));
                }
                Ok(Api {
                    app_id: a.app_id.unwrap_or_else(|| derived_id("api", &a.name)),
                    name: a.name,
                    identifiers: a.identifiers,
                    version: a.version,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let page_size = raw.page_size.unwrap_or(2);
        if page_size == 0 {
            return Err(ConfigError::Invalid("page_size must be at least 1".into()));
        }
        Ok(SimConfig {
            tenant_domain: raw
                .tenant_domain
                .unwrap_or_else(|| format!("{tenant_name}.onmicrosoft.com")),
            tenant_name,
            tenant_id,
            subscription_id: derived_id("subscription", &subscription_name),
            subscription_name,
            principals,
            apis,
            page_size,
            lro_polls: raw.lro_polls.unwrap_or(1),
            retry_after_secs: raw.retry_after_secs.unwrap_or(1),
            token_lifetime_secs: raw.token_lifetime_secs.unwrap_or(3599),
            keyvault_dns_suffix: raw
                .keyvault_dns_suffix
                .unwrap_or_else(|| "vault.azure.net".to_owned()),
            v1_issuer_base: raw
                .v1_issuer_base
                .unwrap_or_else(|| "https://sts.windows.net".to_owned()),
            identity_header: random_secret(),
            fast: false,
        })
    }

    /// Fast mode for benchmarks: no artificial delay anywhere.
    pub fn fast(mut self) -> Self {
        self.fast = true;
        self.lro_polls = 0;
        self
    }

    pub fn principal(&self, name: &str) -> Option<&Principal> {
        self.principals
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub fn principal_by_app_id(&self, app_id: &str) -> Option<&Principal> {
        self.principals.iter().find(|p| {
            p.app_id
                .is_some_and(|id| id.to_string().eq_ignore_ascii_case(app_id))
        })
    }

    /// A group's name (as principals list it) by its object id.
    pub fn group_by_object_id(&self, oid: &str) -> Option<&str> {
        self.principals.iter().find_map(|p| {
            p.groups
                .iter()
                .position(|g| g.to_string().eq_ignore_ascii_case(oid))
                .map(|i| p.group_names[i].as_str())
        })
    }

    pub fn principal_by_object_id(&self, oid: &str) -> Option<&Principal> {
        self.principals
            .iter()
            .find(|p| p.object_id.to_string().eq_ignore_ascii_case(oid))
    }

    /// The API a requested resource or scope names (trailing `/` and case ignored).
    pub fn api_for(&self, resource: &str) -> Option<&Api> {
        let want = resource.trim_end_matches('/');
        self.apis.iter().find(|a| {
            a.identifiers
                .iter()
                .any(|i| i.trim_end_matches('/').eq_ignore_ascii_case(want))
                || a.app_id.to_string().eq_ignore_ascii_case(want)
        })
    }

    /// Whether `tenant` (a GUID or a domain, as in a URL path) is this tenant.
    pub fn is_tenant(&self, tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case(&self.tenant_id.to_string())
            || tenant.eq_ignore_ascii_case(&self.tenant_domain)
    }

    pub fn v1_issuer(&self) -> String {
        format!(
            "{}/{}/",
            self.v1_issuer_base.trim_end_matches('/'),
            self.tenant_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_deterministic_and_secrets_are_not() {
        let a = SimConfig::default();
        let b = SimConfig::default();
        assert_eq!(a.tenant_id, b.tenant_id);
        assert_eq!(a.subscription_id, b.subscription_id);
        let (pa, pb) = (a.principal("agent").unwrap(), b.principal("agent").unwrap());
        assert_eq!(pa.object_id, pb.object_id);
        assert_eq!(pa.app_id, pb.app_id);
        assert_ne!(pa.secret, pb.secret);
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let c = SimConfig::default();
        let p = c.principal("agent").unwrap();
        let printed = format!("{p:?}");
        assert!(!printed.contains(p.secret.as_deref().unwrap()));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn api_lookup_ignores_case_and_trailing_slash() {
        let c = SimConfig::default();
        assert_eq!(
            c.api_for("HTTPS://management.azure.com").unwrap().name,
            "arm"
        );
        assert_eq!(
            c.api_for("https://vault.azure.net/").unwrap().name,
            "keyvault"
        );
        assert!(c.api_for("https://evil.example").is_none());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_saphyr::from_str::<RawConfig>("tenant: x\nbogus: 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn overage_agent_has_more_than_200_groups() {
        let c = SimConfig::default();
        assert!(c.principal("overage-agent").unwrap().groups.len() > 200);
    }
}
