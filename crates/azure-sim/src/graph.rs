//! The slice of Microsoft Graph a gateway needs: resolving group membership when a token
//! carries the groups-overage claim instead of `groups`, and the display names of service
//! principals and groups, for people to read.
//! <https://learn.microsoft.com/graph/api/directoryobject-getmemberobjects>
//! <https://learn.microsoft.com/graph/api/serviceprincipal-get>
//! <https://learn.microsoft.com/graph/api/group-get>

use http::{Method, StatusCode};
use serde_json::json;

use crate::auth::authenticate;
use crate::calls::Caller;
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse, graph_error};

/// `/v1.0/...`; returns the caller for the call log.
pub fn handle(sim: &Sim, segments: &[String], req: &SimRequest) -> (SimResponse, Option<Caller>) {
    let caller = match authenticate(sim, req, &["graph"]) {
        Ok(c) => c,
        Err(e) => {
            return (
                graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    &e.to_string(),
                ),
                None,
            );
        }
    };
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let parts: Vec<&str> = lower.iter().map(String::as_str).collect();
    let response = match parts.as_slice() {
        [
            "v1.0",
            "users" | "serviceprincipals" | "directoryobjects",
            id,
            "getmemberobjects",
        ] => {
            if req.method != Method::POST {
                graph_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Request_BadRequest",
                    "Use POST.",
                )
            } else {
                match sim.config.principal_by_object_id(id) {
                    Some(p) => SimResponse::json(
                        StatusCode::OK,
                        &json!({
                            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)",
                            "value": p.groups,
                        }),
                    ),
                    None => graph_error(
                        StatusCode::NOT_FOUND,
                        "Request_ResourceNotFound",
                        &format!(
                            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                        ),
                    ),
                }
            }
        }
        ["v1.0", collection @ ("serviceprincipals" | "groups"), id] => {
            get_object(sim, collection, id, req)
        }
        _ => graph_error(
            StatusCode::NOT_FOUND,
            "Request_UnsupportedQuery",
            "The simulator does not serve this Graph endpoint.",
        ),
    };
    (response, Some(caller))
}

/// `GET /v1.0/servicePrincipals/{id}` or `/v1.0/groups/{id}`: the object in Graph's shape
/// (the properties a reader of names asks for), or Graph's own errors.
fn get_object(sim: &Sim, collection: &str, id: &str, req: &SimRequest) -> SimResponse {
    if req.method != Method::GET {
        return graph_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "The simulator serves only GET here.",
        );
    }
    if uuid::Uuid::parse_str(id).is_err() {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            &format!("Invalid object identifier '{id}'."),
        );
    }
    let not_found = || {
        graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    };
    let body = if collection == "groups" {
        let Some(name) = sim.config.group_by_object_id(id) else {
            return not_found();
        };
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#groups/$entity",
            "id": id,
            "displayName": crate::config::group_display_name(name),
            "mailEnabled": false,
            "securityEnabled": true,
            "groupTypes": [],
        })
    } else {
        // People are users, not service principals.
        let Some(p) = sim
            .config
            .principal_by_object_id(id)
            .filter(|p| p.kind != crate::config::PrincipalKind::User)
        else {
            return not_found();
        };
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
            "id": p.object_id,
            "appId": p.app_id,
            "displayName": p.display_name,
            "servicePrincipalType": if p.kind == crate::config::PrincipalKind::ManagedIdentity {
                "ManagedIdentity"
            } else {
                "Application"
            },
            "accountEnabled": true,
        })
    };
    SimResponse::json(StatusCode::OK, &body)
}
