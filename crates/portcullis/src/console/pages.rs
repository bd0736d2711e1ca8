//! The console's pages: askama templates (`templates/console/`) filled from the approvals
//! service, the audit store and the policy in force.

use std::convert::Infallible;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tokio::sync::broadcast::error::RecvError;

use super::{ConsoleState, Posted, Signed, Viewer, html, redirect, segment};
use crate::admin::AdminState;
use crate::admin::approvals::After;
use crate::approval::{Approval, Status, VoteError};
use crate::azure::words::in_words;
use crate::identity::names;
use crate::identity::principal::PrincipalKind;
use crate::pipeline::Gateway;
use crate::policy::{Effect, split_reason};

/// Approvals per page of a list (newest first); a link leads to the next page.
const LIST_LIMIT: usize = 50;

// ---- static files ------------------------------------------------------------------------

/// The console's own scripts and styles, compiled in. htmx and its SSE extension are
/// vendored (static/VENDORED.md): no build chain, nothing fetched at run time.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (bytes, kind): (&'static [u8], &'static str) = match name.as_str() {
        "htmx.min.js" => (
            include_bytes!("../../static/htmx.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "sse.min.js" => (
            include_bytes!("../../static/sse.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.js" => (
            include_bytes!("../../static/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.css" => (
            include_bytes!("../../static/console.css"),
            "text/css; charset=utf-8",
        ),
        _ => return error_page(StatusCode::NOT_FOUND, "Not found", "No such file."),
    };
    (
        [
            (http::header::CONTENT_TYPE, kind),
            (http::header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response()
}

// ---- shared pieces -----------------------------------------------------------------------

/// What every signed-in page shows around its content.
pub struct Chrome {
    pub csrf: String,
    pub who: String,
    pub reader: bool,
    pub nav: &'static str,
}

impl Chrome {
    pub(super) fn of(v: &Viewer, nav: &'static str) -> Chrome {
        Chrome {
            csrf: v.csrf.clone(),
            who: v
                .principal
                .display_name
                .clone()
                .unwrap_or_else(|| v.principal.object_id.clone()),
            reader: v.reader,
            nav,
        }
    }
}

pub(super) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "a console page could not be rendered");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "This page could not be shown.",
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = ErrorPage { title, message }
        .render()
        .unwrap_or_else(|_| message.to_owned());
    html(status, body)
}

pub fn signed_out() -> Response {
    error_page(
        StatusCode::OK,
        "Signed out",
        "You have signed out of the Portcullis console.",
    )
}

pub(super) fn forbidden(what: &str) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Not for you",
        &format!("{what} is for readers of the audit trail (audit.readers)."),
    )
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "the console could not read the store");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Store unavailable",
        "The gateway's store does not answer; try again shortly.",
    )
}

/// A query argument as typed in a form: trimmed, and absent when empty.
pub(super) fn arg(args: &[(String, String)], name: &str) -> Option<String> {
    args.iter()
        .find(|(n, _)| n == name)
        .map(|(_, x)| x.trim().to_owned())
        .filter(|x| !x.is_empty())
}

/// "4 min 10 s left", "expired".
fn time_left(expires: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(expires) else {
        return String::new();
    };
    let secs = (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    if secs <= 0 {
        return "expired".into();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h} h {m} min left")
    } else if m > 0 {
        format!("{m} min {s} s left")
    } else {
        format!("{s} s left")
    }
}

/// A time as people read it: `2026-11-29 17:03:44 UTC`.
pub(super) fn when(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_owned())
}

// ---- approvals ---------------------------------------------------------------------------

pub struct VoteView {
    pub who: String,
    pub vote: String,
    pub comment: Option<String>,
    pub time: String,
}

/// One approval as a card.
pub struct Card {
    pub id: String,
    pub words: String,
    pub action: String,
    pub scope: String,
    pub status: &'static str,
    pub requester: String,
    pub requester_id: String,
    pub app: Option<String>,
    /// The app is the requester itself (an app or managed identity calling as itself), not
    /// an application a user signed in through: its client id, not another party.
    pub app_is_requester: bool,
    pub reason: Option<String>,
    pub rule: String,
    /// What the rule does ("holds for approval ..."), or its whole reason when that cannot
    /// be taken apart.
    pub rule_reason: String,
    /// Where the rule is written (`file:line`): shown only on request.
    pub rule_origin: Option<String>,
    pub method: String,
    /// The request's path when it is not the scope itself (an action under it, say): the
    /// scope is shown once.
    pub path: Option<String>,
    pub query: String,
    pub body: Option<String>,
    /// The body's length as shown (whole: a held body is never cut).
    pub body_len: usize,
    /// The settings that weaken the resource: shown before the decision.
    pub risks: Vec<crate::approval::highlights::Highlight>,
    /// The other settings to look at, among the details.
    pub highlights: Vec<crate::approval::highlights::Highlight>,
    pub votes: Vec<VoteView>,
    pub have: usize,
    pub quorum: u32,
    pub expires: String,
    pub expires_text: String,
    pub left: String,
    pub may_decide: bool,
    /// Why this viewer sees no buttons on a pending approval.
    pub why_not: Option<&'static str>,
    /// The agent's session's page (the id encoded as a path segment).
    pub session_href: String,
    pub link_session: bool,
    pub created: String,
    pub inner: Vec<String>,
    /// Who may decide, by name with kind and id ("approvers (group, a56b…)").
    pub approvers: Vec<String>,
}

fn card(a: &Approval, v: &Viewer) -> Card {
    let pending = a.status == Status::Pending;
    let decision = a.may_decide(&v.principal);
    let rule = a.rule.clone().unwrap_or_default();
    let split = split_reason(&rule, Effect::Approve, &a.action, &a.scope, &a.rule_reason);
    Card {
        id: a.id.clone(),
        words: in_words(&a.action, &a.scope),
        action: a.action.clone(),
        scope: a.scope.clone(),
        status: a.status.as_str(),
        // The name with its kind; the id is beside it (`requester_id`), so a copied name
        // cannot pass for another principal. Askama escapes it.
        requester: names::labelled_or_unavailable(
            a.principal_name.as_deref(),
            a.principal_kind.map(PrincipalKind::label),
        ),
        requester_id: a.principal.clone(),
        app: a.principal_app.clone(),
        app_is_requester: matches!(
            a.principal_kind,
            Some(PrincipalKind::App | PrincipalKind::ManagedIdentity)
        ),
        reason: a.reason.clone(),
        rule_reason: split
            .as_ref()
            .map_or_else(|| a.rule_reason.clone(), |p| p.what.clone()),
        rule_origin: split.map(|p| p.origin),
        rule,
        method: a.request.method.clone(),
        path: (!a.request.path.eq_ignore_ascii_case(&a.scope)).then(|| a.request.path.clone()),
        query: a.request.query.clone(),
        body: a.request.body.clone(),
        body_len: a.request.body.as_ref().map_or(0, String::len),
        risks: a
            .request
            .highlights
            .iter()
            .filter(|h| h.risk.is_some())
            .cloned()
            .collect(),
        highlights: a
            .request
            .highlights
            .iter()
            .filter(|h| h.risk.is_none())
            .cloned()
            .collect(),
        votes: a
            .votes
            .iter()
            .map(|x| VoteView {
                who: names::with_id(x.voter_name.as_deref(), None, &x.voter),
                vote: x.vote.clone(),
                comment: x.comment.clone(),
                time: when(&x.time),
            })
            .collect(),
        have: a.approvals(),
        quorum: a.quorum,
        expires: a.expires.clone(),
        expires_text: when(&a.expires),
        left: time_left(&a.expires),
        may_decide: pending && decision.is_ok(),
        why_not: if pending { decision.err() } else { None },
        session_href: format!("/console/sessions/{}", segment(&a.session)),
        link_session: v.reader,
        created: when(&a.created),
        inner: a
            .inner
            .iter()
            .map(|i| serde_json::to_string(i).unwrap_or_default())
            .collect(),
        approvers: a.approvers_shown(),
    }
}

/// What a vote did, for the one who cast it: shown until they dismiss it, outside the live
/// list (which is fetched again on every change) and, without JavaScript, on the page the
/// vote's form leads to. Worked out from the approval as stored, never from the form.
pub struct Confirmation {
    pub id: String,
    /// `approved` or `denied`.
    pub verb: &'static str,
    /// The operation in words.
    pub what: String,
    pub href: String,
    pub have: usize,
    pub quorum: u32,
    /// What happens now, exactly.
    pub next: String,
}

/// "30 min", "2 h", "1 h 30 min", "45 s".
fn span(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// The vote of `voter` (an object id) on `a` and what it led to; `None` when they have not
/// voted on it.
fn confirmation(a: &Approval, voter: &str) -> Option<Confirmation> {
    let mine = a.votes.iter().find(|x| x.voter == voter)?;
    let approved = mine.vote == "approve";
    let until = when(&a.expires);
    let grant = a.grant_window_secs.map(|w| {
        format!(
            " Then, for {}, the same principal's {} on this scope passes without a new approval.",
            span(w),
            a.action
        )
    });
    let next = match (approved, a.status) {
        (false, _) => format!(
            "refused: nothing is sent to Azure, and the agent is told it was denied (with your comment, if you wrote one). The same request stays refused until {until}."
        ),
        (true, Status::Pending) => {
            let left = (a.quorum as usize).saturating_sub(a.approvals());
            format!(
                "{left} more approval{} needed before anything is sent to Azure (by {until}, or it expires).",
                if left == 1 { " is" } else { "s are" }
            )
        }
        (true, Status::Approved) => format!(
            "the held request goes to Azure now, once (if the agent has stopped waiting, its next identical request or status poll does, until {until}).{}",
            grant.unwrap_or_default()
        ),
        (true, Status::Consumed) => format!(
            "the request has gone to Azure, once.{}",
            grant.unwrap_or_default()
        ),
        (true, Status::Denied) => {
            "another approver denied it: nothing is sent to Azure.".to_owned()
        }
        (true, Status::Expired) => "it expired first: nothing was sent to Azure.".to_owned(),
    };
    Some(Confirmation {
        id: a.id.clone(),
        verb: if approved { "approved" } else { "denied" },
        what: in_words(&a.action, &a.scope),
        href: format!("/console/approvals/{}", segment(&a.id)),
        have: a.approvals(),
        quorum: a.quorum,
        next,
    })
}

fn visible(gw: &Gateway, v: &Viewer, a: &Approval) -> bool {
    crate::admin::approvals::visible(gw, &v.principal, a)
}

#[derive(Template)]
#[template(path = "console/approvals.html")]
struct ApprovalsPage {
    chrome: Chrome,
    live: bool,
    heading: &'static str,
    /// The live list's fragment, for this page (`after` included).
    list_url: String,
    cards: Vec<Card>,
    empty: &'static str,
    csrf: String,
    /// The next (older) page, when there is more to see.
    more: Option<String>,
    /// Whether this is a later page (then it links back to the first).
    later: bool,
    first_url: &'static str,
    /// Always none here: the region votes' confirmations are put in.
    confirmations: Vec<Confirmation>,
}

#[derive(Template)]
#[template(path = "console/cards.html")]
struct CardsFragment {
    cards: Vec<Card>,
    empty: &'static str,
    csrf: String,
    more: Option<String>,
}

/// The cards of `approvals` as `v` sees them (the live list's fragment). Public for the
/// console bench.
pub fn cards_html(approvals: &[Approval], v: &Viewer) -> Result<String, askama::Error> {
    CardsFragment {
        cards: approvals.iter().map(|a| card(a, v)).collect(),
        empty: EMPTY_PENDING,
        csrf: v.csrf.clone(),
        more: None,
    }
    .render()
}

#[derive(Template)]
#[template(path = "console/approval.html")]
struct ApprovalPage {
    chrome: Chrome,
    cards: Vec<Card>,
    empty: &'static str,
    csrf: String,
    more: Option<String>,
    /// After a vote posted without JavaScript (`?voted`): what it did.
    confirmations: Vec<Confirmation>,
}

/// A vote's answer to htmx: the card as it now is, and the confirmation put, out of band,
/// above the list.
#[derive(Template)]
#[template(path = "console/voted.html")]
struct VotedFragment {
    cards: Vec<Card>,
    csrf: String,
    confirmations: Vec<Confirmation>,
}

/// One page of the cards `v` may see, and the next page's cursor.
async fn cards(
    gw: &Gateway,
    v: &Viewer,
    history: bool,
    after: Option<After>,
) -> Result<(Vec<Card>, Option<After>), Response> {
    let status = (!history).then_some(Status::Pending);
    let page = crate::admin::approvals::visible_page(
        gw,
        &v.principal,
        status,
        |a| history != (a.status == Status::Pending),
        after,
        LIST_LIMIT,
    )
    .await
    .map_err(unavailable)?;
    Ok((
        page.approvals.iter().map(|a| card(a, v)).collect(),
        page.next,
    ))
}

/// `base` with `after` (and `extra`) in its query.
fn page_url(base: &str, extra: Option<(&str, &str)>, after: Option<&After>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some((k, x)) = extra {
        q.append_pair(k, x);
    }
    if let Some(a) = after {
        q.append_pair("after", &a.text());
    }
    let q = q.finish();
    if q.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{q}")
    }
}

const EMPTY_PENDING: &str = "Nothing waits for a decision you can see.";
const EMPTY_HISTORY: &str = "No decided or expired approvals yet.";

/// `/console/approvals` and `/console/approvals/history`.
async fn approvals_page(
    gw: &Gateway,
    v: &Viewer,
    history: bool,
    args: &[(String, String)],
) -> Response {
    let after = arg(args, "after").and_then(|a| After::parse(&a));
    let view = if history { "history" } else { "pending" };
    let path = if history {
        "/console/approvals/history"
    } else {
        "/console/approvals"
    };
    let (cards, next) = match cards(gw, v, history, after.clone()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    render(
        StatusCode::OK,
        &ApprovalsPage {
            chrome: Chrome::of(v, view),
            live: !history,
            heading: if history {
                "Decided and expired"
            } else {
                "Waiting for a decision"
            },
            list_url: page_url(
                "/console/approvals/list",
                Some(("view", view)),
                after.as_ref(),
            ),
            cards,
            empty: if history {
                EMPTY_HISTORY
            } else {
                EMPTY_PENDING
            },
            csrf: v.csrf.clone(),
            more: next.map(|n| page_url(path, None, Some(&n))),
            later: after.is_some(),
            first_url: path,
            confirmations: Vec::new(),
        },
    )
}

pub async fn pending(
    State(s): State<ConsoleState>,
    signed: Signed,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    approvals_page(&s.admin.gateway, &signed.viewer, false, &args).await
}

pub async fn history(
    State(s): State<ConsoleState>,
    signed: Signed,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    approvals_page(&s.admin.gateway, &signed.viewer, true, &args).await
}

/// The live list's fragment, fetched again on every event.
pub async fn list(
    State(s): State<ConsoleState>,
    signed: Signed,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    let v = &signed.viewer;
    let history = arg(&args, "view").as_deref() == Some("history");
    let after = arg(&args, "after").and_then(|a| After::parse(&a));
    let base = if history {
        "/console/approvals/history"
    } else {
        "/console/approvals"
    };
    match cards(&s.admin.gateway, v, history, after).await {
        Ok((cards, next)) => render(
            StatusCode::OK,
            &CardsFragment {
                cards,
                empty: if history {
                    EMPTY_HISTORY
                } else {
                    EMPTY_PENDING
                },
                csrf: v.csrf.clone(),
                more: next.map(|n| page_url(base, None, Some(&n))),
            },
        ),
        Err(r) => r,
    }
}

/// One approval: the page notifications link to.
pub async fn approval(
    State(s): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    let (gw, v) = (&s.admin.gateway, &signed.viewer);
    let voted = args.iter().any(|(k, _)| k == "voted");
    match gw.approvals.store.approval(&id).await {
        Ok(Some(a)) if visible(gw, v, &a) => render(
            StatusCode::OK,
            &ApprovalPage {
                chrome: Chrome::of(v, "pending"),
                cards: vec![card(&a, v)],
                empty: "",
                csrf: v.csrf.clone(),
                more: None,
                confirmations: voted
                    .then(|| confirmation(&a, &v.principal.object_id))
                    .flatten()
                    .into_iter()
                    .collect(),
            },
        ),
        Ok(_) => error_page(
            StatusCode::NOT_FOUND,
            "No such approval",
            "There is no approval by that id that you may see.",
        ),
        Err(e) => unavailable(e),
    }
}

/// A vote from the approve/deny form.
pub async fn vote(
    State(s): State<ConsoleState>,
    Path((id, verb)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return error_page(StatusCode::NOT_FOUND, "Not found", "No such console form."),
    };
    let comment = posted
        .value("comment")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let v = &posted.signed.viewer;
    match s
        .admin
        .gateway
        .approvals
        .vote(&id, &v.principal, approve, comment)
        .await
    {
        Ok(a) if posted.signed.htmx => render(
            StatusCode::OK,
            &VotedFragment {
                cards: vec![card(&a, v)],
                csrf: v.csrf.clone(),
                confirmations: confirmation(&a, &v.principal.object_id)
                    .into_iter()
                    .collect(),
            },
        ),
        // Without JavaScript: to the approval's page, which shows what the vote did.
        Ok(a) => redirect(&format!(
            "/console/approvals/{}?voted=1#confirmations",
            segment(&a.id)
        )),
        Err(VoteError::NotFound(_)) => error_page(
            StatusCode::NOT_FOUND,
            "No such approval",
            "There is no approval by that id.",
        ),
        Err(VoteError::NotAllowed(why)) => error_page(
            StatusCode::FORBIDDEN,
            "You may not decide this",
            &format!("You may not decide approval {id}: {why}."),
        ),
        Err(VoteError::Conflict(why)) => error_page(StatusCode::CONFLICT, "Already decided", &why),
        Err(VoteError::Store(e)) => unavailable(e),
    }
}

/// Server-sent events: `approval` with the id, whenever an approval this viewer may see
/// changes; the page then fetches its list again (authorization stays in one place). When
/// quiet for a while, the session is looked up again: signed out elsewhere or expired, the
/// stream says `signed-out` and ends, and the page goes to sign in.
pub async fn events(State(s): State<ConsoleState>, signed: Signed) -> Response {
    let feed = s.admin.gateway.approvals.subscribe();
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().comment("console"))
    });
    struct Feed {
        feed: tokio::sync::broadcast::Receiver<std::sync::Arc<Approval>>,
        admin: AdminState,
        viewer: Viewer,
        session: String,
        ended: bool,
    }
    let state = Feed {
        feed,
        admin: s.admin,
        viewer: signed.viewer,
        session: signed.session,
        ended: false,
    };
    let changes = futures_util::stream::unfold(state, |mut f| async move {
        if f.ended {
            return None;
        }
        loop {
            let next = tokio::time::timeout(crate::admin::events::KEEP_ALIVE, f.feed.recv()).await;
            let event = match next {
                Err(_) => {
                    let now = crate::audit_time();
                    match super::session::find(&f.admin.store, &f.session, &now).await {
                        Ok(None) => {
                            f.ended = true;
                            // Browsers dispatch only events with data.
                            Event::default().event("signed-out").data("signed-out")
                        }
                        Ok(Some(_)) | Err(_) => Event::default().comment("keep-alive"),
                    }
                }
                Ok(Ok(a)) if visible(&f.admin.gateway, &f.viewer, &a) => {
                    Event::default().event("approval").data(&a.id)
                }
                Ok(Ok(_)) => continue,
                // Fell behind: a refresh catches up all the same.
                Ok(Err(RecvError::Lagged(_))) => Event::default().event("approval").data("lagged"),
                Ok(Err(RecvError::Closed)) => return None,
            };
            return Some((Ok(event), f));
        }
    });
    crate::admin::events::answer(futures_util::StreamExt::chain(hello, changes), false)
}

#[cfg(test)]
mod tests {
    use super::{confirmation, span};
    use crate::approval::Approval;

    /// An approval of a storage create as the store keeps it, with `votes` and `status`.
    fn approval(status: &str, quorum: u32, grant: Option<u64>, votes: &[(&str, &str)]) -> Approval {
        serde_json::from_value(serde_json::json!({
            "id": "ap1",
            "status": status,
            "principal": "agent-oid",
            "principal_app": "agent-app",
            "principal_name": null,
            "action": "Microsoft.Storage/storageAccounts/write",
            "scope": "/subscriptions/s1/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/sa1",
            "rule": "demo-approve-storage-create",
            "rule_reason": "",
            "request": {"method": "PUT", "path": "/x", "query": "", "headers": [], "body": null},
            "digest": "d",
            "reason": null,
            "approvers": ["group:approvers"],
            "quorum": quorum,
            "credential": null,
            "grant_window_secs": grant,
            "session": "s",
            "created": "2026-12-05T10:00:00Z",
            "expires": "2026-12-05T10:10:00Z",
            "decided": null,
            "consumed": null,
            "votes": votes.iter().map(|(who, vote)| serde_json::json!({
                "voter": who, "voter_name": null, "vote": vote, "comment": null,
                "time": "2026-12-05T10:01:00Z"
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn a_confirmation_says_exactly_what_the_vote_led_to() {
        let what = "create or update storage account sa1 in demo-rg";
        // One of two: nothing happens yet.
        let c = confirmation(
            &approval("pending", 2, None, &[("alice", "approve")]),
            "alice",
        )
        .unwrap();
        assert_eq!(
            (c.verb, c.what.as_str(), c.have, c.quorum),
            ("approved", what, 1, 2)
        );
        assert_eq!(
            c.next,
            "1 more approval is needed before anything is sent to Azure (by 2026-12-05 10:10:00 UTC, or it expires)."
        );
        // Quorum met: once, and with a grant window, for how long after.
        let c = confirmation(
            &approval("approved", 1, None, &[("alice", "approve")]),
            "alice",
        )
        .unwrap();
        assert!(
            c.next
                .starts_with("the held request goes to Azure now, once"),
            "{}",
            c.next
        );
        assert!(!c.next.contains("Then, for"), "{}", c.next);
        let c = confirmation(
            &approval("consumed", 1, Some(1800), &[("alice", "approve")]),
            "alice",
        )
        .unwrap();
        assert_eq!(
            c.next,
            "the request has gone to Azure, once. Then, for 30 min, the same principal's Microsoft.Storage/storageAccounts/write on this scope passes without a new approval."
        );
        // A deny refuses.
        let c = confirmation(&approval("denied", 2, None, &[("bob", "deny")]), "bob").unwrap();
        assert_eq!(c.verb, "denied");
        assert!(
            c.next.starts_with("refused: nothing is sent to Azure"),
            "{}",
            c.next
        );
        // Approved, but someone else denied.
        let a = approval("denied", 2, None, &[("alice", "approve"), ("bob", "deny")]);
        let c = confirmation(&a, "alice").unwrap();
        assert_eq!(
            c.next,
            "another approver denied it: nothing is sent to Azure."
        );
        // Nobody else is told they voted.
        assert!(confirmation(&a, "carol").is_none());
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(45), "45 s");
        assert_eq!(span(1800), "30 min");
        assert_eq!(span(90), "1 min 30 s");
        assert_eq!(span(7200), "2 h");
        assert_eq!(span(5400), "1 h 30 min");
    }
}
