//! Every refusal and fault the gateway answers, rendered in exactly one place, in the
//! native shape of the service the client thinks it is talking to, so SDKs and the az CLI
//! show them as they show Azure's own (azure-notes §6):
//! - ARM: `{"error":{"code","message"}}` with `x-ms-error-code`;
//!   <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/common-api-details.md#error-response-content>
//! - Key Vault: `{"error":{"code","message","innererror":{"code"}}}`; its 401 carries the
//!   `WWW-Authenticate: Bearer authorization=..., resource=...` challenge.
//!
//! Messages name the principal, action and scope, never a token or a secret.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::azure::operation::Operation;
use crate::azure::route::Service;
use crate::identity::principal::Principal;
use crate::policy::{Decision, scope_display};
use crate::upstream::client::{Body, full};

#[derive(Debug)]
pub enum GatewayError {
    /// No token, or one that does not verify.
    Unauthenticated { message: String, missing: bool },
    /// The gateway could not check the token (keys or metadata unreachable): fail closed.
    AuthUnavailable(String),
    /// Policy said no.
    Forbidden {
        principal: Box<Principal>,
        operation: Box<Operation>,
        decision: Box<Decision>,
    },
    /// Policy holds this request for approval, and it may not pass (yet): pending, denied,
    /// expired or already used.
    Approval(Box<ApprovalRefusal>),
    /// The request cannot be evaluated as sent.
    BadRequest { code: &'static str, message: String },
    /// The request is larger than the gateway takes for this service.
    TooLarge { limit: usize },
    /// The request's framing or head is refused (too many headers, a transfer coding).
    Protocol {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// This principal sent more than its rate allows; retry after so many seconds.
    Throttled { retry_after: u64 },
    /// This principal already has `limit` approvals pending (`approvals.max_pending_per_principal`):
    /// no new one until approvers decide some, or they expire.
    TooManyPendingApprovals {
        pending: i64,
        limit: u32,
        retry_after: u64,
    },
    /// An answer that may carry secrets could not be checked (too large, not parseable,
    /// encoded): it does not reach the agent.
    Unmaskable(String),
    /// The audit record could not be committed: nothing is forwarded unrecorded.
    AuditUnavailable(String),
    /// The gateway could not obtain its own upstream token.
    UpstreamCredential(String),
    /// Azure could not be reached, or did not answer in time.
    Upstream { timeout: bool, message: String },
    /// An approval's status URL refused: unknown or altered (404), another principal's
    /// (403), or not a GET.
    Operation {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl GatewayError {
    /// A bundle (batch or deployment) that may not pass as a whole.
    pub fn from_bundle(refusal: crate::policy::bundle::Refusal, principal: &Principal) -> Self {
        match refusal {
            crate::policy::bundle::Refusal::Denied {
                operation,
                decision,
            } => GatewayError::Forbidden {
                principal: Box::new(principal.clone()),
                operation,
                decision,
            },
            crate::policy::bundle::Refusal::Invalid { code, message } => {
                GatewayError::BadRequest { code, message }
            }
        }
    }
}

/// Why a held request does not pass, with its approval.
#[derive(Debug)]
pub struct ApprovalRefusal {
    /// `ApprovalPending`, `ApprovalDenied`, `ApprovalExpired`, `ApprovalConsumed`, or
    /// `GatewayShuttingDown` (503: the approval stays pending for a retry elsewhere).
    pub code: &'static str,
    pub message: String,
    pub approval: crate::approval::Approval,
    /// Seconds, for pending approvals.
    pub retry_after: Option<u64>,
}

/// What the renderer needs to know about the request.
pub struct ErrorContext<'a> {
    pub service: &'a Service,
    pub request_id: &'a str,
    pub correlation_id: &'a str,
    /// `{authority}/{tenant}` for challenges.
    pub authority: &'a str,
    /// The audience agents must ask tokens for (the Key Vault challenge's resource).
    pub audience: &'a str,
}

/// Text fit for a quoted header parameter: printable ASCII, no quotes or backslashes.
fn quote(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => ' ',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::AuthUnavailable(_) | GatewayError::AuditUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Retryable: the approval outlives this replica.
            GatewayError::Approval(r) if r.code == "GatewayShuttingDown" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::Forbidden { .. } | GatewayError::Approval(_) => StatusCode::FORBIDDEN,
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Protocol { status, .. } | GatewayError::Operation { status, .. } => {
                *status
            }
            GatewayError::Throttled { .. } | GatewayError::TooManyPendingApprovals { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::UpstreamCredential(_) | GatewayError::Unmaskable(_) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::Upstream { timeout: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Upstream { timeout: false, .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The error code in the service's vocabulary.
    pub fn code(&self, service: &Service) -> &'static str {
        let kv = matches!(service, Service::KeyVault { .. });
        match self {
            GatewayError::Unauthenticated { .. } if kv => "Unauthorized",
            GatewayError::Unauthenticated { missing: true, .. } => "AuthenticationFailed",
            GatewayError::Unauthenticated { .. } => "InvalidAuthenticationToken",
            GatewayError::AuthUnavailable(_) => "AuthenticationUnavailable",
            GatewayError::AuditUnavailable(_) => "AuditUnavailable",
            GatewayError::Forbidden { .. } if kv => "Forbidden",
            GatewayError::Forbidden { .. } => "AuthorizationFailed",
            GatewayError::Approval(r) if kv && r.code != "GatewayShuttingDown" => "Forbidden",
            GatewayError::Approval(r) => r.code,
            GatewayError::BadRequest { code, .. } => code,
            GatewayError::TooLarge { .. } => "RequestEntityTooLarge",
            GatewayError::Protocol { code, .. } | GatewayError::Operation { code, .. } => code,
            GatewayError::Throttled { .. } if kv => "Throttled",
            GatewayError::Throttled { .. } => "TooManyRequests",
            // Key Vault's own 429 code; the reason is in `innererror`.
            GatewayError::TooManyPendingApprovals { .. } if kv => "Throttled",
            GatewayError::TooManyPendingApprovals { .. } => "TooManyPendingApprovals",
            GatewayError::UpstreamCredential(_) => "GatewayUpstreamCredentialFailed",
            GatewayError::Unmaskable(_) => "GatewayResponseNotMaskable",
            GatewayError::Upstream { timeout: true, .. } => "GatewayTimeout",
            GatewayError::Upstream { timeout: false, .. } => "BadGateway",
        }
    }

    pub fn message(&self, service: &Service) -> String {
        match self {
            GatewayError::Unauthenticated { message, .. } => {
                format!("Portcullis: {message}. Present an Entra ID token issued for the gateway.")
            }
            GatewayError::AuthUnavailable(m) => {
                format!("Portcullis could not verify the token right now ({m}); retry later.")
            }
            GatewayError::Forbidden {
                principal,
                operation,
                decision,
            } => match service {
                Service::KeyVault { vault } => format!(
                    "Caller is not authorized to perform action on resource.\r\nCaller: appid={};oid={}\r\nAction: '{}'\r\nResource: 'vault:{vault}'\r\nDecisionReason: {}",
                    principal.app_id.as_deref().unwrap_or("-"),
                    principal.object_id,
                    operation.action,
                    decision.reason
                ),
                Service::Arm => format!(
                    "The client '{}' with object id '{}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. Portcullis: {}.",
                    principal
                        .display_name
                        .as_deref()
                        .unwrap_or(&principal.object_id),
                    principal.object_id,
                    operation.action,
                    scope_display(operation),
                    decision.reason
                ),
            },
            GatewayError::Approval(r) => format!("Portcullis: {}", r.message),
            GatewayError::BadRequest { message, .. } => format!("Portcullis: {message}"),
            GatewayError::TooLarge { limit } => format!(
                "Portcullis: the request body is larger than the {limit} bytes the gateway accepts for this service."
            ),
            GatewayError::Protocol { message, .. } | GatewayError::Operation { message, .. } => {
                format!("Portcullis: {message}")
            }
            GatewayError::Throttled { retry_after } => format!(
                "Portcullis: this principal has sent more requests than its rate limit allows; retry after {retry_after} second(s)."
            ),
            GatewayError::TooManyPendingApprovals {
                pending,
                limit,
                retry_after,
            } => format!(
                "Portcullis: this principal already has {pending} requests waiting for approval, the most allowed ({limit}); nothing was held or sent to Azure. Retry after {retry_after} second(s), once approvers have decided some or they have expired."
            ),
            GatewayError::AuditUnavailable(m) => format!(
                "Portcullis could not record this request ({m}), so it was not forwarded; retry later."
            ),
            GatewayError::Unmaskable(m) => format!(
                "Portcullis withheld Azure's answer because it could not check it for secrets: {m}. The operation may have been carried out."
            ),
            GatewayError::UpstreamCredential(m) => {
                format!("Portcullis could not obtain its upstream credential: {m}")
            }
            GatewayError::Upstream { message, .. } => {
                format!("Portcullis could not reach Azure: {message}")
            }
        }
    }

    pub fn render(&self, ctx: &ErrorContext<'_>) -> Response<Body> {
        let code = self.code(ctx.service);
        let message = self.message(ctx.service);
        let mut error = json!({"code": code, "message": message});
        match (self, ctx.service) {
            (GatewayError::Forbidden { .. }, Service::KeyVault { .. }) => {
                error["innererror"] = json!({"code": "ForbiddenByRbac"});
            }
            (GatewayError::TooManyPendingApprovals { .. }, Service::KeyVault { .. }) => {
                error["innererror"] = json!({"code": "TooManyPendingApprovals"});
            }
            (GatewayError::Approval(r), Service::KeyVault { .. }) => {
                error["innererror"] = json!({"code": r.code, "approvalId": r.approval.id});
            }
            (GatewayError::Approval(r), Service::Arm) => {
                let a = &r.approval;
                error["additionalInfo"] = json!([{"type": "PortcullisApproval", "info": {
                    "approvalId": a.id,
                    "status": a.status,
                    "expiresOn": a.expires,
                    "approvers": a.approvers,
                    "quorum": a.quorum,
                    "approvals": a.approvals(),
                    "rule": a.rule,
                    "reason": a.rule_reason,
                    "retry": "send the same request again, optionally with header x-portcullis-approval",
                }}]);
            }
            (GatewayError::Forbidden { decision, .. }, Service::Arm) => {
                error["additionalInfo"] = json!([{"type": "PortcullisDecision", "info": {"rule": decision.rule, "reason": decision.reason}}]);
            }
            _ => {}
        }
        let body = serde_json::to_vec(&json!({ "error": error })).expect("a Value serializes");
        let mut r = Response::new(full(Bytes::from(body)));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert("x-ms-error-code", HeaderValue::from_static(code));
        h.insert("x-ms-failure-cause", HeaderValue::from_static("gateway"));
        if let Ok(v) = HeaderValue::from_str(ctx.request_id) {
            h.insert("x-ms-request-id", v.clone());
            h.insert("x-portcullis-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(ctx.correlation_id) {
            h.insert("x-ms-correlation-request-id", v);
        }
        if let GatewayError::Unauthenticated { message, .. } = self {
            let challenge = match ctx.service {
                Service::KeyVault { .. } => format!(
                    "Bearer authorization=\"{}\", resource=\"{}\"",
                    ctx.authority,
                    quote(ctx.audience)
                ),
                Service::Arm => format!(
                    "Bearer authorization_uri=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                    ctx.authority,
                    quote(message)
                ),
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                h.insert(http::header::WWW_AUTHENTICATE, v);
            }
        }
        if matches!(
            self,
            GatewayError::AuthUnavailable(_) | GatewayError::AuditUnavailable(_)
        ) {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let GatewayError::Throttled { retry_after }
        | GatewayError::TooManyPendingApprovals { retry_after, .. } = self
        {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if let GatewayError::Approval(r) = self {
            if let Ok(v) = HeaderValue::from_str(&r.approval.id) {
                h.insert("x-portcullis-approval", v);
            }
            if let Some(secs) = r.retry_after {
                h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
        r
    }
}
