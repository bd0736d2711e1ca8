//! OpenID Connect discovery documents and JWKS, per token version.
//! <https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri>
//!
//! The multi-tenant authorities (`common`, `organizations`) publish an issuer with a
//! `{tenantid}` placeholder that relying parties substitute with the token's `tid`.

use http::StatusCode;
use serde_json::json;

use crate::sim::Sim;
use crate::wire::{SimResponse, aad_error};

/// Whether `tenant` names a multi-tenant authority; an error answer for unknown tenants.
fn tenant_kind(sim: &Sim, tenant: &str) -> Result<bool, SimResponse> {
    let multi =
        tenant.eq_ignore_ascii_case("common") || tenant.eq_ignore_ascii_case("organizations");
    if !multi && !sim.config.is_tenant(tenant) {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found."),
        ));
    }
    Ok(multi)
}

pub fn metadata(sim: &Sim, tenant: &str, v2: bool) -> SimResponse {
    let multi = match tenant_kind(sim, tenant) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let base = sim.authority();
    // Endpoints use the name the client used; the issuer always names the tenant by id.
    let t = if multi {
        tenant.to_owned()
    } else {
        sim.config.tenant_id.to_string()
    };
    let issuer_tid = if multi {
        "{tenantid}".to_owned()
    } else {
        sim.config.tenant_id.to_string()
    };
    let doc = if v2 {
        json!({
            "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{base}/{issuer_tid}/v2.0"),
            "request_uri_parameter_supported": false,
            "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/{t}/oauth2/v2.0/logout"),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "oid", "tid", "ver", "email", "preferred_username", "groups", "roles"],
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
            "msgraph_host": "graph.microsoft.com",
        })
    } else {
        let issuer = if multi {
            format!(
                "{}/{{tenantid}}/",
                sim.config.v1_issuer_base.trim_end_matches('/')
            )
        } else {
            sim.config.v1_issuer()
        };
        json!({
            "token_endpoint": format!("{base}/{t}/oauth2/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{base}/{t}/discovery/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "scopes_supported": ["openid"],
            "issuer": issuer,
            "authorization_endpoint": format!("{base}/{t}/oauth2/authorize"),
            "end_session_endpoint": format!("{base}/{t}/oauth2/logout"),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "oid", "tid", "ver", "upn", "unique_name", "groups", "roles", "appid"],
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
        })
    };
    SimResponse::json(StatusCode::OK, &doc)
}

pub fn keys(sim: &Sim, tenant: &str, v2: bool) -> SimResponse {
    let multi = match tenant_kind(sim, tenant) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let issuer = v2.then(|| sim.v2_issuer_for_keys(multi));
    SimResponse::json(StatusCode::OK, &sim.keys.jwks(issuer.as_deref()))
}
