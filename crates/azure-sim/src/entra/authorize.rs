//! Interactive sign-in: the authorization endpoint (`/{tenant}/oauth2/v2.0/authorize`) with a
//! sign-in page listing the simulator's users, and the authorization-code grant at the token
//! endpoint, with PKCE, as a web app (the approver console) uses them.
//! <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow>
//!
//! The simulator asks no password: picking a user signs in as that user. It insists on the
//! parts of the protocol a relying party must get right: a registered client, a loopback
//! `https` redirect URI, PKCE with S256, single-use codes bound to the client, the redirect
//! URI and the challenge, and a `nonce` carried into the ID token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::token::{Issue, issue};
use crate::config::{Principal, PrincipalKind};
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse, aad_error};

/// How long a code may wait to be redeemed (Entra: about 10 minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Scopes that ask for the ID token and profile, not for an API.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Codes handed out and not yet redeemed.
#[derive(Default)]
pub struct Codes {
    issued: Mutex<HashMap<String, Code>>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    user: String,
    scope: String,
    nonce: Option<String>,
    challenge: String,
    expires: Instant,
}

/// The sign-in request's parameters, as the client sent them.
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    challenge: String,
}

fn params_of(req: &SimRequest) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = form_urlencoded::parse(req.raw_query.as_bytes())
        .into_owned()
        .collect();
    if req.method == http::Method::POST {
        all.extend(form_urlencoded::parse(&req.body).into_owned());
    }
    all
}

fn param<'a>(all: &'a [(String, String)], name: &str) -> Option<&'a str> {
    all.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A redirect URI the simulator sends codes to: `https` on this machine (a test double
/// must not hand out codes elsewhere), as an app registration would list it.
fn redirect_allowed(uri: &str) -> bool {
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    u.scheme() == "https" && loopback && u.fragment().is_none()
}

fn app<'s>(sim: &'s Sim, client_id: &str) -> Option<&'s Principal> {
    sim.config
        .principal_by_app_id(client_id)
        .filter(|p| p.kind == PrincipalKind::App)
}

/// Checks what must be right before the simulator may redirect back at all.
fn check(
    sim: &Sim,
    tenant: &str,
    all: &[(String, String)],
) -> Result<AuthorizeParams, SimResponse> {
    let page_error = |aadsts: u32, text: String| Err(error_page(aadsts, &text));
    if !sim.config.is_tenant(tenant) {
        return page_error(90002, format!("Tenant '{tenant}' not found."));
    }
    let Some(client_id) = param(all, "client_id") else {
        return page_error(
            900144,
            "The request body must contain the following parameter: 'client_id'.".into(),
        );
    };
    if app(sim, client_id).is_none() {
        return page_error(
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                sim.config.tenant_domain
            ),
        );
    }
    let Some(redirect_uri) = param(all, "redirect_uri").filter(|r| redirect_allowed(r)) else {
        return page_error(
            50011,
            "The redirect URI specified in the request does not match the redirect URIs configured for the application (the simulator accepts https URIs on this machine).".into(),
        );
    };
    let back = |error: &str, description: &str| {
        let mut u = url::Url::parse(redirect_uri).expect("checked above");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("error", error);
            q.append_pair("error_description", description);
            if let Some(s) = param(all, "state") {
                q.append_pair("state", s);
            }
        }
        Err(redirect(u.as_str()))
    };
    if param(all, "response_type") != Some("code") {
        return back(
            "unsupported_response_type",
            "AADSTS700054: response_type must be 'code' here.",
        );
    }
    let Some(challenge) = param(all, "code_challenge") else {
        return back(
            "invalid_request",
            "AADSTS9002325: Proof Key for Code Exchange is required (code_challenge).",
        );
    };
    if param(all, "code_challenge_method") != Some("S256") {
        return back(
            "invalid_request",
            "AADSTS501491: code_challenge_method must be S256.",
        );
    }
    let scope = param(all, "scope").unwrap_or("openid").to_owned();
    if !scope.split(' ').any(|s| s == "openid") {
        return back(
            "invalid_scope",
            "AADSTS70011: the scope must include 'openid'.",
        );
    }
    Ok(AuthorizeParams {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state: param(all, "state").map(str::to_owned),
        nonce: param(all, "nonce").map(str::to_owned),
        challenge: challenge.to_owned(),
    })
}

/// `GET` shows the sign-in page; `POST` (the page's form) signs the chosen user in.
pub fn authorize(sim: &Sim, tenant: &str, req: &SimRequest) -> SimResponse {
    let all = params_of(req);
    let p = match check(sim, tenant, &all) {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    if req.method == http::Method::GET {
        return sign_in_page(sim, &all, param(&all, "login_hint"));
    }
    if req.method != http::Method::POST {
        return error_page(900561, "The endpoint only accepts GET and POST requests.");
    }
    let Some(user) = param(&all, "user")
        .and_then(|u| sim.config.principal(u))
        .filter(|u| u.kind == PrincipalKind::User)
    else {
        return sign_in_page(sim, &all, None);
    };
    let code = super::token::random_b64(32);
    let mut codes = sim.codes.issued.lock().unwrap_or_else(|e| e.into_inner());
    codes.retain(|_, c| c.expires > Instant::now());
    codes.insert(
        code.clone(),
        Code {
            client_id: p.client_id,
            redirect_uri: p.redirect_uri.clone(),
            user: user.name.clone(),
            scope: p.scope,
            nonce: p.nonce,
            challenge: p.challenge,
            expires: Instant::now() + CODE_LIFETIME,
        },
    );
    let mut u = url::Url::parse(&p.redirect_uri).expect("checked");
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(s) = &p.state {
            q.append_pair("state", s);
        }
    }
    redirect(u.as_str())
}

/// The authorization-code grant at the token endpoint; the client is already authenticated.
pub fn redeem(sim: &Sim, client: &Principal, form: &[(String, String)]) -> SimResponse {
    let invalid_grant =
        |aadsts: u32, text: &str| aad_error(StatusCode::BAD_REQUEST, "invalid_grant", aadsts, text);
    let Some(code) = param(form, "code") else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
        );
    };
    // Single use: taken out whether or not the rest checks out.
    let taken = sim
        .codes
        .issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(code);
    let Some(c) = taken.filter(|c| c.expires > Instant::now()) else {
        return invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired or was already redeemed.",
        );
    };
    if client.app_id.map(|a| a.to_string()).as_deref() != Some(c.client_id.as_str()) {
        return invalid_grant(
            70002,
            "The authorization code was issued to another client.",
        );
    }
    if param(form, "redirect_uri") != Some(c.redirect_uri.as_str()) {
        return invalid_grant(
            500112,
            "The reply address does not match the reply address provided when requesting the authorization code.",
        );
    }
    let verifier = param(form, "code_verifier").unwrap_or_default();
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if verifier.len() < 43 || computed != c.challenge {
        return invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        );
    }
    let Some(user) = sim.config.principal(&c.user) else {
        return invalid_grant(50034, "The user account does not exist in the directory.");
    };
    // The API asked for: the one scope that is not an OpenID Connect scope.
    let resource = c
        .scope
        .split(' ')
        .filter(|s| !s.is_empty() && !OIDC_SCOPES.contains(s))
        .map(|s| {
            s.strip_suffix("/.default")
                .or_else(|| s.rsplit_once('/').map(|(r, _)| r))
                .unwrap_or(s)
        })
        .next();
    let Some(resource) = resource else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            "The simulator issues an access token for one API: ask for '{api}/.default' with openid.",
        );
    };
    let Some(api) = sim.config.api_for(resource) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {}.",
                sim.config.tenant_domain
            ),
        );
    };
    let access = issue(
        sim,
        Issue {
            principal: user,
            api,
            requested: resource,
            version: api.version,
            lifetime_secs: sim.config.token_lifetime_secs,
            not_before_offset: 0,
            client_auth: 1,
            client_app: Some(c.client_id.clone()),
            extra: Map::new(),
            unpublished_key: false,
        },
    );
    let id_token = id_token(sim, user, &c.client_id, c.nonce.as_deref());
    let lifetime = sim.config.token_lifetime_secs;
    SimResponse::json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "scope": c.scope,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access.token,
            "id_token": id_token,
        }),
    )
    .header("cache-control", "no-store, no-cache")
    .header("pragma", "no-cache")
}

/// A v2 ID token for the client: who signed in, and the client's nonce.
fn id_token(sim: &Sim, user: &Principal, client_id: &str, nonce: Option<&str>) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut c = Map::new();
    c.insert("aud".into(), json!(client_id));
    c.insert("iss".into(), json!(sim.v2_issuer()));
    c.insert("iat".into(), json!(now));
    c.insert("nbf".into(), json!(now));
    c.insert("exp".into(), json!(now + sim.config.token_lifetime_secs));
    c.insert("name".into(), json!(user.display_name));
    c.insert("oid".into(), json!(user.object_id));
    c.insert(
        "preferred_username".into(),
        json!(format!("{}@{}", user.name, sim.config.tenant_domain)),
    );
    c.insert(
        "sub".into(),
        json!(crate::config::derived_id(
            "sub",
            &format!("{}/{client_id}", user.name)
        )),
    );
    c.insert("tid".into(), json!(sim.config.tenant_id));
    c.insert("ver".into(), json!("2.0"));
    if let Some(n) = nonce {
        c.insert("nonce".into(), json!(n));
    }
    let key = sim.keys.signer();
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &Value::Object(c), &key.encoding)
        .expect("RS256 signing with a generated key does not fail")
}

fn redirect(location: &str) -> SimResponse {
    SimResponse::empty(StatusCode::FOUND)
        .header("location", location)
        .header("cache-control", "no-store")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: StatusCode, title: &str, main: &str) -> SimResponse {
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f3f2f1; color: #1b1b1b; }}
main {{ max-width: 26rem; margin: 2rem auto; background: #fff; padding: 1.5rem 2rem; box-shadow: 0 2px 6px #0003; }}
h1 {{ font-size: 1.4rem; }}
button {{ display: block; width: 100%; text-align: left; margin: .5rem 0; padding: .75rem 1rem; font: inherit;
  border: 1px solid #8a8886; background: #fff; cursor: pointer; }}
button:hover, button:focus {{ background: #edebe9; outline: 2px solid #0067b8; }}
small {{ color: #444; }}
</style></head>
<body><main>{main}</main></body></html>"#
    );
    let mut r = SimResponse::empty(status);
    r.body = bytes::Bytes::from(page);
    r.header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
}

fn error_page(aadsts: u32, text: &str) -> SimResponse {
    html(
        StatusCode::BAD_REQUEST,
        "Sign-in error",
        &format!(
            "<h1>Sorry, but we’re having trouble signing you in.</h1><p>AADSTS{aadsts}: {}</p>",
            escape(text)
        ),
    )
}

/// One button per user of the directory; the form carries the client's parameters back.
fn sign_in_page(sim: &Sim, all: &[(String, String)], hint: Option<&str>) -> SimResponse {
    let hidden: String = all
        .iter()
        .filter(|(k, _)| k != "user")
        .map(|(k, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                escape(k),
                escape(v)
            )
        })
        .collect();
    let app_name = param(all, "client_id")
        .and_then(|c| app(sim, c))
        .map(|a| a.display_name.clone())
        .unwrap_or_default();
    let mut users: Vec<&Principal> = sim
        .config
        .principals
        .iter()
        .filter(|p| p.kind == PrincipalKind::User)
        .collect();
    if let Some(h) = hint {
        let h = h.split('@').next().unwrap_or(h);
        users.sort_by_key(|u| u.name != h);
    }
    let buttons: String = users
        .iter()
        .map(|u| {
            format!(
                r#"<button type="submit" name="user" value="{}">{} <small>{}@{}</small></button>"#,
                escape(&u.name),
                escape(&u.display_name),
                escape(&u.name),
                escape(&sim.config.tenant_domain)
            )
        })
        .collect();
    html(
        StatusCode::OK,
        "Sign in to your account",
        &format!(
            r#"<h1>Pick an account</h1>
<p>to continue to <b>{}</b> ({} simulator: no password is asked)</p>
<form method="post">{hidden}{buttons}</form>"#,
            escape(&app_name),
            escape(&sim.config.tenant_name)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_loopback_redirects() {
        assert!(redirect_allowed("https://localhost:9443/console/callback"));
        assert!(redirect_allowed("https://127.0.0.1:9443/cb"));
        assert!(redirect_allowed("https://[::1]:9443/cb"));
        assert!(redirect_allowed("https://gw.localhost/cb"));
        assert!(!redirect_allowed("http://localhost:9443/cb"));
        assert!(!redirect_allowed("https://evil.example/cb"));
        assert!(!redirect_allowed("https://localhost.evil.example/cb"));
        assert!(!redirect_allowed("https://localhost/cb#frag"));
        assert!(!redirect_allowed("not a url"));
    }
}
