//! The approver console: server-rendered pages on the admin listener (docs/console.md).
//!
//! - `/console/approvals`: pending approvals, updated live over server-sent events; approve
//!   or deny with a comment. `/console/approvals/history`: decided and expired ones.
//! - `/console/sessions`: agents' sessions, filtered; a session's timeline, replayed step by
//!   step.
//! - `/console/policy`: the rules in force, and "explain" (principal + request → decision).
//!
//! People sign in with OpenID Connect ([`oidc`]); their session lives in the store
//! ([`session`]). Every POST carries the session's CSRF token and a same-origin `Origin`;
//! every page carries a strict Content-Security-Policy (scripts and styles from the console
//! itself only, no inline code, no framing). [`router`] is the console's part of the admin
//! listener; it reads approvals and the audit trail through [`crate::admin`].

pub mod oidc;
pub mod pages;
pub mod policy;
pub mod session;
pub mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::admin::AdminState;
use crate::config::ConsoleSettings;
use crate::identity::principal::Principal;

/// What the console's pages may load: only themselves. `form-action` keeps forms on the
/// console; `frame-ancestors` keeps it out of frames (clickjacking of the approve button).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every console answer carries.
const SECURE: [(&str, &str); 7] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("strict-transport-security", "max-age=31536000"),
];

/// The largest form the console reads (a vote's comment, an explain request).
const MAX_FORM: usize = 64 * 1024;

/// The console's sign-in settings and the means to sign people in.
pub struct Console {
    pub settings: ConsoleSettings,
    provider: oidc::Provider,
    /// `{authority}` without the tenant: ID tokens are issued by `{authority}/{tid}/v2.0`.
    authority: String,
    /// Reaches the identity provider; follows no redirects.
    http: reqwest::Client,
    sealer: session::Sealer,
    /// `settings.url` as browsers send it in `Origin` (validated as an https origin).
    origin: Option<String>,
}

impl Console {
    pub fn new(
        settings: ConsoleSettings,
        authority: &str,
        tenant: &str,
        http: reqwest::Client,
        binding_key: &[u8],
    ) -> Console {
        let authority = authority.trim_end_matches('/').to_owned();
        Console {
            provider: oidc::Provider::new(&settings, &authority, tenant),
            authority,
            origin: settings
                .url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .map(|u| u.origin().ascii_serialization()),
            settings,
            http,
            sealer: session::Sealer::new(binding_key),
        }
    }

    /// The console's origin as browsers see it: configured, or the request's own host.
    fn base(&self, headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
        if let Some(o) = &self.origin {
            return Some(o.clone());
        }
        let host = uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })?;
        // A host header is only a name: no path, no user info.
        host.parse::<http::uri::Authority>()
            .ok()
            .filter(|a| !a.as_str().contains('@'))
            .map(|a| format!("https://{a}"))
    }
}

/// What the console works from: the admin API's state, and its own sign-in.
#[derive(Clone)]
pub struct ConsoleState {
    pub admin: AdminState,
    /// `None`: the configuration has no `console:` section, and every page says so.
    pub console: Option<Arc<Console>>,
}

/// The console's routes, every answer with its security headers.
pub fn router(state: ConsoleState) -> Router {
    let routes = Router::new()
        .route("/console/static/{name}", any(pages::asset))
        .route("/", get(home).fallback(other))
        .route("/console", get(home).fallback(other))
        .route("/console/signin", get(signin).fallback(other))
        .route("/console/callback", get(callback).fallback(other))
        .route("/console/signed-out", get(signed_out).fallback(other))
        .route("/console/signout", post(signout).fallback(other))
        .route("/console/events", get(pages::events).fallback(other))
        .route("/console/approvals", get(pages::pending).fallback(other))
        .route(
            "/console/approvals/history",
            get(pages::history).fallback(other),
        )
        .route("/console/approvals/list", get(pages::list).fallback(other))
        .route(
            "/console/approvals/{id}",
            get(pages::approval).fallback(other),
        )
        .route(
            "/console/approvals/{id}/{verb}",
            post(pages::vote).fallback(other),
        )
        .route("/console/sessions", get(sessions::list).fallback(other))
        .route(
            "/console/sessions/{id}",
            get(sessions::timeline).fallback(other),
        )
        .route("/console/policy", get(policy::page).fallback(other))
        .route("/console/{*rest}", any(other))
        .layer(DefaultBodyLimit::max(MAX_FORM));
    SECURE
        .iter()
        .fold(routes, |r, &(name, value)| {
            r.layer(SetResponseHeaderLayer::overriding(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            ))
        })
        .layer(SetResponseHeaderLayer::if_not_present(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

// === extractors ===

/// The console is on, and the origin this request's pages live at.
pub struct On {
    pub console: Arc<Console>,
    pub base: String,
}

impl FromRequestParts<ConsoleState> for On {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ConsoleState) -> Result<On, Response> {
        let Some(console) = s.console.clone() else {
            return Err(page_error(
                StatusCode::NOT_FOUND,
                "The console is off",
                "This gateway has no `console:` section in its configuration, so nobody can sign in to the console. Approvers can use the API or `portcullis approvals` (docs/approvals.md).",
            ));
        };
        let Some(base) = console.base(&parts.headers, &parts.uri) else {
            return Err(page_error(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request names no host.",
            ));
        };
        Ok(On { console, base })
    }
}

/// Who is signed in, for one request.
pub struct Viewer {
    pub principal: Principal,
    pub csrf: String,
    /// May read the audit trail (`audit.readers`): sessions and policy pages.
    pub reader: bool,
}

/// A signed-in request: the viewer, their session's cookie, and whether htmx asked.
/// Without a live session, pages send the browser to sign in and the rest say so.
pub struct Signed {
    pub viewer: Viewer,
    pub on: On,
    /// The session cookie's value (the session's id).
    pub session: String,
    pub htmx: bool,
}

impl FromRequestParts<ConsoleState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ConsoleState) -> Result<Signed, Response> {
        let on = On::from_request_parts(parts, s).await?;
        let cookie = session::cookie_value(&parts.headers, session::SESSION_COOKIE);
        let htmx = parts.headers.contains_key("hx-request");
        let found = match &cookie {
            Some(c) => session::find(&s.admin.store, c, &crate::audit_time()).await,
            None => Ok(None),
        };
        let path = parts.uri.path();
        let found = match found {
            Ok(Some(found)) => found,
            // Ended or never begun: signing out again just clears the cookie.
            Ok(None) if parts.method == Method::POST && path == "/console/signout" => {
                return Err(signed_out_redirect());
            }
            // A live page whose session ended: htmx navigates the whole page to sign in.
            Ok(None) if htmx => {
                let page = parts
                    .headers
                    .get("hx-current-url")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|u| url::Url::parse(u).ok())
                    .map(|u| u.path().to_owned())
                    .unwrap_or_else(|| "/console/approvals".into());
                let q = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &page)
                    .finish();
                let to = HeaderValue::from_str(&format!("/console/signin?{q}"))
                    .unwrap_or(HeaderValue::from_static("/console/signin"));
                return Err((
                    [(HeaderName::from_static("hx-redirect"), to)],
                    page_error(
                        StatusCode::UNAUTHORIZED,
                        "Signed out",
                        "Your console session has ended. Sign in again.",
                    ),
                )
                    .into_response());
            }
            Ok(None) if parts.method == Method::GET && !path.starts_with("/console/events") => {
                let next = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
                let q = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", next)
                    .finish();
                return Err(redirect(&format!("/console/signin?{q}")));
            }
            Ok(None) => {
                return Err(page_error(
                    StatusCode::UNAUTHORIZED,
                    "Signed out",
                    "Your console session has ended. Sign in again.",
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "console sessions cannot be read");
                return Err(page_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Store unavailable",
                    "The gateway's store does not answer; try again shortly.",
                ));
            }
        };
        Ok(Signed {
            viewer: Viewer {
                reader: s
                    .admin
                    .gateway
                    .audit
                    .readers
                    .iter()
                    .any(|m| m.matches(&found.principal)),
                principal: found.principal,
                csrf: found.csrf,
            },
            on,
            session: cookie.unwrap_or_default(),
            htmx,
        })
    }
}

/// A form posted from one of this session's own pages: the `Origin` is the console's
/// (browsers send it on every POST) and the form (or `x-csrf-token`) carries the session's
/// CSRF token. Cross-site forms are refused.
pub struct Posted {
    pub signed: Signed,
    pub form: Vec<(String, String)>,
}

impl Posted {
    pub fn value(&self, name: &str) -> Option<&str> {
        form_value(&self.form, name)
    }
}

impl FromRequest<ConsoleState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, s: &ConsoleState) -> Result<Posted, Response> {
        let (mut parts, body) = req.into_parts();
        let signed = Signed::from_request_parts(&mut parts, s).await?;
        let origin_ok = parts
            .headers
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| o == signed.on.base);
        let header_token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let path = parts.uri.path().to_owned();
        let bytes: Result<Bytes, BytesRejection> =
            Bytes::from_request(Request::from_parts(parts, body), s).await;
        let bytes = bytes.map_err(|_| {
            page_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form could not be read (at most 64 KiB).",
            )
        })?;
        let form: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
        let token = header_token.or_else(|| form_value(&form, "csrf").map(str::to_owned));
        let token_ok = token.is_some_and(|t| session::same(&t, &signed.viewer.csrf));
        if !origin_ok || !token_ok {
            tracing::warn!(
                principal = %signed.viewer.principal.object_id,
                path = %path,
                origin_ok,
                token_ok,
                "console form refused: cross-site request forgery check failed"
            );
            return Err(page_error(
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form did not come from a console page of your session (CSRF check). Reload the page and try again.",
            ));
        }
        Ok(Posted { signed, form })
    }
}

// === sign-in and out ===

async fn home(_: On) -> Response {
    redirect("/console/approvals")
}

#[derive(serde::Deserialize)]
struct SignInQuery {
    next: Option<String>,
}

async fn signin(on: On, Query(q): Query<SignInQuery>) -> Response {
    oidc::start(&on.console, &on.base, q.next.as_deref())
}

async fn callback(
    State(s): State<ConsoleState>,
    on: On,
    headers: http::HeaderMap,
    Query(q): Query<oidc::Callback>,
) -> Response {
    oidc::callback(&s, &on.console, &on.base, &headers, q).await
}

async fn signed_out(_: On) -> Response {
    pages::signed_out()
}

async fn signout(State(s): State<ConsoleState>, posted: Posted) -> Response {
    if let Err(e) = session::delete(&s.admin.store, &posted.signed.session).await {
        tracing::error!(error = %e, "console session could not be deleted");
    }
    signed_out_redirect()
}

/// Clears the session cookie (and everything else of this origin's in the browser).
fn signed_out_redirect() -> Response {
    (
        session::set_cookies([session::cookie(session::SESSION_COOKIE, String::new(), 0)]),
        [(
            HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cookies\", \"storage\""),
        )],
        redirect("/console/signed-out"),
    )
        .into_response()
}

/// A path no route serves, or a method a route does not take: signed-in people get "not
/// found" (a POST only after its CSRF check), other methods "not allowed".
async fn other(State(s): State<ConsoleState>, req: Request) -> Response {
    let method = req.method().clone();
    if method == Method::POST {
        return match Posted::from_request(req, &s).await {
            Ok(_) => page_error(StatusCode::NOT_FOUND, "Not found", "No such console form."),
            Err(r) => r,
        };
    }
    let (mut parts, _) = req.into_parts();
    match Signed::from_request_parts(&mut parts, &s).await {
        Err(r) => r,
        Ok(_) if method == Method::GET => {
            page_error(StatusCode::NOT_FOUND, "Not found", "No such console page.")
        }
        Ok(_) => page_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "Use the console's pages.",
        ),
    }
}

fn form_value<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A value as one path segment: everything but unreserved characters percent-encoded (agents
/// name their own sessions, so a session id may hold `#`, `?`, `/` or `..`).
pub(crate) fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// What [`segment`] escapes: all but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The inverse of [`segment`]; `None` for a malformed escape or non-UTF-8.
pub(crate) fn unsegment(s: &str) -> Option<String> {
    // `percent_decode` passes a malformed escape through; no segment of ours has one.
    let b = s.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

pub(crate) fn redirect(to: &str) -> Response {
    let to = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/console/"));
    (StatusCode::SEE_OTHER, [(http::header::LOCATION, to)]).into_response()
}

pub(crate) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(crate) fn page_error(status: StatusCode, title: &str, message: &str) -> Response {
    pages::error_page(status, title, message)
}

#[cfg(test)]
mod tests {
    use super::{segment, unsegment};

    #[test]
    fn agent_chosen_session_ids_survive_a_round_trip_through_a_path_segment() {
        for id in [
            "plain-id_1.2~",
            "victim#x",
            "../approvals/abc",
            "a b?c=d&e",
            "x/y%2Fz",
            "é",
        ] {
            let s = segment(id);
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "{s}"
            );
            assert_eq!(unsegment(&s).as_deref(), Some(id));
        }
        assert_eq!(unsegment("%zz"), None);
        assert_eq!(unsegment("%4"), None);
    }
}
