//! From the file's shape to the model: defaults, the Azure environment conventions
//! (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`,
//! `AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`), secrets read from the
//! environment or files, and every problem reported at once with its `file:line`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::*;
use super::raw::*;
use crate::identity::is_guid;
use crate::policy::{ActionPattern, Effect, Policy, PrincipalMatcher, Rule, ScopePattern};
use crate::secret::Secret;

/// Where the environment comes from: the process in production, a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

struct Problems<'a> {
    file: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    fn at(&mut self, line: Option<u64>, message: impl Into<String>) {
        let place = match line {
            Some(l) => format!("{}:{l}", self.file),
            None => self.file.to_owned(),
        };
        self.list.push(format!("{place}: {}", message.into()));
    }
}

fn addr(p: &mut Problems<'_>, value: Option<&str>, default: &str, what: &str) -> SocketAddr {
    let v = value.unwrap_or(default);
    v.parse().unwrap_or_else(|_| {
        p.at(None, format!("listen.{what}: '{v}' is not an address:port"));
        default.parse().expect("defaults parse")
    })
}

fn https_url(p: &mut Problems<'_>, value: &str, what: &str) -> String {
    let v = value.trim_end_matches('/').to_owned();
    match url::Url::parse(&v) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
        _ => p.at(None, format!("{what}: '{value}' must be an https:// URL")),
    }
    v
}

fn read_secret(
    p: &mut Problems<'_>,
    env: Env<'_>,
    base: &Path,
    s: &RawSecret,
    what: &str,
) -> Secret {
    match s {
        RawSecret::Env(var) => env(var).map(Secret::new).unwrap_or_else(|| {
            p.at(
                None,
                format!("{what}: environment variable {var} is not set"),
            );
            Secret::new("")
        }),
        RawSecret::File(path) => {
            let path = base.join(path);
            match std::fs::read_to_string(&path) {
                Ok(v) => Secret::new(v.trim_end_matches(['\r', '\n'])),
                Err(e) => {
                    p.at(None, format!("{what}: reading {}: {e}", path.display()));
                    Secret::new("")
                }
            }
        }
    }
}

pub fn validate(
    raw: RawConfig,
    file: &str,
    base: &Path,
    env: Env<'_>,
) -> Result<Config, Vec<String>> {
    let mut p = Problems {
        file,
        list: Vec::new(),
    };
    let listen_gateway = addr(
        &mut p,
        raw.listen.gateway.as_deref(),
        "127.0.0.1:8443",
        "gateway",
    );
    let listen_admin = addr(
        &mut p,
        raw.listen.admin.as_deref(),
        "127.0.0.1:9443",
        "admin",
    );
    let state_dir = base.join(
        raw.state_dir
            .unwrap_or_else(|| PathBuf::from(".portcullis")),
    );
    let tls = match (raw.tls.cert_file, raw.tls.key_file) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert: base.join(cert),
            key: base.join(key),
        },
        (None, None) => TlsSource::DevCa {
            dir: state_dir.join("tls"),
        },
        _ => {
            p.at(
                None,
                "tls: give both cert_file and key_file, or neither for a development CA",
            );
            TlsSource::DevCa {
                dir: state_dir.join("tls"),
            }
        }
    };

    // === identity ===
    let ri = raw.identity;
    let authority_default =
        env("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
    let authority = https_url(
        &mut p,
        ri.authority.as_deref().unwrap_or(&authority_default),
        "identity.authority",
    );
    let tenant_line = Some(ri.tenant.referenced.line());
    let t = ri.tenant.value.trim().to_ascii_lowercase();
    let tenant = if t == "common" || t == "organizations" {
        TenantMode::Multi(t)
    } else {
        if !is_guid(&t) {
            p.at(
                tenant_line,
                format!(
                    "identity.tenant: '{t}' must be a tenant id (GUID), 'common' or 'organizations'"
                ),
            );
        }
        TenantMode::Single(t)
    };
    let allowed_tenants: Vec<String> = match (&tenant, ri.allowed_tenants) {
        (_, Some(list)) => list.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
        (TenantMode::Single(t), None) => vec![t.clone()],
        (TenantMode::Multi(_), None) => {
            p.at(tenant_line, "identity.allowed_tenants: a multi-tenant authority needs the list of tenants to accept");
            Vec::new()
        }
    };
    for t in &allowed_tenants {
        if !is_guid(t) {
            p.at(
                tenant_line,
                format!("identity.allowed_tenants: '{t}' is not a tenant id"),
            );
        }
    }
    if let TenantMode::Single(t) = &tenant
        && allowed_tenants.iter().any(|a| a != t)
    {
        p.at(tenant_line, "identity.allowed_tenants: a single-tenant authority only issues tokens for its own tenant");
    }
    let audiences: Vec<String> = ri
        .audiences
        .value
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if audiences.is_empty() {
        p.at(Some(ri.audiences.referenced.line()), "identity.audiences: name the gateway's own API (e.g. api://portcullis and its client id)");
    }
    for a in &audiences {
        let lower = a.to_ascii_lowercase();
        if [
            "https://management.azure.com",
            "https://management.core.windows.net",
            "https://vault.azure.net",
            "https://graph.microsoft.com",
        ]
        .iter()
        .any(|m| lower.trim_end_matches('/') == *m)
        {
            p.at(Some(ri.audiences.referenced.line()), format!("identity.audiences: '{a}' is an Azure API; accepting its tokens would let agents skip the gateway"));
        }
    }
    let versions = ri.versions.unwrap_or_else(|| vec![1, 2]);
    if versions.is_empty() || versions.iter().any(|v| *v != 1 && *v != 2) {
        p.at(None, "identity.versions: only 1 and 2 exist");
    }
    let skew = ri.clock_skew_secs.unwrap_or(60);
    if skew > 600 {
        p.at(
            None,
            "identity.clock_skew_secs: more than 600 seconds accepts long-expired tokens",
        );
    }
    let overage_credential_line = ri
        .groups_overage
        .as_ref()
        .map(|o| o.credential.referenced.line());
    let overage = ri.groups_overage.map(|o| OverageConfig {
        graph_url: https_url(
            &mut p,
            o.graph_url
                .as_deref()
                .unwrap_or("https://graph.microsoft.com"),
            "identity.groups_overage.graph_url",
        ),
        credential: o.credential.value,
        cache_ttl: Duration::from_secs(o.cache_ttl_secs.unwrap_or(600)),
    });
    let identity = IdentityConfig {
        authority: authority.clone(),
        tenant: tenant.clone(),
        allowed_tenants,
        audiences,
        versions,
        clock_skew: Duration::from_secs(skew),
        ca_file: ri.ca_file.map(|f| base.join(f)),
        overage,
    };

    // === upstream ===
    let ru = raw.upstream;
    let default_tenant = match &tenant {
        TenantMode::Single(t) => Some(t.clone()),
        TenantMode::Multi(_) => env("AZURE_TENANT_ID"),
    };
    let mut credentials = BTreeMap::new();
    for (name, rc) in ru.credentials {
        let what = format!("upstream.credentials.{name}");
        let tenant_for = |p: &mut Problems<'_>, t: Option<String>| {
            t.or_else(|| default_tenant.clone()).unwrap_or_else(|| {
                p.at(
                    None,
                    format!(
                        "{what}: no tenant (set tenant, or use a single-tenant identity.tenant)"
                    ),
                );
                String::new()
            })
        };
        let authority_for = |p: &mut Problems<'_>, a: Option<String>| match a {
            Some(a) => https_url(p, &a, &format!("{what}.authority")),
            None => authority.clone(),
        };
        let c = match rc {
            RawCredential::ClientSecret {
                tenant,
                client_id,
                client_secret,
                authority,
            } => CredentialConfig::ClientSecret {
                authority: authority_for(&mut p, authority),
                tenant: tenant_for(&mut p, tenant),
                client_id,
                secret: read_secret(
                    &mut p,
                    env,
                    base,
                    &client_secret,
                    &format!("{what}.client_secret"),
                ),
            },
            RawCredential::ClientCertificate {
                tenant,
                client_id,
                certificate_file,
                authority,
            } => {
                let path = base.join(&certificate_file);
                let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    p.at(
                        None,
                        format!("{what}.certificate_file: reading {}: {e}", path.display()),
                    );
                    String::new()
                });
                if !pem.is_empty()
                    && (!pem.contains("BEGIN CERTIFICATE") || !pem.contains("PRIVATE KEY"))
                {
                    p.at(None, format!("{what}.certificate_file: {} must hold the certificate and its private key (PEM)", path.display()));
                }
                CredentialConfig::ClientCertificate {
                    authority: authority_for(&mut p, authority),
                    tenant: tenant_for(&mut p, tenant),
                    client_id,
                    certificate_pem: Secret::new(pem),
                }
            }
            RawCredential::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
                authority,
            } => {
                let client_id = client_id
                    .or_else(|| env("AZURE_CLIENT_ID"))
                    .unwrap_or_else(|| {
                        p.at(
                            None,
                            format!("{what}.client_id: not set and AZURE_CLIENT_ID is empty"),
                        );
                        String::new()
                    });
                let token_file = token_file
                    .map(|f| base.join(f))
                    .or_else(|| env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
                    .unwrap_or_else(|| {
                        p.at(
                            None,
                            format!(
                                "{what}.token_file: not set and AZURE_FEDERATED_TOKEN_FILE is empty"
                            ),
                        );
                        PathBuf::new()
                    });
                CredentialConfig::WorkloadIdentity {
                    authority: authority_for(&mut p, authority),
                    tenant: tenant_for(&mut p, tenant),
                    client_id,
                    token_file,
                }
            }
            RawCredential::ManagedIdentity {
                protocol,
                endpoint,
                client_id,
                identity_header,
            } => {
                let protocol = match protocol.as_deref().unwrap_or("imds") {
                    "imds" => MiProtocol::Imds,
                    "app_service" => MiProtocol::AppService,
                    other => {
                        p.at(
                            None,
                            format!("{what}.protocol: '{other}' is not imds or app_service"),
                        );
                        MiProtocol::Imds
                    }
                };
                let endpoint = match (protocol, endpoint) {
                    (_, Some(e)) => e,
                    (MiProtocol::Imds, None) => IMDS_ENDPOINT.to_owned(),
                    (MiProtocol::AppService, None) => {
                        env("IDENTITY_ENDPOINT").unwrap_or_else(|| {
                            p.at(
                                None,
                                format!("{what}.endpoint: not set and IDENTITY_ENDPOINT is empty"),
                            );
                            String::new()
                        })
                    }
                };
                let identity_header = match (protocol, identity_header) {
                    (MiProtocol::AppService, Some(s)) => Some(read_secret(
                        &mut p,
                        env,
                        base,
                        &s,
                        &format!("{what}.identity_header"),
                    )),
                    (MiProtocol::AppService, None) => {
                        Some(env("IDENTITY_HEADER").map(Secret::new).unwrap_or_else(|| {
                            p.at(
                                None,
                                format!(
                                    "{what}.identity_header: not set and IDENTITY_HEADER is empty"
                                ),
                            );
                            Secret::new("")
                        }))
                    }
                    (MiProtocol::Imds, _) => None,
                };
                CredentialConfig::ManagedIdentity {
                    protocol,
                    endpoint,
                    client_id,
                    identity_header,
                }
            }
        };
        credentials.insert(name, c);
    }
    if credentials.is_empty() {
        p.at(
            None,
            "upstream.credentials: the gateway needs at least one credential of its own",
        );
    }
    let default_credential = match &ru.default_credential {
        Some(s) => {
            if !credentials.contains_key(&s.value) {
                p.at(
                    Some(s.referenced.line()),
                    format!(
                        "upstream.default_credential: no credential named '{}'",
                        s.value
                    ),
                );
            }
            s.value.clone()
        }
        None if credentials.contains_key("baseline") => "baseline".to_owned(),
        None if credentials.len() == 1 => credentials.keys().next().cloned().unwrap_or_default(),
        None => {
            p.at(None, "upstream.default_credential: several credentials are configured; say which one forwards by default");
            String::new()
        }
    };
    if let (Some(o), Some(line)) = (&identity.overage, overage_credential_line)
        && !credentials.contains_key(&o.credential)
    {
        p.at(
            Some(line),
            format!(
                "identity.groups_overage.credential: no credential named '{}'",
                o.credential
            ),
        );
    }
    let keyvault_url = ru
        .keyvault_url
        .unwrap_or_else(|| "https://{vault}.vault.azure.net".to_owned());
    if !keyvault_url.contains("{vault}") {
        p.at(None, "upstream.keyvault_url: must contain {vault}");
    }
    https_url(
        &mut p,
        &keyvault_url.replace("{vault}", "v"),
        "upstream.keyvault_url",
    );
    let upstream = UpstreamConfig {
        arm_url: https_url(
            &mut p,
            ru.arm_url
                .as_deref()
                .unwrap_or("https://management.azure.com"),
            "upstream.arm_url",
        ),
        keyvault_url: keyvault_url.trim_end_matches('/').to_owned(),
        arm_resource: ru
            .arm_resource
            .unwrap_or_else(|| "https://management.azure.com".to_owned()),
        keyvault_resource: ru
            .keyvault_resource
            .unwrap_or_else(|| "https://vault.azure.net".to_owned()),
        ca_file: ru.ca_file.map(|f| base.join(f)),
        timeout: Duration::from_secs(ru.timeout_secs.unwrap_or(100)),
        default_credential,
        credentials,
    };

    let policy = included_policy(&mut p, base, raw.policy);
    if p.list.is_empty() {
        Ok(Config {
            listen_gateway,
            listen_admin,
            public_host: raw.public_host.map(|h| h.to_ascii_lowercase()),
            tls,
            state_dir,
            identity,
            upstream,
            policy,
        })
    } else {
        Err(p.list)
    }
}

fn principal(aliases: &RawAliases, s: &str) -> Result<PrincipalMatcher, String> {
    if s.trim() == "*" {
        return Ok(PrincipalMatcher::Any);
    }
    let (kind, value) = s.split_once(':').ok_or_else(|| {
        format!("principal '{s}' must be kind:value (group:, role:, app:, user:, tenant:) or *")
    })?;
    let value = value.trim();
    let resolve = |map: &BTreeMap<String, String>| -> Result<String, String> {
        let id = map
            .get(value)
            .map(String::as_str)
            .unwrap_or(value)
            .to_ascii_lowercase();
        if is_guid(&id) {
            Ok(id)
        } else {
            Err(format!(
                "principal '{s}': '{value}' is neither an object id nor a known alias"
            ))
        }
    };
    Ok(match kind.trim() {
        "group" => PrincipalMatcher::Group(resolve(&aliases.groups)?),
        "user" => PrincipalMatcher::User(resolve(&aliases.users)?),
        "app" => PrincipalMatcher::App(resolve(&aliases.apps)?),
        "tenant" => PrincipalMatcher::Tenant(resolve(&BTreeMap::new())?),
        "role" if !value.is_empty() => PrincipalMatcher::Role(value.to_owned()),
        other => return Err(format!("principal '{s}': unknown kind '{other}'")),
    })
}

/// The policy: an included file's rules first, then the inline ones; aliases from both.
fn included_policy(p: &mut Problems<'_>, base: &Path, mut raw: RawPolicy) -> Policy {
    let Some(include) = raw.include.take() else {
        return policy(p, raw);
    };
    let path = base.join(&include);
    let file = path.display().to_string();
    let included: Result<RawPolicy, String> = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: policy.include: reading {file}: {e}", p.file))
        .and_then(|text| {
            serde_saphyr::from_str(&text).map_err(|e| e.to_string().replace("<input>", &file))
        });
    let inc = match included {
        Ok(r) => r,
        Err(message) => {
            p.list.push(message);
            return policy(p, raw);
        }
    };
    if inc.include.is_some() {
        p.list
            .push(format!("{file}: an included policy cannot include another"));
    }
    let mut aliases = inc.aliases;
    aliases.groups.extend(raw.aliases.groups);
    aliases.users.extend(raw.aliases.users);
    aliases.apps.extend(raw.aliases.apps);
    let mut inner = Problems {
        file: &file,
        list: Vec::new(),
    };
    let mut merged = policy(
        &mut inner,
        RawPolicy {
            include: None,
            aliases: aliases.clone(),
            rules: inc.rules,
        },
    );
    p.list.extend(inner.list);
    let inline = policy(
        p,
        RawPolicy {
            include: None,
            aliases,
            rules: raw.rules,
        },
    );
    merged.rules.extend(inline.rules);
    merged
}

fn policy(p: &mut Problems<'_>, raw: RawPolicy) -> Policy {
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for spanned in raw.rules {
        let line = Some(spanned.referenced.line());
        let r = spanned.value;
        let origin = format!("{}:{}", p.file, spanned.referenced.line());
        if !names.insert(r.name.clone()) {
            p.at(line, format!("rule '{}' is defined twice", r.name));
        }
        let effect = match r.effect.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => {
                p.at(
                    line,
                    format!("rule '{}': effect '{other}' is not allow or deny", r.name),
                );
                Effect::Deny
            }
        };
        let mut patterns = |list: &[String], what: &str| -> Vec<ActionPattern> {
            list.iter()
                .filter_map(|a| {
                    ActionPattern::parse(a)
                        .map_err(|e| p.at(line, format!("rule '{}': {what}: {e}", r.name)))
                        .ok()
                })
                .collect()
        };
        let actions = patterns(&r.actions, "actions");
        let not_actions = patterns(&r.not_actions, "not_actions");
        let data_actions = patterns(&r.data_actions, "data_actions");
        let not_data_actions = patterns(&r.not_data_actions, "not_data_actions");
        if actions.is_empty() && data_actions.is_empty() {
            p.at(
                line,
                format!("rule '{}': give actions or data_actions", r.name),
            );
        }
        let principals: Vec<PrincipalMatcher> = r
            .principals
            .iter()
            .filter_map(|s| {
                principal(&raw.aliases, s)
                    .map_err(|e| p.at(line, format!("rule '{}': {e}", r.name)))
                    .ok()
            })
            .collect();
        if r.principals.is_empty() {
            p.at(
                line,
                format!("rule '{}': give principals (use '*' for everyone)", r.name),
            );
        }
        let scopes: Vec<ScopePattern> = r
            .scopes
            .iter()
            .filter_map(|s| {
                ScopePattern::parse(s)
                    .map_err(|e| p.at(line, format!("rule '{}': {e}", r.name)))
                    .ok()
            })
            .collect();
        if r.scopes.is_empty() {
            p.at(
                line,
                format!("rule '{}': give scopes (use '*' for everywhere)", r.name),
            );
        }
        rules.push(Rule {
            name: r.name,
            effect,
            principals,
            actions,
            not_actions,
            data_actions,
            not_data_actions,
            scopes,
            origin,
        });
    }
    Policy { rules }
}
