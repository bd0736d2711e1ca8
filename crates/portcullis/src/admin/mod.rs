//! The admin JSON API (docs/api.md): health (`/healthz`, `/readyz`, `/metrics`), approvals
//! for approvers (`/api/approvals...`, [`approvals`]) and the audit trail for its readers
//! (`/api/sessions`, `/api/records`, [`audit`]), as an axum [`Router`]. API callers present
//! their own Entra token for the gateway's audience, checked exactly as the pipeline checks
//! agents' tokens ([`Caller`]).
//!
//! `server` serves this router on the admin listener beside the console's; the console
//! reuses [`approvals::visible`], [`approvals::visible_page`] and [`events`].

pub mod approvals;
pub mod audit;
pub mod events;
pub mod health;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::request::Parts;
use http::{Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::audit::store::Store;
use crate::identity::principal::Principal;
use crate::pipeline::Gateway;

/// What the admin API (and the console, which wraps it) works from.
#[derive(Clone)]
pub struct AdminState {
    /// The pipeline's state: the authenticator callers' tokens are checked by, the approvals
    /// service, the audit settings (`audit.readers`).
    pub gateway: Arc<Gateway>,
    /// The audit store, for reading (sessions, records, console sign-ins); the pipeline
    /// writes through the gateway's recorder, never through this.
    pub store: Store,
}

/// The API's routes; unknown paths answer in ARM's error shape.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", any(health::live))
        .route("/readyz", any(health::ready))
        .route("/metrics", any(health::metrics))
        .merge(approvals::routes())
        .merge(audit::routes())
        .fallback(unknown)
        .with_state(state)
}

/// Paths no route knows. Under `/api/` the caller is authenticated first (an anonymous
/// caller learns nothing about which endpoints exist), and each family says no in its own
/// words.
async fn unknown(
    State(s): State<AdminState>,
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
) -> Response {
    let path = uri.path();
    if !path.starts_with("/api/") {
        return not_found();
    }
    let principal = match Caller::of(&s, &headers).await {
        Ok(c) => c.0,
        Err(r) => return r,
    };
    if path.starts_with("/api/approvals") {
        return approvals::unknown(method).await;
    }
    if method != Method::GET {
        return audit::read_only().await;
    }
    if !Reader::may(&s, &principal) {
        return Reader::refused(&principal);
    }
    not_found()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "NotFound", "no such admin endpoint")
}

// === extractors ===

/// An authenticated API caller: the bearer token's principal. Refused with 401 in ARM's
/// shape before any route-specific answer (404, 405) is given.
pub struct Caller(pub Principal);

impl Caller {
    async fn of(s: &AdminState, headers: &http::HeaderMap) -> Result<Caller, Response> {
        crate::pipeline::authenticate(&s.gateway, headers)
            .await
            .map(Caller)
            .map_err(|e| {
                error(
                    e.status(),
                    "AuthenticationFailed",
                    &e.message(&crate::azure::route::Service::Arm),
                )
            })
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Caller, Response> {
        Caller::of(s, &parts.headers).await
    }
}

/// A caller who may read the audit trail (`audit.readers`); others are refused with 403.
pub struct Reader(pub Principal);

impl Reader {
    fn may(s: &AdminState, p: &Principal) -> bool {
        s.gateway.audit.readers.iter().any(|m| m.matches(p))
    }

    fn refused(p: &Principal) -> Response {
        error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            &format!(
                "principal {} may not read the audit trail (audit.readers)",
                p.object_id
            ),
        )
    }
}

impl FromRequestParts<AdminState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Reader, Response> {
        let Caller(p) = Caller::of(s, &parts.headers).await?;
        if !Reader::may(s, &p) {
            return Err(Reader::refused(&p));
        }
        Ok(Reader(p))
    }
}

// === answers ===

/// JSON, never cached.
pub(crate) fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            (
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            ),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Errors in ARM's shape, like the gateway's own.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    reply(status, json!({"error": {"code": code, "message": message}}))
}
