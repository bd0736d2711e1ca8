//! The request pipeline, top to bottom: route → authenticate → classify → decide → record
//! → forward → rewrite (mask) → record the answer. Each phase is a plain function over what
//! the previous one produced; data flows one way. (Holding for approval joins after decide
//! with its issue.)

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::azure::batch::InnerSummary;
use crate::azure::error::{ErrorContext, GatewayError};
use crate::azure::operation::{self, Operation};
use crate::azure::rewrite::{Binder, Continuation};
use crate::azure::route::{self, Routed, Service};
use crate::config::UpstreamConfig;
use crate::identity::principal::Principal;
use crate::identity::{AuthError, Authenticator};
use crate::mask::{Masked, Masker, Plan};
use crate::policy::condition::{self, Facts};
use crate::policy::{Decision, Effect, Policy};
use crate::upstream::client::{Body, BoxError, ClientError, HttpClient, full};
use crate::upstream::credential::TokenProvider;

/// Headers that never cross the gateway: hop-by-hop ones (RFC 9110 §7.6.1), the agent's
/// credentials, and anything that would let the agent speak for the gateway.
const STRIPPED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "x-ms-authorization-auxiliary",
];

const STRIPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
];

/// Azure's long-running-operation headers that hold absolute URLs to rewrite.
const LRO_HEADERS: &[&str] = &["azure-asyncoperation", "location", "operation-location"];

/// Everything a request needs that outlives it.
pub struct Gateway {
    pub auth: Authenticator,
    /// The policy in force; hot reload swaps it whole. Each request loads it once, so it is
    /// decided by exactly one complete policy.
    pub policy: arc_swap::ArcSwap<Policy>,
    pub upstream: UpstreamConfig,
    pub tokens: Arc<TokenProvider>,
    pub http: HttpClient,
    pub binder: Arc<Binder>,
    /// Replaces secrets in answers by placeholders.
    pub masker: Arc<Masker>,
    /// Commits audit records (one writer, group commit).
    pub recorder: crate::audit::writer::Recorder,
    /// Held requests and their approvals.
    pub approvals: Arc<crate::approval::Approvals>,
    /// Groups requests into sessions for replay.
    pub sessions: crate::audit::session::Sessions,
    pub audit: crate::config::AuditConfig,
    /// The largest answer read whole (to mask it, or rewrite its nextLinks).
    pub max_answer_bytes: usize,
    pub public_host: Option<String>,
    /// `{authority}/{tenant}`: where the challenge sends clients for a token.
    pub challenge_authority: String,
    /// The audience agents ask tokens for.
    pub audience: String,
    /// Whether `https://vault.{public_host}` is an accepted audience: then a vault reached
    /// by its host name challenges for it, as the Key Vault SDKs' default settings require.
    pub vault_audience: bool,
    /// What one client may ask (connections, heads, bodies, rate).
    pub limits: crate::config::Limits,
    /// Requests per principal per second.
    pub limiter: crate::ratelimit::RateLimiter,
}

/// The request as the phases see it.
struct Exchange {
    request_id: String,
    /// The session the audit records group this request in.
    session: String,
    correlation_id: String,
    routed: Routed,
    /// The query without the gateway's binding parameter: what is forwarded.
    query: String,
    binding: Option<String>,
}

pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    use tracing::Instrument;
    let request_id = uuid::Uuid::new_v4().to_string();
    // Every log line a request causes carries its id: the one its answer carries in
    // `x-portcullis-request-id`, and its audit records' `request_id`.
    let span = tracing::info_span!("request", request_id = %request_id);
    handle_in(gw, req, request_id).instrument(span).await
}

async fn handle_in(gw: Arc<Gateway>, req: Request<Incoming>, request_id: String) -> Response<Body> {
    let started = Instant::now();
    let correlation_id = req
        .headers()
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let routed = request_host(&req).and_then(|host| {
        route::route(&host, req.uri().path(), gw.public_host.as_deref()).map_err(|e| {
            GatewayError::BadRequest {
                code: "InvalidRequestPath",
                message: e.to_string(),
            }
        })
    });
    let routed = match routed {
        Ok(r) => r,
        Err(err) => {
            // Malformed requests are recorded too (the path as sent, secret-shaped parts
            // masked).
            let mut record = AuditRecord::new(
                request_id.clone(),
                gw.sessions.of(req.headers(), None, started),
                Phase::Refused,
                method.to_string(),
                req.uri().to_string(),
            );
            record.headers = audit_headers(req.headers());
            record.status = Some(err.status().as_u16());
            record.reason = Some(err.message(&Service::Arm));
            record.latency_ms = Some(started.elapsed().as_millis() as u64);
            if let Err(e) = gw.recorder.record(record).await {
                tracing::error!(error = %e, "a refusal could not be recorded");
            }
            crate::metrics::METRICS.request("none", None, err.status().as_u16(), started.elapsed());
            let ctx = ErrorContext {
                service: &Service::Arm,
                request_id: &request_id,
                correlation_id: &correlation_id,
                authority: &gw.challenge_authority,
                audience: &gw.audience,
            };
            return err.render(&ctx);
        }
    };
    // Authenticate before naming the session: a session an agent names is its own
    // (audit/session.rs), so the name counts only with the principal that sent it.
    let authenticated = async {
        refuse_malformed_framing(&gw, req.headers())?;
        authenticate(&gw, req.headers()).await
    }
    .await;
    let session = gw.sessions.of(
        req.headers(),
        authenticated.as_ref().ok().map(|p| p.object_id.as_str()),
        started,
    );
    let (query, binding) = Binder::split(req.uri().query().unwrap_or(""));
    let ex = Exchange {
        request_id,
        session,
        correlation_id,
        routed,
        query,
        binding,
    };
    let mut principal_id = None;
    let mut decided = "none";
    let mut action = None;
    // A batch's inner requests as judged (for the records, also of a refusal).
    let mut batch_inner: Vec<InnerSummary> = Vec::new();
    let mut scope = None;
    let request_headers = audit_headers(req.headers());
    let outcome = async {
        let principal = authenticated?;
        principal_id = Some(principal.object_id.clone());
        if let Err(wait) = gw.limiter.take(&principal.object_id) {
            return Err(GatewayError::Throttled {
                retry_after: (wait.as_secs_f64().ceil() as u64).max(1),
            });
        }
        // The gateway's own status and result URLs of approvals presented as long-running
        // operations: answered here, never forwarded.
        if ex.routed.service == Service::Arm
            && ex.routed.path.starts_with(crate::approval::lro::PATH_PREFIX)
        {
            action = Some(POLL_ACTION.to_owned());
            // Boxed: its state must not grow every request's future.
            return Box::pin(approval_poll(&gw, &ex, &principal, &method, req.uri().path())).await;
        }
        let body_cap = match ex.routed.service {
            Service::Arm => gw.limits.max_body_arm,
            Service::KeyVault { .. } => gw.limits.max_body_keyvault,
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > body_cap as u64) {
            return Err(GatewayError::TooLarge { limit: body_cap });
        }
        refuse_method_overrides(req.headers())?;
        let operation = classify(&ex, &method)?;
        action = Some(operation.action.clone());
        scope = Some(crate::policy::scope_display(&operation));
        let raw_path = req.uri().path().to_owned();
        let (parts, body) = req.into_parts();
        // Read the body only when a rule that could apply has a condition reading it.
        let policy = gw.policy.load_full();
        // A batch's answer is masked per inner request, so its requests must be read.
        let is_batch = operation
            .action
            .eq_ignore_ascii_case("Microsoft.Resources/batch/action");
        // Bodies of writes are read too (up to the cap), so the audit record can hold them
        // masked; the bytes forwarded are the same.
        let writes = matches!(method, Method::PUT | Method::PATCH | Method::POST);
        let (body, seen, whole) = if is_batch || writes || policy.needs_body(&principal, &operation)
            || policy.may_hold(&principal, &operation)
        {
            read_for_conditions(body, policy.max_body_bytes, body_cap).await?
        } else {
            (stream(body), condition::Body::Absent, None)
        };
        // A deployment's template is read so each resource is judged as the write it is.
        let deployment = if method == Method::PUT
            && operation
                .action
                .eq_ignore_ascii_case("Microsoft.Resources/deployments/write")
        {
            Some(read_deployment(&ex, &policy, &seen)?)
        } else {
            None
        };
        let deployment_facts = deployment.as_ref().map(|d| d.facts());
        let decision = {
            // The facts borrow the request; they must not live across an await.
            let facts = Facts::new(
                &principal,
                &operation,
                method.as_str(),
                &ex.routed.path,
                &ex.query,
                &parts.headers,
                &seen,
            )
            .with_deployment(deployment_facts.as_ref());
            decide(&gw, &policy, &ex, &method, &principal, &operation, &raw_path, &facts)?
        };
        // A batch passes only as its inner requests would, each judged as if sent alone. It
        // is read once: the same inner requests name the masking plan below.
        let batch = if is_batch {
            Some(read_batch(&gw, &policy, &seen)?)
        } else {
            None
        };
        let judged = if let Some(inner) = &batch {
            Some(crate::policy::bundle::decide(
                &|p| audit_text(&gw, p),
                &policy,
                &principal,
                decision.clone(),
                inner,
                crate::policy::bundle::Bundle::Batch,
            ))
        } else {
            deployment.as_ref().zip(deployment_facts.as_ref()).map(|(d, facts)| {
                crate::policy::bundle::decide(
                    &|p| audit_text(&gw, p),
                    &policy,
                    &principal,
                    decision.clone(),
                    &d.operations,
                    crate::policy::bundle::Bundle::Deployment {
                        operation: &operation,
                        deployment: d,
                        facts,
                    },
                )
            })
        };
        let decision = match judged {
            None => decision,
            Some(Ok((d, inner))) => {
                batch_inner = inner;
                d
            }
            Some(Err((refusal, inner))) => {
                batch_inner = inner;
                return Err(GatewayError::from_bundle(refusal, &principal));
            }
        };
        decided = decision.effect.name();
        // Held for approval: nothing goes on until enough approvers consent (or a grant
        // window is open). The body is read whole: what is approved is exactly what is sent.
        let mut credential = decision.credential.clone();
        let mut consent = None;
        let mut body = body;
        if decision.effect == Effect::Approve {
            let Some(bytes) = whole else {
                return Err(GatewayError::BadRequest {
                    code: "RequestBodyTooLarge",
                    message: format!(
                        "a request held for approval is read whole, and this one is larger than {} bytes",
                        policy.max_body_bytes
                    ),
                });
            };
            let mut request = held_request(
                &gw,
                &ex,
                &principal,
                &operation,
                &decision,
                &method,
                &parts.headers,
                &request_headers,
                &bytes,
                &seen,
            )?;
            request.draft.inner = batch_inner.clone();
            // Operations Azure clients poll are answered, once the hold runs out, as ARM
            // answers a long-running operation; the SDK's poller then waits for the human.
            // Not batches: their answers are masked per inner request, which only this
            // request's own forward knows how to do.
            let presented = match &decision.approval {
                Some(spec) if ex.routed.service == Service::Arm && !is_batch => gw
                    .approvals
                    .config
                    .long_running
                    .presented(spec.style, method.as_str(), &operation.action),
                _ => None,
            };
            let held = match (gw.approvals.hold(request).await, presented) {
                (Ok(held), _) => {
                    used_by_retry(&gw, &held.approval).await;
                    held
                }
                (Err(GatewayError::Approval(r)), Some(status))
                    if matches!(r.code, "ApprovalPending" | "GatewayShuttingDown") =>
                {
                    let pending = Pending {
                        approval: &r.approval,
                        operation: &operation,
                        status,
                        headers: &parts.headers,
                        body: &bytes,
                        unmask: &decision.unmask,
                        shown_headers: &request_headers,
                        started,
                    };
                    return accepted(&gw, &ex, &principal, &method, pending).await;
                }
                (Err(e), _) => return Err(e),
            };
            body = full(bytes);
            credential = held.credential.clone();
            consent = Some(held);
        }
        for note in &decision.audit {
            tracing::warn!(audit = %note, "audit-mode rule matched");
        }
        // Mask after forward, before anything leaves: the plan comes from the operation and
        // from what the deciding rule lets through.
        let plan = if let Some(inner) = &batch {
            let ops: Vec<(String, Operation)> = inner
                .iter()
                .map(|i| (i.name.clone(), i.operation.clone()))
                .collect();
            gw.masker.plan_batch(&ops, &decision.unmask)
        } else {
            gw.masker.plan(&operation, &decision.unmask)
        };
        // Record before forwarding: nothing reaches Azure unrecorded.
        let mut record = audit_record(&ex, &method, Phase::Request);
        record.principal = Some(principal.object_id.clone());
        record.action = Some(operation.action.clone());
        record.scope = scope.clone();
        record.decision = Some(decision.effect.name().to_owned());
        record.rule = decision.rule.clone();
        record.reason = Some(match &consent {
            Some(held) => format!("{}; {}", decision.reason, held.how),
            None => decision.reason.clone(),
        });
        record.approval = consent.as_ref().map(|h| h.approval.clone());
        record.inner = batch_inner.clone();
        record.unmasked = decision.unmask.clone();
        record.headers = request_headers.clone();
        (record.body, record.body_digest, record.body_bytes) =
            masked_request_body(&gw, &operation, &seen);
        commit(&gw, record.clone()).await?;
        // A body without a declared length is cut off at the cap (the forward then fails;
        // Azure never sees a complete request larger than the gateway takes).
        let body = Limited::new(body, body_cap).boxed();
        let response = forward(
            &gw,
            &ex,
            parts,
            body,
            &principal,
            credential.as_deref(),
            &plan,
        )
        .await?;
        // And the answer, committed before it completes.
        record.phase = Phase::Response;
        record.status = Some(response.status().as_u16());
        record.headers = audit_headers(response.headers());
        record.upstream_ms = response
            .extensions()
            .get::<UpstreamLatency>()
            .map(|l| l.0.as_millis() as u64);
        (record.body, record.body_digest, record.body_bytes) = (None, None, None);
        record_answer(
            &gw,
            record,
            response,
            started,
            &operation,
            !decision.unmask.is_empty(),
        )
        .await
    }
    .await;
    let response = match outcome {
        Ok(r) => r,
        Err(e) => {
            // Refusals are recorded too, whatever their cause.
            let mut record = audit_record(&ex, &method, Phase::Refused);
            record.principal = principal_id.clone();
            record.action = action.clone();
            record.scope = scope.clone();
            record.headers = request_headers;
            record.status = Some(e.status().as_u16());
            record.reason = Some(e.message(&ex.routed.service));
            record.inner = batch_inner;
            match &e {
                GatewayError::Forbidden { decision, .. } => {
                    decided = decision.effect.name();
                    record.decision = Some(decision.effect.name().to_owned());
                    record.rule = decision.rule.clone();
                }
                GatewayError::Approval(r) => {
                    decided = "approve";
                    record.decision = Some("approve".to_owned());
                    record.rule = r.approval.rule.clone();
                    record.approval = Some(r.approval.id.clone());
                }
                // Refused after policy allowed it (credential, store, Azure, masking): the
                // record still says what policy decided.
                _ if decided != "none" => record.decision = Some(decided.to_owned()),
                _ => {}
            }
            record.latency_ms = Some(started.elapsed().as_millis() as u64);
            if let Err(err) = gw.recorder.record(record).await {
                tracing::error!(error = %err, "a refusal could not be recorded");
            }
            let vault_resource = ex
                .routed
                .vault_domain()
                .filter(|_| gw.vault_audience)
                .map(|d| format!("https://{d}"));
            let ctx = ErrorContext {
                service: &ex.routed.service,
                request_id: &ex.request_id,
                correlation_id: &ex.correlation_id,
                authority: &gw.challenge_authority,
                audience: vault_resource.as_deref().unwrap_or(&gw.audience),
            };
            e.render(&ctx)
        }
    };
    crate::metrics::METRICS.request(
        decided,
        action.as_deref(),
        response.status().as_u16(),
        started.elapsed(),
    );
    // The access log; the path is masked as in the audit record (an agent can put anything
    // in a path, secrets included).
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!(
            method = %method,
            path = %audit_text(&gw, &ex.routed.path),
            principal = principal_id.as_deref().unwrap_or("-"),
            decision = decided,
            action = action.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    response
}

/// The one host a request names: its `Host` header, or the URI's authority (HTTP/2's
/// `:authority`, an absolute-form target). Two `Host` headers, or a `Host` that differs from
/// the authority, are two answers to where the request goes: refused, never one picked
/// (RFC 9110 §7.2, RFC 9113 §8.3.1).
fn request_host(req: &Request<Incoming>) -> Result<String, GatewayError> {
    let bad = |message: &str| GatewayError::BadRequest {
        code: "InvalidHost",
        message: message.to_owned(),
    };
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(bad("the request has more than one Host header")),
        (Some(h), None) => Some(
            h.to_str()
                .map_err(|_| bad("the Host header is not valid text"))?
                .to_owned(),
        ),
        (None, None) => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    match (header, authority) {
        (Some(h), Some(a)) if !h.eq_ignore_ascii_case(&a) => Err(bad(
            "the Host header names another host than the request's authority",
        )),
        (Some(h), _) => Ok(h),
        (None, Some(a)) => Ok(a),
        (None, None) => Ok(String::new()),
    }
}

// === authenticate ===

pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Principal, GatewayError> {
    // Two Authorization headers are two claims to be someone: refuse rather than pick one.
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(GatewayError::Unauthenticated {
            message: "more than one Authorization header".into(),
            missing: false,
        });
    }
    let token = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => {
            return Err(GatewayError::Unauthenticated {
                message: "the Authorization header is missing".into(),
                missing: true,
            });
        }
        Some(Err(_)) => {
            return Err(GatewayError::Unauthenticated {
                message: "the Authorization header is not valid text".into(),
                missing: false,
            });
        }
        Some(Ok(v)) => match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => {
                return Err(GatewayError::Unauthenticated {
                    message: "the Authorization header is not a Bearer token".into(),
                    missing: false,
                });
            }
        },
    };
    gw.auth.authenticate(token).await.map_err(|e| match e {
        AuthError::Token(t) if t.is_unavailable() => GatewayError::AuthUnavailable(t.to_string()),
        AuthError::Token(t) => GatewayError::Unauthenticated {
            message: t.to_string(),
            missing: false,
        },
        AuthError::Groups(m) => GatewayError::AuthUnavailable(m),
    })
}

/// What the listener does not check for every protocol: the header count (HTTP/2 has no
/// cap of its own in hyper) and transfer codings other than plain `chunked` (hyper undoes
/// the chunking only; a `gzip, chunked` body would reach Azure still encoded, unread).
fn refuse_malformed_framing(gw: &Gateway, headers: &HeaderMap) -> Result<(), GatewayError> {
    if headers.len() > gw.limits.max_headers {
        return Err(GatewayError::Protocol {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code: "RequestHeaderFieldsTooLarge",
            message: format!(
                "the request has more than {} header fields",
                gw.limits.max_headers
            ),
        });
    }
    for te in headers.get_all(header::TRANSFER_ENCODING) {
        if !te
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
        {
            return Err(GatewayError::Protocol {
                status: StatusCode::NOT_IMPLEMENTED,
                code: "UnsupportedTransferEncoding",
                message: "only the chunked transfer coding is accepted".into(),
            });
        }
    }
    Ok(())
}

fn refuse_method_overrides(headers: &HeaderMap) -> Result<(), GatewayError> {
    match crate::azure::METHOD_OVERRIDES
        .iter()
        .find(|h| headers.contains_key(**h))
    {
        Some(h) => Err(GatewayError::BadRequest {
            code: "MethodOverrideNotAllowed",
            message: format!(
                "the {h} header is not accepted: the method sent is the method evaluated"
            ),
        }),
        None => Ok(()),
    }
}

// === classify ===

fn classify(ex: &Exchange, method: &Method) -> Result<Operation, GatewayError> {
    let named = match &ex.routed.service {
        Service::Arm => operation::name_arm(method, &ex.routed.path, &ex.query),
        Service::KeyVault { vault } => {
            operation::name_keyvault(method, vault, &ex.routed.path, &ex.query)
        }
    };
    named.map_err(|e| GatewayError::BadRequest {
        code: "UnrecognizedOperation",
        message: format!(
            "the request cannot be named as an Azure operation, so it is refused: {e}"
        ),
    })
}

// === decide ===

#[allow(clippy::too_many_arguments)]
fn decide(
    gw: &Gateway,
    policy: &Policy,
    ex: &Exchange,
    method: &Method,
    principal: &Principal,
    operation: &Operation,
    raw_path: &str,
    facts: &Facts,
) -> Result<Decision, GatewayError> {
    let mut decision = policy.decide_with(principal, operation, facts);
    // A poll or page URL the gateway itself handed this principal, read with GET before it
    // expires, continues what policy already allowed; an explicit deny rule still wins. A
    // page is only ever bound on its list's own path, so it is the list's own operation and
    // scope (azure/rewrite.rs).
    if decision.effect == Effect::Deny
        && decision.rule.is_none()
        && let Some(b) = &ex.binding
        && let Some(kind) = gw.binder.verify(
            principal,
            method,
            raw_path,
            &ex.query,
            b,
            crate::azure::rewrite::now(),
        )
    {
        decision = Decision::allow(format!(
            "continuation ({}) of an operation this principal was allowed to start: {}",
            kind.name(),
            operation.action
        ));
    }
    match decision.effect {
        // Held for approval after this (`hold`).
        Effect::Allow | Effect::Approve => Ok(decision),
        Effect::Deny => Err(GatewayError::Forbidden {
            principal: Box::new(principal.clone()),
            operation: Box::new(operation.clone()),
            decision: Box::new(decision),
        }),
    }
}

fn stream(body: Incoming) -> Body {
    body.map_err(|e| Box::new(e) as BoxError).boxed()
}

/// Reads up to `cap` bytes of a body for conditions. The body forwarded afterwards is the
/// same bytes (what was read, then the rest of the stream): reading never changes it.
async fn read_for_conditions(
    mut body: Incoming,
    cap: usize,
    hard_cap: usize,
) -> Result<(Body, condition::Body, Option<Bytes>), GatewayError> {
    use http_body_util::BodyExt as _;
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| GatewayError::BadRequest {
            code: "InvalidRequestBody",
            message: format!("reading the request body: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            // A body without a declared length, past the service's cap: refused before
            // anything is recorded as forwarded.
            if read.len() > hard_cap {
                return Err(GatewayError::TooLarge { limit: hard_cap });
            }
            if read.len() > cap {
                let prefix = read.freeze();
                return Ok((
                    Prefixed {
                        prefix: Some(prefix),
                        rest: body,
                    }
                    .boxed(),
                    condition::Body::TooLarge,
                    None,
                ));
            }
        }
    }
    let bytes = read.freeze();
    let seen = if bytes.iter().all(u8::is_ascii_whitespace) {
        condition::Body::Absent
    } else {
        match crate::json::parse(&bytes) {
            Ok(v) => condition::Body::Json(v),
            // Judged one way here and perhaps another by Azure: refused.
            Err(crate::json::StrictError::Duplicate) => {
                return Err(GatewayError::BadRequest {
                    code: "InvalidRequestContent",
                    message: "the JSON body writes a key twice in one object (perhaps in different case); Azure and the gateway could read it differently".into(),
                });
            }
            Err(crate::json::StrictError::NotJson(_)) => condition::Body::NotJson,
        }
    };
    Ok((full(bytes.clone()), seen, Some(bytes)))
}

/// A body whose first bytes were already read: those, then the rest of the stream.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(p))));
        }
        std::pin::Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(|e| Box::new(e) as BoxError)))
    }
}

// === hold ===

/// Headers whose value changes what a request does: part of the digest an approval is
/// bound to.
const DIGESTED_HEADERS: &[&str] = &["content-type", "if-match", "if-none-match"];

/// The approval a held request asks for (if there is none for it yet).
#[allow(clippy::too_many_arguments)]
fn held_request(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    operation: &Operation,
    decision: &Decision,
    method: &Method,
    headers: &HeaderMap,
    // The same headers as the audit store keeps them (credentials redacted).
    shown: &[(String, String)],
    bytes: &Bytes,
    seen: &condition::Body,
) -> Result<crate::approval::service::Request, GatewayError> {
    use hmac::Mac;
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
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let reason = text("x-portcullis-reason")
        .map(|r| audit_text(gw, &r.chars().take(1000).collect::<String>()));
    let named = text("x-portcullis-approval").map(str::to_owned);
    let wait = text("x-portcullis-wait")
        .and_then(|w| w.parse::<u64>().ok())
        .map_or(gw.approvals.config.hold, |s| {
            std::time::Duration::from_secs(s).min(gw.approvals.config.hold)
        });
    let spec = decision.approval.as_ref();
    let timeout = spec.map_or(std::time::Duration::from_secs(600), |s| s.timeout);
    let (body, highlights) = shown_body(gw, operation, seen, bytes)?;
    let created = chrono::Utc::now();
    let draft = crate::approval::Approval {
        id: uuid::Uuid::new_v4().to_string(),
        status: crate::approval::Status::Pending,
        principal: principal.object_id.clone(),
        principal_app: principal.app_id.clone(),
        principal_name: principal.display_name.clone(),
        action: operation.action.clone(),
        scope: crate::policy::scope_display(operation),
        rule: decision.rule.clone(),
        rule_reason: decision.reason.clone(),
        request: crate::approval::HeldRequest {
            method: method.to_string(),
            path: ex.routed.path.clone(),
            query: audit_text(gw, &ex.query),
            headers: shown
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
        quorum: spec.map_or(1, |s| s.quorum),
        credential: decision.credential.clone(),
        grant_window_secs: spec.and_then(|s| s.grant_window).map(|w| w.as_secs()),
        session: ex.session.clone(),
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

// === approval operations ===
//
// A pending approval presented as ARM presents a long-running operation (approval/lro.rs):
// the first answer (`accepted`), then polls of the gateway's own status and result URLs
// (`approval_poll`), which forward the held request once it is approved and then follow
// Azure's own operation. Async operation reference:
// <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/async-api-reference.md>

/// The action polls of the gateway's own status URLs are recorded under.
const POLL_ACTION: &str = "Portcullis/approvals/operations/read";

/// A held request the hold did not release, to be answered as a long-running operation.
struct Pending<'a> {
    approval: &'a crate::approval::Approval,
    operation: &'a Operation,
    /// 201 or 202.
    status: u16,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    unmask: &'a [String],
    /// The request's headers as the audit store keeps them.
    shown_headers: &'a [(String, String)],
    started: Instant,
}

/// The gateway's status (`status`) or result (`result`) URL of an approval, bound to its
/// requester.
fn approval_url(gw: &Gateway, base: &str, tenant: &str, oid: &str, id: &str, kind: &str) -> String {
    let path = format!("{}{id}/{kind}", crate::approval::lro::PATH_PREFIX);
    let binding = gw.binder.sign_for(tenant, oid, &path, "");
    format!(
        "{}{path}?{}={binding}",
        base.trim_end_matches('/'),
        crate::azure::rewrite::BINDING_PARAM
    )
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

/// Keeps the held request (sealed) for the forward after approval and answers as ARM
/// answers a long-running operation: 201/202 with `Azure-AsyncOperation`, `Location` and
/// `Retry-After`.
async fn accepted(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    method: &Method,
    p: Pending<'_>,
) -> Result<Response<Body>, GatewayError> {
    let a = p.approval;
    let stored = crate::approval::lro::StoredRequest {
        method: method.to_string(),
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
        correlation_id: ex.correlation_id.clone(),
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
        .map_err(|e| GatewayError::AuditUnavailable(e.to_string()))?;
    let base = &ex.routed.gateway_base;
    let (tenant, oid) = (&principal.tenant_id, &principal.object_id);
    let status_url = approval_url(gw, base, tenant, oid, &a.id, "status");
    let result_url = approval_url(gw, base, tenant, oid, &a.id, "result");
    let mut record = audit_record(ex, method, Phase::Refused);
    record.principal = Some(principal.object_id.clone());
    record.action = Some(p.operation.action.clone());
    record.scope = Some(crate::policy::scope_display(p.operation));
    record.decision = Some("approve".into());
    record.rule = a.rule.clone();
    record.approval = Some(a.id.clone());
    record.headers = p.shown_headers.to_vec();
    record.status = Some(p.status);
    record.reason = Some(format!(
        "held for approval {}; not decided within the hold, so answered {} as a long-running operation: the agent polls the gateway, nothing was sent to Azure",
        a.id, p.status
    ));
    record.latency_ms = Some(p.started.elapsed().as_millis() as u64);
    commit(gw, record).await?;
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
    if let Ok(v) = HeaderValue::from_str(&a.id) {
        h.insert("x-portcullis-approval", v);
    }
    let id = HeaderValue::from_str(&ex.request_id).expect("a uuid");
    h.insert("x-ms-request-id", id.clone());
    h.insert("x-portcullis-request-id", id);
    h.insert(
        "x-ms-correlation-request-id",
        HeaderValue::from_str(&ex.correlation_id).expect("checked printable ASCII"),
    );
    Ok(r)
}

/// An approval answered 202 earlier but used now by a retry of the request itself: the
/// operation's polls say so (it forwarded nothing), and its held request goes.
async fn used_by_retry(gw: &Gateway, approval: &str) {
    let handover = crate::approval::lro::Handover::error(
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
    let handover = crate::approval::lro::Handover::error(
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

/// Which of an approval's URLs was polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollKind {
    /// `Azure-AsyncOperation`: `{"status": ...}`.
    Status,
    /// `Location`: 202 until done, then the result.
    Result,
}

fn not_found() -> GatewayError {
    GatewayError::Operation {
        status: StatusCode::NOT_FOUND,
        code: "OperationNotFound",
        message: "there is no such operation (the URL is unknown, altered or not the gateway's)"
            .into(),
    }
}

/// A poll of an approval's status or result URL. Only the requester may poll (the URL is
/// bound to them): another principal is refused (403); an unknown or altered URL does not
/// exist (404).
async fn approval_poll(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    method: &Method,
    raw_path: &str,
) -> Result<Response<Body>, GatewayError> {
    let rest = &ex.routed.path[crate::approval::lro::PATH_PREFIX.len()..];
    let (id, kind) = match rest.split_once('/') {
        Some((id, "status")) => (id, PollKind::Status),
        Some((id, "result")) => (id, PollKind::Result),
        _ => return Err(not_found()),
    };
    let store_err =
        |e: crate::audit::store::StoreError| GatewayError::AuditUnavailable(e.to_string());
    let Some(row) = gw.approvals.store.operation(id).await.map_err(store_err)? else {
        return Err(not_found());
    };
    // The binding covers the path (the approval and which URL); the gateway reads nothing
    // from the query, so a client that appends one (an `api-version`) still polls.
    let bound = ex.binding.as_deref().is_some_and(|b| {
        gw.binder
            .verify_for(&row.tenant, &row.principal, raw_path, "", b)
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
    if *method != Method::GET {
        return Err(GatewayError::Operation {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "MethodNotAllowed",
            message: "an operation's status is read with GET".into(),
        });
    }
    let Some(a) = gw.approvals.store.approval(id).await.map_err(store_err)? else {
        return Err(not_found());
    };
    let sealer = &gw.approvals.config.sealer;
    if let Some(sealed) = &row.handover {
        let h: crate::approval::lro::Handover = sealer
            .open(id, sealed)
            .map_err(|e| GatewayError::AuditUnavailable(format!("approval {id}: {e}")))?;
        return follow(gw, ex, principal, &a, &h, kind).await;
    }
    use crate::approval::Status;
    let now = crate::audit_time();
    let overdue = matches!(a.status, Status::Pending | Status::Approved) && a.expires <= now;
    match a.status {
        _ if overdue => Ok(failed_answer(
            gw,
            ex,
            &a,
            kind,
            "ApprovalExpired",
            crate::approval::service::expired_message(&a),
        )),
        Status::Pending => Ok(in_progress(gw, ex, &a, kind)),
        Status::Approved => match gw.approvals.redeem(&a).await.map_err(store_err)? {
            Some(hold) => match forward_approved(gw, ex, principal, &a, &hold).await {
                Ok(h) => follow(gw, ex, principal, &a, &h, kind).await,
                Err(e) => {
                    // Used, and nothing sent (the record or the stored request failed):
                    // the operation failed, and says why at once.
                    failed_before_forward(gw, &a.id, &e).await;
                    Err(e)
                }
            },
            // Another replica (or a retry of the request) used it: its handover follows.
            None => Ok(in_progress(gw, ex, &a, kind)),
        },
        Status::Denied => Ok(failed_answer(
            gw,
            ex,
            &a,
            kind,
            "ApprovalDenied",
            crate::approval::service::denied_message(&a),
        )),
        Status::Expired => Ok(failed_answer(
            gw,
            ex,
            &a,
            kind,
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
                Ok(failed_answer(
                    gw,
                    ex,
                    &a,
                    kind,
                    "ApprovalForwardLost",
                    format!(
                        "approval {} was used, but the gateway that forwarded the request stopped before it recorded Azure's answer; the request may have reached Azure once. Check the resource; it is never sent again.",
                        a.id
                    ),
                ))
            } else {
                Ok(in_progress(gw, ex, &a, kind))
            }
        }
    }
}

/// Common headers of the gateway's own answers to polls.
fn poll_headers(ex: &Exchange, a: &crate::approval::Approval, h: &mut HeaderMap) {
    let id = HeaderValue::from_str(&ex.request_id).expect("a uuid");
    h.insert("x-ms-request-id", id.clone());
    h.insert("x-portcullis-request-id", id);
    h.insert(
        "x-ms-correlation-request-id",
        HeaderValue::from_str(&ex.correlation_id).expect("checked printable ASCII"),
    );
    if let Ok(v) = HeaderValue::from_str(&a.id) {
        h.insert("x-portcullis-approval", v);
    }
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

/// An approval's operation in ARM's async-operation shape.
fn operation_body(ex: &Exchange, a: &crate::approval::Approval, status: &str) -> serde_json::Value {
    serde_json::json!({
        "id": ex.routed.path,
        "name": a.id,
        "status": status,
        "startTime": a.created,
    })
}

/// Still waiting (for approvers, or for the replica forwarding it).
fn in_progress(
    gw: &Gateway,
    ex: &Exchange,
    a: &crate::approval::Approval,
    kind: PollKind,
) -> Response<Body> {
    let mut r = match kind {
        PollKind::Status => {
            let left = (a.quorum as usize).saturating_sub(a.approvals());
            let message = if a.status == crate::approval::Status::Pending {
                format!(
                    "Waiting for approval {}: {left} more approval(s) needed from {}; it expires at {}. Nothing has been sent to Azure yet.",
                    a.id,
                    a.approvers.join(", "),
                    a.expires
                )
            } else {
                format!(
                    "Approval {} was given; the request is being forwarded to Azure.",
                    a.id
                )
            };
            let mut body = operation_body(ex, a, "InProgress");
            body["properties"] = serde_json::json!({
                "approvalId": a.id,
                "approvalStatus": a.status,
                "message": message,
                "expiresOn": a.expires,
                "approvers": a.approvers,
                "quorum": a.quorum,
                "approvals": a.approvals(),
            });
            json_answer(StatusCode::OK, &body)
        }
        PollKind::Result => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::ACCEPTED;
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            in_progress_location(ex, &mut r);
            r
        }
    };
    r.headers_mut().insert(header::RETRY_AFTER, retry_after(gw));
    poll_headers(ex, a, r.headers_mut());
    r
}

/// The polled URL's query as the agent sent it (the binding included).
fn own_query(ex: &Exchange) -> String {
    let binding = format!(
        "{}={}",
        crate::azure::rewrite::BINDING_PARAM,
        ex.binding.as_deref().unwrap_or_default()
    );
    if ex.query.is_empty() {
        binding
    } else {
        format!("{}&{binding}", ex.query)
    }
}

/// The operation failed without reaching Azure (denied, expired, used elsewhere): the
/// status URL says `Failed` with our code, so the SDK raises its normal error; the result
/// URL refuses as a held request would.
fn failed_answer(
    gw: &Gateway,
    ex: &Exchange,
    a: &crate::approval::Approval,
    kind: PollKind,
    code: &'static str,
    message: String,
) -> Response<Body> {
    match kind {
        PollKind::Status => {
            let mut body = operation_body(ex, a, "Failed");
            body["error"] =
                serde_json::json!({"code": code, "message": format!("Portcullis: {message}")});
            body["properties"] =
                serde_json::json!({"approvalId": a.id, "approvalStatus": a.status});
            let mut r = json_answer(StatusCode::OK, &body);
            poll_headers(ex, a, r.headers_mut());
            r
        }
        PollKind::Result => {
            let e = crate::approval::service::refusal(code, message, a.clone(), None);
            e.render(&ErrorContext {
                service: &ex.routed.service,
                request_id: &ex.request_id,
                correlation_id: &ex.correlation_id,
                authority: &gw.challenge_authority,
                audience: &gw.audience,
            })
        }
    }
}

/// Forwards the approved request, exactly the bytes approved and once (the caller redeemed
/// the approval), with the rule's credential; records it like any approved forward; and
/// stores how polls continue.
async fn forward_approved(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    a: &crate::approval::Approval,
    hold: &crate::approval::Hold,
) -> Result<crate::approval::lro::Handover, GatewayError> {
    let store_err =
        |e: crate::audit::store::StoreError| GatewayError::AuditUnavailable(e.to_string());
    let sealer = &gw.approvals.config.sealer;
    let sealed = gw
        .approvals
        .store
        .take_request(&a.id, &crate::audit_time())
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            GatewayError::AuditUnavailable(format!(
                "approval {}: the held request is no longer stored",
                a.id
            ))
        })?;
    let stored: crate::approval::lro::StoredRequest = sealer
        .open(&a.id, &sealed)
        .map_err(|e| GatewayError::AuditUnavailable(format!("approval {}: {e}", a.id)))?;
    let started = Instant::now();
    let method = Method::from_bytes(stored.method.as_bytes()).map_err(|_| {
        GatewayError::AuditUnavailable(format!(
            "approval {}: a stored method is not a method",
            a.id
        ))
    })?;
    let fex = Exchange {
        request_id: ex.request_id.clone(),
        session: a.session.clone(),
        correlation_id: stored.correlation_id.clone(),
        routed: Routed {
            service: Service::Arm,
            path: stored.path.clone(),
            upstream_path: stored.upstream_path.clone(),
            gateway_base: ex.routed.gateway_base.clone(),
        },
        query: stored.query.clone(),
        binding: None,
    };
    let operation = classify(&fex, &method)?;
    let plan = gw.masker.plan(&operation, &stored.unmask);
    // Record before forwarding: nothing reaches Azure unrecorded.
    let mut record = audit_record(&fex, &method, Phase::Request);
    record.principal = Some(principal.object_id.clone());
    record.action = Some(operation.action.clone());
    record.scope = Some(crate::policy::scope_display(&operation));
    record.decision = Some("approve".into());
    record.rule = a.rule.clone();
    record.reason = Some(format!(
        "{}; {}; forwarded when its operation was polled",
        a.rule_reason, hold.how
    ));
    record.approval = Some(a.id.clone());
    record.unmasked = stored.unmask.clone();
    record.headers = a.request.headers.clone();
    record.body = a.request.body.clone();
    commit(gw, record.clone()).await?;
    let mut out = Request::builder()
        .method(method.clone())
        .uri(stored.upstream_path.clone());
    for (k, v) in &stored.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(&header_bytes(v)),
        ) {
            out = out.header(k, v);
        }
    }
    let (parts, ()) = out
        .body(())
        .map_err(|e| GatewayError::AuditUnavailable(format!("approval {}: {e}", a.id)))?
        .into_parts();
    let resource = if !matches!(method, Method::PUT | Method::PATCH) {
        None
    } else if stored.query.is_empty() {
        Some(stored.upstream_path.clone())
    } else {
        Some(format!("{}?{}", stored.upstream_path, stored.query))
    };
    let sent = forward(
        gw,
        &fex,
        parts,
        full(Bytes::from(stored.body)),
        principal,
        hold.credential.as_deref(),
        &plan,
    )
    .await;
    let handover = match sent {
        Ok(response) => {
            let lro = response
                .extensions()
                .get::<UpstreamLro>()
                .cloned()
                .unwrap_or_default();
            record.phase = Phase::Response;
            record.status = Some(response.status().as_u16());
            record.headers = audit_headers(response.headers());
            record.upstream_ms = response
                .extensions()
                .get::<UpstreamLatency>()
                .map(|l| l.0.as_millis() as u64);
            (record.body, record.body_digest, record.body_bytes) = (None, None, None);
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let response = record_answer(
                gw,
                record,
                response,
                started,
                &operation,
                !stored.unmask.is_empty(),
            )
            .await?;
            // Read to the end: the record commits as the last bytes pass.
            let body = read_capped(response.into_body(), gw.max_answer_bytes).await;
            let is_final = lro.async_operation.is_none() && lro.location.is_none();
            crate::approval::lro::Handover {
                status,
                async_operation: lro.async_operation,
                location: lro.location,
                resource,
                content_type,
                body: if is_final { body.to_vec() } else { Vec::new() },
            }
        }
        Err(e) => {
            // Approved and used, but Azure never answered: the operation failed, and the
            // approval is spent (forwarding again could do it twice).
            record.phase = Phase::Refused;
            record.status = Some(e.status().as_u16());
            record.reason = Some(e.message(&fex.routed.service));
            record.latency_ms = Some(started.elapsed().as_millis() as u64);
            (record.body, record.body_digest, record.body_bytes) = (None, None, None);
            if let Err(err) = gw.recorder.record(record).await {
                tracing::error!(error = %err, "a failed forward could not be recorded");
            }
            crate::approval::lro::Handover::error(
                e.status().as_u16(),
                e.code(&fex.routed.service),
                &e.message(&fex.routed.service),
            )
        }
    };
    gw.approvals
        .store
        .set_handover(&a.id, &sealer.seal(&a.id, &handover))
        .await
        .map_err(store_err)?;
    Ok(handover)
}

/// Sends a GET of Azure's own status or result URL (`path_query` below the upstream base)
/// with the approval's credential; masked and recorded like any poll.
async fn poll_upstream(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    a: &crate::approval::Approval,
    path_query: &str,
) -> Result<Response<Body>, GatewayError> {
    let started = Instant::now();
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let pex = Exchange {
        request_id: ex.request_id.clone(),
        session: a.session.clone(),
        correlation_id: ex.correlation_id.clone(),
        routed: Routed {
            service: Service::Arm,
            path: path.to_owned(),
            upstream_path: path.to_owned(),
            gateway_base: ex.routed.gateway_base.clone(),
        },
        query: query.to_owned(),
        binding: None,
    };
    let operation = classify(&pex, &Method::GET)?;
    let plan = gw.masker.plan(&operation, &[]);
    let mut record = audit_record(&pex, &Method::GET, Phase::Request);
    record.principal = Some(principal.object_id.clone());
    record.action = Some(operation.action.clone());
    record.scope = Some(crate::policy::scope_display(&operation));
    record.decision = Some("approve".into());
    record.rule = a.rule.clone();
    record.approval = Some(a.id.clone());
    record.reason = Some(format!(
        "poll of the operation approval {} started, through the gateway's status URL",
        a.id
    ));
    commit(gw, record.clone()).await?;
    let (parts, ()) = Request::get(path_query.to_owned())
        .body(())
        .expect("a path is a URI")
        .into_parts();
    let response = forward(
        gw,
        &pex,
        parts,
        full(Bytes::new()),
        principal,
        a.credential.as_deref(),
        &plan,
    )
    .await?;
    record.phase = Phase::Response;
    record.status = Some(response.status().as_u16());
    record.headers = audit_headers(response.headers());
    let mut response = record_answer(gw, record, response, started, &operation, false).await?;
    // Azure's own poll URLs stay behind the gateway's.
    for h in LRO_HEADERS {
        response.headers_mut().remove(*h);
    }
    Ok(response)
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

/// Azure's error in an answer body, or a generic one.
fn upstream_error(status: u16, body: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .filter(|e| e.get("code").is_some())
        .unwrap_or_else(|| {
            serde_json::json!({"code": "OperationFailed", "message": format!("Azure answered {status}")})
        })
}

/// Polls after the forward: the real operation's status and result, through the gateway.
async fn follow(
    gw: &Gateway,
    ex: &Exchange,
    principal: &Principal,
    a: &crate::approval::Approval,
    h: &crate::approval::lro::Handover,
    kind: PollKind,
) -> Result<Response<Body>, GatewayError> {
    let succeeded = |code: u16| (200..300).contains(&code);
    let mut r = match (kind, &h.async_operation, &h.location) {
        // Azure answered at once.
        (PollKind::Status, None, None) => {
            let mut body = operation_body(
                ex,
                a,
                if succeeded(h.status) {
                    "Succeeded"
                } else {
                    "Failed"
                },
            );
            if !succeeded(h.status) {
                body["error"] = upstream_error(h.status, &h.body);
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
        (PollKind::Status, Some(op), _) => poll_upstream(gw, ex, principal, a, op).await?,
        // Only a result URL (storage create): 202 while in progress.
        (PollKind::Status, None, Some(loc)) => {
            let (parts, body) = read_all(
                poll_upstream(gw, ex, principal, a, loc).await?,
                gw.max_answer_bytes,
            )
            .await;
            let code = parts.status.as_u16();
            let mut out = if code == 202 {
                operation_body(ex, a, "InProgress")
            } else if succeeded(code) {
                operation_body(ex, a, "Succeeded")
            } else {
                let mut b = operation_body(ex, a, "Failed");
                b["error"] = upstream_error(code, &body);
                b
            };
            out["properties"] = serde_json::json!({"approvalId": a.id, "approvalStatus": a.status});
            let mut r = json_answer(StatusCode::OK, &out);
            if let Some(v) = parts.headers.get(header::RETRY_AFTER) {
                r.headers_mut().insert(header::RETRY_AFTER, v.clone());
            }
            r
        }
        (PollKind::Result, _, Some(loc)) => {
            let mut r = poll_upstream(gw, ex, principal, a, loc).await?;
            if r.status() == StatusCode::ACCEPTED {
                in_progress_location(ex, &mut r);
            }
            r
        }
        // A status URL only: the result is the resource (PUT, PATCH), or nothing more.
        (PollKind::Result, Some(op), None) => {
            let (parts, body) = read_all(
                poll_upstream(gw, ex, principal, a, op).await?,
                gw.max_answer_bytes,
            )
            .await;
            let status = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
                .unwrap_or_default();
            match status.as_str() {
                "Succeeded" => match &h.resource {
                    Some(resource) => poll_upstream(gw, ex, principal, a, resource).await?,
                    None => {
                        let mut r = Response::new(full(Bytes::new()));
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    }
                },
                "Failed" | "Canceled" => {
                    let e = upstream_error(parts.status.as_u16(), &body);
                    let mut r = json_answer(StatusCode::CONFLICT, &serde_json::json!({"error": e}));
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
                    in_progress_location(ex, &mut r);
                    r.headers_mut().insert(header::RETRY_AFTER, retry_after(gw));
                    r
                }
            }
        }
    };
    if !r.headers().contains_key(header::RETRY_AFTER) {
        r.headers_mut().insert(header::RETRY_AFTER, retry_after(gw));
    }
    poll_headers(ex, a, r.headers_mut());
    Ok(r)
}

/// A 202 from a result URL points at itself (the gateway's, not Azure's).
fn in_progress_location(ex: &Exchange, r: &mut Response<Body>) {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}{}?{}",
        ex.routed.gateway_base,
        ex.routed.upstream_path,
        own_query(ex)
    )) {
        r.headers_mut().insert(header::LOCATION, v);
    }
}

// === forward ===

fn upstream_base<'g>(gw: &'g Gateway, service: &Service) -> (String, &'g str) {
    match service {
        Service::Arm => (
            gw.upstream.arm_url.clone(),
            gw.upstream.arm_resource.as_str(),
        ),
        Service::KeyVault { vault } => (
            gw.upstream.vault_url(vault),
            gw.upstream.keyvault_resource.as_str(),
        ),
    }
}

async fn forward(
    gw: &Gateway,
    ex: &Exchange,
    parts: http::request::Parts,
    body: Body,
    principal: &Principal,
    credential: Option<&str>,
    plan: &Plan,
) -> Result<Response<Body>, GatewayError> {
    let (base, resource) = upstream_base(gw, &ex.routed.service);
    // The deciding rule may name a credential (e.g. `elevated`); else the default one.
    let credential = credential.unwrap_or(&gw.upstream.default_credential);
    let token = gw
        .tokens
        .token(credential, resource)
        .await
        .map_err(|e| GatewayError::UpstreamCredential(e.to_string()))?;
    let sep = if ex.query.is_empty() { "" } else { "?" };
    let url = format!("{base}{}{sep}{}", ex.routed.upstream_path, ex.query);
    let mut out = Request::builder().method(parts.method.clone()).uri(&url);
    let headers = out.headers_mut().expect("a fresh builder has headers");
    for (k, v) in &parts.headers {
        if !STRIPPED_REQUEST_HEADERS.contains(&k.as_str())
            && !k.as_str().starts_with("x-portcullis-")
        {
            headers.append(k.clone(), v.clone());
        }
    }
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        GatewayError::UpstreamCredential("the upstream token is not header text".into())
    })?;
    headers.insert(header::AUTHORIZATION, bearer);
    // Answers must be readable to be masked: ask for them unencoded.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.insert(
        "x-ms-correlation-request-id",
        HeaderValue::from_str(&ex.correlation_id).expect("checked printable ASCII"),
    );
    let upstream_req = out.body(body).map_err(|e| GatewayError::Upstream {
        timeout: false,
        message: e.to_string(),
    })?;
    let sent = Instant::now();
    let resp = gw.http.send(upstream_req).await.map_err(|e| match e {
        ClientError::Timeout { .. } => GatewayError::Upstream {
            timeout: true,
            message: e.to_string(),
        },
        other => GatewayError::Upstream {
            timeout: false,
            message: other.to_string(),
        },
    })?;
    if resp.status() == StatusCode::UNAUTHORIZED {
        // Azure refused the gateway's own token: never hand the agent Azure's challenge.
        return Err(GatewayError::UpstreamCredential(
            "Azure refused the gateway's token (401)".into(),
        ));
    }
    let upstream = UpstreamLatency(sent.elapsed());
    crate::metrics::METRICS
        .upstream_seconds
        .observe(upstream.0.as_secs_f64());
    let lro = UpstreamLro::of(&resp, &base);
    let mut response = rewrite(gw, ex, &parts.method, resp, principal, &base, plan).await?;
    response.extensions_mut().insert(upstream);
    response.extensions_mut().insert(lro);
    Ok(response)
}

// === rewrite ===

async fn rewrite(
    gw: &Gateway,
    ex: &Exchange,
    method: &Method,
    resp: Response<Incoming>,
    principal: &Principal,
    base: &str,
    plan: &Plan,
) -> Result<Response<Body>, GatewayError> {
    let upstream = url::Url::parse(base).map_err(|e| GatewayError::Upstream {
        timeout: false,
        message: format!("upstream base {base}: {e}"),
    })?;
    let (mut parts, body) = resp.into_parts();
    for h in STRIPPED_RESPONSE_HEADERS {
        parts.headers.remove(*h);
    }
    let now = crate::azure::rewrite::now();
    for h in LRO_HEADERS {
        // `Location` is an operation's result only on 201 and 202; elsewhere it is not
        // Azure's async protocol and is not signed.
        let polled = *h != "location" || matches!(parts.status.as_u16(), 201 | 202);
        if polled
            && parts.status.is_success()
            && let Some(v) = parts.headers.get(*h).and_then(|v| v.to_str().ok())
            && let Some(new) = gw.binder.rewrite(
                v,
                &upstream,
                &ex.routed.gateway_base,
                principal,
                Continuation::Poll,
                &ex.routed.path,
                now,
            )
        {
            parts.headers.insert(
                HeaderName::from_static(h),
                HeaderValue::from_str(&new).expect("a rewritten URL is header text"),
            );
        }
    }
    parts.headers.insert(
        "x-portcullis-request-id",
        HeaderValue::from_str(&ex.request_id).expect("a uuid"),
    );
    // A HEAD answer has no body, whatever its headers say (RFC 9110 §9.3.2): nothing to
    // mask or page. Its Content-Length is the unmasked GET answer's, which the agent never
    // gets and which hints at a secret's length: it does not leave.
    if *method == Method::HEAD {
        parts.headers.remove(header::CONTENT_LENGTH);
        if !plan.is_empty() {
            weaken_etag(&mut parts.headers);
        }
        return Ok(Response::from_parts(parts, full(Bytes::new())));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let is_json = content_type.contains("json");
    let is_text = content_type.starts_with("text/");
    let encoding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let may_page = *method == Method::GET && is_json && parts.status.is_success();
    // Masking reads JSON and text answers whole; what the catalog names must be read even
    // when it does not say it is JSON. Binary answers stream through.
    let inspect = !plan.is_empty() && (is_json || is_text || plan.has_profiles());
    if !may_page && !inspect {
        return Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed(),
        ));
    }
    // The fast path: JSON no catalog profile names streams, only its strings looked at
    // (detectors, nextLinks); nothing is held but the string being read.
    // The answer's own next page, bound as the continuation of this list.
    let page_link = || -> crate::mask::stream::LinkRewrite {
        let (binder, upstream, base, principal, list) = (
            gw.binder.clone(),
            upstream.clone(),
            ex.routed.gateway_base.clone(),
            principal.clone(),
            ex.routed.path.clone(),
        );
        Box::new(move |u: &str| {
            binder.rewrite(
                u,
                &upstream,
                &base,
                &principal,
                Continuation::Page,
                &list,
                now,
            )
        })
    };
    if is_json && encoding.is_none() && !plan.has_profiles() {
        let link = may_page.then(page_link);
        let masker = crate::mask::stream::StreamMasker::new(gw.masker.clone(), plan, link);
        parts.headers.remove(header::CONTENT_LENGTH);
        weaken_etag(&mut parts.headers);
        let body = crate::mask::stream::MaskedBody {
            inner: body,
            masker,
            finished: false,
        };
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    let bytes: Bytes = match Limited::new(body, gw.max_answer_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if inspect => {
            return Err(GatewayError::Unmaskable(format!(
                "the answer is larger than the {}-byte masking limit or could not be read ({e})",
                gw.max_answer_bytes
            )));
        }
        Err(e) => {
            return Err(GatewayError::Upstream {
                timeout: false,
                message: format!("reading Azure's answer: {e}"),
            });
        }
    };
    // An encoded answer is decoded (bounded) to be read; it then goes out unencoded, and its
    // strong ETag, which named the encoded bytes, becomes weak.
    let bytes = match &encoding {
        Some(coding) => match crate::mask::encoding::decode(coding, &bytes, gw.max_answer_bytes) {
            Ok(decoded) => {
                parts.headers.remove(header::CONTENT_ENCODING);
                weaken_etag(&mut parts.headers);
                Bytes::from(decoded)
            }
            Err(e) if inspect => return Err(GatewayError::Unmaskable(e.to_string())),
            // Nothing to mask: an answer we cannot decode passes as it came.
            Err(_) => bytes,
        },
        None => bytes,
    };
    // Mask before anything else reads the body: nothing after this point sees a secret.
    let masked = if !inspect {
        Masked::Unchanged
    } else if is_json || plan.has_profiles() {
        gw.masker
            .mask_json(plan, &bytes)
            .map_err(|e| GatewayError::Unmaskable(e.to_string()))?
    } else {
        gw.masker.mask_text(plan, &bytes)
    };
    let bytes = match masked {
        Masked::Unchanged => bytes,
        Masked::Changed { body, count, kinds } => {
            weaken_etag(&mut parts.headers);
            tracing::info!(masked = count, kinds = ?kinds, "masked secrets in the answer");
            crate::metrics::METRICS.masked(count, kinds.iter().map(String::as_str));
            Bytes::from(body)
        }
    };
    let bytes = if may_page {
        // The same reader as the streaming path: only the top-level nextLink changes, byte
        // for byte; an answer it cannot read keeps its bytes (there is no link to follow).
        let mut links =
            crate::mask::stream::StreamMasker::links_only(gw.masker.clone(), page_link());
        let mut out = Vec::with_capacity(bytes.len() + 128);
        match links
            .feed(&bytes, &mut out)
            .and_then(|()| links.finish(&mut out))
        {
            Ok(()) => Bytes::from(out),
            Err(_) => bytes,
        }
    } else {
        bytes
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(Response::from_parts(parts, full(bytes)))
}

/// A strong ETag names exact bytes; once the gateway changed them, only a weak one is true.
fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(tag) = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.starts_with("W/"))
        .map(|t| format!("W/{t}"))
        && let Ok(v) = HeaderValue::from_str(&tag)
    {
        headers.insert(header::ETAG, v);
    }
}

/// Reads a deployment PUT's body; one the gateway cannot read whole is refused.
fn read_deployment(
    ex: &Exchange,
    policy: &Policy,
    seen: &condition::Body,
) -> Result<crate::azure::deployment::Deployment, GatewayError> {
    let bad = |message: String| GatewayError::BadRequest {
        code: "InvalidDeployment",
        message,
    };
    match seen {
        condition::Body::Json(doc) => {
            crate::azure::deployment::parse(&ex.routed.path, doc).map_err(|e| bad(e.to_string()))
        }
        condition::Body::TooLarge => Err(bad(format!(
            "a deployment is read whole to judge each resource in it, and this one is larger than {} bytes",
            policy.max_body_bytes
        ))),
        _ => Err(bad("the deployment body is not JSON".into())),
    }
}

/// The authorities an absolute URL inside a batch may name: Azure's and the configured
/// upstream's (the simulator in tests), each with its port.
fn arm_hosts(gw: &Gateway) -> Vec<String> {
    let mut hosts = vec!["management.azure.com".to_owned()];
    if let Ok(u) = url::Url::parse(&gw.upstream.arm_url)
        && let Some(h) = u.host_str()
        && let Some(port) = u.port_or_known_default()
    {
        hosts.push(format!("{h}:{port}").to_ascii_lowercase());
    }
    hosts
}

/// Reads a batch's inner requests; a batch the gateway cannot read completely is refused.
fn read_batch(
    gw: &Gateway,
    policy: &Policy,
    seen: &condition::Body,
) -> Result<Vec<crate::azure::batch::Inner>, GatewayError> {
    let bad = |message: String| GatewayError::BadRequest {
        code: "InvalidBatchRequest",
        message,
    };
    match seen {
        condition::Body::Json(doc) => {
            crate::azure::batch::parse(doc, &arm_hosts(gw)).map_err(|e| bad(e.to_string()))
        }
        condition::Body::TooLarge => Err(bad(format!(
            "a batch is read whole to judge each request in it, and this one is larger than {} bytes",
            policy.max_body_bytes
        ))),
        _ => Err(bad("the batch body is not JSON".into())),
    }
}

use crate::audit::record::{AuditRecord, Phase};

/// How long Azure took to send its answer's headers (a response extension).
#[derive(Debug, Clone, Copy)]
struct UpstreamLatency(std::time::Duration);

/// Azure's own status and result URLs in a long-running operation's first answer, as
/// paths below the upstream base (a response extension; the agent sees them rewritten).
#[derive(Debug, Clone, Default)]
struct UpstreamLro {
    async_operation: Option<String>,
    location: Option<String>,
}

impl UpstreamLro {
    fn of<B>(resp: &Response<B>, base: &str) -> UpstreamLro {
        let below = |name: &str| {
            let v = resp.headers().get(name)?.to_str().ok()?;
            below_base(v, base)
        };
        let async_operation = below("azure-asyncoperation");
        // A `Location` is an operation's result URL only on a 202 or beside a status URL
        // (a 201 may name the created resource).
        let location = (resp.status() == StatusCode::ACCEPTED || async_operation.is_some())
            .then(|| below("location"))
            .flatten();
        UpstreamLro {
            async_operation,
            location,
        }
    }
}

/// `url` as a path and query below the upstream `base`, or `None` when it points elsewhere
/// (then the gateway does not follow it).
fn below_base(url: &str, base: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let b = url::Url::parse(base).ok()?;
    if u.scheme() != b.scheme()
        || !u.host_str()?.eq_ignore_ascii_case(b.host_str()?)
        || u.port_or_known_default() != b.port_or_known_default()
    {
        return None;
    }
    let below = u.path().strip_prefix(b.path().trim_end_matches('/'))?;
    if !below.starts_with('/') {
        return None;
    }
    Some(match u.query() {
        Some(q) => format!("{below}?{q}"),
        None => below.to_owned(),
    })
}

fn audit_record(ex: &Exchange, method: &Method, phase: Phase) -> AuditRecord {
    let sep = if ex.query.is_empty() { "" } else { "?" };
    // The recorder masks what the agent wrote (the URL included) as it keeps the record.
    AuditRecord::new(
        ex.request_id.clone(),
        ex.session.clone(),
        phase,
        method.to_string(),
        format!("{}{sep}{}", ex.routed.upstream_path, ex.query),
    )
}

/// Text bound for the audit store, with anything secret-shaped (SAS signatures, keys,
/// tokens) replaced by a placeholder, whatever policy lets through to the agent.
fn audit_text(gw: &Gateway, text: &str) -> String {
    match gw.masker.mask_text(gw.masker.audit_plan(), text.as_bytes()) {
        Masked::Changed { body, .. } => String::from_utf8_lossy(&body).into_owned(),
        Masked::Unchanged => text.to_owned(),
    }
}

/// Headers as the audit store and approvals may hold them: credentials redacted. Their
/// secret-shaped values are masked where every record and held request is kept
/// (`audit::record::Keep`, applied by the recorder and by `Approvals::hold`).
fn audit_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let value = crate::audit::record::redact_header(k.as_str(), v.as_bytes());
            (k.as_str().to_owned(), value)
        })
        .collect()
}

/// Commits a record; when the store cannot, the request is refused, unless the operator
/// chose `audit.on_failure: fail_open`.
async fn commit(gw: &Gateway, record: AuditRecord) -> Result<(), GatewayError> {
    match gw.recorder.record(record).await {
        Ok(()) => Ok(()),
        Err(e) if gw.audit.fail_open => {
            tracing::error!(error = %e, "AUDIT RECORD LOST: forwarding anyway because audit.on_failure is fail_open");
            Ok(())
        }
        Err(e) => Err(GatewayError::AuditUnavailable(e)),
    }
}

/// Records the answer: its status, headers, masked body (capped) and digest. An empty
/// answer is recorded before it is sent; any other is recorded as it streams, committed
/// before its last bytes go out (`audit::tap`).
async fn record_answer(
    gw: &Gateway,
    record: AuditRecord,
    response: Response<Body>,
    started: Instant,
    operation: &Operation,
    // What the agent got may hold secrets policy let through (`unmask:`); the store never
    // does: such an answer is masked again in full, or kept only as a digest.
    remask: bool,
) -> Result<Response<Body>, GatewayError> {
    use http_body::Body as _;
    if response.body().is_end_stream() {
        let mut record = record;
        record.time = crate::audit_time();
        record.latency_ms = Some(started.elapsed().as_millis() as u64);
        record.body_bytes = Some(0);
        commit(gw, record).await?;
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

/// The request body as the audit store may hold it: masked, capped, with a digest and the
/// whole size.
/// A JSON request body with its secrets masked (the operation's known secret fields, then
/// every detector); `None` when there is no JSON body or it cannot be masked.
fn masked_request_bytes(gw: &Gateway, op: &Operation, seen: &condition::Body) -> Option<Vec<u8>> {
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

fn masked_request_body(
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

#[cfg(test)]
mod future_size {
    use super::*;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Arc<Gateway>, Request<Incoming>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every request in flight, held ones included, keeps this state machine alive (10,000
    /// held requests are 10,000 of them): it must not grow unnoticed.
    #[test]
    fn a_requests_state_machine_stays_small() {
        let size = future_size(handle);
        assert!(
            size < 24 * 1024,
            "pipeline::handle's future is {size} bytes"
        );
    }
}
