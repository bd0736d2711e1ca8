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
//! itself only, no inline code, no framing).

pub mod oidc;
pub mod pages;
pub mod session;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};

use crate::config::ConsoleSettings;
use crate::identity::principal::Principal;
use crate::pipeline::Gateway;
use crate::upstream::client::{Body, full};

/// What the console's pages may load: only themselves. `form-action` keeps forms on the
/// console; `frame-ancestors` keeps it out of frames (clickjacking of the approve button).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The largest form the console reads (a vote's comment, an explain request).
const MAX_FORM: usize = 64 * 1024;

/// The console's sign-in settings and the means to sign people in.
pub struct Console {
    pub settings: ConsoleSettings,
    authorize_url: String,
    token_url: String,
    /// `{authority}` without the tenant: ID tokens are issued by `{authority}/{tid}/v2.0`.
    authority: String,
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
            authorize_url: format!("{authority}/{tenant}/oauth2/v2.0/authorize"),
            token_url: format!("{authority}/{tenant}/oauth2/v2.0/token"),
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

/// Who is signed in, for one request.
pub struct Viewer {
    pub principal: Principal,
    pub csrf: String,
    /// May read the audit trail (`audit.readers`): sessions and policy pages.
    pub reader: bool,
}

pub async fn handle(gw: Arc<Gateway>, req: http::Request<hyper::body::Incoming>) -> Response<Body> {
    let mut r = route(gw, req).await;
    secure(&mut r);
    r
}

async fn route(gw: Arc<Gateway>, req: http::Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if let Some(name) = path.strip_prefix("/console/static/") {
        return pages::asset(name);
    }
    let Some(console) = gw.console.clone() else {
        return page_error(
            StatusCode::NOT_FOUND,
            "The console is off",
            "This gateway has no `console:` section in its configuration, so nobody can sign in to the console. Approvers can use the API or `portcullis approvals` (docs/approvals.md).",
        );
    };
    let Some(base) = console.base(req.headers(), req.uri()) else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The request names no host.",
        );
    };
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/" | "/console" | "/console/") => return redirect("/console/approvals"),
        (&Method::GET, "/console/signin") => {
            let next = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "next")
                .map(|(_, v)| v.into_owned());
            return oidc::start(&console, &base, next.as_deref());
        }
        (&Method::GET, "/console/callback") => {
            return oidc::callback(&gw, &console, &base, req.headers(), &query).await;
        }
        (&Method::GET, "/console/signed-out") => return pages::signed_out(),
        _ => {}
    }
    let cookie = session::cookie(req.headers(), session::SESSION_COOKIE).map(str::to_owned);
    let htmx = req.headers().contains_key("hx-request");
    let found = match &cookie {
        Some(c) => session::find(&gw.store, c, &crate::audit_time()).await,
        None => Ok(None),
    };
    let s = match found {
        Ok(Some(s)) => s,
        // Ended or never begun: signing out again just clears the cookie.
        Ok(None) if method == Method::POST && path == "/console/signout" => {
            return signed_out_redirect();
        }
        // A live page whose session ended: htmx navigates the whole page to sign in.
        Ok(None) if htmx => {
            let page = req
                .headers()
                .get("hx-current-url")
                .and_then(|v| v.to_str().ok())
                .and_then(|u| url::Url::parse(u).ok())
                .map(|u| u.path().to_owned())
                .unwrap_or_else(|| "/console/approvals".into());
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &page)
                .finish();
            let mut r = page_error(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your console session has ended. Sign in again.",
            );
            r.headers_mut().insert(
                "hx-redirect",
                http::HeaderValue::from_str(&format!("/console/signin?{q}"))
                    .unwrap_or(http::HeaderValue::from_static("/console/signin")),
            );
            return r;
        }
        Ok(None) if method == Method::GET && !path.starts_with("/console/events") => {
            let mut next = path.clone();
            if !query.is_empty() {
                next.push('?');
                next.push_str(&query);
            }
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &next)
                .finish();
            return redirect(&format!("/console/signin?{q}"));
        }
        Ok(None) => {
            return page_error(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your console session has ended. Sign in again.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "console sessions cannot be read");
            return page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                "The gateway's store does not answer; try again shortly.",
            );
        }
    };
    let viewer = Viewer {
        reader: gw.audit.readers.iter().any(|m| m.matches(&s.principal)),
        principal: s.principal,
        csrf: s.csrf,
    };
    if method == Method::POST {
        // Cross-site forms: the Origin must be ours (browsers send it on every POST), and
        // the form must carry this session's token.
        let origin_ok = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| o == base);
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let form = match read_form(req).await {
            Ok(f) => f,
            Err(r) => return r,
        };
        let token = header_token.or_else(|| form_value(&form, "csrf").map(str::to_owned));
        let token_ok = token.is_some_and(|t| session::same(&t, &viewer.csrf));
        if !origin_ok || !token_ok {
            tracing::warn!(
                principal = %viewer.principal.object_id,
                path = %path,
                origin_ok,
                token_ok,
                "console form refused: cross-site request forgery check failed"
            );
            return page_error(
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form did not come from a console page of your session (CSRF check). Reload the page and try again.",
            );
        }
        if path == "/console/signout" {
            if let Some(c) = &cookie
                && let Err(e) = session::delete(&gw.store, c).await
            {
                tracing::error!(error = %e, "console session could not be deleted");
            }
            return signed_out_redirect();
        }
        return pages::post(&gw, &viewer, &path, &form, htmx).await;
    }
    if method != Method::GET {
        return page_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "Use the console's pages.",
        );
    }
    if path == "/console/events" {
        let id = cookie.unwrap_or_default();
        return pages::events(gw, viewer, id);
    }
    pages::get(&gw, &viewer, &path, &query).await
}

/// Clears the session cookie (and everything else of this origin's in the browser).
fn signed_out_redirect() -> Response<Body> {
    let mut r = redirect("/console/signed-out");
    let h = r.headers_mut();
    h.append(
        http::header::SET_COOKIE,
        session::set_cookie(session::SESSION_COOKIE, "", 0)
            .parse()
            .expect("ASCII"),
    );
    h.insert(
        "clear-site-data",
        http::HeaderValue::from_static("\"cookies\", \"storage\""),
    );
    r
}

async fn read_form(
    req: http::Request<hyper::body::Incoming>,
) -> Result<Vec<(String, String)>, Response<Body>> {
    use http_body_util::BodyExt;
    let bytes = http_body_util::Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|_| {
            page_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form could not be read (at most 64 KiB).",
            )
        })?
        .to_bytes();
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn form_value<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The headers every console answer carries.
fn secure(r: &mut Response<Body>) {
    let h = r.headers_mut();
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, http::HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(h, "strict-transport-security", "max-age=31536000");
    h.entry(http::header::CACHE_CONTROL)
        .or_insert(http::HeaderValue::from_static("no-store"));
}

/// A value as one path segment: everything but unreserved characters percent-encoded (agents
/// name their own sessions, so a session id may hold `#`, `?`, `/` or `..`).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`segment`]; `None` for a malformed escape or non-UTF-8.
pub(crate) fn unsegment(s: &str) -> Option<String> {
    String::from_utf8(crate::azure::route::percent_decode(s)?).ok()
}

pub(crate) fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().insert(
        http::header::LOCATION,
        http::HeaderValue::from_str(to).unwrap_or(http::HeaderValue::from_static("/console/")),
    );
    r
}

pub(crate) fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

pub(crate) fn page_error(status: StatusCode, title: &str, message: &str) -> Response<Body> {
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
