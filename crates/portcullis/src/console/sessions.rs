//! The sessions pages, for readers of the audit trail: agents' sessions, filtered, and a
//! session's timeline, replayed step by step.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{StatusCode, Uri};

use super::pages::{Chrome, arg, error_page, forbidden, render, unavailable, when};
use super::{ConsoleState, Signed, Viewer, segment, unsegment};
use crate::admin::AdminState;
use crate::audit::record::{Outcome, Phase};
use crate::audit::store::{DECISIONS, SessionFilter};
use crate::azure::words::in_words;

/// The most sessions the sessions page lists (newest first; filters narrow it).
const SESSIONS_SHOWN: i64 = 200;

pub async fn list(
    State(s): State<ConsoleState>,
    signed: Signed,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    if !signed.viewer.reader {
        return forbidden("The sessions view");
    }
    sessions_page(
        &s.admin,
        &signed.viewer,
        arg(&args, "principal"),
        arg(&args, "since"),
        arg(&args, "decision"),
    )
    .await
}

/// A session's timeline. Its id is read from the path as [`segment`] wrote it (axum's own
/// decoding lets a malformed escape through).
pub async fn timeline(
    State(s): State<ConsoleState>,
    signed: Signed,
    uri: Uri,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    if !signed.viewer.reader {
        return forbidden("A session's timeline");
    }
    let raw = uri
        .path()
        .strip_prefix("/console/sessions/")
        .unwrap_or_default();
    let Some(id) = unsegment(raw) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such session",
            "That is not a session id.",
        );
    };
    let step = arg(&args, "step").and_then(|s| s.parse::<usize>().ok());
    session_page(&s.admin, &signed.viewer, &id, step).await
}

struct SessionRow {
    /// The name the agent chose (`x-portcullis-session`), or the whole id of a token's
    /// session; the principal is its own column.
    shown: String,
    named: bool,
    href: String,
    principal: String,
    started: String,
    last: String,
    /// The session's counts, named as [`COUNTS`] names them.
    counts: Vec<(&'static str, i64)>,
}

/// What each session counts, in order: a column each on a desktop, side by side on a phone.
const COUNTS: [&str; 5] = ["Requests", "Allowed", "Held", "Refused", "Denied"];

#[derive(Template)]
#[template(path = "console/sessions.html")]
struct SessionsPage {
    chrome: Chrome,
    principal: String,
    since: String,
    decision: String,
    /// The decision filter's options, and whether each is the one chosen.
    decisions: Vec<(&'static str, bool)>,
    error: Option<String>,
    rows: Vec<SessionRow>,
    counts: [&'static str; 5],
}

async fn sessions_page(
    admin: &AdminState,
    v: &Viewer,
    principal: Option<String>,
    since: Option<String>,
    decision: Option<String>,
) -> Response {
    let mut error = None;
    let since_time = match since.as_deref().map(crate::time::time_arg).transpose() {
        Ok(t) => t,
        Err(e) => {
            error = Some(format!("since: {e}"));
            None
        }
    };
    if let Some(d) = &decision
        && !DECISIONS.contains(&d.as_str())
    {
        error = Some(format!(
            "decision '{d}' is not allow, deny, approve, held or refused"
        ));
    }
    let rows = if error.is_some() {
        Vec::new()
    } else {
        let filter = SessionFilter {
            principal: principal.as_ref().map(|p| p.to_ascii_lowercase()),
            since: since_time,
            decision: decision.clone(),
            newest: Some(SESSIONS_SHOWN),
        };
        match admin.store.sessions(&filter).await {
            Ok(mut list) => {
                crate::admin::audit::name_sessions(&admin.gateway, &mut list).await;
                list.into_iter()
                    .map(|s| SessionRow {
                        href: format!("/console/sessions/{}", segment(&s.id)),
                        shown: crate::audit::session::name_of(&s.id)
                            .map_or(s.id.as_str(), |(n, _)| n)
                            .to_owned(),
                        named: crate::audit::session::name_of(&s.id).is_some(),
                        principal: shown_principal(
                            s.principal.as_deref(),
                            s.principal_name.as_deref(),
                        ),
                        started: when(&s.started),
                        last: when(&s.last),
                        counts: COUNTS
                            .into_iter()
                            .zip([s.requests, s.allowed, s.held, s.refused, s.denied])
                            .collect(),
                    })
                    .collect()
            }
            Err(e) => return unavailable(e),
        }
    };
    render(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &SessionsPage {
            chrome: Chrome::of(v, "sessions"),
            principal: principal.unwrap_or_default(),
            since: since.unwrap_or_default(),
            decisions: DECISIONS
                .into_iter()
                .map(|d| (d, decision.as_deref() == Some(d)))
                .collect(),
            decision: decision.unwrap_or_default(),
            error,
            rows,
            counts: COUNTS,
        },
    )
}

struct Step {
    n: usize,
    time: String,
    phase: &'static str,
    /// The phase as a CSS class.
    phase_class: &'static str,
    method: String,
    url: String,
    words: Option<String>,
    action: String,
    decision: String,
    status: String,
    latency: String,
    reason: Option<String>,
    body: Option<String>,
    /// Says so when the record keeps only the first part of the body (`audit.body_cap`).
    body_cut: Option<String>,
    approval: Option<String>,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/session.html")]
struct SessionPage {
    chrome: Chrome,
    id: String,
    principal: String,
    steps: Vec<Step>,
    total: usize,
    /// In replay: the step shown last (0-based), and the neighbours' links.
    replay: Option<usize>,
    prev: Option<usize>,
    next: Option<usize>,
}

async fn session_page(admin: &AdminState, v: &Viewer, id: &str, step: Option<usize>) -> Response {
    let links = match admin.store.session(id).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    if links.is_empty() {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such session",
            "There is no session by that id.",
        );
    }
    let total = links.len();
    let replay = step.map(|s| s.min(total - 1));
    let principal = shown_principal(
        links.iter().find_map(|l| l.record.principal.as_deref()),
        links
            .iter()
            .find_map(|l| l.record.principal_name.as_deref()),
    );
    let steps = links
        .iter()
        .enumerate()
        .take(replay.map_or(total, |r| r + 1))
        .map(|(n, l)| {
            let r = &l.record;
            Step {
                n,
                time: when(&r.time),
                phase: match (r.phase, r.outcome()) {
                    (_, Some(Outcome::Held)) => "held for approval",
                    (Phase::Request, _) => "sent to Azure",
                    (Phase::Response, _) => "answer",
                    (Phase::Refused | Phase::Held, _) => "refused",
                    (Phase::Approval, _) => "approval",
                },
                phase_class: match (r.phase, r.outcome()) {
                    (_, Some(Outcome::Held)) => "held",
                    (Phase::Request, _) => "sent",
                    (Phase::Response, _) => "answer",
                    (Phase::Refused | Phase::Held, _) => "refused",
                    (Phase::Approval, _) => "approval",
                },
                method: r.method.clone(),
                url: r.url.clone(),
                words: r
                    .action
                    .as_deref()
                    .map(|a| in_words(a, r.scope.as_deref().unwrap_or(""))),
                action: r.action.clone().unwrap_or_default(),
                decision: r.decision.clone().unwrap_or_default(),
                status: r.status.map(|s| s.to_string()).unwrap_or_default(),
                latency: r
                    .latency_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_default(),
                reason: r.reason.clone(),
                body: r.body.clone(),
                body_cut: match (&r.body, r.body_bytes) {
                    (Some(b), Some(n)) if n as usize > b.len() => Some(format!(
                        "the record keeps the first {} of {n} bytes",
                        b.len()
                    )),
                    _ => None,
                },
                approval: r.approval.clone(),
                current: replay == Some(n),
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &SessionPage {
            chrome: Chrome::of(v, "sessions"),
            id: id.to_owned(),
            principal,
            steps,
            total,
            prev: replay.and_then(|r| r.checked_sub(1)),
            next: replay.and_then(|r| (r + 1 < total).then_some(r + 1)),
            replay,
        },
    )
}

/// A session's principal for its readers: "build-agent (app) 93eb7a24-…" (the recorded name,
/// cleaned, then the whole id), or the id with "(name unavailable)". Askama escapes it.
fn shown_principal(id: Option<&str>, name: Option<&str>) -> String {
    let Some(id) = id else {
        return String::new();
    };
    match name.and_then(crate::identity::names::clean) {
        Some(n) => format!("{n} {id}"),
        None => format!("{id} (name unavailable)"),
    }
}
