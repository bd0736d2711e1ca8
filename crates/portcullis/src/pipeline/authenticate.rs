//! Who sent the request (its Entra token, checked by `identity/`), the session it belongs
//! to, and whether its sender may send now (the per-principal rate).

use http::Request;
use http::header::{self, HeaderMap};

use super::error::GatewayError;
use super::trail::Trail;
use super::{Gateway, read};
use crate::identity::AuthError;
use crate::identity::principal::Principal;

/// The request's principal. Its head is checked first (a malformed one is refused before
/// its token is looked at); the session is named after, because a session an agent names
/// is its own (audit/session.rs): the name counts only with the principal that sent it.
pub(super) async fn request<B>(
    gw: &Gateway,
    req: &Request<B>,
    trail: &mut Trail,
) -> Result<Principal, GatewayError> {
    let authenticated = match read::framing(gw, req.headers()) {
        Ok(()) => authenticate(gw, req.headers()).await,
        Err(e) => Err(e),
    };
    trail.ids.session = gw.sessions.of(
        req.headers(),
        authenticated.as_ref().ok().map(|p| p.object_id.as_str()),
        trail.started,
    );
    let principal = authenticated?;
    trail.principal = Some(principal.object_id.clone());
    // For the records' readers: the token's name, or one the directory already knows.
    trail.principal_name = principal.labelled_name().or_else(|| {
        gw.auth
            .directory
            .known_service_principal(&principal.object_id)
            .map(|d| crate::identity::names::labelled(&d.name, d.kind))
    });
    if let Err(wait) = gw.limiter.take(&principal.object_id) {
        return Err(GatewayError::Throttled {
            retry_after: (wait.as_secs_f64().ceil() as u64).max(1),
        });
    }
    Ok(principal)
}

/// The principal a request's `Authorization: Bearer` token names (also for the admin
/// listener's callers).
pub async fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<Principal, GatewayError> {
    // Two Authorization headers are two claims to be someone: refuse rather than pick one.
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(GatewayError::Unauthenticated {
            message: "more than one Authorization header".into(),
            missing: false,
        });
    }
    let token = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => {
            return Err(GatewayError::Unauthenticated {
                message: "the Authorization header is missing".into(),
                missing: true,
            });
        }
        Some(Err(_)) => {
            return Err(GatewayError::Unauthenticated {
                message: "the Authorization header is not valid text".into(),
                missing: false,
            });
        }
        Some(Ok(v)) => match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => {
                return Err(GatewayError::Unauthenticated {
                    message: "the Authorization header is not a Bearer token".into(),
                    missing: false,
                });
            }
        },
    };
    gw.auth.authenticate(token).await.map_err(|e| match e {
        AuthError::Token(t) if t.is_unavailable() => GatewayError::AuthUnavailable(t.to_string()),
        AuthError::Token(t) => GatewayError::Unauthenticated {
            message: t.to_string(),
            missing: false,
        },
        AuthError::Groups(m) => GatewayError::AuthUnavailable(m),
    })
}
