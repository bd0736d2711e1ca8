//! Access tokens: the claims Entra ID puts in v1 and v2 tokens, the OAuth token endpoints
//! (`/{tenant}/oauth2/v2.0/token` with `scope`, `/{tenant}/oauth2/token` with `resource`), and
//! the test-only mint used for human principals and hostile-token tests.
//!
//! Claims follow <https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference>:
//! v1 tokens name the calling app in `appid`/`appidacr` and are issued by
//! `https://sts.windows.net/{tid}/`; v2 tokens use `azp`/`azpacr` and
//! `https://login.microsoftonline.com/{tid}/v2.0` (here: the simulator's own authority).
//! Which format a token has depends on the API's `accessTokenAcceptedVersion`, not on the
//! endpoint that issued it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::{Algorithm, Header};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::{Api, Principal, PrincipalKind};
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse, aad_error};

/// Entra stops listing groups in a token past this many; the token then says where to ask.
/// <https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference#groups-overage-claim>
pub const GROUPS_OVERAGE_LIMIT: usize = 200;

/// The client app human principals sign in through, by default (az CLI's public client id).
pub const DEFAULT_USER_CLIENT_APP: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// How a token is to be made.
pub struct Issue<'a> {
    pub principal: &'a Principal,
    pub api: &'a Api,
    /// The identifier the client asked for (becomes `aud` of a v1 token).
    pub requested: &'a str,
    pub version: u8,
    pub lifetime_secs: i64,
    /// Seconds added to `nbf` (positive: not yet valid).
    pub not_before_offset: i64,
    /// `appidacr`/`azpacr`: 0 public client, 1 secret, 2 certificate.
    pub client_auth: u8,
    /// For users: the client app they signed in with.
    pub client_app: Option<String>,
    /// Claims added or replaced after the standard ones.
    pub extra: Map<String, Value>,
    /// Sign with a key no JWKS publishes.
    pub unpublished_key: bool,
}

/// A signed token and its expiry (Unix seconds).
pub struct Issued {
    pub token: String,
    pub expires_on: i64,
}

pub fn issue(sim: &Sim, req: Issue<'_>) -> Issued {
    let now = chrono::Utc::now().timestamp();
    let p = req.principal;
    let tid = sim.config.tenant_id.to_string();
    let v2 = req.version == 2;
    let issuer = if v2 {
        sim.v2_issuer()
    } else {
        sim.config.v1_issuer()
    };
    let aud = if v2 {
        req.api.app_id.to_string()
    } else if req.api.identifiers.iter().any(|i| i == req.requested) {
        req.requested.to_owned()
    } else {
        req.api.identifiers[0].clone()
    };
    let nbf = now + req.not_before_offset;
    let exp = now + req.lifetime_secs;
    let mut c = Map::new();
    c.insert("aud".into(), json!(aud));
    c.insert("iss".into(), json!(issuer));
    c.insert("iat".into(), json!(now));
    c.insert("nbf".into(), json!(nbf));
    c.insert("exp".into(), json!(exp));
    c.insert("aio".into(), json!(random_b64(32)));
    let calling_app = match p.kind {
        PrincipalKind::User => req
            .client_app
            .clone()
            .unwrap_or_else(|| DEFAULT_USER_CLIENT_APP.to_owned()),
        _ => p.app_id.map(|a| a.to_string()).unwrap_or_default(),
    };
    if v2 {
        c.insert("azp".into(), json!(calling_app));
        c.insert("azpacr".into(), json!(req.client_auth.to_string()));
    } else {
        c.insert("appid".into(), json!(calling_app));
        c.insert("appidacr".into(), json!(req.client_auth.to_string()));
        c.insert("idp".into(), json!(sim.config.v1_issuer()));
    }
    if p.group_names.len() > GROUPS_OVERAGE_LIMIT {
        // Where Entra says the groups are; relying parties must not call it (azure-notes §1).
        let collection = match p.kind {
            PrincipalKind::User => "users",
            _ => "servicePrincipals",
        };
        c.insert("_claim_names".into(), json!({"groups": "src1"}));
        c.insert(
            "_claim_sources".into(),
            json!({"src1": {"endpoint": format!(
                "https://graph.windows.net/{tid}/{collection}/{}/getMemberObjects", p.object_id)}}),
        );
    } else if !p.groups.is_empty() {
        c.insert("groups".into(), json!(p.groups));
    }
    match p.kind {
        PrincipalKind::User => {
            let upn = format!("{}@{}", p.name, sim.config.tenant_domain);
            c.insert("name".into(), json!(p.display_name));
            c.insert("scp".into(), json!("user_impersonation"));
            if v2 {
                c.insert("preferred_username".into(), json!(upn));
            } else {
                c.insert("upn".into(), json!(upn));
                c.insert("unique_name".into(), json!(upn));
            }
        }
        PrincipalKind::App | PrincipalKind::ManagedIdentity => {
            c.insert("idtyp".into(), json!("app"));
            // Entra names the calling app only in tokens for Microsoft's own APIs (ARM,
            // Graph...); an organisation's API, such as the gateway's, gets the ids alone and
            // looks the name up in Graph.
            if FIRST_PARTY_APIS.contains(&req.api.name.as_str()) {
                c.insert("app_displayname".into(), json!(p.display_name));
            }
            if p.kind == PrincipalKind::ManagedIdentity {
                c.insert(
                    "xms_mirid".into(),
                    json!(format!(
                        "/subscriptions/{}/resourcegroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
                        sim.config.subscription_id, p.name
                    )),
                );
            }
        }
    }
    if !p.roles.is_empty() {
        c.insert("roles".into(), json!(p.roles));
    }
    c.insert("oid".into(), json!(p.object_id));
    // `sub` is pairwise in Entra (per app); derive it so it is stable but not the oid.
    c.insert(
        "sub".into(),
        json!(crate::config::derived_id(
            "sub",
            &format!("{}/{}", p.name, req.api.name)
        )),
    );
    c.insert("tid".into(), json!(tid));
    c.insert("uti".into(), json!(random_b64(16)));
    c.insert("rh".into(), json!(format!("0.{}.", random_b64(24))));
    c.insert("ver".into(), json!(if v2 { "2.0" } else { "1.0" }));
    for (k, v) in req.extra {
        c.insert(k, v);
    }
    let key = if req.unpublished_key {
        sim.keys.unpublished()
    } else {
        sim.keys.signer()
    };
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(key.kid.clone());
    if !v2 {
        header.x5t = Some(key.kid.clone());
    }
    let token = jsonwebtoken::encode(&header, &Value::Object(c), &key.encoding)
        .expect("RS256 signing with a generated key does not fail");
    Issued {
        token,
        expires_on: exp,
    }
}

pub(super) fn random_b64(bytes: usize) -> String {
    let data: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(data)
}

// === the OAuth token endpoints ===

/// `POST /{tenant}/oauth2/v2.0/token` (v2 = true, `scope=`) and `/{tenant}/oauth2/token`
/// (v1 endpoint, `resource=`): `client_credentials` with a client secret or assertion, and
/// (v2 only) `authorization_code` for interactive sign-in (`authorize.rs`).
pub fn token_endpoint(sim: &Sim, tenant: &str, req: &SimRequest, v2_endpoint: bool) -> SimResponse {
    if req.method != http::Method::POST {
        return aad_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    if !sim.config.is_tenant(tenant) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&req.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // client_secret_basic: credentials in the Authorization header.
    let basic = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            Some((
                crate::wire::percent_decode(id),
                crate::wire::percent_decode(secret),
            ))
        });
    let grant = field("grant_type");
    match grant {
        Some("client_credentials" | "authorization_code") => {}
        Some(other) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
        None => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
    }
    let client_id = field("client_id")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let Some(client_id) = client_id else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(app) = sim
        .config
        .principal_by_app_id(&client_id)
        .filter(|p| p.kind == PrincipalKind::App)
    else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                sim.config.tenant_domain
            ),
        );
    };
    // A client proves itself with an assertion (certificate or federated token) or a secret.
    let client_auth = if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type") != Some(super::assertion::ASSERTION_TYPE) {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        let base = sim.authority();
        let token_urls: Vec<String> = [
            sim.config.tenant_id.to_string(),
            sim.config.tenant_domain.clone(),
        ]
        .iter()
        .flat_map(|t| {
            [
                format!("{base}/{t}/oauth2/v2.0/token"),
                format!("{base}/{t}/oauth2/token"),
            ]
        })
        .collect();
        if let Err(why) =
            super::assertion::verify(sim, &app.name, &client_id, assertion, &token_urls)
        {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700027,
                &format!("Client assertion failed signature validation or is not trusted: {why}."),
            );
        }
        2
    } else {
        let presented = field("client_secret")
            .map(str::to_owned)
            .or_else(|| basic.map(|b| b.1));
        let Some(presented) = presented else {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        };
        if !constant_time_eq(
            presented.as_bytes(),
            app.secret.as_deref().unwrap_or("").as_bytes(),
        ) {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            );
        }
        1
    };
    if grant == Some("authorization_code") {
        if !v2_endpoint {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "The simulator signs users in through the v2.0 endpoints only.",
            );
        }
        return super::authorize::redeem(sim, app, &form);
    }
    let requested = if v2_endpoint {
        let Some(scope) = field("scope") else {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            );
        };
        // Client credentials take exactly one `{resource}/.default` scope.
        let scope = scope.trim();
        match scope.strip_suffix("/.default") {
            Some(resource) if !scope.contains(' ') => resource.to_owned(),
            _ => {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    1002012,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            }
        }
    } else {
        match field("resource") {
            Some(r) => r.to_owned(),
            None => {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'resource'.",
                );
            }
        }
    };
    let Some(api) = sim.config.api_for(&requested) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {requested} was not found in the tenant named {}.",
                sim.config.tenant_domain
            ),
        );
    };
    let issued = issue(
        sim,
        Issue {
            principal: app,
            api,
            requested: &requested,
            version: api.version,
            lifetime_secs: sim.config.token_lifetime_secs,
            not_before_offset: 0,
            client_auth,
            client_app: None,
            extra: Map::new(),
            unpublished_key: false,
        },
    );
    let lifetime = sim.config.token_lifetime_secs;
    let body = if v2_endpoint {
        json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": issued.token,
        })
    } else {
        // The v1 endpoint answers numbers as strings.
        json!({
            "token_type": "Bearer",
            "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "expires_on": issued.expires_on.to_string(),
            "not_before": chrono::Utc::now().timestamp().to_string(),
            "resource": requested,
            "access_token": issued.token,
        })
    };
    SimResponse::json(StatusCode::OK, &body)
        .header("cache-control", "no-store, no-cache")
        .header("pragma", "no-cache")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// === the test-only mint ===

/// Body of `POST /_sim/token`: a token for any configured principal, as the tests and the
/// demo need for human approvers and for hostile variations.
/// The simulator's APIs that stand for Microsoft's own services.
const FIRST_PARTY_APIS: &[&str] = &["arm", "keyvault", "graph", "storage"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    pub principal: String,
    /// An API identifier (`api://portcullis`, `https://management.azure.com/`...).
    pub audience: String,
    /// Override the API's token version.
    pub version: Option<u8>,
    /// Negative values mint an already expired token.
    pub lifetime_secs: Option<i64>,
    #[serde(default)]
    pub not_before_offset_secs: i64,
    pub client_app: Option<String>,
    /// Claims added or replaced after the standard ones.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Sign with a key that no JWKS publishes.
    #[serde(default)]
    pub unpublished_key: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no principal named '{0}'")]
    UnknownPrincipal(String),
    #[error("no API with identifier '{0}'")]
    UnknownAudience(String),
    #[error("version must be 1 or 2")]
    Version,
}

pub fn mint(sim: &Sim, m: MintRequest) -> Result<Issued, MintError> {
    let principal = sim
        .config
        .principal(&m.principal)
        .ok_or_else(|| MintError::UnknownPrincipal(m.principal.clone()))?;
    let api = sim
        .config
        .api_for(&m.audience)
        .ok_or_else(|| MintError::UnknownAudience(m.audience.clone()))?;
    let version = m.version.unwrap_or(api.version);
    if version != 1 && version != 2 {
        return Err(MintError::Version);
    }
    Ok(issue(
        sim,
        Issue {
            principal,
            api,
            requested: &m.audience,
            version,
            lifetime_secs: m.lifetime_secs.unwrap_or(sim.config.token_lifetime_secs),
            not_before_offset: m.not_before_offset_secs,
            client_auth: if principal.kind == PrincipalKind::User {
                0
            } else {
                1
            },
            client_app: m.client_app,
            extra: m.claims,
            unpublished_key: m.unpublished_key,
        },
    ))
}
