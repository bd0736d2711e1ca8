//! Which Azure operation the request is (`azure/operation.rs`), and what policy says of it
//! (`policy/`): a batch's inner requests and a deployment's resources are each judged as if
//! sent alone (`policy::bundle`), and a URL the gateway itself handed out continues what
//! policy already allowed.

use http::{Method, request::Parts};

use super::error::GatewayError;
use super::read::ReadBody;
use super::record::audit_text;
use super::trail::Trail;
use super::{Exchange, Gateway};
use crate::azure::batch::Inner;
use crate::azure::deployment::Deployment;
use crate::azure::operation::{self, Operation};
use crate::azure::route::Service;
use crate::identity::principal::Principal;
use crate::policy::bundle::{self, Bundle};
use crate::policy::condition::{self, Facts};
use crate::policy::{Decision, Effect, Policy};

/// Names the request as the Azure operation it is; what cannot be named is refused.
pub(super) fn classify(
    ex: &Exchange,
    method: &Method,
    trail: &mut Trail,
) -> Result<Operation, GatewayError> {
    let operation = name(ex, method)?;
    trail.action = Some(operation.action.clone());
    trail.scope = Some(crate::policy::scope_display(&operation));
    Ok(operation)
}

/// The operation a routed request is, by its service's naming rules.
pub(super) fn name(ex: &Exchange, method: &Method) -> Result<Operation, GatewayError> {
    name_path(&ex.routed.service, method, &ex.routed.path, &ex.query)
}

pub(super) fn name_path(
    service: &Service,
    method: &Method,
    path: &str,
    query: &str,
) -> Result<Operation, GatewayError> {
    let named = match service {
        Service::Arm => operation::name_arm(method, path, query),
        Service::KeyVault { vault } => operation::name_keyvault(method, vault, path, query),
    };
    named.map_err(|e| GatewayError::BadRequest {
        code: "UnrecognizedOperation",
        message: format!(
            "the request cannot be named as an Azure operation, so it is refused: {e}"
        ),
    })
}

/// What policy decided, with what it read to decide.
pub(super) struct Judged {
    pub operation: Operation,
    pub decision: Decision,
    pub body: ReadBody,
    /// A batch's inner requests (they name the answer's masking plan).
    pub batch: Option<Vec<Inner>>,
}

/// Decides the request: allowed or held (`Ok`), or refused.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    gw: &Gateway,
    policy: &Policy,
    ex: &Exchange,
    principal: &Principal,
    operation: Operation,
    parts: &Parts,
    body: ReadBody,
    trail: &mut Trail,
) -> Result<Judged, GatewayError> {
    let method = &parts.method;
    // A deployment's template is read so each resource is judged as the write it is.
    let deployment = if *method == Method::PUT && operation.is_deployment_write() {
        Some(read_deployment(ex, policy, &body.seen)?)
    } else {
        None
    };
    let deployment_facts = deployment.as_ref().map(Deployment::facts);
    let facts = Facts::new(
        principal,
        &operation,
        method.as_str(),
        &ex.routed.path,
        &ex.query,
        &parts.headers,
        &body.seen,
    )
    .with_deployment(deployment_facts.as_ref());
    let decision = judge(gw, policy, ex, method, principal, &operation, &facts)?;
    // A batch passes only as its inner requests would, each judged as if sent alone. It is
    // read once: the same inner requests name the masking plan.
    let batch = if operation.is_batch() {
        Some(read_batch(gw, policy, &body.seen)?)
    } else {
        None
    };
    let show = |p: &str| audit_text(gw, p);
    let judged = match (&batch, &deployment, &deployment_facts) {
        (Some(inner), _, _) => Some(bundle::decide(
            &show,
            policy,
            principal,
            decision.clone(),
            inner,
            Bundle::Batch,
        )),
        (None, Some(d), Some(facts)) => Some(bundle::decide(
            &show,
            policy,
            principal,
            decision.clone(),
            &d.operations,
            Bundle::Deployment {
                operation: &operation,
                deployment: d,
                facts,
            },
        )),
        _ => None,
    };
    let decision = match judged {
        None => decision,
        Some(Ok((d, inner))) => {
            trail.inner = inner;
            d
        }
        Some(Err((refusal, inner))) => {
            trail.inner = inner;
            return Err(GatewayError::from_bundle(refusal, principal));
        }
    };
    trail.decided = decision.effect.name();
    Ok(Judged {
        operation,
        decision,
        body,
        batch,
    })
}

/// Policy's decision on the request itself.
fn judge(
    gw: &Gateway,
    policy: &Policy,
    ex: &Exchange,
    method: &Method,
    principal: &Principal,
    operation: &Operation,
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
            &ex.raw_path,
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

/// Reads a deployment PUT's body; one the gateway cannot read whole is refused.
fn read_deployment(
    ex: &Exchange,
    policy: &Policy,
    seen: &condition::Body,
) -> Result<Deployment, GatewayError> {
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
) -> Result<Vec<Inner>, GatewayError> {
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
