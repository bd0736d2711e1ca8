//! Every way a request can be refused, and how each is told to the agent: the status, the
//! code in the service's vocabulary, a message that says why and what to do, written in
//! Azure's native shape (`azure/error.rs`).

use http::{Response, StatusCode};
use serde_json::json;

use crate::approval::service::{HoldError, Refusal};
use crate::azure::error::{ErrorContext, NativeError};
use crate::azure::operation::Operation;
use crate::azure::route::Service;
use crate::identity::principal::Principal;
use crate::policy::{Decision, scope_display};
use crate::upstream::client::Body;

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
    Approval(Box<Refusal>),
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
    /// The approval store could not be read or written: nothing held is decided or sent.
    ApprovalStoreUnavailable(String),
    /// A request kept for a later forward (sealed at rest) could not be opened or rebuilt:
    /// it is never sent.
    HeldRequestUnreadable(String),
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

impl From<HoldError> for GatewayError {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::Refused(r) => GatewayError::Approval(r),
            HoldError::Named { code, message } => GatewayError::BadRequest { code, message },
            HoldError::TooManyPending {
                pending,
                limit,
                retry_after,
            } => GatewayError::TooManyPendingApprovals {
                pending,
                limit,
                retry_after,
            },
            HoldError::Store(m) => GatewayError::ApprovalStoreUnavailable(m),
        }
    }
}

/// The caller as a refusal names it: "build-agent (app)", or "(name unavailable)" (the
/// object id follows in the message either way).
fn caller_name(p: &Principal) -> String {
    crate::identity::names::labelled_or_unavailable(p.display_name.as_deref(), Some(p.kind.label()))
}

impl GatewayError {
    /// A refusal's reader learns who was refused by name: a principal whose token named
    /// nobody is looked up in the directory (bounded and cached; only for refusals, which
    /// are shown, never for requests that pass).
    pub async fn name_principal(&mut self, directory: &crate::identity::directory::Directory) {
        if let GatewayError::Forbidden { principal, .. } = self
            && principal.display_name.is_none()
        {
            principal.display_name = directory.principal_name(principal).await;
        }
    }

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

    /// A request held for approval and let go undecided (the approval stays pending): its
    /// record is [`Phase::Held`](crate::audit::record::Phase::Held), not a refusal.
    pub fn held(&self) -> bool {
        matches!(self, GatewayError::Approval(r) if matches!(r.code, "ApprovalPending" | "GatewayShuttingDown"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::AuthUnavailable(_)
            | GatewayError::AuditUnavailable(_)
            | GatewayError::ApprovalStoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::HeldRequestUnreadable(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            GatewayError::ApprovalStoreUnavailable(_) => "ApprovalStoreUnavailable",
            GatewayError::HeldRequestUnreadable(_) => "HeldRequestUnreadable",
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
                    "Caller is not authorized to perform action on resource.\r\nCaller: appid={};oid={};name={}\r\nAction: '{}'\r\nResource: 'vault:{vault}'\r\nDecisionReason: {}",
                    principal.app_id.as_deref().unwrap_or("-"),
                    principal.object_id,
                    caller_name(principal),
                    operation.action,
                    told(decision, operation)
                ),
                Service::Arm => format!(
                    "The client '{}' with object id '{}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. Portcullis: {}.",
                    caller_name(principal),
                    principal.object_id,
                    operation.action,
                    scope_display(operation),
                    told(decision, operation)
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
            GatewayError::ApprovalStoreUnavailable(m) => format!(
                "Portcullis could not read or write its approvals ({m}); nothing held was decided or sent to Azure. Retry later."
            ),
            GatewayError::HeldRequestUnreadable(m) => format!(
                "Portcullis could not open the request it kept for approval ({m}); it was not sent to Azure and will not be. Send the request again to ask anew."
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

    /// The refusal as the service would write it.
    pub fn render(&self, ctx: &ErrorContext<'_>) -> Response<Body> {
        let kv = matches!(ctx.service, Service::KeyVault { .. });
        let detail = match self {
            GatewayError::Forbidden { .. } if kv => Some(json!({"code": "ForbiddenByRbac"})),
            GatewayError::Forbidden {
                decision,
                operation,
                ..
            } => Some(json!([{
                "type": "PortcullisDecision",
                "info": {"rule": decision.rule, "reason": told(decision, operation)},
            }])),
            GatewayError::TooManyPendingApprovals { .. } if kv => {
                Some(json!({"code": "TooManyPendingApprovals"}))
            }
            GatewayError::Approval(r) if kv => {
                Some(json!({"code": r.code, "approvalId": r.approval.id}))
            }
            GatewayError::Approval(r) => {
                let a = &r.approval;
                Some(json!([{"type": "PortcullisApproval", "info": {
                    "approvalId": a.id,
                    "status": a.status,
                    "expiresOn": a.expires,
                    "approvers": a.approvers,
                    "approverNames": a.approvers_shown(),
                    "requester": a.requester(),
                    "quorum": a.quorum,
                    "approvals": a.approvals(),
                    "rule": a.rule,
                    "reason": a.rule_reason,
                    "retry": "send the same request again, optionally with header x-portcullis-approval",
                }}]))
            }
            _ => None,
        };
        let retry_after = match self {
            GatewayError::AuthUnavailable(_)
            | GatewayError::AuditUnavailable(_)
            | GatewayError::ApprovalStoreUnavailable(_) => Some(5),
            GatewayError::Throttled { retry_after }
            | GatewayError::TooManyPendingApprovals { retry_after, .. } => Some(*retry_after),
            GatewayError::Approval(r) => r.retry_after,
            _ => None,
        };
        NativeError {
            status: self.status(),
            code: self.code(ctx.service),
            message: self.message(ctx.service),
            detail,
            challenge: match self {
                GatewayError::Unauthenticated { message, .. } => Some(message.clone()),
                _ => None,
            },
            retry_after,
            approval: match self {
                GatewayError::Approval(r) => Some(r.approval.id.clone()),
                _ => None,
            },
        }
        .write(ctx)
    }
}

/// The decision's reason as the agent reads it: the rule by name and what it does, without
/// the file and line it is written at. The gateway's paths are none of the agent's business;
/// operators find the rule by name (`policy explain`, the console's policy page, which show
/// where it is written). The refusal's record holds what the agent was told, and the rule.
fn told(decision: &Decision, operation: &Operation) -> String {
    let parts = decision.rule.as_deref().and_then(|rule| {
        crate::policy::split_reason(
            rule,
            decision.effect,
            &operation.action,
            &scope_display(operation),
            &decision.reason,
        )
    });
    match parts {
        Some(p) => decision.reason.replacen(&format!(" ({})", p.origin), "", 1),
        None => decision.reason.clone(),
    }
}
