//! The one way out: record the request, forward it, rewrite and mask the answer, record
//! the answer as it streams. Ordinary requests, approved requests forwarded when their
//! operation is polled, and polls that follow Azure's own operation all leave through
//! [`send`].

use std::time::Instant;

use http::{HeaderMap, Method, Response};
use http_body_util::{BodyExt, Limited};

use super::error::GatewayError;
use super::hold::{self, Cleared};
use super::record::{self, Committed};
use super::trail::{Ids, Trail};
use super::{Exchange, Gateway, answer};
use crate::audit::record::{AuditRecord, Phase};
use crate::azure::operation::Operation;
use crate::azure::route::Service;
use crate::identity::principal::Principal;
use crate::mask::Plan;
use crate::upstream::client::Body;

/// One request to Azure: where it goes, what it is, and how its answer is masked.
pub struct Outbound {
    pub(super) ids: Ids,
    pub(super) service: Service,
    pub(super) method: Method,
    /// The decoded path (a page binding continues this list).
    pub(super) path: String,
    /// The path as the upstream receives it.
    pub(super) upstream_path: String,
    pub(super) query: String,
    /// Where the agent reached the gateway: rewritten URLs point here.
    pub(super) gateway_base: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Body,
    /// The upstream credential's name (`None`: the default one).
    pub(super) credential: Option<String>,
    pub(super) operation: Operation,
    pub(super) plan: Plan,
    /// Policy let secrets through to the agent: the record masks the answer again.
    pub(super) remask: bool,
}

/// Why a send did not complete, and how far it got.
pub(super) enum Failure {
    /// The request's record could not be committed: nothing was sent.
    Unrecorded(GatewayError),
    /// Recorded, but Azure's answer never came (or was withheld): the record is here to
    /// be closed.
    Unanswered(GatewayError, Box<Committed>),
    /// Azure answered, but its record could not be committed.
    AnswerUnrecorded(GatewayError),
}

impl Failure {
    pub fn into_error(self) -> GatewayError {
        match self {
            Failure::Unrecorded(e) | Failure::Unanswered(e, _) | Failure::AnswerUnrecorded(e) => e,
        }
    }
}

/// Records, forwards, and returns the answer, masked, recording as it streams.
pub(super) async fn send(
    gw: &Gateway,
    principal: &Principal,
    out: Outbound,
    record: AuditRecord,
    started: Instant,
) -> Result<Response<Body>, Failure> {
    let committed = record::commit(gw, record)
        .await
        .map_err(Failure::Unrecorded)?;
    let (operation, remask) = (out.operation.clone(), out.remask);
    let response = match super::forward(gw, principal, out, &committed).await {
        Ok(r) => r,
        Err(e) => return Err(Failure::Unanswered(e, Box::new(committed))),
    };
    record::answer(gw, committed, response, started, &operation, remask)
        .await
        .map_err(Failure::AnswerUnrecorded)
}

/// A cleared request as it goes out, and the record that goes before it.
pub(super) fn prepare(
    gw: &Gateway,
    ex: Exchange,
    parts: http::request::Parts,
    cleared: Box<Cleared>,
    trail: &Trail,
) -> (Outbound, AuditRecord) {
    let Cleared {
        judged,
        credential,
        consent,
    } = *cleared;
    let decision = &judged.decision;
    for note in &decision.audit {
        tracing::warn!(audit = %note, "audit-mode rule matched");
    }
    let plan = answer::plan(
        gw,
        &judged.operation,
        judged.batch.as_deref(),
        &decision.unmask,
    );
    // Record before forwarding: nothing reaches Azure unrecorded.
    let mut record = trail.record(Phase::Request);
    record.decision = Some(decision.effect.name().to_owned());
    record.rule = decision.rule.clone();
    record.reason = Some(hold::reason(decision, consent.as_ref()));
    record.approval = consent.as_ref().map(|h| h.approval.clone());
    record.unmasked = decision.unmask.clone();
    (record.body, record.body_digest, record.body_bytes) =
        record::masked_request_body(gw, &judged.operation, &judged.body.seen);
    // A body without a declared length is cut off at the cap (the forward then fails;
    // Azure never sees a complete request larger than the gateway takes).
    let body = Limited::new(judged.body.forward, judged.body.cap).boxed();
    let out = Outbound {
        ids: trail.ids.clone(),
        service: ex.routed.service,
        method: parts.method,
        path: ex.routed.path,
        upstream_path: ex.routed.upstream_path,
        query: ex.query,
        gateway_base: ex.routed.gateway_base,
        headers: parts.headers,
        body,
        credential,
        remask: !decision.unmask.is_empty(),
        operation: judged.operation,
        plan,
    };
    (out, record)
}
