//! The admin listener: health; approvals for approvers (`/api/approvals...`, see
//! docs/api.md); and the audit trail for its readers (`audit.readers`): `GET /api/sessions`,
//! `GET /api/sessions/{id}` and `GET /api/records`. Everyone authenticates with their own
//! Entra token for the gateway's audience.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::audit::chain::Link;
use crate::audit::store::{Cursor, FoundSession, SessionFilter};
use crate::pipeline::Gateway;
use crate::upstream::client::{Body, full};

/// The most records one `/api/records` page holds.
const MAX_PAGE: i64 = 1000;

pub async fn handle(gw: Arc<Gateway>, req: http::Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return reply(StatusCode::OK, json!({"status": "ok"}));
    }
    if path == "/metrics" {
        // Prometheus' text format; counts and names only, no secrets.
        let mut r = Response::new(full(Bytes::from(crate::metrics::METRICS.render())));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        return r;
    }
    if path == "/readyz" {
        // Ready when the store answers and shutdown has not begun (keys and policy are
        // loaded before the listeners open: a gateway without them does not start).
        if gw.approvals.is_draining() {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "draining", "store": gw.store.backend(), "reason": "shutting down"}),
            );
        }
        // A probe must answer promptly, also when the database does not.
        let ping = tokio::time::timeout(std::time::Duration::from_secs(2), gw.store.ping())
            .await
            .unwrap_or_else(|_| Err(crate::audit::store::StoreError::Timeout));
        return match ping {
            Ok(()) => reply(
                StatusCode::OK,
                json!({"status": "ready", "store": gw.store.backend()}),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "not ready: the store does not answer");
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "unready", "store": gw.store.backend(), "reason": "the store does not answer"}),
                )
            }
        };
    }
    if path == "/" || path == "/console" || path.starts_with("/console/") {
        return crate::console::handle(gw, req).await;
    }
    if !path.starts_with("/api/") {
        return error(StatusCode::NOT_FOUND, "NotFound", "no such admin endpoint");
    }
    let principal = match crate::pipeline::authenticate(&gw, req.headers()).await {
        Ok(p) => p,
        Err(e) => {
            return error(
                e.status(),
                "AuthenticationFailed",
                &e.message(&crate::azure::route::Service::Arm),
            );
        }
    };
    if path.starts_with("/api/approvals") {
        return super::approvals_api::handle(gw, principal, req).await;
    }
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the audit API is read-only",
        );
    }
    if !gw.audit.readers.iter().any(|m| m.matches(&principal)) {
        return error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            &format!(
                "principal {} may not read the audit trail (audit.readers)",
                principal.object_id
            ),
        );
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let arg = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let time = |name: &str| -> Result<Option<String>, String> {
        arg(name)
            .map(|v| crate::time::time_arg(&v).map_err(|e| e.to_string()))
            .transpose()
    };
    let bad = |e: String| error(StatusCode::BAD_REQUEST, "InvalidParameter", &e);
    let result = match path.trim_end_matches('/') {
        "/api/sessions" => {
            let since = match time("since") {
                Ok(t) => t,
                Err(e) => return bad(e),
            };
            let filter = SessionFilter {
                principal: arg("principal").map(|p| p.to_ascii_lowercase()),
                since,
                decision: arg("decision"),
                newest: None,
            };
            gw.store
                .sessions(&filter)
                .await
                .map(|s| reply(StatusCode::OK, json!({"value": s})))
        }
        "/api/records" => {
            let (since, until) = match (time("since"), time("until")) {
                (Ok(s), Ok(u)) => (s.unwrap_or_default(), u),
                (Err(e), _) | (_, Err(e)) => return bad(e),
            };
            let limit = arg("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(MAX_PAGE)
                .clamp(1, MAX_PAGE);
            let after = arg("after").and_then(|a| {
                let mut it = a.rsplitn(3, '~');
                let seq = it.next()?.parse().ok()?;
                let instance = it.next()?.to_owned();
                let time = it.next()?.to_owned();
                Some(Cursor {
                    time,
                    instance,
                    seq,
                })
            });
            gw.store
                .page(&since, until.as_deref(), after.as_ref(), limit)
                .await
                .map(|page| {
                    let next = (page.len() as i64 == limit).then(|| {
                        let c = page.last().expect("a full page").cursor();
                        let mut q = form_urlencoded::Serializer::new(String::new());
                        q.append_pair("since", &since);
                        if let Some(u) = &until {
                            q.append_pair("until", u);
                        }
                        q.append_pair("limit", &limit.to_string());
                        q.append_pair("after", &format!("{}~{}~{}", c.time, c.instance, c.seq));
                        format!("/api/records?{}", q.finish())
                    });
                    reply(
                        StatusCode::OK,
                        json!({"value": page.iter().map(link_json).collect::<Vec<_>>(), "nextLink": next}),
                    )
                })
        }
        p if p.starts_with("/api/sessions/") => {
            let id = &p["/api/sessions/".len()..];
            gw.store.find_session(id).await.map(|found| match found {
                FoundSession::One(id, links) => reply(
                    StatusCode::OK,
                    json!({"id": id, "records": links.iter().map(link_json).collect::<Vec<_>>()}),
                ),
                FoundSession::Several(ids) => error(
                    StatusCode::CONFLICT,
                    "AmbiguousSession",
                    &format!(
                        "several principals named a session '{id}'; ask for one of: {}",
                        ids.join(", ")
                    ),
                ),
                FoundSession::None => error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("no session '{id}'"),
                ),
            })
        }
        _ => return error(StatusCode::NOT_FOUND, "NotFound", "no such admin endpoint"),
    };
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "the audit store could not be read");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "AuditUnavailable",
            "the audit store cannot be read right now",
        )
    })
}

fn link_json(l: &Link) -> Value {
    json!({
        "instance": l.instance,
        "seq": l.seq,
        "prev_hash": l.prev_hash,
        "hash": l.hash,
        "record": l.record,
    })
}

pub(crate) fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Errors in ARM's shape, like the gateway's own.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    reply(status, json!({"error": {"code": code, "message": message}}))
}
