//! The slice of Microsoft Graph a gateway needs: resolving group membership when a token
//! carries the groups-overage claim instead of `groups`.
//! <https://learn.microsoft.com/graph/api/directoryobject-getmemberobjects>

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
        _ => graph_error(
            StatusCode::NOT_FOUND,
            "Request_UnsupportedQuery",
            "The simulator does not serve this Graph endpoint.",
        ),
    };
    (response, Some(caller))
}
