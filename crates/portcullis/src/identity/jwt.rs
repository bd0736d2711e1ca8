//! Validating an agent's Entra ID access token (azure-notes §1):
//! <https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens>
//!
//! 1. Shape: three base64url parts, a bounded size, header `alg: RS256` with a `kid`, no
//!    `crit`. `jku`, `x5u` and embedded `jwk` are never followed: keys come only from the
//!    configured authority's metadata.
//! 2. The unverified payload only picks which metadata to use: `ver` (1.0 or 2.0, as
//!    configured) and `tid` (which must be an allowed tenant).
//! 3. The issuer must equal the metadata's (with `{tenantid}` replaced by `tid` for
//!    multi-tenant authorities), the signature must verify with the key its `kid` names, the
//!    audience must be the gateway's own, and `exp`/`nbf` hold within the configured skew.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::jwks::{KeyCache, KeyError};
use super::names;
use super::principal::{Principal, PrincipalKind};
use super::settings::{IdentityConfig, TenantMode};
use crate::ids::is_guid;

/// Tokens larger than this are refused before any parsing (Entra's are a few KB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TokenError {
    #[error("no bearer token was presented")]
    Missing,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm is not accepted (RS256 only)")]
    Algorithm,
    #[error("the token's version '{0}' is not accepted")]
    Version(String),
    #[error("the token's tenant '{0}' is not allowed")]
    Tenant(String),
    #[error("the token's issuer '{0}' is not the expected one")]
    Issuer(String),
    #[error("the token's audience is not this gateway")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("{0}")]
    Key(KeyError),
}

impl TokenError {
    /// Whether the fault is the gateway's (keys or metadata unreachable), not the token's.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            TokenError::Key(KeyError::Unavailable(_) | KeyError::Metadata(_))
        )
    }
}

fn b64_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed("a part is not base64url".into()))?;
    // A key written twice is read differently by different parsers (first or last wins):
    // what the gateway checks must be what every other reader sees, so such tokens are
    // refused outright.
    crate::json::parse(&bytes).map_err(|e| {
        TokenError::Malformed(match e {
            crate::json::StrictError::Duplicate => "a part has a key written twice".into(),
            crate::json::StrictError::NotJson(_) => "a part is not JSON".into(),
        })
    })
}

/// A token's claims, read and not verified: for tools that only look at a token (`policy
/// explain`, `exec`'s refresh timing), and for tokens whose signature was checked already
/// or that came straight from the token endpoint over TLS (the console's sign-in).
pub fn unverified_claims(token: &str) -> Result<Value, TokenError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| TokenError::Malformed("not a JWT: it has no payload part".into()))?;
    b64_json(payload)
}

/// Text from an unverified token, fit to show in an error (and so in a header, a log line
/// and an audit record): printable ASCII, at most 64 characters.
fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

/// What a valid token says.
#[derive(Debug, Clone)]
pub struct Validated {
    pub principal: Principal,
    /// The token has a groups overage: `principal.groups` is incomplete and must be looked
    /// up by the caller.
    pub overage: bool,
    /// The token's `exp` (seconds since the epoch), when it is a whole number.
    pub expires: Option<u64>,
}

/// Checks a token and says who it names. Group overage is left for the caller to resolve
/// (`overage` on the result).
pub async fn validate(
    cfg: &IdentityConfig,
    keys: &KeyCache,
    token: &str,
) -> Result<Validated, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("the token is too large".into()));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(TokenError::Malformed(
            "a JWT has three non-empty parts".into(),
        ));
    }
    let header = b64_json(parts[0])?;
    if header["alg"] != "RS256" {
        return Err(TokenError::Algorithm);
    }
    if header.get("crit").is_some() {
        return Err(TokenError::Malformed(
            "critical header extensions are not supported".into(),
        ));
    }
    // Entra access tokens say `typ: JWT` (or nothing); another type (`dpop+jwt`, an id
    // token profile...) or a nested token (`cty`) is not an access token for this gateway.
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(_) => {
            return Err(TokenError::Malformed(
                "the token's type (typ) is not JWT".into(),
            ));
        }
    }
    if header.get("cty").is_some() {
        return Err(TokenError::Malformed(
            "nested tokens (cty) are not accepted".into(),
        ));
    }
    let kid = header["kid"]
        .as_str()
        .filter(|k| !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| TokenError::Malformed("no kid".into()))?;
    let payload = b64_json(parts[1])?;
    let version = match payload["ver"].as_str() {
        Some("1.0") => 1,
        Some("2.0") => 2,
        other => return Err(TokenError::Version(shown(other.unwrap_or("")))),
    };
    if !cfg.versions.contains(&version) {
        return Err(TokenError::Version(format!("{version}.0")));
    }
    let tid = payload["tid"]
        .as_str()
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !is_guid(&tid) || !cfg.allowed_tenants.contains(&tid) {
        return Err(TokenError::Tenant(shown(&tid)));
    }
    let metadata_url = match version {
        1 => format!(
            "{}/{}/.well-known/openid-configuration",
            cfg.authority,
            cfg.tenant.path()
        ),
        _ => format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            cfg.authority,
            cfg.tenant.path()
        ),
    };
    let metadata = keys
        .metadata(&metadata_url)
        .await
        .map_err(TokenError::Key)?;
    let expected_issuer = match &cfg.tenant {
        TenantMode::Multi(_) => metadata.issuer.replace("{tenantid}", &tid),
        TenantMode::Single(_) => metadata.issuer.clone(),
    };
    if payload["iss"].as_str() != Some(expected_issuer.as_str()) {
        return Err(TokenError::Issuer(shown(
            payload["iss"].as_str().unwrap_or(""),
        )));
    }
    // One audience, as Entra writes it: a list naming this gateway and, say, ARM would
    // make the same token good for both (azure-notes §1).
    if !payload["aud"].is_string() {
        return Err(TokenError::Audience);
    }
    let key = keys
        .key(&metadata.jwks_uri, kid)
        .await
        .map_err(TokenError::Key)?;
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = cfg.clock_skew.as_secs();
    v.validate_nbf = true;
    v.set_audience(&cfg.audiences);
    v.set_issuer(&[&expected_issuer]);
    v.set_required_spec_claims(&["exp", "aud", "iss"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => TokenError::Expired,
                ImmatureSignature => TokenError::NotYetValid,
                InvalidAudience => TokenError::Audience,
                InvalidIssuer => TokenError::Issuer(String::new()),
                InvalidSignature => TokenError::Signature,
                InvalidAlgorithm => TokenError::Algorithm,
                other => TokenError::Malformed(format!("{other:?}")),
            }
        })?
        .claims;
    let (principal, overage) = principal(&claims, &tid, version)?;
    Ok(Validated {
        principal,
        overage,
        expires: claims["exp"].as_u64(),
    })
}

/// Reads the principal from verified claims.
pub(crate) fn principal(
    c: &Value,
    tid: &str,
    version: u8,
) -> Result<(Principal, bool), TokenError> {
    let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
    let oid = s("oid")
        .map(|o| o.to_ascii_lowercase())
        .filter(|o| is_guid(o))
        .ok_or_else(|| TokenError::Malformed("no oid claim".into()))?;
    let app_id = s("appid")
        .or_else(|| s("azp"))
        .map(|a| a.to_ascii_lowercase());
    let is_app = s("idtyp").as_deref() == Some("app")
        || (c.get("scp").is_none()
            && c.get("upn").is_none()
            && c.get("preferred_username").is_none());
    let kind = if !is_app {
        PrincipalKind::User
    } else if c.get("xms_mirid").is_some() {
        PrincipalKind::ManagedIdentity
    } else {
        PrincipalKind::App
    };
    let strings = |k: &str| -> Vec<String> {
        c.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let groups: Vec<String> = strings("groups")
        .iter()
        .map(|g| g.to_ascii_lowercase())
        .collect();
    // Overage: too many groups for the token; they must be looked up (never at the URL the
    // token names).
    let overage = c.pointer("/_claim_names/groups").is_some()
        || c.get("hasgroups").and_then(Value::as_bool) == Some(true);
    Ok((
        Principal {
            tenant_id: tid.to_owned(),
            object_id: oid,
            kind,
            app_id,
            groups,
            roles: strings("roles"),
            // For people only: an app's registration names it, a user's account; whoever
            // controls those chose the text, so it is cleaned before anything shows it.
            display_name: match kind {
                PrincipalKind::User => s("name")
                    .or_else(|| s("preferred_username"))
                    .or_else(|| s("upn")),
                _ => s("app_displayname").or_else(|| s("name")),
            }
            .as_deref()
            .and_then(names::clean),
            token_version: version,
        },
        overage,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OID: &str = "93eb7a24-0000-4000-8000-000000000001";

    fn name_of(claims: Value) -> (PrincipalKind, Option<String>) {
        let mut c = claims;
        c["oid"] = json!(OID);
        let (p, _) = principal(&c, "t", 2).unwrap();
        (p.kind, p.display_name)
    }

    #[test]
    fn a_users_name_comes_from_name_then_preferred_username_then_upn() {
        let user = |extra: Value| {
            let mut c = json!({"scp": "user_impersonation"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            name_of(c)
        };
        assert_eq!(
            user(json!({"name": "Alice Example", "preferred_username": "alice@contoso"})),
            (PrincipalKind::User, Some("Alice Example".into()))
        );
        assert_eq!(
            user(json!({"preferred_username": "alice@contoso", "upn": "a@c"})).1,
            Some("alice@contoso".into())
        );
        assert_eq!(
            user(json!({"upn": "alice@contoso"})).1,
            Some("alice@contoso".into())
        );
        // An app's display name in a user's token is not the user's.
        assert_eq!(user(json!({"app_displayname": "build-agent"})).1, None);
    }

    #[test]
    fn an_apps_name_comes_from_app_displayname_and_is_cleaned() {
        assert_eq!(
            name_of(json!({"idtyp": "app", "app_displayname": "build-agent"})),
            (PrincipalKind::App, Some("build-agent".into()))
        );
        assert_eq!(
            name_of(json!({"idtyp": "app", "xms_mirid": "/x", "app_displayname": "gw-mi"})),
            (PrincipalKind::ManagedIdentity, Some("gw-mi".into()))
        );
        // Tokens for an organisation's own API name nobody: the directory is asked later.
        assert_eq!(name_of(json!({"idtyp": "app"})).1, None);
        let (_, hostile) = name_of(json!({
            "idtyp": "app",
            "app_displayname": format!("ok\u{202E}\x1b[0m\n{}", "x".repeat(5000)),
        }));
        let hostile = hostile.unwrap();
        assert!(hostile.starts_with("ok[0m x"), "{hostile}");
        assert!(hostile.chars().count() <= names::MAX_NAME_CHARS + 1);
        assert_eq!(
            name_of(json!({"idtyp": "app", "app_displayname": "\u{200B}\n"})).1,
            None
        );
    }
}
