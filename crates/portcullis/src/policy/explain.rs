//! "Principal + request → decision and why", offline: what `portcullis policy explain|test`
//! and the console's policy page run. A request typed as `METHOD PATH?QUERY` is routed,
//! named and judged as the gateway would judge it (a deployment's resources too, through
//! `bundle.rs`), for a principal made of the attributes rules match on.

use serde_json::Value;

use super::bundle::{self, Bundle, Refusal};
use super::condition::{Body, Facts};
use super::{Aliases, Decision, Effect, Policy, PrincipalMatcher};
use crate::azure::deployment::DeploymentError;
use crate::azure::operation::{self, NamingError, Operation};
use crate::azure::route::{self, RouteError, Service};
use crate::identity::principal::{Principal, PrincipalKind};

/// Why a typed request cannot be judged.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the request is 'METHOD PATH?QUERY'")]
    Shape,
    #[error("not an HTTP method")]
    Method(#[source] http::method::InvalidMethod),
    #[error("{0}")]
    Route(RouteError),
    #[error("the request cannot be named as an Azure operation (the gateway refuses it): {0}")]
    Unnamed(NamingError),
    #[error("the gateway refuses this deployment: {0}")]
    Deployment(DeploymentError),
}

/// A principal made of the attributes rules match on (`group:ai-agents`, `role:X`, `app:ID`,
/// `user:ID`, `tenant:ID`), names resolved through the policy's aliases.
pub fn principal_from_attributes(
    aliases: &Aliases,
    attributes: &[String],
) -> Result<Principal, String> {
    let mut p = Principal {
        tenant_id: "00000000-0000-0000-0000-000000000000".into(),
        object_id: "00000000-0000-0000-0000-000000000001".into(),
        kind: PrincipalKind::App,
        app_id: None,
        groups: Vec::new(),
        roles: Vec::new(),
        display_name: Some("explained principal".into()),
        token_version: 2,
    };
    for a in attributes {
        match PrincipalMatcher::parse(aliases, a)? {
            PrincipalMatcher::Group(g) => p.groups.push(g),
            PrincipalMatcher::Role(r) => p.roles.push(r),
            PrincipalMatcher::App(id) => p.app_id = Some(id),
            PrincipalMatcher::User(id) => {
                p.object_id = id;
                p.kind = PrincipalKind::User;
            }
            PrincipalMatcher::Tenant(t) => p.tenant_id = t,
            PrincipalMatcher::Any => return Err("'*' is not an attribute of a principal".into()),
        }
    }
    Ok(p)
}

/// Names the request and decides it.
pub fn evaluate(
    policy: &Policy,
    p: &Principal,
    request: &str,
    host: &str,
    body: Option<Value>,
) -> Result<(Operation, Decision), RequestError> {
    let (method, target) = request.trim().split_once(' ').ok_or(RequestError::Shape)?;
    let method: http::Method = method
        .trim()
        .to_ascii_uppercase()
        .parse()
        .map_err(RequestError::Method)?;
    let target = target.trim();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let routed = route::route(host, path, None).map_err(RequestError::Route)?;
    let op = match &routed.service {
        Service::Arm => operation::name_arm(&method, &routed.path, query),
        Service::KeyVault { vault } => {
            operation::name_keyvault(&method, vault, &routed.path, query)
        }
    }
    .map_err(RequestError::Unnamed)?;
    let body = body.map_or(Body::Absent, Body::Json);
    let headers = http::HeaderMap::new();
    // A deployment is judged as the gateway judges it: each resource of its template too.
    let deployment = match (&body, method == http::Method::PUT) {
        (Body::Json(doc), true)
            if op
                .action
                .eq_ignore_ascii_case("Microsoft.Resources/deployments/write") =>
        {
            Some(
                crate::azure::deployment::parse(&routed.path, doc)
                    .map_err(RequestError::Deployment)?,
            )
        }
        _ => None,
    };
    let deployment_facts = deployment.as_ref().map(|d| d.facts());
    let facts = Facts::new(
        p,
        &op,
        method.as_str(),
        &routed.path,
        query,
        &headers,
        &body,
    )
    .with_deployment(deployment_facts.as_ref());
    let decision = policy.decide_with(p, &op, &facts);
    let (Some(d), Some(df)) = (&deployment, &deployment_facts) else {
        return Ok((op, decision));
    };
    if decision.effect == Effect::Deny {
        return Ok((op, decision));
    }
    let judged = bundle::decide(
        &|p| p.to_owned(),
        policy,
        p,
        decision,
        &d.operations,
        Bundle::Deployment {
            operation: &op,
            deployment: d,
            facts: df,
        },
    );
    let decision = match judged {
        Ok((d, _)) => d,
        Err((Refusal::Denied { decision, .. }, _)) => *decision,
        Err((Refusal::Invalid { message, .. }, _)) => {
            let mut d = Decision::allow(message);
            d.effect = Effect::Deny;
            d
        }
    };
    Ok((op, decision))
}

/// The decision as `policy explain` heads it.
pub fn verdict(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "ALLOW",
        Effect::Approve => "APPROVAL REQUIRED",
        Effect::Deny => "DENY",
    }
}

/// The decision and why, as `policy explain` prints it and the console shows it. Principals,
/// groups and approvers are named by the policy's aliases (or the token's name), each with
/// its id; offline there is no directory to ask.
pub fn explanation(aliases: &Aliases, p: &Principal, op: &Operation, d: &Decision) -> String {
    let mut out = String::new();
    let alias = match p.kind {
        PrincipalKind::User => aliases.name_of(&PrincipalMatcher::User(p.object_id.clone())),
        _ => None,
    };
    let name = alias.or(p.display_name.as_deref());
    out.push_str(&format!(
        "principal   {} (tenant {})\n",
        crate::identity::names::printable(&crate::identity::names::with_id(
            name,
            Some(p.kind.label()),
            &p.object_id
        )),
        p.tenant_id
    ));
    if let Some(app) = &p.app_id {
        let m = PrincipalMatcher::App(app.clone());
        out.push_str(&format!("  app       {}\n", m.shown(aliases.name_of(&m))));
    }
    if !p.groups.is_empty() {
        let groups: Vec<String> = p
            .groups
            .iter()
            .map(|g| {
                let m = PrincipalMatcher::Group(g.clone());
                m.shown(aliases.name_of(&m))
            })
            .collect();
        out.push_str(&format!("  groups    {}\n", groups.join(", ")));
    }
    if !p.roles.is_empty() {
        out.push_str(&format!("  roles     {}\n", p.roles.join(", ")));
    }
    let plane = match op.plane {
        operation::Plane::Control => "control plane",
        operation::Plane::Data => "data plane",
    };
    out.push_str(&format!("operation   {} ({plane})\n", op.action));
    out.push_str(&format!("scope       {}\n", super::scope_display(op)));
    out.push_str(&format!("decision    {}", verdict(d.effect)));
    match &d.rule {
        Some(r) => out.push_str(&format!(" by rule '{r}'\n")),
        None => out.push_str(" (no rule matched: default deny)\n"),
    }
    out.push_str(&format!("reason      {}\n", d.reason));
    if let Some(c) = &d.credential {
        out.push_str(&format!("credential  {c}\n"));
    }
    if let Some(a) = &d.approval {
        out.push_str(&format!(
            "approvers   {} (quorum {}, timeout {}s)\n",
            a.approvers
                .iter()
                .map(|m| m.shown(aliases.name_of(m)))
                .collect::<Vec<_>>()
                .join(", "),
            a.quorum,
            a.timeout.as_secs()
        ));
    }
    for n in &d.nearest {
        out.push_str(
            &format!(
                "nearest     rule '{}' ({:?}): {}\n",
                n.rule, n.effect, n.why
            )
            .replace("(Allow)", "(allow)")
            .replace("(Deny)", "(deny)")
            .replace("(Approve)", "(approve)"),
        );
    }
    for a in &d.audit {
        out.push_str(&format!("audit       {a}\n"));
    }
    out
}
