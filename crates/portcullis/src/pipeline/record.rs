//! Recording: the request before it is forwarded ([`commit`], which alone makes the
//! [`Committed`] proof that `forward` requires), the answer as it streams ([`answer`]), and
//! refusals ([`refused`]). What goes into a record is masked: the recorder masks what the
//! agent wrote, and answers are masked again when policy let secrets through to the agent.

use std::time::Instant;

use http::{HeaderMap, Response};
use http_body_util::BodyExt;

use super::Gateway;
use super::error::GatewayError;
use crate::audit::record::{AuditRecord, Phase};
use crate::azure::operation::Operation;
use crate::azure::route::Service;
use crate::mask::Masked;
use crate::policy::condition;
use crate::upstream::client::Body;

/// Proof that a request's record is committed to the audit trail: only [`commit`] makes
/// one, and [`forward`](super::forward) takes one, so nothing reaches Azure unrecorded.
///
/// Forwarding with a committed record compiles:
///
/// ```no_run
/// use portcullis::audit::record::AuditRecord;
/// use portcullis::identity::principal::Principal;
/// use portcullis::pipeline::{Gateway, GatewayError, Outbound, commit, forward};
///
/// async fn send(
///     gw: &Gateway,
///     principal: &Principal,
///     out: Outbound,
///     record: AuditRecord,
/// ) -> Result<(), GatewayError> {
///     let committed = commit(gw, record).await?;
///     forward(gw, principal, out, &committed).await?;
///     Ok(())
/// }
/// ```
///
/// Forwarding without one does not: a record is not a proof,
///
/// ```compile_fail
/// use portcullis::audit::record::AuditRecord;
/// use portcullis::identity::principal::Principal;
/// use portcullis::pipeline::{Gateway, GatewayError, Outbound, commit, forward};
///
/// async fn send(
///     gw: &Gateway,
///     principal: &Principal,
///     out: Outbound,
///     record: AuditRecord,
/// ) -> Result<(), GatewayError> {
///     forward(gw, principal, out, &record).await?;
///     Ok(())
/// }
/// ```
///
/// and no one outside this file can make a proof of their own:
///
/// ```compile_fail
/// use portcullis::audit::record::AuditRecord;
/// use portcullis::identity::principal::Principal;
/// use portcullis::pipeline::{Committed, Gateway, GatewayError, Outbound, commit, forward};
///
/// async fn send(
///     gw: &Gateway,
///     principal: &Principal,
///     out: Outbound,
///     record: AuditRecord,
/// ) -> Result<(), GatewayError> {
///     let committed = Committed { record };
///     forward(gw, principal, out, &committed).await?;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Committed {
    record: AuditRecord,
}

/// Commits a request's record; when the store cannot, the request is refused, unless the
/// operator chose `audit.on_failure: fail_open`.
pub async fn commit(gw: &Gateway, record: AuditRecord) -> Result<Committed, GatewayError> {
    match gw.recorder.record(record.clone()).await {
        Ok(()) => Ok(Committed { record }),
        Err(e) if gw.audit.fail_open => {
            tracing::error!(error = %e, "AUDIT RECORD LOST: forwarding anyway because audit.on_failure is fail_open");
            Ok(Committed { record })
        }
        Err(e) => Err(GatewayError::AuditUnavailable(e)),
    }
}

/// Commits a record that lets nothing through (an answer the gateway gave itself).
pub(super) async fn commit_answer(gw: &Gateway, record: AuditRecord) -> Result<(), GatewayError> {
    commit(gw, record).await.map(drop)
}

/// Records a refusal (or a request let go still held, [`GatewayError::held`]): the record as
/// far as it got, with the error; a record that cannot be written is logged (the refusal
/// stands either way).
pub(super) async fn refused(
    gw: &Gateway,
    mut record: AuditRecord,
    e: &GatewayError,
    service: &Service,
    started: Instant,
) {
    record.phase = if e.held() {
        Phase::Held
    } else {
        Phase::Refused
    };
    record.status = Some(e.status().as_u16());
    record.reason = Some(e.message(service));
    record.latency_ms = Some(started.elapsed().as_millis() as u64);
    (record.body, record.body_digest, record.body_bytes) = (None, None, None);
    if let Err(err) = gw.recorder.record(record).await {
        tracing::error!(error = %err, "a refusal could not be recorded");
    }
}

impl Committed {
    /// The forward failed after the request was recorded: the refusal follows its record.
    pub(super) async fn refused(
        self: Box<Self>,
        gw: &Gateway,
        e: &GatewayError,
        service: &Service,
        started: Instant,
    ) {
        refused(gw, self.record, e, service, started).await;
    }
}

/// How long Azure took to send its answer's headers (a response extension).
#[derive(Debug, Clone, Copy)]
pub(super) struct UpstreamLatency(pub std::time::Duration);

/// Records the answer: its status, headers, masked body (capped) and digest. An empty
/// answer is recorded before it is sent; any other is recorded as it streams, committed
/// before its last bytes go out (`audit::tap`).
pub(super) async fn answer(
    gw: &Gateway,
    committed: Committed,
    response: Response<Body>,
    started: Instant,
    operation: &Operation,
    // What the agent got may hold secrets policy let through (`unmask:`); the store never
    // does: such an answer is masked again in full, or kept only as a digest.
    remask: bool,
) -> Result<Response<Body>, GatewayError> {
    use http_body::Body as _;
    let mut record = committed.record;
    record.phase = Phase::Response;
    record.status = Some(response.status().as_u16());
    record.headers = audit_headers(response.headers());
    record.upstream_ms = response
        .extensions()
        .get::<UpstreamLatency>()
        .map(|l| l.0.as_millis() as u64);
    (record.body, record.body_digest, record.body_bytes) = (None, None, None);
    if response.body().is_end_stream() {
        record.time = crate::audit_time();
        record.latency_ms = Some(started.elapsed().as_millis() as u64);
        record.body_bytes = Some(0);
        commit_answer(gw, record).await?;
        return Ok(response);
    }
    let masker = gw.masker.clone();
    let op = operation.clone();
    let render: crate::audit::tap::Render = Box::new(move |bytes: &[u8], complete: bool| {
        let bytes: std::borrow::Cow<'_, [u8]> = if remask {
            if !complete {
                return None;
            }
            match masker.mask_json(&masker.plan(&op, &[]), bytes) {
                Ok(Masked::Changed { body, .. }) => body.into(),
                Ok(Masked::Unchanged) => bytes.into(),
                Err(_) => return None,
            }
        } else {
            bytes.into()
        };
        let bytes = match masker.mask_text(masker.audit_plan(), &bytes) {
            Masked::Changed { body, .. } => body.into(),
            Masked::Unchanged => bytes,
        };
        Some(String::from_utf8_lossy(&bytes).into_owned())
    });
    let pending = crate::audit::tap::Pending {
        record,
        recorder: gw.recorder.clone(),
        started,
        cap: gw.audit.body_cap,
        render,
        fail_open: gw.audit.fail_open,
    };
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(
        parts,
        crate::audit::tap::Tap::new(body, pending).boxed(),
    ))
}

/// Text bound for the audit store, with anything secret-shaped (SAS signatures, keys,
/// tokens) replaced by a placeholder, whatever policy lets through to the agent.
pub(super) fn audit_text(gw: &Gateway, text: &str) -> String {
    match gw.masker.mask_text(gw.masker.audit_plan(), text.as_bytes()) {
        Masked::Changed { body, .. } => String::from_utf8_lossy(&body).into_owned(),
        Masked::Unchanged => text.to_owned(),
    }
}

/// Headers as the audit store and approvals may hold them: credentials redacted. Their
/// secret-shaped values are masked where every record and held request is kept
/// (`audit::record::Keep`, applied by the recorder and by `Approvals::hold`).
pub(super) fn audit_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let value = crate::audit::record::redact_header(k.as_str(), v.as_bytes());
            (k.as_str().to_owned(), value)
        })
        .collect()
}

/// A JSON request body with its secrets masked (the operation's known secret fields, then
/// every detector); `None` when there is no JSON body or it cannot be masked.
pub(super) fn masked_request_bytes(
    gw: &Gateway,
    op: &Operation,
    seen: &condition::Body,
) -> Option<Vec<u8>> {
    let condition::Body::Json(v) = seen else {
        return None;
    };
    let raw = serde_json::to_vec(v).expect("a Value serializes");
    let masked = match gw.masker.mask_request_json(op, &raw) {
        Ok(Masked::Changed { body, .. }) => body,
        Ok(Masked::Unchanged) => raw,
        // Not maskable: keep nothing of it but the fact.
        Err(_) => return None,
    };
    Some(match gw.masker.mask_text(gw.masker.audit_plan(), &masked) {
        Masked::Changed { body, .. } => body,
        Masked::Unchanged => masked,
    })
}

/// The request body as the audit store may hold it: masked, capped, with a digest and the
/// whole size.
pub(super) fn masked_request_body(
    gw: &Gateway,
    op: &Operation,
    seen: &condition::Body,
) -> (Option<String>, Option<String>, Option<u64>) {
    use sha2::Digest;
    let Some(masked) = masked_request_bytes(gw, op, seen) else {
        return (None, None, None);
    };
    let digest = crate::audit::chain::hex(&sha2::Sha256::digest(&masked));
    let size = masked.len() as u64;
    let mut text = String::from_utf8_lossy(&masked).into_owned();
    if text.len() > gw.audit.body_cap {
        let mut cut = gw.audit.body_cap;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    (Some(text), Some(digest), Some(size))
}
