//! The audit trail for its readers (`audit.readers`, docs/audit.md): `GET /api/sessions`,
//! `GET /api/sessions/{id}` and `GET /api/records`. Read-only.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, Caller, Reader, error, reply};
use crate::audit::chain::Link;
use crate::audit::store::{
    Cursor, DECISIONS, FoundSession, SessionFilter, SessionSummary, StoreError,
};

/// The most records one `/api/records` page holds.
const MAX_PAGE: i64 = 1000;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/sessions", get(sessions).fallback(read_only_for))
        .route("/api/sessions/{*id}", get(session).fallback(read_only_for))
        .route("/api/records", get(records).fallback(read_only_for))
}

#[derive(Deserialize)]
struct SessionsQuery {
    principal: Option<String>,
    since: Option<String>,
    decision: Option<String>,
}

async fn sessions(
    State(s): State<AdminState>,
    Reader(_): Reader,
    query: Result<Query<SessionsQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad(e.body_text()),
    };
    let since = match time(q.since) {
        Ok(t) => t,
        Err(e) => return bad(e),
    };
    if q.decision
        .as_deref()
        .is_some_and(|d| !DECISIONS.contains(&d))
    {
        return bad(format!("decision must be one of {}", DECISIONS.join(", ")));
    }
    let filter = SessionFilter {
        principal: q.principal.map(|p| p.to_ascii_lowercase()),
        since,
        decision: q.decision,
        newest: None,
    };
    match s.store.sessions(&filter).await {
        Ok(mut list) => {
            name_sessions(&s.gateway, &mut list).await;
            reply(StatusCode::OK, json!({"value": list}))
        }
        Err(e) => unavailable(e),
    }
}

/// Names the principals of sessions whose records named nobody (an app's token to the
/// gateway carries ids only): from the directory, every lookup at once, so the list waits
/// at most one `directory::LOOKUP_BOUND`. Sessions it cannot name keep `principal_name`
/// empty: their readers see the id and "(name unavailable)".
pub async fn name_sessions(gw: &crate::pipeline::Gateway, list: &mut [SessionSummary]) {
    let unnamed: std::collections::BTreeSet<String> = list
        .iter()
        .filter(|s| s.principal_name.is_none())
        .filter_map(|s| s.principal.clone())
        .collect();
    if unnamed.is_empty() {
        return;
    }
    let directory = &gw.auth.directory;
    let found: std::collections::HashMap<String, String> =
        futures_util::future::join_all(unnamed.into_iter().map(|id| async move {
            let d = directory.service_principal(&id).await?;
            Some((id, crate::identity::names::labelled(&d.name, d.kind)))
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
    for s in list.iter_mut().filter(|s| s.principal_name.is_none()) {
        s.principal_name = s.principal.as_ref().and_then(|p| found.get(p).cloned());
    }
}

async fn session(
    State(s): State<AdminState>,
    Reader(_): Reader,
    Path(id): Path<String>,
) -> Response {
    match s.store.find_session(&id).await {
        Ok(FoundSession::One(id, links)) => reply(
            StatusCode::OK,
            json!({"id": id, "records": links.iter().map(link_json).collect::<Vec<_>>()}),
        ),
        Ok(FoundSession::Several(ids)) => error(
            StatusCode::CONFLICT,
            "AmbiguousSession",
            &format!(
                "several principals named a session '{id}'; ask for one of: {}",
                ids.join(", ")
            ),
        ),
        Ok(FoundSession::None) => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no session '{id}'"),
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct RecordsQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

async fn records(
    State(s): State<AdminState>,
    Reader(_): Reader,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad(e.body_text()),
    };
    let (since, until) = match (time(q.since), time(q.until)) {
        (Ok(s), Ok(u)) => (s.unwrap_or_default(), u),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let limit = q
        .limit
        .and_then(|l| l.parse().ok())
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE);
    // `{time}~{instance}~{seq}`, as `nextLink` carries it; an unreadable one starts over.
    let after = q.after.and_then(|a| {
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
    let page = match s
        .store
        .page(&since, until.as_deref(), after.as_ref(), limit)
        .await
    {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
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
}

/// A time argument (RFC 3339, a date, or an age), as the CLI reads it.
fn time(arg: Option<String>) -> Result<Option<String>, String> {
    arg.map(|v| crate::time::time_arg(&v).map_err(|e| e.to_string()))
        .transpose()
}

fn bad(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, "InvalidParameter", &message)
}

fn unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "the audit store could not be read");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "AuditUnavailable",
        "the audit store cannot be read right now",
    )
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

/// Another method on an audit route: the caller is authenticated first, as everywhere
/// under `/api/`.
async fn read_only_for(Caller(_): Caller) -> Response {
    read_only().await
}

pub(super) async fn read_only() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the audit API is read-only",
    )
}
