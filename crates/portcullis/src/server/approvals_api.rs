//! `/api/approvals`: what approvers see and decide (docs/api.md).
//!
//! - `GET /api/approvals?status=pending|approved|denied|expired|consumed|all&limit=&after=`:
//!   newest first, a page at a time; `nextLink` continues (keyset: `created`, then `id`)
//! - `GET /api/approvals/{id}`
//! - `POST /api/approvals/{id}/approve` and `/deny`, body `{"comment": "..."}` (optional)
//! - `GET /api/approvals/events`: server-sent events, one `approval` event per change
//!
//! A principal sees the approvals it may decide, its own requests, and (as an audit reader)
//! all of them. Each approval carries `may_decide` for the caller.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::admin::{error, reply};
use crate::approval::{Approval, Status, VoteError};
use crate::identity::principal::Principal;
use crate::pipeline::Gateway;
use crate::upstream::client::{Body, BoxError};

/// Approvals per page of `GET /api/approvals` unless `limit` says otherwise, and the most
/// it may say.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 500;
/// The largest vote body read.
const MAX_VOTE_BODY: usize = 16 * 1024;
/// A comment line on idle event streams, so proxies keep them open.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn visible(gw: &Gateway, p: &Principal, a: &Approval) -> bool {
    a.principal == p.object_id
        || a.matchers().iter().any(|m| m.matches(p))
        || gw.audit.readers.iter().any(|m| m.matches(p))
}

/// Where a page of approvals starts: strictly older than this (`created`, `id`), the
/// order every list uses (newest first, ties by id), so pages neither skip nor repeat an
/// approval while others are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct After {
    pub created: String,
    pub id: String,
}

impl After {
    /// `{created}~{id}`, as `after=` carries it.
    pub(crate) fn parse(s: &str) -> Option<After> {
        let (created, id) = s.rsplit_once('~')?;
        (!created.is_empty() && !id.is_empty()).then(|| After {
            created: created.to_owned(),
            id: id.to_owned(),
        })
    }

    pub(crate) fn text(&self) -> String {
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
pub(crate) struct Page {
    pub approvals: Vec<Approval>,
    pub next: Option<After>,
}

/// The newest `want` approvals (of `status`, or all, and `keep`) that `p` may see, older
/// than `after`. Walks the store a page at a time, so an approver's own are found even
/// behind many others they may not see; a call reads at most `SCAN`, and when that runs out
/// first the page is short but `next` goes on from where the walk stopped, so every
/// approval a principal may see is reachable by following `next`.
pub(crate) async fn visible_page(
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

fn shown(a: &Approval, p: &Principal) -> Value {
    let mut v = serde_json::to_value(a).expect("an approval serializes");
    v["may_decide"] = json!(a.status == Status::Pending && a.may_decide(p).is_ok());
    v["approvals"] = json!(a.approvals());
    v
}

pub async fn handle(
    gw: Arc<Gateway>,
    p: Principal,
    req: http::Request<hyper::body::Incoming>,
) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let rest = path.strip_prefix("/api/approvals").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let unavailable = |e: crate::audit::store::StoreError| {
        tracing::error!(error = %e, "the approvals store could not be read");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "StoreUnavailable",
            "the approvals store cannot be read right now",
        )
    };
    match (method, segments.as_slice()) {
        (Method::GET, []) => {
            let query: Vec<(String, String)> =
                form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let arg = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let status = arg("status").unwrap_or("pending");
            let status = match status {
                "all" => None,
                s => match Status::parse(s) {
                    Some(s) => Some(s),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "InvalidParameter",
                            &format!(
                                "status '{s}' is not pending, approved, denied, expired, consumed or all"
                            ),
                        );
                    }
                },
            };
            let limit = match arg("limit").map(|l| l.parse::<usize>()) {
                None => DEFAULT_PAGE,
                Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameter",
                        &format!("limit must be a number from 1 to {MAX_PAGE}"),
                    );
                }
            };
            let after = match arg("after").map(After::parse) {
                None => None,
                Some(Some(a)) => Some(a),
                Some(None) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameter",
                        "after must be a nextLink's cursor ({created}~{id})",
                    );
                }
            };
            match visible_page(&gw, &p, status, |_| true, after, limit).await {
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
        (Method::GET, ["events"]) => events(gw, p),
        (Method::GET, [id]) => match gw.approvals.store.approval(id).await {
            Ok(Some(a)) if visible(&gw, &p, &a) => reply(StatusCode::OK, shown(&a, &p)),
            Ok(_) => not_found(id),
            Err(e) => unavailable(e),
        },
        (Method::POST, [id, verb @ ("approve" | "deny")]) => {
            let comment = match comment(req).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            match gw.approvals.vote(id, &p, *verb == "approve", comment).await {
                Ok(a) => reply(StatusCode::OK, shown(&a, &p)),
                Err(VoteError::NotFound(_)) => not_found(id),
                Err(VoteError::NotAllowed(why)) => error(
                    StatusCode::FORBIDDEN,
                    "AuthorizationFailed",
                    &format!("{} may not decide approval {id}: {why}", p.describe()),
                ),
                Err(VoteError::Conflict(why)) => error(StatusCode::CONFLICT, "Conflict", &why),
                Err(VoteError::Store(e)) => unavailable(e),
            }
        }
        (Method::GET | Method::POST, _) => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no such approvals endpoint",
        ),
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "use GET, or POST to approve or deny",
        ),
    }
}

fn not_found(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("no approval '{id}' that you may see"),
    )
}

/// The optional `{"comment": "..."}` of a vote.
async fn comment(
    req: http::Request<hyper::body::Incoming>,
) -> Result<Option<String>, Response<Body>> {
    let bytes = http_body_util::Limited::new(req.into_body(), MAX_VOTE_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                &format!("the body could not be read (at most {MAX_VOTE_BODY} bytes): {e}"),
            )
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            &format!("the body must be JSON like {{\"comment\": \"...\"}}: {e}"),
        )
    })?;
    match v.get("comment") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(c)) => Ok(Some(c.clone())),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            "comment must be a string",
        )),
    }
}

/// A server-sent-events stream of the approvals `p` may see, as they change.
fn events(gw: Arc<Gateway>, p: Principal) -> Response<Body> {
    let mut feed = gw.approvals.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        if tx
            .send(Bytes::from_static(b": portcullis approvals\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let next = tokio::time::timeout(KEEP_ALIVE, feed.recv()).await;
            let chunk = match next {
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                Ok(Ok(a)) if visible(&gw, &p, &a) => Bytes::from(format!(
                    "event: approval\nid: {}\ndata: {}\n\n",
                    a.id,
                    shown(&a, &p)
                )),
                Ok(Ok(_)) => continue,
                // Fell behind: say so; the client re-lists.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"))
                }
                Ok(Err(_)) => return,
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    event_stream(rx)
}

/// A server-sent-events answer that sends what arrives on `rx`, until its sender goes.
pub(crate) fn event_stream(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut r = Response::new(EventBody { rx }.boxed());
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(http_body::Frame::data(b))))
    }
}
