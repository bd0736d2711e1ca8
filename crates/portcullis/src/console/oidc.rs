//! Signing people in with OpenID Connect: the authorization-code flow with PKCE (S256),
//! `state` against cross-site request forgery of the callback, and `nonce` against replayed
//! ID tokens. <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow>
//!
//! Who signed in is decided by the access token, validated exactly as the admin API
//! validates a bearer token (signature, issuer, audience, tenant, groups); the ID token,
//! received straight from the token endpoint over TLS (OIDC Core §3.1.3.7), must name the
//! same person, for this client, with this sign-in's nonce.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::session::{self, ConsoleSession, SIGNIN_COOKIE, SignIn};
use super::{Console, page_error, redirect};
use crate::identity::jwt::unverified_claims;
use crate::pipeline::Gateway;
use crate::upstream::client::Body;

/// How long a sign-in may take between the redirect and the callback.
const SIGNIN_LIFETIME_SECS: i64 = 600;

/// A console path to return to after signing in; anything else goes to the start page.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.starts_with("//")
                && !n.contains("\\")
                && !n.starts_with("/console/callback")
                && !n.starts_with("/console/signin") =>
        {
            n.to_owned()
        }
        _ => "/console/approvals".to_owned(),
    }
}

/// Sends the browser to the identity provider.
pub fn start(console: &Console, base: &str, next: Option<&str>) -> Response<Body> {
    let s = SignIn {
        state: session::random_token(),
        nonce: session::random_token(),
        verifier: session::random_token(),
        next: safe_next(next),
        expires: chrono::Utc::now().timestamp() + SIGNIN_LIFETIME_SECS,
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(s.verifier.as_bytes()));
    let mut url = url::Url::parse(&console.authorize_url).expect("checked at start");
    url.query_pairs_mut()
        .append_pair("client_id", &console.settings.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &format!("{base}/console/callback"))
        .append_pair("response_mode", "query")
        .append_pair(
            "scope",
            &format!("openid profile {}", console.settings.scope),
        )
        .append_pair("state", &s.state)
        .append_pair("nonce", &s.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut r = redirect(url.as_str());
    r.headers_mut().append(
        http::header::SET_COOKIE,
        session::set_cookie(
            SIGNIN_COOKIE,
            &console.sealer.seal(&s),
            SIGNIN_LIFETIME_SECS,
        )
        .parse()
        .expect("cookie text is ASCII"),
    );
    r
}

/// The identity provider sends the browser back here with a code (or an error).
pub async fn callback(
    gw: &Arc<Gateway>,
    console: &Console,
    base: &str,
    headers: &http::HeaderMap,
    query: &str,
) -> Response<Body> {
    let q: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let arg = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(signin) = session::cookie(headers, SIGNIN_COOKIE)
        .and_then(|c| console.sealer.open(c, chrono::Utc::now().timestamp()))
    else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in was not started here or took longer than 10 minutes. Start again.",
        );
    };
    if !arg("state").is_some_and(|s| session::same(s, &signin.state)) {
        tracing::warn!("console sign-in refused: the state does not match this browser's sign-in");
        return page_error(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            "The answer from the identity provider does not belong to this browser's sign-in.",
        );
    }
    if let Some(e) = arg("error") {
        let why = arg("error_description").unwrap_or(e);
        return page_error(
            StatusCode::UNAUTHORIZED,
            "Sign-in failed",
            &format!("The identity provider said: {why}"),
        );
    }
    let Some(code) = arg("code") else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "No code came back.",
        );
    };
    let (principal, token_exp) = match redeem(gw, console, base, code, &signin).await {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(reason = %why, "console sign-in failed");
            return page_error(StatusCode::UNAUTHORIZED, "Sign-in failed", &why);
        }
    };
    // A session lasts as long as the access token that proved who signed in and their
    // groups (about an hour in Entra), at most `session_lifetime`: someone removed from
    // the approvers stops approving within that, as with a bearer token on the API.
    let now = chrono::Utc::now();
    let configured = now
        + chrono::Duration::from_std(console.settings.session_lifetime)
            .unwrap_or(chrono::Duration::hours(8));
    let until = token_exp
        .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
        .map_or(configured, |e| e.min(configured));
    let lifetime = (until - now).num_seconds().max(0);
    let s = ConsoleSession {
        csrf: session::random_token(),
        created: crate::audit_time(),
        expires: until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        principal,
    };
    let id = match session::create(&gw.store, &s).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "console session could not be stored");
            return page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                "The gateway's store does not answer; try again shortly.",
            );
        }
    };
    tracing::info!(principal = %s.principal.object_id, "console sign-in");
    let mut r = redirect(&signin.next);
    let h = r.headers_mut();
    h.append(
        http::header::SET_COOKIE,
        session::set_cookie(session::SESSION_COOKIE, &id, lifetime)
            .parse()
            .expect("ASCII"),
    );
    h.append(
        http::header::SET_COOKIE,
        session::set_cookie(SIGNIN_COOKIE, "", 0)
            .parse()
            .expect("ASCII"),
    );
    r
}

/// Exchanges the code; returns who signed in, or why not (words for the person).
async fn redeem(
    gw: &Arc<Gateway>,
    console: &Console,
    base: &str,
    code: &str,
    signin: &SignIn,
) -> Result<(crate::identity::principal::Principal, Option<i64>), String> {
    let redirect_uri = format!("{base}/console/callback");
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", console.settings.client_id.as_str()),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", signin.verifier.as_str()),
    ];
    let secret = console
        .settings
        .client_secret
        .as_ref()
        .map(|s| s.expose().to_owned());
    if let Some(s) = &secret {
        form.push(("client_secret", s.as_str()));
    }
    let answer = console
        .http
        .post(&console.token_url)
        .form(&form)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            format!(
                "the identity provider could not be reached: {}",
                e.without_url()
            )
        })?;
    let status = answer.status();
    let body: Value = answer
        .json()
        .await
        .map_err(|_| format!("the identity provider answered {status} without JSON"))?;
    if !status.is_success() {
        // Entra's error descriptions name the problem, never a credential.
        let why = body["error_description"]
            .as_str()
            .or(body["error"].as_str())
            .unwrap_or("no reason given");
        return Err(format!("the identity provider refused the code: {why}"));
    }
    let access = body["access_token"]
        .as_str()
        .ok_or("the identity provider gave no access token")?;
    let id_token = body["id_token"]
        .as_str()
        .ok_or("the identity provider gave no ID token")?;
    let principal = gw
        .auth
        .authenticate(access)
        .await
        .map_err(|e| format!("the access token is not accepted: {e}"))?;
    let claims = unverified_claims(id_token).map_err(|e| format!("the ID token: {e}"))?;
    check_id_token(&claims, console, &signin.nonce, &principal)?;
    // Validated above; its expiry bounds the session.
    let exp = unverified_claims(access)
        .ok()
        .and_then(|c| c["exp"].as_i64());
    Ok((principal, exp))
}

/// The ID token must be for this client, from this authority, unexpired, carry this
/// sign-in's nonce, and name the person the access token names.
fn check_id_token(
    claims: &Value,
    console: &Console,
    nonce: &str,
    p: &crate::identity::principal::Principal,
) -> Result<(), String> {
    let s = |k: &str| claims[k].as_str().unwrap_or_default();
    if !s("aud").eq_ignore_ascii_case(&console.settings.client_id) {
        return Err("the ID token is for another application".into());
    }
    let tid = s("tid").to_ascii_lowercase();
    let issuer = format!("{}/{tid}/v2.0", console.authority);
    if s("iss") != issuer {
        return Err("the ID token comes from another issuer".into());
    }
    if !session::same(s("nonce"), nonce) {
        return Err("the ID token does not carry this sign-in's nonce (a replayed token?)".into());
    }
    if claims["exp"].as_i64().unwrap_or(0) <= chrono::Utc::now().timestamp() {
        return Err("the ID token has expired".into());
    }
    if s("oid").to_ascii_lowercase() != p.object_id || tid != p.tenant_id {
        return Err("the ID token and the access token name different people".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Console, check_id_token, safe_next};
    use crate::identity::principal::{Principal, PrincipalKind};
    use serde_json::{Value, json};

    const TID: &str = "e19931f5-fd95-5a25-94d8-eaf2702ce353";
    const OID: &str = "20070f80-8fe7-53e1-91f2-c19325e5f95d";
    const CLIENT: &str = "1bd0e1e9-2069-5e03-b2fc-5c737025a777";

    fn console() -> Console {
        Console::new(
            crate::config::ConsoleSettings {
                client_id: CLIENT.into(),
                client_secret: None,
                url: None,
                scope: "api://portcullis/.default".into(),
                session_lifetime: std::time::Duration::from_secs(3600),
            },
            "https://login.example/",
            TID,
            reqwest::Client::new(),
            b"key",
        )
    }

    fn person() -> Principal {
        Principal {
            tenant_id: TID.into(),
            object_id: OID.into(),
            kind: PrincipalKind::User,
            app_id: Some(CLIENT.into()),
            groups: Vec::new(),
            roles: Vec::new(),
            display_name: None,
            token_version: 2,
        }
    }

    fn claims() -> Value {
        json!({
            "aud": CLIENT,
            "iss": format!("https://login.example/{TID}/v2.0"),
            "nonce": "the-nonce",
            "exp": chrono::Utc::now().timestamp() + 600,
            "oid": OID,
            "tid": TID,
        })
    }

    #[test]
    fn id_tokens_must_be_for_us_from_our_authority_with_our_nonce_about_the_same_person() {
        let c = console();
        assert_eq!(
            check_id_token(&claims(), &c, "the-nonce", &person()),
            Ok(())
        );
        let spoiled = |k: &str, v: Value| {
            let mut x = claims();
            x[k] = v;
            check_id_token(&x, &c, "the-nonce", &person())
        };
        assert!(
            spoiled("aud", json!("another-client"))
                .unwrap_err()
                .contains("another application")
        );
        assert!(
            spoiled("iss", json!("https://evil.example/v2.0"))
                .unwrap_err()
                .contains("issuer")
        );
        assert!(
            spoiled("nonce", json!("replayed"))
                .unwrap_err()
                .contains("nonce")
        );
        assert!(
            spoiled("exp", json!(chrono::Utc::now().timestamp() - 1))
                .unwrap_err()
                .contains("expired")
        );
        assert!(
            spoiled("oid", json!("00000000-0000-0000-0000-000000000009"))
                .unwrap_err()
                .contains("different people")
        );
        let mut no_nonce = claims();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(check_id_token(&no_nonce, &c, "the-nonce", &person()).is_err());
    }

    #[test]
    fn only_console_paths_are_returned_to() {
        assert_eq!(
            safe_next(Some("/console/sessions/abc")),
            "/console/sessions/abc"
        );
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/console/"),
            Some("/api/approvals"),
            Some("/console/callback?code=x"),
            Some("/console/\\evil"),
        ] {
            assert_eq!(safe_next(bad), "/console/approvals", "{bad:?}");
        }
    }
}
