//! Health for orchestrators and monitoring: `/healthz` (the process answers), `/readyz`
//! (the store answers and shutdown has not begun) and `/metrics` (Prometheus' text format).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::{AdminState, reply};

/// How long `/readyz` waits for the store: a probe must answer promptly, also when the
/// database does not.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn live() -> Response {
    reply(StatusCode::OK, json!({"status": "ok"}))
}

/// Counts and names only, no secrets.
pub async fn metrics() -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::METRICS.render(),
    )
        .into_response()
}

/// Keys and policy are loaded before the listeners open (a gateway without them does not
/// start), so readiness is the store and the drain.
pub async fn ready(State(s): State<AdminState>) -> Response {
    let backend = s.store.backend();
    if s.gateway.approvals.is_draining() {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining", "store": backend, "reason": "shutting down"}),
        );
    }
    let ping = tokio::time::timeout(PING_TIMEOUT, s.store.ping())
        .await
        .unwrap_or_else(|_| Err(crate::audit::store::StoreError::Timeout));
    match ping {
        Ok(()) => reply(StatusCode::OK, json!({"status": "ready", "store": backend})),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unready", "store": backend, "reason": "the store does not answer"}),
            )
        }
    }
}
