//! Requests that carry others: a batch's inner requests, a deployment's resources. Each is
//! judged as if sent alone and the decisions combine into one, for the pipeline, `policy
//! explain|test` and the console alike.

use http::HeaderMap;

use super::condition::{self, Facts};
use super::{Decision, Effect, Policy};
use crate::azure::batch::InnerSummary;
use crate::azure::operation::Operation;
use crate::identity::principal::Principal;

/// Why a bundle may not pass as a whole.
#[derive(Debug)]
pub enum Refusal {
    /// An inner operation (or, for a deployment with parts the gateway cannot inspect, the
    /// deployment itself) is denied; `decision` says by what and why.
    Denied {
        operation: Box<Operation>,
        decision: Box<Decision>,
    },
    /// The bundle cannot be forwarded as one (mixed credentials or approvers).
    Invalid { code: &'static str, message: String },
}

/// A request that carries others: a batch, or a deployment's template.
pub enum Bundle<'a> {
    Batch,
    Deployment {
        operation: &'a Operation,
        deployment: &'a crate::azure::deployment::Deployment,
        facts: &'a serde_json::Value,
    },
}

/// Judges each inner operation as if sent alone and combines them with the outer decision:
/// one deny refuses the whole; one approve holds the whole as one approval; credentials and
/// approvers must agree. A deployment with parts the gateway cannot inspect never passes on
/// an allow alone: it is refused unless a rule holds it for a human.
pub fn decide(
    show: &dyn Fn(&str) -> String,
    policy: &Policy,
    principal: &Principal,
    outer: Decision,
    inner: &[crate::azure::batch::Inner],
    bundle: Bundle<'_>,
) -> Result<(Decision, Vec<InnerSummary>), (Refusal, Vec<InnerSummary>)> {
    let (kind, deployment_facts) = match &bundle {
        Bundle::Batch => ("batch", None),
        Bundle::Deployment { facts, .. } => ("deployment", Some(*facts)),
    };
    let no_headers = HeaderMap::new();
    let mut decisions = Vec::with_capacity(inner.len());
    let mut summaries = Vec::with_capacity(inner.len());
    for i in inner {
        let body = match &i.content {
            Some(v) => condition::Body::Json(v.clone()),
            None => condition::Body::Absent,
        };
        let facts = Facts::new(
            principal,
            &i.operation,
            i.method.as_str(),
            &i.path,
            &i.query,
            &no_headers,
            &body,
        )
        .with_deployment(deployment_facts);
        let d = policy.decide_with(principal, &i.operation, &facts);
        summaries.push(InnerSummary {
            name: i.name.clone(),
            method: i.method.to_string(),
            path: show(&i.path),
            action: i.operation.action.clone(),
            scope: super::scope_display(&i.operation),
            decision: d.effect.name().to_owned(),
            rule: d.rule.clone(),
        });
        decisions.push(d);
    }
    if let Some(at) = decisions.iter().position(|d| d.effect == Effect::Deny) {
        let i = &inner[at];
        let mut d = decisions.swap_remove(at);
        d.reason = format!(
            "'{}' in the {kind} ({} {}) is refused: {}; a {kind} runs only if everything in it may",
            i.name, i.method, i.path, d.reason
        );
        return Err((
            Refusal::Denied {
                operation: Box::new(i.operation.clone()),
                decision: Box::new(d),
            },
            summaries,
        ));
    }
    let all: Vec<&Decision> = std::iter::once(&outer).chain(decisions.iter()).collect();
    // One forward, one credential: an approved batch goes with the approving rule's (the
    // approver saw every request in it); an allowed one only if all its rules agree.
    let mixed = |ds: &mut dyn Iterator<Item = &&Decision>| {
        let mut ds = ds.map(|d| &d.credential);
        let first = ds.next();
        first.is_some_and(|f| ds.any(|c| c != f))
    };
    let any_held = all.iter().any(|d| d.effect == Effect::Approve);
    let credentials_differ = if any_held {
        mixed(&mut all.iter().filter(|d| d.effect == Effect::Approve))
    } else {
        mixed(&mut all.iter())
    };
    if credentials_differ {
        return Err((
            Refusal::Invalid {
                code: "InvalidBatchRequest",
                message: format!(
                    "the requests in this {kind} are forwarded with different upstream credentials by policy; send them separately"
                ),
            },
            summaries,
        ));
    }
    // Only what every deciding rule lets through stays unmasked.
    let unmask: Vec<String> = outer
        .unmask
        .iter()
        .filter(|u| decisions.iter().all(|d| d.unmask.contains(u)))
        .cloned()
        .collect();
    let audit: Vec<String> = all.iter().flat_map(|d| d.audit.iter().cloned()).collect();
    let held: Vec<(usize, &Decision)> = all
        .iter()
        .enumerate()
        .filter(|(_, d)| d.effect == Effect::Approve)
        .map(|(n, d)| (n, *d))
        .collect();
    let Some(&(_, first)) = held.first() else {
        if let Bundle::Deployment {
            operation,
            deployment,
            ..
        } = &bundle
            && !deployment.uninspectable.is_empty()
        {
            let mut d = outer;
            d.effect = Effect::Deny;
            d.reason = format!(
                "the deployment holds what the gateway cannot inspect ({}); it passes only when a rule holds it for approval",
                deployment.uninspectable.join("; ")
            );
            return Err((
                Refusal::Denied {
                    operation: Box::new((*operation).clone()),
                    decision: Box::new(d),
                },
                summaries,
            ));
        }
        let mut d = outer;
        d.reason = format!(
            "{}; each of the {} operations in the {kind} is allowed",
            d.reason,
            inner.len()
        );
        d.unmask = unmask;
        d.audit = audit;
        return Ok((d, summaries));
    };
    let spec_of = |d: &Decision| {
        d.approval
            .as_ref()
            .map(|s| (s.approvers_display.clone(), s.quorum, s.timeout))
    };
    if held.iter().any(|(_, d)| spec_of(d) != spec_of(first)) {
        return Err((
            Refusal::Invalid {
                code: "InvalidBatchRequest",
                message: format!(
                    "requests in this {kind} need approval from different approvers; send them separately"
                ),
            },
            summaries,
        ));
    }
    let mut d = first.clone();
    // A grant window would let any later batch through: a batch is approved once.
    if let Some(spec) = d.approval.as_mut() {
        spec.grant_window = None;
    }
    let names: Vec<String> = held
        .iter()
        .map(|(n, d)| {
            let what = match n {
                0 => format!("the {kind} itself"),
                n => format!(
                    "'{}' ({})",
                    inner[n - 1].name,
                    inner[n - 1].operation.action
                ),
            };
            format!("{what} by rule {}", d.rule.as_deref().unwrap_or("-"))
        })
        .collect();
    d.reason = format!(
        "a {kind} of {} operations, held as one: {} need(s) approval",
        inner.len(),
        names.join("; ")
    );
    if let Bundle::Deployment { deployment, .. } = &bundle
        && !deployment.uninspectable.is_empty()
    {
        d.reason = format!(
            "{}; NOT INSPECTED: {}",
            d.reason,
            deployment.uninspectable.join("; ")
        );
    }
    d.unmask = unmask;
    d.audit = audit;
    Ok((d, summaries))
}
