//! Holding: a request policy holds for approval waits for enough approvers to consent (or a
//! grant window to be open) and goes on only with that consent, exactly as approved. One
//! its approvers have not decided within the hold is refused with how to retry, or, for
//! operations Azure clients poll, answered as a long-running operation
//! (`operations.rs`).

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;

use super::decide::Judged;
use super::error::GatewayError;
use super::record::{audit_text, masked_request_bytes};
use super::trail::Trail;
use super::{Exchange, Gateway, operations};
use crate::approval::service::HoldError;
use crate::azure::operation::Operation;
use crate::azure::route::Service;
use crate::identity::principal::Principal;
use crate::policy::{Decision, Effect, condition};
use crate::upstream::client::full;

/// What the hold lets through.
pub(super) enum Held {
    /// Allowed, or approved: on to the forward.
    Cleared(Box<Cleared>),
    /// Answered without forwarding (pending, presented as a long-running operation).
    Answered(http::Response<crate::upstream::client::Body>),
}

/// A request cleared to go: what was decided, and with which consent.
pub(super) struct Cleared {
    pub judged: Judged,
    /// The upstream credential: the deciding rule's, or the approval's.
    pub credential: Option<String>,
    /// The approval that let it through.
    pub consent: Option<crate::approval::Hold>,
}

/// Headers whose value changes what a request does: part of the digest an approval is
/// bound to.
const DIGESTED_HEADERS: &[&str] = &["content-type", "if-match", "if-none-match"];

/// Holds a request policy wants approved; passes any other.
pub(super) async fn hold(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    mut judged: Judged,
    parts: &Parts,
    trail: &mut Trail,
) -> Result<Held, GatewayError> {
    if judged.decision.effect != Effect::Approve {
        let credential = judged.decision.credential.clone();
        return Ok(Held::Cleared(Box::new(Cleared {
            judged,
            credential,
            consent: None,
        })));
    }
    // The body is read whole: what is approved is exactly what is sent.
    let Some(bytes) = judged.body.whole.clone() else {
        return Err(GatewayError::BadRequest {
            code: "RequestBodyTooLarge",
            message: format!(
                "a request held for approval is read whole, and this one is larger than {} bytes",
                judged.body.limit
            ),
        });
    };
    let mut request = held_request(gw, ex, principal, &judged, parts, trail, &bytes)?;
    request.draft.inner = trail.inner.clone();
    // Names for the people who will read it; bounded, and never part of what is decided.
    crate::approval::names::name(
        &gw.auth.directory,
        &gw.policy.load().aliases,
        principal,
        judged
            .decision
            .approval
            .as_ref()
            .map_or(&[][..], |s| &s.approvers[..]),
        &mut request.draft,
    )
    .await;
    // Operations Azure clients poll are answered, once the hold runs out, as ARM answers a
    // long-running operation; the SDK's poller then waits for the human. Not batches: their
    // answers are masked per inner request, which only this request's own forward knows
    // how to do.
    let presented = match &judged.decision.approval {
        Some(spec) if ex.routed.service == Service::Arm && judged.batch.is_none() => gw
            .approvals
            .config
            .long_running
            .presented(spec.style, parts.method.as_str(), &judged.operation.action),
        _ => None,
    };
    let held = match (gw.approvals.hold(request).await, presented) {
        (Ok(held), _) => {
            operations::used_by_retry(gw, &held.approval).await;
            held
        }
        (Err(HoldError::Refused(r)), Some(status))
            if matches!(r.code, "ApprovalPending" | "GatewayShuttingDown") =>
        {
            let pending = operations::Pending {
                approval: &r.approval,
                operation: &judged.operation,
                status,
                headers: &parts.headers,
                method: &parts.method,
                body: &bytes,
                unmask: &judged.decision.unmask,
            };
            let answered = operations::accepted(gw, ex, principal, pending, trail).await?;
            trail.held = true;
            if r.code == "GatewayShuttingDown" {
                gw.approvals.let_go_at_shutdown(true);
            }
            return Ok(Held::Answered(answered));
        }
        (Err(e), _) => return Err(e.into()),
    };
    judged.body.forward = full(bytes);
    Ok(Held::Cleared(Box::new(Cleared {
        judged,
        credential: held.credential.clone(),
        consent: Some(held),
    })))
}

/// The approval a held request asks for (if there is none for it yet).
fn held_request(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    judged: &Judged,
    parts: &Parts,
    trail: &Trail,
    bytes: &Bytes,
) -> Result<crate::approval::service::Request, GatewayError> {
    use hmac::Mac;
    let (operation, decision, method, headers) = (
        &judged.operation,
        &judged.decision,
        &parts.method,
        &parts.headers,
    );
    // Keyed: the digest is shown, and the body it covers may hold a secret.
    let mut h = gw.masker.keyed_digest("approval request");
    h.update(
        format!(
            "{:?}\n{method}\n{}\n{}\n",
            ex.routed.service, ex.routed.upstream_path, ex.query
        )
        .as_bytes(),
    );
    for name in DIGESTED_HEADERS {
        for v in headers.get_all(*name) {
            h.update(name.as_bytes());
            h.update(b":");
            h.update(v.as_bytes());
            h.update(b"\n");
        }
    }
    h.update(bytes);
    let digest = crate::audit::chain::hex(&h.finalize().into_bytes());
    let reason = header(headers, "x-portcullis-reason")
        .map(|r| audit_text(gw, &r.chars().take(1000).collect::<String>()));
    let named = header(headers, "x-portcullis-approval").map(str::to_owned);
    let wait = header(headers, "x-portcullis-wait")
        .and_then(|w| w.parse::<u64>().ok())
        .map_or(gw.approvals.config.hold, |s| {
            std::time::Duration::from_secs(s).min(gw.approvals.config.hold)
        });
    let spec = decision.approval.as_ref();
    let timeout = spec.map_or(std::time::Duration::from_secs(600), |s| s.timeout);
    let (body, highlights) = shown_body(gw, operation, &judged.body.seen, bytes)?;
    let created = chrono::Utc::now();
    let draft = crate::approval::Approval {
        id: uuid::Uuid::new_v4().to_string(),
        status: crate::approval::Status::Pending,
        principal: principal.object_id.clone(),
        principal_app: principal.app_id.clone(),
        principal_name: principal.display_name.clone(),
        principal_kind: Some(principal.kind),
        action: operation.action.clone(),
        scope: crate::policy::scope_display(operation),
        rule: decision.rule.clone(),
        rule_reason: decision.reason.clone(),
        request: crate::approval::HeldRequest {
            method: method.to_string(),
            path: ex.routed.path.clone(),
            query: audit_text(gw, &ex.query),
            headers: trail
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with("x-portcullis-") || k == "x-portcullis-reason")
                .cloned()
                .collect(),
            body,
            highlights,
        },
        digest,
        reason,
        approvers: spec
            .map(|s| {
                s.approvers
                    .iter()
                    .map(crate::approval::model::matcher_text)
                    .collect()
            })
            .unwrap_or_default(),
        // Named after drafting (`approval::names`), for people.
        approver_names: Vec::new(),
        quorum: spec.map_or(1, |s| s.quorum),
        credential: decision.credential.clone(),
        grant_window_secs: spec.and_then(|s| s.grant_window).map(|w| w.as_secs()),
        session: trail.ids.session.clone(),
        created: created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        expires: (created + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        decided: None,
        consumed: None,
        votes: Vec::new(),
        inner: Vec::new(),
    };
    Ok(crate::approval::service::Request {
        principal: principal.clone(),
        draft,
        named,
        wait,
    })
}

/// A header's text, trimmed, when it has some.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A held request's body as its approvers see it: masked, whole, and the settings to look
/// at first. What cannot be shown whole is not held: an approver consents to exactly what
/// runs, so it must all be in front of them.
fn shown_body(
    gw: &Gateway,
    operation: &Operation,
    seen: &condition::Body,
    bytes: &Bytes,
) -> Result<(Option<String>, Vec<crate::approval::highlights::Highlight>), GatewayError> {
    let refuse = |why: String| GatewayError::BadRequest {
        code: "RequestNotShowable",
        message: format!(
            "a request held for approval is shown whole to its approvers, and {why}; it cannot be held"
        ),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, Vec::new()));
    }
    if let condition::Body::Json(_) = seen {
        let masked = masked_request_bytes(gw, operation, seen)
            .ok_or_else(|| refuse("its JSON body could not be masked".into()))?;
        let doc: serde_json::Value = serde_json::from_slice(&masked)
            .map_err(|_| refuse("its masked body is not JSON".into()))?;
        let highlights = crate::approval::highlights::of(&doc);
        let text = serde_json::to_string_pretty(&doc).expect("a Value serializes");
        return Ok((Some(text), highlights));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((Some(audit_text(gw, text)), Vec::new())),
        Err(_) => Err(refuse(format!(
            "its body ({} bytes) is not text",
            bytes.len()
        ))),
    }
}

/// The decision a cleared request goes out under, for its record.
pub(super) fn reason(decision: &Decision, consent: Option<&crate::approval::Hold>) -> String {
    match consent {
        Some(held) => format!("{}; {}", decision.reason, held.how),
        None => decision.reason.clone(),
    }
}
