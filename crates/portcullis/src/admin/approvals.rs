//! `/api/approvals`: what approvers see and decide (docs/api.md).
//!
//! - `GET /api/approvals?status=pending|approved|denied|expired|consumed|all&limit=&after=`:
//!   newest first, a page at a time; `nextLink` continues (keyset: `created`, then `id`)
//! - `GET /api/approvals/{id}`
//! - `POST /api/approvals/{id}/approve` and `/deny`, body `{"comment": "..."}` (optional)
//! - `GET /api/approvals/events`: server-sent events, one `approval` event per change
//!   ([`super::events`])
//!
//! A principal sees the approvals it may decide, its own requests, and (as an audit reader)
//! all of them. Each approval carries `may_decide` for the caller.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, Caller, error, reply};
use crate::approval::{Approval, Status, VoteError};
use crate::identity::principal::Principal;
use crate::pipeline::Gateway;

/// Approvals per page of `GET /api/approvals` unless `limit` says otherwise, and the most
/// it may say.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 500;
/// The largest vote body read.
const MAX_VOTE_BODY: usize = 16 * 1024;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/approvals", get(list).fallback(unknown_for))
        .route(
            "/api/approvals/events",
            get(super::events::approvals).fallback(unknown_for),
        )
        .route("/api/approvals/{id}", get(one).fallback(unknown_for))
        .route(
            "/api/approvals/{id}/{verb}",
            post(vote)
                .fallback(unknown_for)
                .layer(DefaultBodyLimit::max(MAX_VOTE_BODY)),
        )
}

pub fn visible(gw: &Gateway, p: &Principal, a: &Approval) -> bool {
    a.principal == p.object_id
        || a.matchers().iter().any(|m| m.matches(p))
        || gw.audit.readers.iter().any(|m| m.matches(p))
}

/// Where a page of approvals starts: strictly older than this (`created`, `id`), the
/// order every list uses (newest first, ties by id), so pages neither skip nor repeat an
/// approval while others are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub created: String,
    pub id: String,
}

impl After {
    /// `{created}~{id}`, as `after=` carries it.
    pub fn parse(s: &str) -> Option<After> {
        let (created, id) = s.rsplit_once('~')?;
        (!created.is_empty() && !id.is_empty()).then(|| After {
            created: created.to_owned(),
            id: id.to_owned(),
        })
    }

    pub fn text(&self) -> String {
        format!("{}~{}", self.created, self.id)
    }

    fn of(a: &Approval) -> After {
        After {
            created: a.created.clone(),
            id: a.id.clone(),
        }
    }
}

/// One page of the approvals a principal may see, and where the next starts (`None`: there
/// is no more).
pub struct Page {
    pub approvals: Vec<Approval>,
    pub next: Option<After>,
}

/// The newest `want` approvals (of `status`, or all, and `keep`) that `p` may see, older
/// than `after`. Walks the store a page at a time, so an approver's own are found even
/// behind many others they may not see; a call reads at most `SCAN`, and when that runs out
/// first the page is short but `next` goes on from where the walk stopped, so every
/// approval a principal may see is reachable by following `next`.
pub async fn visible_page(
    gw: &Gateway,
    p: &Principal,
    status: Option<Status>,
    keep: impl Fn(&Approval) -> bool,
    after: Option<After>,
    want: usize,
) -> Result<Page, crate::audit::store::StoreError> {
    const PAGE: i64 = 500;
    const SCAN: usize = 20_000;
    let mut shown = Vec::new();
    let mut before = after;
    let mut read = 0;
    loop {
        let page = gw
            .approvals
            .store
            .approvals_before(
                status,
                before.as_ref().map(|a| (a.created.as_str(), a.id.as_str())),
                PAGE,
            )
            .await?;
        read += page.len();
        let full = page.len() as i64 == PAGE;
        for a in page {
            before = Some(After::of(&a));
            if keep(&a) && visible(gw, p, &a) {
                if shown.len() == want {
                    // One more than asked: there is a next page, starting after the last shown.
                    let next = shown.last().map(After::of);
                    return Ok(Page {
                        approvals: shown,
                        next,
                    });
                }
                shown.push(a);
            }
        }
        if !full {
            return Ok(Page {
                approvals: shown,
                next: None,
            });
        }
        if read >= SCAN {
            // Not looked at yet: the next page goes on from here.
            return Ok(Page {
                approvals: shown,
                next: before,
            });
        }
    }
}

/// An approval as the API shows it to `p`.
pub(super) fn shown(a: &Approval, p: &Principal) -> Value {
    let mut v = serde_json::to_value(a).expect("an approval serializes");
    v["may_decide"] = json!(a.status == Status::Pending && a.may_decide(p).is_ok());
    v["approvals"] = json!(a.approvals());
    // For people, beside the ids (which stay as they were): the requester, each approver
    // and each voter by name, kind and id.
    v["requester"] = json!(a.requester());
    v["approver_names"] = json!(a.approvers_shown());
    if let Some(votes) = v["votes"].as_array_mut() {
        for (shown, vote) in votes.iter_mut().zip(&a.votes) {
            shown["voter_display"] = json!(crate::identity::names::with_id(
                vote.voter_name.as_deref(),
                None,
                &vote.voter
            ));
        }
    }
    v
}

fn unavailable(e: crate::audit::store::StoreError) -> Response {
    tracing::error!(error = %e, "the approvals store could not be read");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "StoreUnavailable",
        "the approvals store cannot be read right now",
    )
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

/// What `GET /api/approvals` reads from its query; numbers are checked by hand, so a bad
/// one is named in the answer.
#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

async fn list(
    State(s): State<AdminState>,
    Caller(p): Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return invalid(&e.body_text()),
    };
    let status = match q.status.as_deref().unwrap_or("pending") {
        "all" => None,
        s => match Status::parse(s) {
            Some(s) => Some(s),
            None => {
                return invalid(&format!(
                    "status '{s}' is not pending, approved, denied, expired, consumed or all"
                ));
            }
        },
    };
    let limit = match q.limit.map(|l| l.parse::<usize>()) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return invalid(&format!("limit must be a number from 1 to {MAX_PAGE}")),
    };
    let after = match q.after.as_deref().map(After::parse) {
        None => None,
        Some(Some(a)) => Some(a),
        Some(None) => return invalid("after must be a nextLink's cursor ({created}~{id})"),
    };
    match visible_page(&s.gateway, &p, status, |_| true, after, limit).await {
        Ok(page) => {
            let value: Vec<Value> = page.approvals.iter().map(|a| shown(a, &p)).collect();
            let next = page.next.map(|n| {
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.append_pair("status", status.map_or("all", Status::as_str));
                q.append_pair("limit", &limit.to_string());
                q.append_pair("after", &n.text());
                format!("/api/approvals?{}", q.finish())
            });
            reply(StatusCode::OK, json!({ "value": value, "nextLink": next }))
        }
        Err(e) => unavailable(e),
    }
}

async fn one(State(s): State<AdminState>, Caller(p): Caller, Path(id): Path<String>) -> Response {
    match s.gateway.approvals.store.approval(&id).await {
        Ok(Some(a)) if visible(&s.gateway, &p, &a) => reply(StatusCode::OK, shown(&a, &p)),
        Ok(_) => not_found(&id),
        Err(e) => unavailable(e),
    }
}

async fn vote(
    State(s): State<AdminState>,
    Caller(p): Caller,
    Path((id, verb)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return no_such_endpoint(),
    };
    let read = body.map_err(|e| {
        format!(
            "the body could not be read (at most {MAX_VOTE_BODY} bytes): {}",
            e.body_text()
        )
    });
    let comment = match read.and_then(|b| comment(&b)) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, "InvalidRequestBody", &why),
    };
    match s.gateway.approvals.vote(&id, &p, approve, comment).await {
        Ok(a) => reply(StatusCode::OK, shown(&a, &p)),
        Err(VoteError::NotFound(_)) => not_found(&id),
        Err(VoteError::NotAllowed(why)) => error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            &format!("{} may not decide approval {id}: {why}", p.describe()),
        ),
        Err(VoteError::Conflict(why)) => error(StatusCode::CONFLICT, "Conflict", &why),
        Err(VoteError::Store(e)) => unavailable(e),
    }
}

/// The optional `{"comment": "..."}` of a vote, or why it is refused.
fn comment(bytes: &[u8]) -> Result<Option<String>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the body must be JSON like {{\"comment\": \"...\"}}: {e}"))?;
    match v.get("comment") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(c)) => Ok(Some(c.clone())),
        Some(_) => Err("comment must be a string".into()),
    }
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("no approval '{id}' that you may see"),
    )
}

fn no_such_endpoint() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such approvals endpoint",
    )
}

/// A path under `/api/approvals` that no route serves, or a method a route does not take.
async fn unknown_for(Caller(_): Caller, method: Method) -> Response {
    unknown(method).await
}

pub(super) async fn unknown(method: Method) -> Response {
    match method {
        Method::GET | Method::POST => no_such_endpoint(),
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "use GET, or POST to approve or deny",
        ),
    }
}
