//! The policy page, for readers of the audit trail: the rules in force, read-only, and
//! "explain" (principal + request → decision and why).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;

use super::pages::{Chrome, arg, forbidden, render};
use super::{ConsoleState, Signed, Viewer};
use crate::azure::words::in_words;
use crate::pipeline::Gateway;
use crate::policy::{Effect, PrincipalMatcher};

pub async fn page(
    State(s): State<ConsoleState>,
    signed: Signed,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    if !signed.viewer.reader {
        return forbidden("The policy view");
    }
    policy_page(
        &s.admin.gateway,
        &signed.viewer,
        arg(&args, "principal"),
        arg(&args, "request"),
        arg(&args, "body"),
    )
}

struct RuleView {
    name: String,
    effect: &'static str,
    audit_only: bool,
    principals: Vec<String>,
    actions: Vec<String>,
    scopes: Vec<String>,
    when: Option<String>,
    approval: Option<String>,
    credential: Option<String>,
    unmask: Vec<String>,
    origin: String,
}

struct Explained {
    effect: &'static str,
    words: String,
    action: String,
    scope: String,
    rule: String,
    text: String,
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct PolicyPage {
    chrome: Chrome,
    rules: Vec<RuleView>,
    principal: String,
    request: String,
    body: String,
    explained: Option<Explained>,
    error: Option<String>,
}

fn effect_word(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
        Effect::Approve => "approve",
    }
}

/// A matcher as written, with the policy's alias where it has one (`group:approvers`).
fn matcher_name(aliases: &crate::policy::Aliases, m: &PrincipalMatcher) -> String {
    let find = |map: &std::collections::BTreeMap<String, String>, id: &str| {
        map.iter()
            .find(|(_, v)| v.eq_ignore_ascii_case(id))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    match m {
        PrincipalMatcher::Group(g) => format!("group:{}", find(&aliases.groups, g)),
        PrincipalMatcher::App(a) => format!("app:{}", find(&aliases.apps, a)),
        PrincipalMatcher::User(u) => format!("user:{}", find(&aliases.users, u)),
        other => crate::approval::model::matcher_text(other),
    }
}

fn policy_page(
    gw: &Gateway,
    v: &Viewer,
    principal: Option<String>,
    request: Option<String>,
    body: Option<String>,
) -> Response {
    let policy = gw.policy.load_full();
    let rules = policy
        .rules
        .iter()
        .map(|r| RuleView {
            name: r.name.clone(),
            effect: effect_word(r.effect),
            audit_only: r.mode == crate::policy::Mode::Audit,
            principals: r
                .principals
                .iter()
                .map(|m| matcher_name(&policy.aliases, m))
                .collect(),
            actions: r
                .actions
                .iter()
                .chain(&r.data_actions)
                .map(|a| a.source.clone())
                .chain(
                    r.not_actions
                        .iter()
                        .chain(&r.not_data_actions)
                        .map(|a| format!("not {}", a.source)),
                )
                .collect(),
            scopes: r.scopes.iter().map(|s| s.to_string()).collect(),
            when: r.when.as_ref().map(|c| c.source.clone()),
            approval: r.approval.as_ref().map(|a| {
                format!(
                    "{} of {} within {}",
                    a.quorum,
                    a.approvers_display.join(", "),
                    humantime(a.timeout)
                )
            }),
            credential: r.credential.clone(),
            unmask: r.unmask.clone(),
            origin: r.origin.clone(),
        })
        .collect();
    let mut error = None;
    let mut explained = None;
    if let Some(req) = &request {
        match explain(
            gw,
            &policy,
            principal.as_deref().unwrap_or(""),
            req,
            body.as_deref(),
        ) {
            Ok(e) => explained = Some(e),
            Err(e) => error = Some(e),
        }
    }
    render(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &PolicyPage {
            chrome: Chrome::of(v, "policy"),
            rules,
            principal: principal.unwrap_or_default(),
            request: request.unwrap_or_default(),
            body: body.unwrap_or_default(),
            explained,
            error,
        },
    )
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// "principal + request → decision and why", as `portcullis policy explain` does it.
fn explain(
    gw: &Gateway,
    policy: &crate::policy::Policy,
    attributes: &str,
    request: &str,
    body: Option<&str>,
) -> Result<Explained, String> {
    let attributes: Vec<String> = attributes
        .split([' ', ',', '\n'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let p = crate::policy::explain::principal_from_attributes(&policy.aliases, &attributes)
        .map_err(|e| format!("principal: {e}"))?;
    let body = body
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| format!("body: not JSON: {e}"))?;
    let _ = gw;
    let (op, d) = crate::policy::explain::evaluate(policy, &p, request, "gateway", body)
        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
    let scope = crate::policy::scope_display(&op);
    Ok(Explained {
        effect: effect_word(d.effect),
        words: in_words(&op.action, &scope),
        action: op.action.clone(),
        rule: d
            .rule
            .clone()
            .unwrap_or_else(|| "(none: the default deny)".into()),
        text: crate::policy::explain::explanation(&policy.aliases, &p, &op, &d),
        scope,
    })
}
