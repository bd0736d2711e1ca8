//! From the file's shape to the model: defaults, the Azure environment conventions
//! (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`,
//! `AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`), secrets read from the
//! environment or files, and every problem reported at once with its `file:line`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::*;
use super::raw::*;
use crate::identity::is_guid;
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
    let overage = ri.groups_overage.map(|o| {
        let graph_url = https_url(
            &mut p,
            o.graph_url
                .as_deref()
                .unwrap_or("https://graph.microsoft.com"),
            "identity.groups_overage.graph_url",
        );
        // Sovereign clouds have Graphs of their own, each its own token resource.
        let sovereign = [
            "https://graph.microsoft.us",
            "https://dod-graph.microsoft.us",
            "https://microsoftgraph.chinacloudapi.cn",
        ]
        .into_iter()
        .find(|g| graph_url.trim_end_matches('/').eq_ignore_ascii_case(g));
        let graph_resource = o
            .graph_resource
            .clone()
            .or(sovereign.map(str::to_owned))
            .unwrap_or_else(|| "https://graph.microsoft.com".to_owned());
        (graph_url, graph_resource, o)
    });
    let overage = overage.map(|(graph_url, graph_resource, o)| OverageConfig {
        graph_url,
        graph_resource,
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

    let credential_names: BTreeSet<String> = upstream.credentials.keys().cloned().collect();
    let checked = super::policy::validate_policy(file, base, raw.policy, Some(&credential_names));
    p.list.extend(checked.errors);
    let (policy, warnings) = (checked.policy, checked.warnings);
    let mut detectors = crate::mask::detect::Detector::ALL.to_vec();
    for d in &raw.masking.disabled_detectors {
        if !detectors.iter().any(|x| x.name() == d) {
            p.at(
                None,
                format!(
                    "masking.disabled_detectors: '{d}' is not a detector ({})",
                    crate::mask::detect::Detector::ALL
                        .iter()
                        .map(|x| x.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        detectors.retain(|x| x.name() != d);
    }
    let mut profiles = Vec::new();
    for rp in raw.masking.profiles {
        let what = format!("masking.profiles.{}", rp.name);
        let taken = crate::mask::catalog::PROFILES
            .iter()
            .any(|p| p.name == rp.name)
            || profiles
                .iter()
                .any(|p: &crate::mask::catalog::OwnedProfile| p.name == rp.name);
        if taken {
            p.at(None, format!("{what}: the name is already taken"));
        }
        for a in &rp.actions {
            if let Err(e) = crate::policy::ActionPattern::parse(a) {
                p.at(None, format!("{what}: {e}"));
            }
        }
        if rp.actions.is_empty() || rp.paths.is_empty() {
            p.at(None, format!("{what}: give actions and paths"));
        }
        for path in &rp.paths {
            if path
                .trim_start_matches('=')
                .split('.')
                .any(|seg| seg.is_empty())
            {
                p.at(None, format!("{what}: '{path}' has an empty segment"));
            }
        }
        profiles.push(crate::mask::catalog::OwnedProfile {
            name: rp.name,
            actions: rp.actions,
            paths: rp.paths,
        });
    }
    let masking = MaskingConfig {
        max_body_bytes: raw.masking.max_body_bytes.unwrap_or(64 * 1024 * 1024),
        detectors,
        profiles,
    };
    if masking.max_body_bytes == 0 {
        p.at(None, "masking.max_body_bytes must be positive");
    }
    let audit = audit(&mut p, raw.audit, base, &state_dir);
    let approvals = approvals(&mut p, raw.approvals, base, env);
    let console = raw.console.map(|c| {
        console(
            &mut p,
            c,
            base,
            env,
            approvals.console_url.as_deref(),
            identity.audiences.first().map(String::as_str),
        )
    });
    let store = match raw.store {
        None => StoreSettings::Sqlite(state_dir.join("audit.db")),
        Some(rs) => {
            let url = match &rs.url {
                RawSecretOrText::Text(t) => crate::secret::Secret::new(t.clone()),
                RawSecretOrText::Secret(s) => read_secret(&mut p, env, base, s, "store.url"),
            };
            let u = url.expose();
            if u.starts_with("postgres://") || u.starts_with("postgresql://") {
                if let Some(s) = &rs.schema
                    && (s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                {
                    p.at(None, "store.schema: letters, digits and _ only");
                }
                StoreSettings::Postgres {
                    url,
                    schema: rs.schema,
                }
            } else {
                if rs.schema.is_some() {
                    p.at(None, "store.schema applies to PostgreSQL only");
                }
                StoreSettings::Sqlite(base.join(u.trim_start_matches("sqlite://")))
            }
        }
    };
    let mut listen_duration =
        |what: &str, value: Option<&str>, default: u64| match value.map(super::policy::duration) {
            None => Duration::from_secs(default),
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                p.at(None, format!("listen.{what}: {e}"));
                Duration::ZERO
            }
        };
    let shutdown_grace =
        listen_duration("shutdown_grace", raw.listen.shutdown_grace.as_deref(), 25);
    let shutdown_delay = listen_duration("shutdown_delay", raw.listen.shutdown_delay.as_deref(), 0);
    let limits = limits(&mut p, raw.limits);
    let mut shared_key = |s: Option<RawSecret>, what: &str| {
        let s = s?;
        let text = read_secret(&mut p, env, base, &s, what);
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD.decode(text.expose().trim()) {
            Ok(k) if k.len() >= 32 => Some(k),
            Ok(_) => {
                p.at(
                    None,
                    format!("{what}: at least 32 bytes are needed (openssl rand -base64 32)"),
                );
                None
            }
            Err(_) => {
                p.at(
                    None,
                    format!("{what}: not base64 (openssl rand -base64 32 makes one)"),
                );
                None
            }
        }
    };
    let keys = SharedKeys {
        url_binding: shared_key(raw.keys.url_binding, "keys.url_binding"),
        mask: shared_key(raw.keys.mask, "keys.mask"),
    };
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
            masking,
            audit,
            approvals,
            console,
            store,
            shutdown_grace,
            shutdown_delay,
            keys,
            limits,
            warnings,
            source_path: None,
        })
    } else {
        Err(p.list)
    }
}

/// A positive duration setting (`30s`, `10m`...); `default` when absent or wrong (a wrong one
/// is reported as `key`).
fn positive_duration(
    p: &mut Problems<'_>,
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Duration {
    match value.map(super::policy::duration) {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            p.at(None, format!("{key} must be positive"));
            default
        }
        Some(Err(e)) => {
            p.at(None, format!("{key}: {e}"));
            default
        }
    }
}

fn audit(p: &mut Problems<'_>, ra: RawAudit, base: &Path, state_dir: &Path) -> AuditConfig {
    let mut duration = |what: &str, value: Option<String>, default: u64| {
        positive_duration(
            p,
            &format!("audit.{what}"),
            value.as_deref(),
            Duration::from_secs(default),
        )
    };
    let session_idle = duration("session_idle", ra.session_idle, 30 * 60);
    let checkpoint_every = duration("checkpoint_every", ra.checkpoint_every, 60);
    let retention = ra
        .retention
        .is_some()
        .then(|| duration("retention", ra.retention, 0));
    let fail_open = match ra.on_failure.as_deref() {
        None | Some("fail_closed") => false,
        Some("fail_open") => true,
        Some(other) => {
            p.at(
                None,
                format!("audit.on_failure: '{other}' is not fail_closed or fail_open"),
            );
            false
        }
    };
    let body_cap = ra.body_cap_bytes.unwrap_or(64 * 1024);
    if ra.max_db_bytes.is_some_and(|b| b < 1024 * 1024) {
        p.at(None, "audit.max_db_bytes must be at least 1 MiB");
    }
    let mut readers = Vec::new();
    for r in &ra.readers {
        match super::policy::principal(&RawAliases::default(), r) {
            Ok(m) => readers.push(m),
            Err(e) => p.at(None, format!("audit.readers: {e}")),
        }
    }
    AuditConfig {
        readers,
        fail_open,
        body_cap,
        session_idle,
        checkpoint_every,
        generate_key: ra.signing_key_file.is_none(),
        signing_key: ra
            .signing_key_file
            .map_or_else(|| state_dir.join("audit-signing.key"), |f| base.join(f)),
        retention,
        max_db_bytes: ra.max_db_bytes,
    }
}

fn console(
    p: &mut Problems<'_>,
    rc: super::raw::RawConsole,
    base: &Path,
    env: Env<'_>,
    console_url: Option<&str>,
    audience: Option<&str>,
) -> super::model::ConsoleSettings {
    if !crate::identity::is_guid(&rc.client_id) {
        p.at(
            None,
            "console.client_id must be the console app registration's application (client) id, a GUID",
        );
    }
    let url = rc
        .url
        .as_deref()
        .or(console_url)
        .map(|u| u.trim_end_matches('/').to_owned());
    if let Some(u) = &url {
        match url::Url::parse(u) {
            Ok(parsed)
                if parsed.scheme() == "https"
                    && parsed.path() == "/"
                    && parsed.username().is_empty()
                    && parsed.password().is_none()
                    && parsed.query().is_none()
                    && parsed.fragment().is_none() => {}
            _ => p.at(
                None,
                format!("console.url: '{u}' is not an https URL of a host (like https://gateway.example.com:9443)"),
            ),
        }
    }
    let session_lifetime = match rc.session_lifetime.as_deref().map(super::policy::duration) {
        None => Duration::from_secs(8 * 3600),
        Some(Ok(d)) if !d.is_zero() && d <= Duration::from_secs(7 * 24 * 3600) => d,
        Some(Ok(_)) => {
            p.at(None, "console.session_lifetime: between 1s and 7 days");
            Duration::from_secs(8 * 3600)
        }
        Some(Err(e)) => {
            p.at(None, format!("console.session_lifetime: {e}"));
            Duration::from_secs(8 * 3600)
        }
    };
    let scope = rc.scope.unwrap_or_else(|| {
        format!(
            "{}/.default",
            audience.unwrap_or_default().trim_end_matches('/')
        )
    });
    super::model::ConsoleSettings {
        client_id: rc.client_id.to_ascii_lowercase(),
        client_secret: rc
            .client_secret
            .as_ref()
            .map(|s| read_secret(p, env, base, s, "console.client_secret")),
        url,
        scope,
        session_lifetime,
    }
}

fn approvals(
    p: &mut Problems<'_>,
    ra: RawApprovals,
    base: &Path,
    env: Env<'_>,
) -> ApprovalsSettings {
    let hold = match ra.hold.as_deref().map(super::policy::duration) {
        None => Duration::from_secs(60),
        Some(Ok(d)) if d <= Duration::from_secs(3600) => d,
        Some(Ok(_)) => {
            p.at(
                None,
                "approvals.hold: at most 1h (clients and proxies time out)",
            );
            Duration::from_secs(60)
        }
        Some(Err(e)) => {
            p.at(None, format!("approvals.hold: {e}"));
            Duration::from_secs(60)
        }
    };
    let max_held = ra.max_held.unwrap_or(10_000);
    let max_pending_per_principal = ra.max_pending_per_principal.unwrap_or(20);
    let recheck = match ra.recheck.as_deref().map(super::policy::duration) {
        None => Duration::from_secs(10),
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            p.at(None, "approvals.recheck must be positive");
            Duration::from_secs(10)
        }
        Some(Err(e)) => {
            p.at(None, format!("approvals.recheck: {e}"));
            Duration::from_secs(10)
        }
    };
    let retry_after = match ra.retry_after.as_deref().map(super::policy::duration) {
        None => Duration::from_secs(10),
        Some(Ok(d)) if !d.is_zero() && d <= Duration::from_secs(600) => d,
        Some(Ok(_)) => {
            p.at(None, "approvals.retry_after: between 1s and 10m");
            Duration::from_secs(10)
        }
        Some(Err(e)) => {
            p.at(None, format!("approvals.retry_after: {e}"));
            Duration::from_secs(10)
        }
    };
    let mut long_running = Vec::new();
    for (i, l) in ra.long_running.iter().enumerate() {
        match crate::approval::lro::LroEntry::new(&l.action, &l.method, l.answer) {
            Ok(e) => long_running.push(e),
            Err(e) => p.at(None, format!("approvals.long_running[{i}]: {e}")),
        }
    }
    let mut notify = Vec::new();
    let mut notify_cas = Vec::new();
    for (i, w) in ra.notify.into_iter().enumerate() {
        let what = format!("approvals.notify[{i}]");
        let url = match &w.url {
            RawSecretOrText::Text(t) => t.clone(),
            RawSecretOrText::Secret(s) => read_secret(p, env, base, s, &format!("{what}.url"))
                .expose()
                .to_owned(),
        };
        match url::Url::parse(&url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => p.at(None, format!("{what}.url is not an http(s) URL")),
        }
        let format = match w.format.as_deref() {
            None | Some("json") => crate::approval::notify::Format::Json,
            Some("slack") => crate::approval::notify::Format::Slack,
            Some("teams") => crate::approval::notify::Format::Teams,
            Some(other) => {
                p.at(
                    None,
                    format!("{what}.format: '{other}' is not json, slack or teams"),
                );
                crate::approval::notify::Format::Json
            }
        };
        let secret = w
            .secret
            .as_ref()
            .map(|s| read_secret(p, env, base, s, &format!("{what}.secret")));
        if let Some(ca) = w.ca_file {
            notify_cas.push(base.join(ca));
        }
        notify.push(crate::approval::notify::Webhook {
            url,
            format,
            secret,
        });
    }
    ApprovalsSettings {
        hold,
        recheck,
        max_held,
        max_pending_per_principal,
        console_url: ra.console_url,
        notify,
        notify_cas,
        retry_after,
        long_running,
    }
}

fn limits(p: &mut Problems<'_>, raw: RawLimits) -> Limits {
    let d = Limits::default();
    let mut duration = |what: &str, value: Option<String>, default: Duration| {
        positive_duration(p, &format!("limits.{what}"), value.as_deref(), default)
    };
    let header_timeout = duration("header_timeout", raw.header_timeout, d.header_timeout);
    let idle_timeout = duration("idle_timeout", raw.idle_timeout, d.idle_timeout);
    let body = raw.max_body_bytes.unwrap_or_default();
    let l = Limits {
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
        header_timeout,
        idle_timeout,
        max_headers: raw.max_headers.unwrap_or(d.max_headers),
        max_header_bytes: raw.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_body_arm: body.arm.unwrap_or(d.max_body_arm),
        max_body_keyvault: body.keyvault.unwrap_or(d.max_body_keyvault),
        rate_per_principal: raw.rate_per_principal.unwrap_or(d.rate_per_principal),
        burst_per_principal: raw.burst_per_principal.unwrap_or(d.burst_per_principal),
        admin_rate_per_client: raw.admin_rate_per_client.unwrap_or(d.admin_rate_per_client),
        admin_burst_per_client: raw
            .admin_burst_per_client
            .unwrap_or(d.admin_burst_per_client),
    };
    if l.max_connections == 0 || l.max_headers == 0 {
        p.at(
            None,
            "limits.max_connections and limits.max_headers must be positive",
        );
    }
    if l.max_header_bytes < 8192 {
        p.at(None, "limits.max_header_bytes must be at least 8192");
    }
    if !(l.rate_per_principal >= 0.0 && l.rate_per_principal.is_finite()) {
        p.at(
            None,
            "limits.rate_per_principal must be a number of requests per second, 0 for none",
        );
    }
    if !(l.burst_per_principal >= 1.0 && l.burst_per_principal.is_finite()) {
        p.at(None, "limits.burst_per_principal must be at least 1");
    }
    if !(l.admin_rate_per_client >= 0.0 && l.admin_rate_per_client.is_finite()) {
        p.at(
            None,
            "limits.admin_rate_per_client must be a number of requests per second, 0 for none",
        );
    }
    if !(l.admin_burst_per_client >= 1.0 && l.admin_burst_per_client <= f64::from(u32::MAX)) {
        p.at(None, "limits.admin_burst_per_client must be at least 1");
    }
    l
}
