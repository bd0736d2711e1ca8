//! The simulator's own control endpoints under `/_sim/`: test-only, unauthenticated, and the
//! reason the simulator must only ever listen on loopback.
//!
//! - `GET  /_sim/health`
//! - `GET  /_sim/state`: tenant, subscription, principals (ids, no secrets), URLs
//! - `POST /_sim/token`: mint a token for any configured principal (see `MintRequest`)
//! - `POST /_sim/keys/rotate` `{"retire_previous": bool}`
//! - `GET|PUT|DELETE /_sim/faults`
//! - `GET  /_sim/calls?since=N&service=arm`: what reached "Azure", and as whom

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::entra::token::{MintRequest, mint};
use crate::faults::Faults;
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse};

fn error(status: StatusCode, message: impl Into<String>) -> SimResponse {
    SimResponse::json(
        status,
        &json!({"error": {"code": "SimulatorControl", "message": message.into()}}),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    retire_previous: bool,
}

/// The simulator's description, without any credential.
pub fn state(sim: &Sim) -> Value {
    let c = &sim.config;
    json!({
        "url": sim.base_url,
        "authority": sim.authority(),
        "tenant_id": c.tenant_id,
        "tenant_domain": c.tenant_domain,
        "subscription_id": c.subscription_id,
        "v1_issuer": c.v1_issuer(),
        "v2_issuer": sim.v2_issuer(),
        "keyvault_dns_suffix": c.keyvault_dns_suffix,
        "principals": c.principals.iter().map(|p| json!({
            "name": p.name,
            "kind": p.kind,
            "object_id": p.object_id,
            "app_id": p.app_id,
            "groups": p.group_names,
            "roles": p.roles,
        })).collect::<Vec<_>>(),
        "apis": c.apis.iter().map(|a| json!({
            "name": a.name, "identifiers": a.identifiers, "version": a.version, "app_id": a.app_id,
        })).collect::<Vec<_>>(),
        "groups": c.principals.iter().flat_map(|p| p.group_names.iter().zip(&p.groups))
            .map(|(n, id)| (n.clone(), json!(id))).collect::<serde_json::Map<_, _>>(),
    })
}

pub fn handle(sim: &Sim, req: &SimRequest) -> SimResponse {
    let path = req.path.trim_end_matches('/').to_ascii_lowercase();
    match (&req.method, path.as_str()) {
        (&Method::GET, "/_sim/health") => {
            SimResponse::json(StatusCode::OK, &json!({"status": "ok"}))
        }
        (&Method::GET, "/_sim/state") => SimResponse::json(StatusCode::OK, &state(sim)),
        (&Method::POST, "/_sim/token") => {
            let m: MintRequest = match serde_json::from_slice(&req.body) {
                Ok(m) => m,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("mint request: {e}")),
            };
            match mint(sim, m) {
                Ok(t) => SimResponse::json(
                    StatusCode::OK,
                    &json!({"access_token": t.token, "expires_on": t.expires_on, "token_type": "Bearer"}),
                ),
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (&Method::POST, "/_sim/keys/rotate") => {
            let r: Rotate = if req.body.is_empty() {
                Rotate::default()
            } else {
                match serde_json::from_slice(&req.body) {
                    Ok(r) => r,
                    Err(e) => {
                        return error(StatusCode::BAD_REQUEST, format!("rotate request: {e}"));
                    }
                }
            };
            let kid = sim.keys.rotate(r.retire_previous);
            SimResponse::json(
                StatusCode::OK,
                &json!({"signing_kid": kid, "published": sim.keys.kids()}),
            )
        }
        (&Method::GET, "/_sim/faults") => {
            SimResponse::json(StatusCode::OK, &json!(sim.faults.get()))
        }
        (&Method::PUT, "/_sim/faults") => {
            let f: Faults = match serde_json::from_slice(&req.body) {
                Ok(f) => f,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("faults: {e}")),
            };
            match sim.faults.set(f) {
                Ok(()) => SimResponse::json(StatusCode::OK, &json!(sim.faults.get())),
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (&Method::DELETE, "/_sim/faults") => {
            sim.faults
                .set(Faults::default())
                .expect("the default faults are valid");
            SimResponse::empty(StatusCode::NO_CONTENT)
        }
        (&Method::GET, "/_sim/calls") => {
            let since = req.query("since").and_then(|s| s.parse().ok()).unwrap_or(0);
            let service = req.query("service");
            let calls: Vec<Value> = sim
                .calls
                .since(since)
                .into_iter()
                .map(|c| json!(c))
                .filter(|c| service.as_deref().is_none_or(|s| c["service"] == s))
                .collect();
            SimResponse::json(
                StatusCode::OK,
                &json!({"last_seq": sim.calls.last_seq(), "calls": calls}),
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no control endpoint {} {}", req.method, req.path),
        ),
    }
}
