//! Signing people in with OpenID Connect, through the `openidconnect` crate: the
//! authorization-code flow with PKCE (S256), `state` against cross-site request forgery of
//! the callback, and `nonce` against replayed ID tokens.
//! <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow>
//!
//! Who signed in is decided by the access token, validated exactly as the admin API
//! validates a bearer token (signature, issuer, audience, tenant, groups); the ID token,
//! validated by the crate against the issuer's published keys (signature, audience, expiry,
//! nonce), must come from the authority for its own tenant and name the same person.
//!
//! Entra's endpoints are written from the authority rather than discovered: the crate's
//! discovery insists that the metadata's `issuer` equals the URL it was fetched from, and
//! Entra's multi-tenant authorities (`common`, `organizations`) publish
//! `https://login.microsoftonline.com/{tenantid}/v2.0` instead. For the same reason the
//! issuer is checked here, by the token's own `tid`
//! (<https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-the-issuer>).

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthUrl, AuthorizationCode, ClaimsVerificationError, Client,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointNotSet, EndpointSet, IdToken,
    IdTokenFields, IdTokenVerifier, IssuerUrl, JsonWebKeySetUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::session::{self, ConsoleSession, SIGNIN_COOKIE, SignIn};
use super::{Console, ConsoleState, page_error, redirect};
use crate::identity::principal::Principal;

/// How long a sign-in may take between the redirect and the callback.
const SIGNIN_LIFETIME_SECS: i64 = 600;
/// How long the token endpoint (and its key set) may take to answer.
const PROVIDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The claims Entra adds to an ID token that say who signed in, in which tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entra {
    tid: String,
    oid: String,
}

impl AdditionalClaims for Entra {}

type EntraTokenResponse = StandardTokenResponse<
    IdTokenFields<
        Entra,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

pub(super) type EntraIdToken =
    IdToken<Entra, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// An OpenID Connect client with Entra's claims, its authorization and token endpoints set.
type EntraClient = Client<
    Entra,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    EntraTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

/// The console's relying party: its client and where the tenant's keys are.
pub struct Provider {
    client: EntraClient,
    /// `{authority}/{tenant}/v2.0`; never compared (see the module's note on issuers).
    issuer: IssuerUrl,
    jwks: JsonWebKeySetUrl,
}

impl Provider {
    /// For `authority` (validated as an https URL, no trailing slash) and its tenant path.
    pub fn new(
        console: &crate::config::ConsoleSettings,
        authority: &str,
        tenant: &str,
    ) -> Provider {
        let url = |path: &str| format!("{authority}/{tenant}/{path}");
        let mut client: EntraClient = Client::new(
            ClientId::new(console.client_id.clone()),
            IssuerUrl::new(url("v2.0")).expect("the authority is a URL"),
            CoreJsonWebKeySet::default(),
        )
        .set_auth_uri(AuthUrl::new(url("oauth2/v2.0/authorize")).expect("a URL"))
        .set_token_uri(TokenUrl::new(url("oauth2/v2.0/token")).expect("a URL"))
        // `client_secret_post`, as Entra documents the code redemption.
        .set_auth_type(AuthType::RequestBody);
        if let Some(s) = &console.client_secret {
            client = client.set_client_secret(ClientSecret::new(s.expose().to_owned()));
        }
        Provider {
            issuer: IssuerUrl::new(url("v2.0")).expect("the authority is a URL"),
            jwks: JsonWebKeySetUrl::new(url("discovery/v2.0/keys")).expect("a URL"),
            client,
        }
    }
}

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
pub fn start(console: &Console, base: &str, next: Option<&str>) -> Response {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    // 32 random bytes each, as the PKCE verifier.
    let state = CsrfToken::new_random_len(32);
    let nonce = Nonce::new_random_len(32);
    let redirect_uri = match RedirectUrl::new(format!("{base}/console/callback")) {
        Ok(u) => u,
        Err(_) => {
            return page_error(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request names no host.",
            );
        }
    };
    let (url, state, nonce) = console
        .provider
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || state,
            move || nonce,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new(console.settings.scope.clone()))
        .add_extra_param("response_mode", "query")
        .set_pkce_challenge(challenge)
        .set_redirect_uri(Cow::Owned(redirect_uri))
        .url();
    let s = SignIn {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next: safe_next(next),
        expires: chrono::Utc::now().timestamp() + SIGNIN_LIFETIME_SECS,
    };
    (
        console.sealer.seal(&s, SIGNIN_LIFETIME_SECS),
        redirect(url.as_str()),
    )
        .into_response()
}

/// What the identity provider sends the browser back with.
#[derive(Deserialize)]
pub struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The identity provider sends the browser back here with a code (or an error).
pub async fn callback(
    s: &ConsoleState,
    console: &Console,
    base: &str,
    headers: &http::HeaderMap,
    q: Callback,
) -> Response {
    let Some(signin) = console.sealer.open(headers, chrono::Utc::now().timestamp()) else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in was not started here or took longer than 10 minutes. Start again.",
        );
    };
    if !q
        .state
        .as_deref()
        .is_some_and(|st| session::same(st, &signin.state))
    {
        tracing::warn!("console sign-in refused: the state does not match this browser's sign-in");
        return page_error(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            "The answer from the identity provider does not belong to this browser's sign-in.",
        );
    }
    if let Some(e) = &q.error {
        let why = q.error_description.as_deref().unwrap_or(e);
        return page_error(
            StatusCode::UNAUTHORIZED,
            "Sign-in failed",
            &format!("The identity provider said: {why}"),
        );
    }
    let Some(code) = q.code else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "No code came back.",
        );
    };
    let (principal, token_exp) = match redeem(s, console, base, code, &signin).await {
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
    let kept = ConsoleSession {
        csrf: session::random_token(),
        created: crate::audit_time(),
        expires: until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        principal,
    };
    let id = match session::create(&s.admin.store, &kept).await {
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
    tracing::info!(principal = %kept.principal.object_id, "console sign-in");
    (
        session::set_cookies([
            session::cookie(session::SESSION_COOKIE, id, lifetime),
            session::cookie(SIGNIN_COOKIE, String::new(), 0),
        ]),
        redirect(&signin.next),
    )
        .into_response()
}

/// Exchanges the code; returns who signed in and until when, or why not (words for the
/// person).
async fn redeem(
    s: &ConsoleState,
    console: &Console,
    base: &str,
    code: String,
    signin: &SignIn,
) -> Result<(Principal, Option<i64>), String> {
    let redirect_uri = RedirectUrl::new(format!("{base}/console/callback"))
        .map_err(|e| format!("the console's address: {e}"))?;
    let exchange = console
        .provider
        .client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(signin.verifier.clone()))
        .set_redirect_uri(Cow::Owned(redirect_uri))
        .request_async(&console.http);
    let unreachable =
        |e: &dyn std::fmt::Display| format!("the identity provider could not be reached: {e}");
    let answer = tokio::time::timeout(PROVIDER_TIMEOUT, exchange)
        .await
        .map_err(|e| unreachable(&e))?
        .map_err(|e| match e {
            // Entra's error descriptions name the problem, never a credential.
            RequestTokenError::ServerResponse(r) => format!(
                "the identity provider refused the code: {}",
                r.error_description()
                    .cloned()
                    .unwrap_or_else(|| r.error().to_string())
            ),
            RequestTokenError::Request(e) => unreachable(&e),
            RequestTokenError::Parse(e, _) => {
                format!("the identity provider's answer could not be read: {e}")
            }
            RequestTokenError::Other(e) => unreachable(&e),
        })?;
    let id_token = answer
        .id_token()
        .ok_or("the identity provider gave no ID token")?;
    let principal = s
        .admin
        .gateway
        .auth
        .authenticate(answer.access_token().secret())
        .await
        .map_err(|e| format!("the access token is not accepted: {e}"))?;
    let keys = tokio::time::timeout(
        PROVIDER_TIMEOUT,
        CoreJsonWebKeySet::fetch_async(&console.provider.jwks, &console.http),
    )
    .await
    .map_err(|e| unreachable(&e))?
    .map_err(|e| format!("the identity provider's keys could not be read: {e}"))?;
    verify_id_token(id_token, keys, console, &signin.nonce, &principal)?;
    // Validated above; its expiry bounds the session.
    let exp = crate::identity::jwt::unverified_claims(answer.access_token().secret())
        .ok()
        .and_then(|c| c["exp"].as_i64());
    Ok((principal, exp))
}

/// The ID token must be signed by one of the authority's keys, for this client, unexpired,
/// carry this sign-in's nonce, come from the authority for its own tenant, and name the
/// person the access token names.
fn verify_id_token(
    token: &EntraIdToken,
    keys: CoreJsonWebKeySet,
    console: &Console,
    nonce: &str,
    p: &Principal,
) -> Result<(), String> {
    let verifier = IdTokenVerifier::new_public_client(
        console.provider.client.client_id().clone(),
        console.provider.issuer.clone(),
        keys,
    )
    // Checked below, by the token's own tenant (the module's note).
    .require_issuer_match(false);
    let claims = token
        .claims(&verifier, &Nonce::new(nonce.to_owned()))
        .map_err(|e| match e {
            ClaimsVerificationError::InvalidAudience(_) => {
                "the ID token is for another application".to_owned()
            }
            ClaimsVerificationError::InvalidNonce(_) => {
                "the ID token does not carry this sign-in's nonce (a replayed token?)".to_owned()
            }
            ClaimsVerificationError::Expired(_) => "the ID token has expired".to_owned(),
            other => format!("the ID token: {other}"),
        })?;
    let entra = claims.additional_claims();
    let tid = entra.tid.to_ascii_lowercase();
    if claims.issuer().as_str() != format!("{}/{tid}/v2.0", console.authority) {
        return Err("the ID token comes from another issuer".into());
    }
    if entra.oid.to_ascii_lowercase() != p.object_id || tid != p.tenant_id {
        return Err("the ID token and the access token name different people".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::OnceLock;

    use super::{Console, EntraIdToken, safe_next, verify_id_token};
    use crate::identity::principal::{Principal, PrincipalKind};
    use openidconnect::core::CoreJsonWebKeySet;
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

    /// The simulator's signing keys: one signs, the published set verifies.
    fn keys() -> &'static azure_sim::entra::keys::KeyRing {
        static KEYS: OnceLock<azure_sim::entra::keys::KeyRing> = OnceLock::new();
        KEYS.get_or_init(azure_sim::entra::keys::KeyRing::new)
    }

    /// `claims` signed as an ID token (with the `sub` and `iat` every ID token has) and
    /// checked as a callback checks it.
    fn check_id_token(
        claims: &Value,
        console: &Console,
        nonce: &str,
        p: &Principal,
    ) -> Result<(), String> {
        let mut claims = claims.clone();
        claims["sub"] = json!("the-subject");
        claims["iat"] = json!(chrono::Utc::now().timestamp());
        let signer = keys().signer();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(signer.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &signer.encoding).unwrap();
        let jwks: CoreJsonWebKeySet = serde_json::from_value(keys().jwks(None)).unwrap();
        verify_id_token(
            &EntraIdToken::from_str(&jwt).unwrap(),
            jwks,
            console,
            nonce,
            p,
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
    fn id_tokens_must_be_signed_by_a_published_key() {
        let c = console();
        let unpublished = keys().unpublished();
        let mut claims = claims();
        claims["sub"] = json!("the-subject");
        claims["iat"] = json!(chrono::Utc::now().timestamp());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(unpublished.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &unpublished.encoding).unwrap();
        let jwks: CoreJsonWebKeySet = serde_json::from_value(keys().jwks(None)).unwrap();
        let token = EntraIdToken::from_str(&jwt).unwrap();
        assert!(verify_id_token(&token, jwks, &c, "the-nonce", &person()).is_err());
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
