//! Managed-identity token endpoints, as a gateway hosted in Azure reaches them.
//!
//! - IMDS: `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...` with
//!   `Metadata: true`; refuses requests carrying `X-Forwarded-For` (so a proxy cannot relay
//!   to it); numbers in the reply are strings.
//!   <https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token#get-a-token-using-http>
//! - App Service: `GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01` with
//!   `X-IDENTITY-HEADER`. <https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference>

use http::StatusCode;
use serde_json::{Map, json};

use crate::config::{Principal, PrincipalKind};
use crate::entra::token::{Issue, issue};
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse};

fn mi_error(status: StatusCode, error: &str, description: &str) -> SimResponse {
    SimResponse::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// The identity a request selects: by `client_id`, `object_id`/`principal_id` or
/// `msi_res_id`; else the first managed identity configured (the system-assigned one).
fn select<'a>(sim: &'a Sim, req: &SimRequest) -> Option<&'a Principal> {
    let mut mis = sim
        .config
        .principals
        .iter()
        .filter(|p| p.kind == PrincipalKind::ManagedIdentity);
    if let Some(id) = req.query("client_id") {
        return mis.find(|p| {
            p.app_id
                .is_some_and(|a| a.to_string().eq_ignore_ascii_case(&id))
        });
    }
    if let Some(id) = req.query("object_id").or_else(|| req.query("principal_id")) {
        return mis.find(|p| p.object_id.to_string().eq_ignore_ascii_case(&id));
    }
    if let Some(id) = req.query("msi_res_id").or_else(|| req.query("mi_res_id")) {
        let name = id.rsplit('/').next().unwrap_or_default().to_owned();
        return mis.find(|p| p.name.eq_ignore_ascii_case(&name));
    }
    mis.next()
}

fn mint_for(
    sim: &Sim,
    principal: &Principal,
    resource: &str,
) -> Result<(String, i64), SimResponse> {
    let Some(api) = sim.config.api_for(resource) else {
        return Err(mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant."
            ),
        ));
    };
    let issued = issue(
        sim,
        Issue {
            principal,
            api,
            requested: resource,
            version: api.version,
            lifetime_secs: sim.config.token_lifetime_secs,
            not_before_offset: 0,
            client_auth: 2,
            client_app: None,
            extra: Map::new(),
            unpublished_key: false,
        },
    );
    Ok((issued.token, issued.expires_on))
}

pub fn imds(sim: &Sim, req: &SimRequest) -> SimResponse {
    if req.method != http::Method::GET {
        return mi_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "Only GET is allowed.",
        );
    }
    if req.headers.contains_key("x-forwarded-for") {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Request with X-Forwarded-For header is not allowed.",
        );
    }
    if !req
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if req.query("api-version").is_none() {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = req.query("resource") else {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let Some(principal) = select(sim, req) else {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };
    match mint_for(sim, principal, &resource) {
        Ok((token, exp)) => {
            let lifetime = sim.config.token_lifetime_secs;
            SimResponse::json(
                StatusCode::OK,
                &json!({
                    "access_token": token,
                    "client_id": principal.app_id,
                    "expires_in": lifetime.to_string(),
                    "expires_on": exp.to_string(),
                    "ext_expires_in": lifetime.to_string(),
                    "not_before": chrono::Utc::now().timestamp().to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                }),
            )
        }
        Err(r) => r,
    }
}

pub fn app_service(sim: &Sim, req: &SimRequest) -> SimResponse {
    let expected = sim.config.identity_header.as_bytes();
    let given = req.header("x-identity-header").unwrap_or("").as_bytes();
    if given.len() != expected.len() || given.iter().zip(expected).any(|(a, b)| a != b) {
        return mi_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "The X-IDENTITY-HEADER header is missing or wrong.",
        );
    }
    if req.query("api-version").as_deref() != Some("2019-08-01") {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "api-version 2019-08-01 is required",
        );
    }
    let Some(resource) = req.query("resource") else {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let Some(principal) = select(sim, req) else {
        return mi_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };
    match mint_for(sim, principal, &resource) {
        Ok((token, exp)) => SimResponse::json(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "expires_on": exp.to_string(),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": principal.app_id,
            }),
        ),
        Err(r) => r,
    }
}
