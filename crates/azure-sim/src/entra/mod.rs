//! Entra ID: OIDC discovery (v1 and v2), the signing keys, the token endpoints, and the
//! managed-identity endpoints (IMDS and App Service) an Azure-hosted gateway would use.

pub mod assertion;
pub mod authorize;
pub mod discovery;
pub mod keys;
pub mod managed_identity;
pub mod token;

use http::StatusCode;

use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse, aad_error};

/// Whether a path belongs to the authority (`/{tenant}/...`).
pub fn owns(segments: &[String]) -> bool {
    matches!(
        segments.get(1).map(|s| s.to_ascii_lowercase()).as_deref(),
        Some(".well-known" | "v2.0" | "discovery" | "oauth2")
    )
}

/// `/{tenant}/...` on the authority.
pub fn handle(sim: &Sim, segments: &[String], req: &SimRequest) -> SimResponse {
    let tenant = segments[0].as_str();
    let rest: Vec<String> = segments[1..]
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match rest.as_slice() {
        [".well-known", "openid-configuration"] => discovery::metadata(sim, tenant, false),
        ["v2.0", ".well-known", "openid-configuration"] => discovery::metadata(sim, tenant, true),
        ["discovery", "keys"] => discovery::keys(sim, tenant, false),
        ["discovery", "v2.0", "keys"] => discovery::keys(sim, tenant, true),
        ["oauth2", "v2.0", "authorize"] => authorize::authorize(sim, tenant, req),
        ["oauth2", "v2.0", "token"] => token::token_endpoint(sim, tenant, req, true),
        ["oauth2", "token"] => token::token_endpoint(sim, tenant, req, false),
        _ => aad_error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            900023,
            "The endpoint is not known to the simulator.",
        ),
    }
}
