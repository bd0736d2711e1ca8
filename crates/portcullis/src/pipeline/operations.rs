//! A pending approval presented as ARM presents a long-running operation
//! (`approval/lro.rs`): the first answer ([`accepted`]), then polls of the gateway's own
//! status and result URLs ([`poll`]), which forward the held request once it is approved
//! and then follow Azure's own operation. Everything forwarded here leaves through
//! `send`, recorded like any request. Async operation reference:
//! <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/async-api-reference.md>

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use super::answer::LRO_HEADERS;
use super::error::GatewayError;
use super::forward::{STRIPPED_REQUEST_HEADERS, UpstreamLro};
use super::send::{self, Failure, Outbound};
use super::trail::{Ids, Trail};
use super::{Exchange, Gateway, decide, record};
use crate::approval::Approval;
use crate::approval::lro::{self, Handover, PollKind, StoredRequest};
use crate::audit::record::{AuditRecord, Phase};
use crate::azure::error::ErrorContext;
use crate::azure::operation::Operation;
use crate::azure::route::Service;
use crate::identity::principal::Principal;
use crate::upstream::client::{Body, full};

/// The action polls of the gateway's own status URLs are recorded under.
const POLL_ACTION: &str = "Portcullis/approvals/operations/read";

/// A held request the hold did not release, to be answered as a long-running operation.
pub(super) struct Pending<'a> {
    pub approval: &'a Approval,
    pub operation: &'a Operation,
    /// 201 or 202.
    pub status: u16,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub unmask: &'a [String],
}

/// Keeps the held request (sealed) for the forward after approval and answers as ARM
/// answers a long-running operation: 201/202 with `Azure-AsyncOperation`, `Location` and
/// `Retry-After`.
pub(super) async fn accepted(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    p: Pending<'_>,
    trail: &Trail,
) -> Result<Response<Body>, GatewayError> {
    let a = p.approval;
    let stored = StoredRequest {
        method: p.method.to_string(),
        path: ex.routed.path.clone(),
        upstream_path: ex.routed.upstream_path.clone(),
        query: ex.query.clone(),
        headers: p
            .headers
            .iter()
            .filter(|(k, _)| {
                !STRIPPED_REQUEST_HEADERS.contains(&k.as_str())
                    && !k.as_str().starts_with("x-portcullis-")
            })
            .map(|(k, v)| (k.as_str().to_owned(), header_text(v)))
            .collect(),
        body: p.body.to_vec(),
        correlation_id: trail.ids.correlation_id.clone(),
        unmask: p.unmask.to_vec(),
    };
    let sealed = gw.approvals.config.sealer.seal(&a.id, &stored);
    // The same request answered 202 before keeps its row (the same bytes: the approval is
    // bound to them).
    gw.approvals
        .store
        .insert_operation(
            &a.id,
            &principal.tenant_id,
            &principal.object_id,
            &sealed,
            &crate::audit_time(),
        )
        .await
        .map_err(|e| GatewayError::ApprovalStoreUnavailable(e.to_string()))?;
    let base = &ex.routed.gateway_base;
    let (tenant, oid) = (&principal.tenant_id, &principal.object_id);
    let status_url = approval_url(gw, base, tenant, oid, &a.id, PollKind::Status);
    let result_url = approval_url(gw, base, tenant, oid, &a.id, PollKind::Result);
    let mut record = trail.record(Phase::Held);
    record.scope = Some(crate::policy::scope_display(p.operation));
    record.decision = Some("approve".into());
    record.rule = a.rule.clone();
    record.approval = Some(a.id.clone());
    record.status = Some(p.status);
    record.reason = Some(format!(
        "held for approval {}; not decided within the hold, so answered {} as a long-running operation: the agent polls the gateway, nothing was sent to Azure",
        a.id, p.status
    ));
    record.latency_ms = Some(trail.started.elapsed().as_millis() as u64);
    record::commit_answer(gw, record).await?;
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(p.status).expect("201 or 202");
    let h = r.headers_mut();
    h.insert(
        "azure-asyncoperation",
        HeaderValue::from_str(&status_url).expect("a URL is header text"),
    );
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&result_url).expect("a URL is header text"),
    );
    h.insert(header::RETRY_AFTER, retry_after(gw));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    ids_headers(&trail.ids, a, h);
    Ok(r)
}

/// An approval answered 202 earlier but used now by a retry of the request itself: the
/// operation's polls say so (it forwarded nothing), and its held request goes.
pub(super) async fn used_by_retry(gw: &Gateway, approval: &str) {
    let handover = Handover::error(
        409,
        "ApprovalConsumed",
        &format!(
            "Portcullis: approval {approval} was used by a retry of the same request, which was forwarded instead; this operation forwarded nothing"
        ),
    );
    let sealed = gw.approvals.config.sealer.seal(approval, &handover);
    if let Err(e) = gw
        .approvals
        .store
        .operation_used_elsewhere(approval, &sealed)
        .await
    {
        tracing::warn!(approval, error = %e, "an operation whose approval a retry used could not be updated; its polls report it after the forward grace");
    }
}

/// The approval was used by a poll, but its forward failed before anything reached Azure:
/// later polls report that error (the approval is spent; the request is never retried).
async fn failed_before_forward(gw: &Gateway, approval: &str, e: &GatewayError) {
    let handover = Handover::error(
        e.status().as_u16(),
        e.code(&Service::Arm),
        &e.message(&Service::Arm),
    );
    let sealed = gw.approvals.config.sealer.seal(approval, &handover);
    if let Err(err) = gw
        .approvals
        .store
        .set_handover_once(approval, &sealed)
        .await
    {
        tracing::error!(approval, error = %err, "an operation whose forward failed could not say so; its polls report it after the forward grace");
    }
}

fn not_found() -> GatewayError {
    GatewayError::Operation {
        status: StatusCode::NOT_FOUND,
        code: "OperationNotFound",
        message: "there is no such operation (the URL is unknown, altered or not the gateway's)"
            .into(),
    }
}

fn store_error(e: crate::audit::store::StoreError) -> GatewayError {
    GatewayError::ApprovalStoreUnavailable(e.to_string())
}

/// One poll of an approval's status or result URL.
struct Poll<'a> {
    gw: &'a Gateway,
    ex: &'a Exchange,
    ids: &'a Ids,
    principal: &'a Principal,
    kind: PollKind,
}

/// A poll of an approval's status or result URL. Only the requester may poll (the URL is
/// bound to them): another principal is refused (403); an unknown or altered URL does not
/// exist (404).
pub(super) async fn poll(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    trail: &mut Trail,
) -> Result<Response<Body>, GatewayError> {
    trail.action = Some(POLL_ACTION.to_owned());
    let (id, kind) = lro::parse_path(&ex.routed.path).ok_or_else(not_found)?;
    let Some(row) = gw
        .approvals
        .store
        .operation(id)
        .await
        .map_err(store_error)?
    else {
        return Err(not_found());
    };
    // The binding covers the path (the approval and which URL); the gateway reads nothing
    // from the query, so a client that appends one (an `api-version`) still polls.
    let bound = ex.binding.as_deref().is_some_and(|b| {
        gw.binder
            .verify_for(&row.tenant, &row.principal, &ex.raw_path, "", b)
    });
    if !bound {
        return Err(not_found());
    }
    if principal.tenant_id != row.tenant || principal.object_id != row.principal {
        return Err(GatewayError::Operation {
            status: StatusCode::FORBIDDEN,
            code: "AuthorizationFailed",
            message: format!(
                "the client with object id '{}' may not read operation {id}: only the principal that sent the request polls it",
                principal.object_id
            ),
        });
    }
    if trail.method != Method::GET {
        return Err(GatewayError::Operation {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "MethodNotAllowed",
            message: "an operation's status is read with GET".into(),
        });
    }
    let Some(a) = gw.approvals.store.approval(id).await.map_err(store_error)? else {
        return Err(not_found());
    };
    let p = Poll {
        gw,
        ex,
        ids: &trail.ids,
        principal,
        kind,
    };
    let sealer = &gw.approvals.config.sealer;
    if let Some(sealed) = &row.handover {
        let h: Handover = sealer
            .open(id, sealed)
            .map_err(|e| GatewayError::HeldRequestUnreadable(format!("approval {id}: {e}")))?;
        return p.follow(&a, &h).await;
    }
    use crate::approval::Status;
    let now = crate::audit_time();
    let overdue = matches!(a.status, Status::Pending | Status::Approved) && a.expires <= now;
    match a.status {
        _ if overdue => Ok(p.failed(
            &a,
            "ApprovalExpired",
            crate::approval::service::expired_message(&a),
        )),
        Status::Pending => Ok(p.in_progress(&a)),
        Status::Approved => match gw.approvals.redeem(&a).await.map_err(store_error)? {
            Some(hold) => match p.forward_approved(&a, &hold).await {
                Ok(h) => p.follow(&a, &h).await,
                Err(e) => {
                    // Used, and nothing sent (the record or the stored request failed):
                    // the operation failed, and says why at once.
                    failed_before_forward(gw, &a.id, &e).await;
                    Err(e)
                }
            },
            // Another replica (or a retry of the request) used it: its handover follows.
            None => Ok(p.in_progress(&a)),
        },
        Status::Denied => Ok(p.failed(
            &a,
            "ApprovalDenied",
            crate::approval::service::denied_message(&a),
        )),
        Status::Expired => Ok(p.failed(
            &a,
            "ApprovalExpired",
            crate::approval::service::expired_message(&a),
        )),
        Status::Consumed => {
            // Used by a poll (or a retry) on a replica that has not stored Azure's answer
            // yet; one that died meanwhile never will: after the upstream timeout and a
            // minute, say so rather than forward twice.
            let lost = a.consumed.as_deref().is_some_and(|c| {
                chrono::DateTime::parse_from_rfc3339(c).is_ok_and(|c| {
                    chrono::Utc::now() - c.with_timezone(&chrono::Utc)
                        > chrono::Duration::from_std(gw.upstream.timeout).unwrap_or_default()
                            + chrono::Duration::seconds(60)
                })
            });
            if lost {
                Ok(p.failed(
                    &a,
                    "ApprovalForwardLost",
                    format!(
                        "approval {} was used, but the gateway that forwarded the request stopped before it recorded Azure's answer; the request may have reached Azure once. Check the resource; it is never sent again.",
                        a.id
                    ),
                ))
            } else {
                Ok(p.in_progress(&a))
            }
        }
    }
}

impl Poll<'_> {
    /// Still waiting (for approvers, or for the replica forwarding it).
    fn in_progress(&self, a: &Approval) -> Response<Body> {
        let mut r = match self.kind {
            PollKind::Status => json_answer(
                StatusCode::OK,
                &lro::in_progress_body(&self.ex.routed.path, a),
            ),
            PollKind::Result => {
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::ACCEPTED;
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                self.in_progress_location(&mut r);
                r
            }
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, retry_after(self.gw));
        ids_headers(self.ids, a, r.headers_mut());
        r
    }

    /// The operation failed without reaching Azure (denied, expired, used elsewhere): the
    /// status URL says `Failed` with our code, so the SDK raises its normal error; the
    /// result URL refuses as a held request would.
    fn failed(&self, a: &Approval, code: &'static str, message: String) -> Response<Body> {
        match self.kind {
            PollKind::Status => {
                let body = lro::failed_body(&self.ex.routed.path, a, code, &message);
                let mut r = json_answer(StatusCode::OK, &body);
                ids_headers(self.ids, a, r.headers_mut());
                r
            }
            PollKind::Result => {
                let e = GatewayError::from(crate::approval::service::refusal(
                    code,
                    message,
                    a.clone(),
                    None,
                ));
                e.render(&ErrorContext {
                    service: &self.ex.routed.service,
                    request_id: &self.ids.request_id,
                    correlation_id: &self.ids.correlation_id,
                    authority: &self.gw.challenge_authority,
                    audience: &self.gw.audience,
                })
            }
        }
    }

    /// A 202 from a result URL points at itself (the gateway's, not Azure's).
    fn in_progress_location(&self, r: &mut Response<Body>) {
        let ex = self.ex;
        let binding = format!(
            "{}={}",
            crate::azure::rewrite::BINDING_PARAM,
            ex.binding.as_deref().unwrap_or_default()
        );
        // The polled URL's query as the agent sent it (the binding included).
        let query = if ex.query.is_empty() {
            binding
        } else {
            format!("{}&{binding}", ex.query)
        };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{}{}?{query}",
            ex.routed.gateway_base, ex.routed.upstream_path,
        )) {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }

    /// Forwards the approved request, exactly the bytes approved and once (the caller
    /// redeemed the approval), with the rule's credential; records it like any approved
    /// forward; and stores how polls continue.
    async fn forward_approved(
        &self,
        a: &Approval,
        hold: &crate::approval::Hold,
    ) -> Result<Handover, GatewayError> {
        let gw = self.gw;
        let unreadable =
            |why: String| GatewayError::HeldRequestUnreadable(format!("approval {}: {why}", a.id));
        let sealer = &gw.approvals.config.sealer;
        let sealed = gw
            .approvals
            .store
            .take_request(&a.id, &crate::audit_time())
            .await
            .map_err(store_error)?
            .ok_or_else(|| unreadable("the held request is no longer stored".into()))?;
        let stored: StoredRequest = sealer
            .open(&a.id, &sealed)
            .map_err(|e| unreadable(e.to_string()))?;
        let started = Instant::now();
        let method = Method::from_bytes(stored.method.as_bytes())
            .map_err(|_| unreadable("a stored method is not a method".into()))?;
        let operation = decide::name_path(&Service::Arm, &method, &stored.path, &stored.query)?;
        let ids = Ids {
            request_id: self.ids.request_id.clone(),
            session: a.session.clone(),
            correlation_id: stored.correlation_id.clone(),
        };
        let mut record = self.record(
            &ids,
            &method,
            &stored.upstream_path,
            &stored.query,
            a,
            &operation,
        );
        record.reason = Some(format!(
            "{}; {}; forwarded when its operation was polled",
            a.rule_reason, hold.how
        ));
        record.unmasked = stored.unmask.clone();
        record.headers = a.request.headers.clone();
        record.body = a.request.body.clone();
        let mut headers = HeaderMap::new();
        for (k, v) in &stored.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(&header_bytes(v)),
            ) {
                headers.append(k, v);
            }
        }
        let resource = if !matches!(method, Method::PUT | Method::PATCH) {
            None
        } else if stored.query.is_empty() {
            Some(stored.upstream_path.clone())
        } else {
            Some(format!("{}?{}", stored.upstream_path, stored.query))
        };
        let out = Outbound {
            ids,
            service: Service::Arm,
            method,
            path: stored.path,
            upstream_path: stored.upstream_path,
            query: stored.query,
            gateway_base: self.ex.routed.gateway_base.clone(),
            headers,
            body: full(Bytes::from(stored.body)),
            credential: hold.credential.clone(),
            plan: gw.masker.plan(&operation, &stored.unmask),
            remask: !stored.unmask.is_empty(),
            operation,
        };
        let handover = match send::send(gw, self.principal, out, record, started).await {
            Ok(response) => {
                let lro = response
                    .extensions()
                    .get::<UpstreamLro>()
                    .cloned()
                    .unwrap_or_default();
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                // Read to the end: the record commits as the last bytes pass.
                let body = read_capped(response.into_body(), gw.max_answer_bytes).await;
                let is_final = lro.async_operation.is_none() && lro.location.is_none();
                Handover {
                    status,
                    async_operation: lro.async_operation,
                    location: lro.location,
                    resource,
                    content_type,
                    body: if is_final { body.to_vec() } else { Vec::new() },
                }
            }
            // Approved and used, but Azure never answered: the operation failed, and the
            // approval is spent (forwarding again could do it twice).
            Err(Failure::Unanswered(e, committed)) => {
                committed.refused(gw, &e, &Service::Arm, started).await;
                Handover::error(
                    e.status().as_u16(),
                    e.code(&Service::Arm),
                    &e.message(&Service::Arm),
                )
            }
            Err(f) => return Err(f.into_error()),
        };
        gw.approvals
            .store
            .set_handover(&a.id, &sealer.seal(&a.id, &handover))
            .await
            .map_err(store_error)?;
        Ok(handover)
    }

    /// The record of a request this poll sends on the approval's behalf.
    fn record(
        &self,
        ids: &Ids,
        method: &Method,
        upstream_path: &str,
        query: &str,
        a: &Approval,
        operation: &Operation,
    ) -> AuditRecord {
        let sep = if query.is_empty() { "" } else { "?" };
        let mut record = AuditRecord::new(
            ids.request_id.clone(),
            ids.session.clone(),
            Phase::Request,
            method.to_string(),
            format!("{upstream_path}{sep}{query}"),
        );
        record.principal = Some(self.principal.object_id.clone());
        record.principal_name = self.principal.labelled_name();
        record.action = Some(operation.action.clone());
        record.scope = Some(crate::policy::scope_display(operation));
        record.decision = Some("approve".into());
        record.rule = a.rule.clone();
        record.approval = Some(a.id.clone());
        record
    }

    /// Sends a GET of Azure's own status or result URL (`path_query` below the upstream
    /// base) with the approval's credential; masked and recorded like any poll.
    async fn poll_upstream(
        &self,
        a: &Approval,
        path_query: &str,
    ) -> Result<Response<Body>, GatewayError> {
        let started = Instant::now();
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        let operation = decide::name_path(&Service::Arm, &Method::GET, path, query)?;
        let ids = Ids {
            request_id: self.ids.request_id.clone(),
            session: a.session.clone(),
            correlation_id: self.ids.correlation_id.clone(),
        };
        let mut record = self.record(&ids, &Method::GET, path, query, a, &operation);
        record.reason = Some(format!(
            "poll of the operation approval {} started, through the gateway's status URL",
            a.id
        ));
        let out = Outbound {
            ids,
            service: Service::Arm,
            method: Method::GET,
            path: path.to_owned(),
            upstream_path: path.to_owned(),
            query: query.to_owned(),
            gateway_base: self.ex.routed.gateway_base.clone(),
            headers: HeaderMap::new(),
            body: full(Bytes::new()),
            credential: a.credential.clone(),
            plan: self.gw.masker.plan(&operation, &[]),
            remask: false,
            operation,
        };
        let mut response = send::send(self.gw, self.principal, out, record, started)
            .await
            .map_err(Failure::into_error)?;
        // Azure's own poll URLs stay behind the gateway's.
        for h in LRO_HEADERS {
            response.headers_mut().remove(*h);
        }
        Ok(response)
    }

    /// Polls after the forward: the real operation's status and result, through the
    /// gateway.
    async fn follow(&self, a: &Approval, h: &Handover) -> Result<Response<Body>, GatewayError> {
        let (gw, path) = (self.gw, &self.ex.routed.path);
        let succeeded = |code: u16| (200..300).contains(&code);
        let mut r = match (self.kind, &h.async_operation, &h.location) {
            // Azure answered at once.
            (PollKind::Status, None, None) => {
                let mut body = lro::operation_body(
                    path,
                    a,
                    if succeeded(h.status) {
                        "Succeeded"
                    } else {
                        "Failed"
                    },
                );
                if !succeeded(h.status) {
                    body["error"] = lro::upstream_error(h.status, &h.body);
                }
                json_answer(StatusCode::OK, &body)
            }
            (PollKind::Result, None, None) => {
                let mut r = Response::new(full(Bytes::from(h.body.clone())));
                *r.status_mut() = StatusCode::from_u16(h.status).unwrap_or(StatusCode::OK);
                if let Some(ct) = h
                    .content_type
                    .as_deref()
                    .and_then(|c| HeaderValue::from_str(c).ok())
                {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                r
            }
            // Azure's status URL answers in the same shape.
            (PollKind::Status, Some(op), _) => self.poll_upstream(a, op).await?,
            // Only a result URL (storage create): 202 while in progress.
            (PollKind::Status, None, Some(loc)) => {
                let (parts, body) =
                    read_all(self.poll_upstream(a, loc).await?, gw.max_answer_bytes).await;
                let code = parts.status.as_u16();
                let mut out = if code == 202 {
                    lro::operation_body(path, a, "InProgress")
                } else if succeeded(code) {
                    lro::operation_body(path, a, "Succeeded")
                } else {
                    let mut b = lro::operation_body(path, a, "Failed");
                    b["error"] = lro::upstream_error(code, &body);
                    b
                };
                out["properties"] =
                    serde_json::json!({"approvalId": a.id, "approvalStatus": a.status});
                let mut r = json_answer(StatusCode::OK, &out);
                if let Some(v) = parts.headers.get(header::RETRY_AFTER) {
                    r.headers_mut().insert(header::RETRY_AFTER, v.clone());
                }
                r
            }
            (PollKind::Result, _, Some(loc)) => {
                let mut r = self.poll_upstream(a, loc).await?;
                if r.status() == StatusCode::ACCEPTED {
                    self.in_progress_location(&mut r);
                }
                r
            }
            // A status URL only: the result is the resource (PUT, PATCH), or nothing more.
            (PollKind::Result, Some(op), None) => {
                let (parts, body) =
                    read_all(self.poll_upstream(a, op).await?, gw.max_answer_bytes).await;
                let status = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                match status.as_str() {
                    "Succeeded" => match &h.resource {
                        Some(resource) => self.poll_upstream(a, resource).await?,
                        None => {
                            let mut r = Response::new(full(Bytes::new()));
                            *r.status_mut() = StatusCode::NO_CONTENT;
                            r
                        }
                    },
                    "Failed" | "Canceled" => {
                        let e = lro::upstream_error(parts.status.as_u16(), &body);
                        let mut r =
                            json_answer(StatusCode::CONFLICT, &serde_json::json!({"error": e}));
                        if let Some(code) = e["code"]
                            .as_str()
                            .and_then(|c| HeaderValue::from_str(c).ok())
                        {
                            r.headers_mut().insert("x-ms-error-code", code);
                        }
                        r
                    }
                    _ => {
                        let mut r = Response::new(full(Bytes::new()));
                        *r.status_mut() = StatusCode::ACCEPTED;
                        self.in_progress_location(&mut r);
                        r.headers_mut().insert(header::RETRY_AFTER, retry_after(gw));
                        r
                    }
                }
            }
        };
        if !r.headers().contains_key(header::RETRY_AFTER) {
            r.headers_mut().insert(header::RETRY_AFTER, retry_after(gw));
        }
        ids_headers(self.ids, a, r.headers_mut());
        Ok(r)
    }
}

/// The gateway's status or result URL of an approval, bound to its requester.
fn approval_url(
    gw: &Gateway,
    base: &str,
    tenant: &str,
    oid: &str,
    id: &str,
    kind: PollKind,
) -> String {
    let path = format!("{}{id}/{}", lro::PATH_PREFIX, kind.name());
    let binding = gw.binder.sign_for(tenant, oid, &path, "");
    format!(
        "{}{path}?{}={binding}",
        base.trim_end_matches('/'),
        crate::azure::rewrite::BINDING_PARAM
    )
}

/// The ids and approval every answer about an approval's operation carries.
fn ids_headers(ids: &Ids, a: &Approval, h: &mut HeaderMap) {
    let id = HeaderValue::from_str(&ids.request_id).expect("a uuid");
    h.insert("x-ms-request-id", id.clone());
    h.insert("x-portcullis-request-id", id);
    h.insert(
        "x-ms-correlation-request-id",
        HeaderValue::from_str(&ids.correlation_id).expect("checked printable ASCII"),
    );
    if let Ok(v) = HeaderValue::from_str(&a.id) {
        h.insert("x-portcullis-approval", v);
    }
}

/// Header values kept byte for byte (each byte one char), whatever their encoding.
fn header_text(v: &HeaderValue) -> String {
    v.as_bytes().iter().map(|&b| b as char).collect()
}

fn header_bytes(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

fn retry_after(gw: &Gateway) -> HeaderValue {
    HeaderValue::from(gw.approvals.config.retry_after.as_secs().max(1))
}

fn json_answer(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("a Value serializes");
    let mut r = Response::new(full(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn read_all(response: Response<Body>, cap: usize) -> (http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    (parts, read_capped(body, cap).await)
}

/// An answer's bytes, at most `cap` of them (the rest is read and dropped, so a recording
/// tap still sees its end); an answer that fails midway reads as what arrived.
async fn read_capped(mut body: Body, cap: usize) -> Bytes {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data()
            && out.len() + data.len() <= cap
        {
            out.extend_from_slice(&data);
        }
    }
    out.freeze()
}
