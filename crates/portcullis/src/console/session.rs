//! Console sign-in sessions and their CSRF tokens.
//!
//! The browser holds a random 256-bit session id in a `__Host-` cookie (Secure, HttpOnly,
//! SameSite=Lax, path `/`); the store holds only its SHA-256, the principal as its token said
//! at sign-in, and the session's CSRF token. Sessions live in the shared store, so any
//! replica serves them and a restart keeps them.
//!
//! The sign-in in flight (state, nonce, PKCE verifier) rides in a second cookie, sealed by
//! the `cookie` crate's private jar (AES-256-GCM, the cookie's name bound as associated
//! data: neither readable nor alterable by the browser) under a key derived from the
//! gateway's URL-binding key (which replicas share), so the callback can land on any replica.

use axum_extra::extract::cookie::{Cookie, CookieJar, Key, PrivateCookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::audit::store::{Col, Store, StoreError, on};
use crate::identity::principal::Principal;

/// The session cookie. `__Host-` makes browsers refuse it unless Secure, host-only, path `/`.
pub const SESSION_COOKIE: &str = "__Host-portcullis-console";
/// The sign-in in flight.
pub const SIGNIN_COOKIE: &str = "__Host-portcullis-signin";

/// A signed-in person, as the store keeps them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsoleSession {
    pub principal: Principal,
    pub csrf: String,
    pub created: String,
    pub expires: String,
}

/// What the sign-in cookie carries from the redirect to the callback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignIn {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to go after signing in (a console path).
    pub next: String,
    /// Unix seconds after which the callback is refused.
    pub expires: i64,
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn id_hash(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares tokens (state, nonce, CSRF, seals) without an early exit.
pub fn same(a: &str, b: &str) -> bool {
    crate::secret::same(a.as_bytes(), b.as_bytes())
}

/// Starts a session; returns the cookie value (the only copy of the id).
pub async fn create(store: &Store, s: &ConsoleSession) -> Result<String, StoreError> {
    let id = random_token();
    let body = serde_json::to_string(s).expect("a session serializes");
    on!(store, pool => {
        // Sign-ins are rare: sweeping the expired ones here keeps the table small.
        sqlx::query("DELETE FROM console_sessions WHERE expires < $1")
            .bind(&s.created)
            .execute(pool)
            .await?;
        sqlx::query("INSERT INTO console_sessions (id_hash, principal, expires, body) VALUES ($1, $2, $3, $4)")
            .bind(id_hash(&id))
            .bind(&s.principal.object_id)
            .bind(&s.expires)
            .bind(&body)
            .execute(pool)
            .await?;
    });
    Ok(id)
}

/// The live session a cookie names, if any.
pub async fn find(
    store: &Store,
    id: &str,
    now: &str,
) -> Result<Option<ConsoleSession>, StoreError> {
    let body: Option<String> = on!(store, pool => {
        sqlx::query("SELECT body FROM console_sessions WHERE id_hash = $1 AND expires > $2")
            .bind(id_hash(id))
            .bind(now)
            .fetch_optional(pool)
            .await?
            .map(|r| r.col(0))
    });
    body.map(|b| {
        serde_json::from_str(&b).map_err(|e| StoreError::Corrupt(format!("console session: {e}")))
    })
    .transpose()
}

pub async fn delete(store: &Store, id: &str) -> Result<(), StoreError> {
    on!(store, pool => {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash(id))
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Seals and opens the sign-in cookie.
pub struct Sealer {
    key: Key,
}

impl Sealer {
    /// A key of its own, derived from the gateway's binding key (HMAC-SHA-512 of a label:
    /// the 64 bytes the private jar wants).
    pub fn new(binding_key: &[u8]) -> Sealer {
        let mut m = Hmac::<Sha512>::new_from_slice(binding_key).expect("any key length");
        m.update(b"portcullis console sign-in cookie v2");
        Sealer {
            key: Key::from(m.finalize().into_bytes().as_slice()),
        }
    }

    /// The sealed sign-in cookie, for `lifetime_secs`.
    pub fn seal(&self, s: &SignIn, lifetime_secs: i64) -> PrivateCookieJar {
        let value = serde_json::to_string(s).expect("a sign-in serializes");
        PrivateCookieJar::new(self.key.clone()).add(cookie(SIGNIN_COOKIE, value, lifetime_secs))
    }

    /// The sign-in a request's cookie carries, if it is ours, unaltered and not stale.
    pub fn open(&self, headers: &http::HeaderMap, now: i64) -> Option<SignIn> {
        let c = PrivateCookieJar::from_headers(headers, self.key.clone()).get(SIGNIN_COOKIE)?;
        let s: SignIn = serde_json::from_str(c.value()).ok()?;
        (s.expires > now).then_some(s)
    }
}

/// A cookie's value from a request's `Cookie` headers.
pub fn cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(name)
        .map(|c| c.value().to_owned())
}

/// Our cookies: always Secure, HttpOnly, host-only, path `/`. Lax, not Strict: the callback
/// arrives as a top-level navigation from the identity provider, which must carry the
/// sign-in cookie. Forms are protected by CSRF tokens besides. An empty value with no
/// lifetime clears it.
pub fn cookie(name: &'static str, value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(::cookie::time::Duration::seconds(max_age_secs))
        .build()
}

/// The answer's cookies: set, or cleared (an empty value that lives 0 s), whether or not the
/// request carried them.
pub fn set_cookies(cookies: impl IntoIterator<Item = Cookie<'static>>) -> CookieJar {
    cookies.into_iter().fold(CookieJar::new(), CookieJar::add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signin() -> SignIn {
        SignIn {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            next: "/console/approvals".into(),
            expires: 2_000,
        }
    }

    /// A request carrying `set`'s cookie, as a browser sends it back.
    fn carrying(set: impl axum::response::IntoResponseParts) -> http::HeaderMap {
        use axum::response::IntoResponse;
        let r = (set, ()).into_response();
        let mut h = http::HeaderMap::new();
        for c in r.headers().get_all(http::header::SET_COOKIE) {
            let pair = c.to_str().unwrap().split(';').next().unwrap().to_owned();
            h.append(http::header::COOKIE, pair.parse().unwrap());
        }
        h
    }

    #[test]
    fn sealed_sign_ins_open_only_unaltered_and_in_time() {
        let sealer = Sealer::new(b"key one");
        let sealed = carrying(sealer.seal(&signin(), 600));
        assert_eq!(sealer.open(&sealed, 1_000), Some(signin()));
        assert_eq!(sealer.open(&sealed, 2_000), None, "stale");
        assert_eq!(Sealer::new(b"key two").open(&sealed, 1_000), None);
        // Sealed, not just signed: the browser cannot read the verifier or the nonce.
        let text = sealed[http::header::COOKIE].to_str().unwrap().to_owned();
        assert!(
            !text.contains("/console/approvals") && !text.contains("\"nonce\""),
            "{text}"
        );
        // Altered anywhere, or forged under another key: refused.
        let (name, value) = text.split_once('=').unwrap();
        let mut altered = value.as_bytes().to_vec();
        altered[value.len() / 2] ^= 1;
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("{name}={}", String::from_utf8(altered).unwrap())
                .parse()
                .unwrap(),
        );
        assert_eq!(sealer.open(&h, 1_000), None);
        let mut other = signin();
        other.next = "https://evil.example/".into();
        let forged = carrying(Sealer::new(b"key two").seal(&other, 600));
        assert_eq!(sealer.open(&forged, 1_000), None);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(
            "cookie",
            "a=1; __Host-portcullis-console=abc".parse().unwrap(),
        );
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
