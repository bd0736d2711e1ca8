//! Rules in the shape of Azure RBAC role definitions: `actions` minus `not_actions` for the
//! control plane, `data_actions` minus `not_data_actions` for the data plane (`actions`
//! never grant data actions, as in RBAC), `*` wildcards, and scopes as ARM id prefixes.
//! <https://learn.microsoft.com/azure/role-based-access-control/role-definitions>
//!
//! Precedence: deny over approve over allow; among matching rules of the winning effect the
//! one written last decides (included packs come first, so a policy's own rules refine
//! them); no matching rule denies. A condition that
//! cannot be evaluated fails closed: a deny or approve rule is taken as matching, an allow
//! rule as not matching. Rules in audit mode are evaluated and reported, never enforced.
//! Matching is case-insensitive throughout, as Azure's names are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::aliases::Aliases;
use super::condition::{Condition, Facts};
use super::index::Index;
use super::matcher::PrincipalMatcher;
use crate::azure::operation::{Operation, Plane};
use crate::identity::principal::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Approve,
    Deny,
}

impl Effect {
    /// The effect as policy files and audit records spell it.
    pub fn name(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Approve => "approve",
            Effect::Deny => "deny",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Effect::Allow => "allows",
            Effect::Approve => "holds for approval",
            Effect::Deny => "denies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    /// Evaluated and reported, never enforced.
    Audit,
}

/// Who must consent to a held request, how many, and for how long it may wait.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalSpec {
    /// As written (`group:approvers`), for people to read.
    pub approvers_display: Vec<String>,
    #[serde(skip)]
    pub approvers: Vec<PrincipalMatcher>,
    pub quorum: u32,
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// An approval opens a window this long instead of passing one request.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub grant_window: Option<Duration>,
    /// How a pending approval is presented: held then refused, or as a long-running
    /// operation SDK pollers wait on.
    pub style: Style,
}

/// How a rule presents a pending approval to the agent (`approval.style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Hold the request open, then `403 ApprovalPending` (retry the same request).
    Hold,
    /// After the hold, answer as a long-running operation, whatever the operation.
    Async,
    /// `async` for operations Azure clients poll (`approval::lro::LroTable`), `hold` for
    /// the rest.
    #[default]
    Auto,
}

impl Style {
    pub fn parse(s: &str) -> Option<Style> {
        match s {
            "hold" => Some(Style::Hold),
            "async" => Some(Style::Async),
            "auto" => Some(Style::Auto),
            _ => None,
        }
    }
}

mod opt_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// An RBAC action pattern: `*` matches any run of characters (including `/`), as in role
/// definitions (`Microsoft.Compute/*/read`, `*/read`, `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern {
    /// Lowercased pattern split at `*`.
    parts: Vec<String>,
    pub source: String,
}

impl ActionPattern {
    pub fn parse(pattern: &str) -> Result<ActionPattern, String> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("an action pattern cannot be empty".into());
        }
        if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("action pattern '{p}' contains whitespace"));
        }
        if p != "*" && !p.contains('/') {
            return Err(format!(
                "action pattern '{p}' is not of the form Namespace/type/verb"
            ));
        }
        Ok(ActionPattern {
            parts: p
                .to_ascii_lowercase()
                .split('*')
                .map(str::to_owned)
                .collect(),
            source: p.to_owned(),
        })
    }

    /// The lowercased provider namespace every action this pattern matches starts with, or
    /// `None` when the pattern begins with a wildcard.
    pub fn namespace(&self) -> Option<String> {
        let (ns, _) = self.parts[0].split_once('/')?;
        (!ns.is_empty()).then(|| ns.to_owned())
    }

    /// `action` must be lowercased.
    pub fn matches(&self, action: &str) -> bool {
        glob(&self.parts, action)
    }
}

/// Matches `text` against pattern pieces separated by `*`.
fn glob(parts: &[String], text: &str) -> bool {
    match parts {
        [] => text.is_empty(),
        [only] => only == text,
        [first, middle @ .., last] => {
            if text.len() < first.len() + last.len()
                || !text.starts_with(first.as_str())
                || !text.ends_with(last.as_str())
            {
                return false;
            }
            let mut rest = &text[first.len()..text.len() - last.len()];
            for m in middle {
                match rest.find(m.as_str()) {
                    Some(i) => rest = &rest[i + m.len()..],
                    None => return false,
                }
            }
            true
        }
    }
}

/// Where a rule applies: `*` (everywhere), an ARM id prefix whose segments may be `*`
/// (`/subscriptions/*/resourceGroups/demo-rg`), or `vault:NAME` (a Key Vault's data plane,
/// `*` wildcards allowed in NAME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopePattern {
    Everywhere,
    Arm(Vec<String>),
    Vault(Vec<String>),
}

/// As written in a rule (lowercased).
impl std::fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopePattern::Everywhere => f.write_str("*"),
            ScopePattern::Arm(segments) => write!(f, "/{}", segments.join("/")),
            ScopePattern::Vault(parts) => write!(f, "vault:{}", parts.join("*")),
        }
    }
}

impl ScopePattern {
    pub fn parse(s: &str) -> Result<ScopePattern, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(ScopePattern::Everywhere);
        }
        if let Some(v) = s.strip_prefix("vault:") {
            if v.is_empty() {
                return Err("vault: needs a vault name or pattern".into());
            }
            return Ok(ScopePattern::Vault(
                v.to_ascii_lowercase()
                    .split('*')
                    .map(str::to_owned)
                    .collect(),
            ));
        }
        if !s.starts_with('/') {
            return Err(format!(
                "scope '{s}' must be '*', an ARM id starting with '/', or 'vault:NAME'"
            ));
        }
        let segments: Vec<String> = s
            .split('/')
            .filter(|x| !x.is_empty())
            .map(|x| x.to_ascii_lowercase())
            .collect();
        if segments.iter().any(|x| x == "." || x == "..") {
            return Err(format!("scope '{s}' contains dot segments"));
        }
        Ok(ScopePattern::Arm(segments))
    }

    pub fn matches(&self, op: &Operation) -> bool {
        match (self, op.plane) {
            (ScopePattern::Everywhere, _) => true,
            (ScopePattern::Arm(pattern), Plane::Control) => {
                let Some(id) = &op.scope.resource_id else {
                    return false;
                };
                // Segment by segment, without allocating: this runs for every candidate rule.
                let mut segments = id.split('/').filter(|x| !x.is_empty());
                pattern.iter().all(|p| {
                    segments
                        .next()
                        .is_some_and(|s| p == "*" || p.eq_ignore_ascii_case(s))
                })
            }
            (ScopePattern::Vault(parts), Plane::Data) => op
                .scope
                .vault
                .as_ref()
                .is_some_and(|v| glob(parts, &v.to_ascii_lowercase())),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub effect: Effect,
    pub principals: Vec<PrincipalMatcher>,
    pub actions: Vec<ActionPattern>,
    pub not_actions: Vec<ActionPattern>,
    pub data_actions: Vec<ActionPattern>,
    pub not_data_actions: Vec<ActionPattern>,
    pub scopes: Vec<ScopePattern>,
    /// A CEL condition that must also hold.
    pub when: Option<Condition>,
    pub approval: Option<ApprovalSpec>,
    /// The upstream credential that forwards what this rule lets through.
    pub credential: Option<String>,
    /// Masking profiles or detectors whose secrets this rule lets through in clear.
    pub unmask: Vec<String>,
    pub mode: Mode,
    /// Where the rule is written (`file:line`), for explanations.
    pub origin: String,
}

/// Why a rule did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Miss {
    Principal,
    Action,
    Scope,
    Condition(String),
}

impl Rule {
    fn check(&self, p: &Principal, op: &Operation, action: &str) -> Result<(), Miss> {
        if !self.principals.iter().any(|m| m.matches(p)) {
            return Err(Miss::Principal);
        }
        let (grant, except) = match op.plane {
            Plane::Control => (&self.actions, &self.not_actions),
            Plane::Data => (&self.data_actions, &self.not_data_actions),
        };
        if !grant.iter().any(|a| a.matches(action)) || except.iter().any(|a| a.matches(action)) {
            return Err(Miss::Action);
        }
        if !self.scopes.iter().any(|s| s.matches(op)) {
            return Err(Miss::Scope);
        }
        Ok(())
    }
}

/// How a scope reads in a reason: the ARM id, or `vault:NAME` for a vault's data plane.
pub fn scope_display(op: &Operation) -> String {
    match (&op.scope.resource_id, &op.scope.vault) {
        (Some(id), _) => id.clone(),
        (None, Some(v)) => format!("vault:{v}"),
        (None, None) => "/".to_owned(),
    }
}

/// A deciding rule's reason taken apart again, for people reading it on a small screen (the
/// console): what the rule does, and where it is written (a file path they rarely need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonParts {
    /// "holds for approval Microsoft.Storage/storageAccounts/write", with any note after it;
    /// the scope left out (it is shown beside).
    pub what: String,
    /// `file:line`.
    pub origin: String,
}

/// Splits the reason [`Policy::decide`] wrote when `rule` decided `effect` for `action` on
/// `scope`; `None` for any other shape (a batch's combined reason, say), shown whole then.
/// The rule's own words are found whole, so neither an odd path nor a name an agent chose
/// inside the scope can shift where the origin ends.
pub fn split_reason(
    rule: &str,
    effect: Effect,
    action: &str,
    scope: &str,
    reason: &str,
) -> Option<ReasonParts> {
    let rest = reason.strip_prefix(&format!("rule '{rule}' ("))?;
    let said = format!(") {} {action} on {scope}", effect.verb());
    let end = rest.find(&said)?;
    let note = &rest[end + said.len()..];
    if !(note.is_empty() || note.starts_with("; ")) {
        return None;
    }
    Some(ReasonParts {
        what: format!("{} {action}{note}", effect.verb()),
        origin: rest[..end].to_owned(),
    })
}

/// A rule that did not decide, and why: what `policy explain` and refusals show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Near {
    pub rule: String,
    pub effect: Effect,
    pub why: String,
}

/// The outcome, with the rule that decided and a sentence for humans.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub effect: Effect,
    /// `None` when no rule matched (the default deny).
    pub rule: Option<String>,
    pub reason: String,
    /// The upstream credential the deciding rule names, if any.
    pub credential: Option<String>,
    /// For `approve`: who must consent.
    pub approval: Option<ApprovalSpec>,
    /// What the deciding rule lets through unmasked.
    pub unmask: Vec<String>,
    /// Audit-mode rules that matched: what they would have done.
    pub audit: Vec<String>,
    /// For refusals: the rules that came closest, and why they did not apply.
    pub nearest: Vec<Near>,
}

impl Decision {
    pub fn allow(reason: String) -> Decision {
        Decision {
            effect: Effect::Allow,
            rule: None,
            reason,
            credential: None,
            approval: None,
            unmask: Vec::new(),
            audit: Vec::new(),
            nearest: Vec::new(),
        }
    }
}

/// How many near misses a refusal lists.
const MAX_NEAREST: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// Rules by the provider namespace their action patterns can match.
    index: Index,
    /// The largest request body conditions may read; larger ones are "too large" (fail closed).
    pub max_body_bytes: usize,
    /// The names the policy was written with (`group:ai-agents`), for explaining it.
    pub aliases: Aliases,
}

/// The default cap on bodies read for conditions.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

impl Policy {
    pub fn new(rules: Vec<Rule>, max_body_bytes: usize) -> Policy {
        let index = Index::build(&rules);
        Policy {
            rules,
            index,
            max_body_bytes,
            aliases: Default::default(),
        }
    }

    /// Whether deciding this request may need its body: a rule that applies to the principal,
    /// action and scope has a condition reading `request`.
    pub fn needs_body(&self, p: &Principal, op: &Operation) -> bool {
        let action = op.action.to_ascii_lowercase();
        self.index.candidates(&action).any(|i| {
            let r = &self.rules[i];
            r.when.as_ref().is_some_and(|c| c.reads_request) && r.check(p, op, &action).is_ok()
        })
    }

    /// Whether an approve rule could apply: then the body is read whole before deciding,
    /// since an approval binds the exact request.
    pub fn may_hold(&self, p: &Principal, op: &Operation) -> bool {
        let action = op.action.to_ascii_lowercase();
        self.index.candidates(&action).any(|i| {
            let r = &self.rules[i];
            r.effect == Effect::Approve && r.check(p, op, &action).is_ok()
        })
    }

    /// Decides without request facts (conditions reading `request` fail closed).
    pub fn decide(&self, p: &Principal, op: &Operation) -> Decision {
        let headers = http::HeaderMap::new();
        let facts = Facts::new(p, op, "", "", "", &headers, &super::condition::Body::Absent);
        self.decide_with(p, op, &facts)
    }

    pub fn decide_with(&self, p: &Principal, op: &Operation, facts: &Facts) -> Decision {
        let action = op.action.to_ascii_lowercase();
        let scope = scope_display(op);
        let mut winner: Option<(&Rule, Option<String>)> = None;
        let mut audit = Vec::new();
        let mut nearest = Vec::new();
        for i in self.index.candidates(&action) {
            let rule = &self.rules[i];
            let outcome = rule.check(p, op, &action).and_then(|()| match &rule.when {
                None => Ok(None),
                Some(c) => match c.evaluate(facts) {
                    Ok(true) => Ok(None),
                    Ok(false) => Err(Miss::Condition("its condition is false".into())),
                    // Fail closed: an undecidable deny or approve applies; an allow does not.
                    Err(e) if rule.effect != Effect::Allow => Ok(Some(format!("its condition could not be evaluated ({e}), so it applies (fail closed)"))),
                    Err(e) => Err(Miss::Condition(format!("its condition could not be evaluated ({e}), so it does not apply (fail closed)"))),
                },
            });
            match outcome {
                Ok(note) if rule.mode == Mode::Audit => {
                    audit.push(format!(
                        "rule '{}' (audit) would {} {} on {scope}{}",
                        rule.name,
                        rule.effect.verb().trim_end_matches('s'),
                        op.action,
                        note.map(|n| format!("; {n}")).unwrap_or_default()
                    ));
                }
                Ok(note) => {
                    if winner.as_ref().is_none_or(|(w, _)| rule.effect >= w.effect) {
                        winner = Some((rule, note));
                    }
                }
                Err(miss) => {
                    // The closest misses first: a condition that failed, then a scope, then an action.
                    let (rank, why) = match miss {
                        Miss::Principal => continue,
                        Miss::Condition(c) => (0, c),
                        Miss::Scope => (1, "covers this action, but not at this scope".to_owned()),
                        Miss::Action => (
                            2,
                            "applies to this principal, but not to this action".to_owned(),
                        ),
                    };
                    nearest.push((
                        rank,
                        Near {
                            rule: rule.name.clone(),
                            effect: rule.effect,
                            why,
                        },
                    ));
                }
            }
        }
        nearest.sort_by_key(|(rank, _)| *rank);
        let nearest: Vec<Near> = nearest
            .into_iter()
            .take(MAX_NEAREST)
            .map(|(_, n)| n)
            .collect();
        match winner {
            Some((rule, note)) => Decision {
                effect: rule.effect,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "rule '{}' ({}) {} {} on {scope}{}",
                    rule.name,
                    rule.origin,
                    rule.effect.verb(),
                    op.action,
                    note.map(|n| format!("; {n}")).unwrap_or_default()
                ),
                credential: rule.credential.clone(),
                approval: rule.approval.clone(),
                unmask: if rule.effect == Effect::Allow {
                    rule.unmask.clone()
                } else {
                    Vec::new()
                },
                audit,
                nearest: if rule.effect == Effect::Allow {
                    Vec::new()
                } else {
                    nearest
                },
            },
            None => {
                let mut reason = format!("no rule allows {} on {scope} (default deny)", op.action);
                if let Some(n) = nearest.first() {
                    reason.push_str(&format!("; nearest: rule '{}' {}", n.rule, n.why));
                }
                Decision {
                    effect: Effect::Deny,
                    rule: None,
                    reason,
                    credential: None,
                    approval: None,
                    unmask: Vec::new(),
                    audit,
                    nearest,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::principal::PrincipalKind;

    fn principal(groups: &[&str]) -> Principal {
        Principal {
            tenant_id: "t1".into(),
            object_id: "o1".into(),
            kind: PrincipalKind::App,
            app_id: Some("a1".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            roles: vec!["Agent.Invoke".into()],
            display_name: None,
            token_version: 2,
        }
    }

    fn op(method: &str, path: &str) -> Operation {
        crate::azure::operation::name_arm(&method.parse().unwrap(), path, "api-version=2024-07-01")
            .unwrap()
    }

    fn rule(name: &str, effect: Effect, actions: &[&str], scopes: &[&str]) -> Rule {
        Rule {
            name: name.into(),
            effect,
            principals: vec![PrincipalMatcher::Group("g1".into())],
            actions: actions
                .iter()
                .map(|a| ActionPattern::parse(a).unwrap())
                .collect(),
            not_actions: vec![],
            data_actions: vec![],
            not_data_actions: vec![],
            scopes: scopes
                .iter()
                .map(|s| ScopePattern::parse(s).unwrap())
                .collect(),
            when: None,
            approval: None,
            unmask: Vec::new(),
            credential: None,
            mode: Mode::Enforce,
            origin: "test:1".into(),
        }
    }

    const VM: &str =
        "/subscriptions/s1/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm1";

    #[test]
    fn a_reason_splits_into_what_the_rule_does_and_where_it_is_written() {
        let mut r = rule(
            "hold-vms",
            Effect::Approve,
            &["Microsoft.Compute/virtualMachines/write"],
            &["/subscriptions/*/resourceGroups/demo-rg"],
        );
        r.origin = "/etc/portcullis/odd) holds for approval (dir)/policy.yaml:7".into();
        let p = Policy::new(vec![r], 1 << 20);
        let d = p.decide(&principal(&["g1"]), &op("PUT", VM));
        let action = "Microsoft.Compute/virtualMachines/write";
        let split =
            |rule: &str, reason: &str| split_reason(rule, Effect::Approve, action, VM, reason);
        let parts = split("hold-vms", &d.reason).expect(&d.reason);
        assert_eq!(
            parts.origin,
            "/etc/portcullis/odd) holds for approval (dir)/policy.yaml:7"
        );
        assert_eq!(
            parts.what,
            "holds for approval Microsoft.Compute/virtualMachines/write"
        );
        // Another rule's name, or a reason of another shape: shown whole.
        assert_eq!(split("other", &d.reason), None);
        assert_eq!(split("hold-vms", "no rule allows x"), None);
        assert_eq!(split("hold-vms", &format!("{}x", d.reason)), None);
    }

    #[test]
    fn glob_semantics() {
        let p = ActionPattern::parse("Microsoft.Compute/*/read").unwrap();
        assert!(p.matches("microsoft.compute/virtualmachines/read"));
        assert!(p.matches("microsoft.compute/virtualmachines/extensions/read"));
        assert!(!p.matches("microsoft.compute/virtualmachines/write"));
        assert!(
            ActionPattern::parse("*")
                .unwrap()
                .matches("anything/at/all")
        );
        assert!(
            ActionPattern::parse("*/read")
                .unwrap()
                .matches("microsoft.storage/storageaccounts/read")
        );
        assert!(
            !ActionPattern::parse("*/read")
                .unwrap()
                .matches("microsoft.storage/storageaccounts/listkeys/action")
        );
        assert!(ActionPattern::parse("read").is_err());
        assert!(ActionPattern::parse("").is_err());
    }

    #[test]
    fn deny_beats_allow_and_nothing_matching_denies() {
        let policy = Policy::new(
            vec![
                rule(
                    "read",
                    Effect::Allow,
                    &["*"],
                    &["/subscriptions/*/resourceGroups/demo-rg"],
                ),
                rule(
                    "no-delete",
                    Effect::Deny,
                    &["Microsoft.Compute/virtualMachines/delete"],
                    &["*"],
                ),
            ],
            DEFAULT_MAX_BODY,
        );
        let p = principal(&["g1"]);
        assert_eq!(policy.decide(&p, &op("GET", VM)).effect, Effect::Allow);
        let d = policy.decide(&p, &op("DELETE", VM));
        assert_eq!(
            (d.effect, d.rule.as_deref()),
            (Effect::Deny, Some("no-delete"))
        );
        let d = policy.decide(&principal(&["other"]), &op("GET", VM));
        assert_eq!((d.effect, d.rule), (Effect::Deny, None));
        assert!(d.reason.contains("default deny"), "{}", d.reason);
    }

    #[test]
    fn scopes_are_segment_prefixes_case_insensitively() {
        let policy = Policy::new(
            vec![rule(
                "read",
                Effect::Allow,
                &["*/read"],
                &["/subscriptions/*/resourceGroups/demo-rg"],
            )],
            DEFAULT_MAX_BODY,
        );
        let p = principal(&["g1"]);
        assert_eq!(
            policy.decide(&p, &op("GET", &VM.to_uppercase())).effect,
            Effect::Allow
        );
        let other = "/subscriptions/s1/resourceGroups/demo-rg2/providers/Microsoft.Compute/virtualMachines/vm1";
        let d = policy.decide(&p, &op("GET", other));
        assert_eq!(
            d.effect,
            Effect::Deny,
            "demo-rg is not a prefix of demo-rg2"
        );
        assert!(d.reason.contains("not at this scope"), "{}", d.reason);
    }

    #[test]
    fn actions_never_grant_data_actions() {
        let policy = Policy::new(
            vec![rule("all", Effect::Allow, &["*"], &["*"])],
            DEFAULT_MAX_BODY,
        );
        let kv = crate::azure::operation::name_keyvault(
            &http::Method::GET,
            "demo-kv",
            "/secrets/x",
            "api-version=7.4",
        )
        .unwrap();
        assert_eq!(policy.decide(&principal(&["g1"]), &kv).effect, Effect::Deny);
        let mut r = rule("data", Effect::Allow, &[], &["vault:demo-*"]);
        r.data_actions = vec![ActionPattern::parse("Microsoft.KeyVault/vaults/secrets/*").unwrap()];
        let policy = Policy::new(vec![r], DEFAULT_MAX_BODY);
        assert_eq!(
            policy.decide(&principal(&["g1"]), &kv).effect,
            Effect::Allow
        );
    }

    #[test]
    fn not_actions_subtract() {
        let mut r = rule("most", Effect::Allow, &["Microsoft.Compute/*"], &["*"]);
        r.not_actions =
            vec![ActionPattern::parse("Microsoft.Compute/virtualMachines/delete").unwrap()];
        let policy = Policy::new(vec![r], DEFAULT_MAX_BODY);
        let p = principal(&["g1"]);
        assert_eq!(policy.decide(&p, &op("PUT", VM)).effect, Effect::Allow);
        assert_eq!(policy.decide(&p, &op("DELETE", VM)).effect, Effect::Deny);
    }

    fn body_facts<'a>(
        p: &'a Principal,
        op: &'a Operation,
        body: &'a crate::policy::condition::Body,
        headers: &'a http::HeaderMap,
    ) -> Facts<'a> {
        Facts::new(p, op, "PUT", "/", "", headers, body)
    }

    #[test]
    fn deny_beats_approve_beats_allow() {
        let sa = "/subscriptions/s1/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/sa1";
        let mut approve = rule("approve-writes", Effect::Approve, &["*/write"], &["*"]);
        approve.credential = Some("elevated".into());
        let policy = Policy::new(
            vec![
                rule("allow-all", Effect::Allow, &["*"], &["*"]),
                approve,
                rule("no-deletes", Effect::Deny, &["*/delete"], &["*"]),
            ],
            DEFAULT_MAX_BODY,
        );
        let p = principal(&["g1"]);
        assert_eq!(policy.decide(&p, &op("GET", sa)).effect, Effect::Allow);
        let d = policy.decide(&p, &op("PUT", sa));
        assert_eq!(
            (d.effect, d.rule.as_deref(), d.credential.as_deref()),
            (Effect::Approve, Some("approve-writes"), Some("elevated"))
        );
        assert_eq!(policy.decide(&p, &op("DELETE", sa)).effect, Effect::Deny);
    }

    #[test]
    fn undecidable_conditions_fail_closed() {
        use crate::policy::condition::{Body, Condition};
        let sa = "/subscriptions/s1/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/sa1";
        let mut allow = rule("allow-eastus", Effect::Allow, &["*/write"], &["*"]);
        allow.when = Some(Condition::compile("request.body.location == 'eastus'").unwrap());
        let mut deny = rule("deny-westeurope", Effect::Deny, &["*/write"], &["*"]);
        deny.when = Some(Condition::compile("request.body.location == 'westeurope'").unwrap());
        let policy = Policy::new(vec![allow, deny], DEFAULT_MAX_BODY);
        let p = principal(&["g1"]);
        let o = op("PUT", sa);
        assert!(policy.needs_body(&p, &o));
        let headers = http::HeaderMap::new();
        let d = |b: Body| policy.decide_with(&p, &o, &body_facts(&p, &o, &b, &headers));
        assert_eq!(
            d(Body::Json(serde_json::json!({"location": "eastus"}))).effect,
            Effect::Allow
        );
        let westeurope = d(Body::Json(serde_json::json!({"location": "westeurope"})));
        assert_eq!(
            (westeurope.effect, westeurope.rule.as_deref()),
            (Effect::Deny, Some("deny-westeurope"))
        );
        for body in [Body::TooLarge, Body::NotJson, Body::Absent] {
            let decision = d(body);
            assert_eq!(
                (decision.effect, decision.rule.as_deref()),
                (Effect::Deny, Some("deny-westeurope")),
                "{}",
                decision.reason
            );
            assert!(
                decision.reason.contains("fail closed"),
                "{}",
                decision.reason
            );
        }
        assert!(
            !policy.needs_body(&p, &op("GET", sa)),
            "no rule reads a GET's body"
        );
    }

    #[test]
    fn audit_rules_report_but_never_enforce() {
        let mut audit = rule("would-deny", Effect::Deny, &["*"], &["*"]);
        audit.mode = Mode::Audit;
        let policy = Policy::new(
            vec![rule("read", Effect::Allow, &["*/read"], &["*"]), audit],
            DEFAULT_MAX_BODY,
        );
        let d = policy.decide(&principal(&["g1"]), &op("GET", VM));
        assert_eq!(d.effect, Effect::Allow);
        assert_eq!(d.audit.len(), 1);
        assert!(d.audit[0].contains("would-deny"), "{:?}", d.audit);
    }

    #[test]
    fn the_index_finds_namespaced_and_wildcard_rules_in_order() {
        let rules = vec![
            rule("compute", Effect::Allow, &["Microsoft.Compute/*"], &["*"]),
            rule("storage", Effect::Allow, &["Microsoft.Storage/*"], &["*"]),
            rule("everything", Effect::Allow, &["*/read"], &["*"]),
            rule(
                "compute-2",
                Effect::Deny,
                &["microsoft.compute/virtualMachines/delete"],
                &["*"],
            ),
        ];
        let index = super::Index::build(&rules);
        let got: Vec<usize> = index
            .candidates("microsoft.compute/virtualmachines/delete")
            .collect();
        assert_eq!(got, vec![0, 2, 3]);
        let got: Vec<usize> = index.candidates("microsoft.keyvault/vaults/read").collect();
        assert_eq!(got, vec![2]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "Microsoft.Compute",
                "Microsoft.Storage",
                "virtualMachines",
                "storageAccounts",
                "read",
                "write",
                "delete",
                "listKeys",
                "action",
                "*",
            ])
            .prop_map(str::to_owned)
        }

        fn pattern() -> impl Strategy<Value = String> {
            prop::collection::vec(segment(), 1..4)
                .prop_map(|s| s.join("/"))
                .prop_filter("a pattern needs a slash or is *", |p| {
                    p == "*" || p.contains('/')
                })
        }

        proptest! {
            /// Whatever the rules, an allow names a rule one of whose patterns matches the
            /// action, and that rule's not_actions do not.
            #[test]
            fn no_allow_outside_its_patterns(patterns in prop::collection::vec((pattern(), prop::option::of(pattern())), 1..6), verb in prop::sample::select(vec!["GET", "PUT", "DELETE", "POST"])) {
                let rules: Vec<Rule> = patterns.iter().enumerate().map(|(i, (a, not))| {
                    let mut r = rule(&format!("r{i}"), Effect::Allow, &[a.as_str()], &["*"]);
                    r.not_actions = not.iter().map(|n| ActionPattern::parse(n).unwrap()).collect();
                    r
                }).collect();
                let policy = Policy::new(rules.clone(), DEFAULT_MAX_BODY);
                let path = if verb == "POST" { format!("{VM}/start") } else { VM.to_owned() };
                let o = op(verb, &path);
                let d = policy.decide(&principal(&["g1"]), &o);
                if d.effect == Effect::Allow {
                    let r = rules.iter().find(|r| Some(&r.name) == d.rule.as_ref()).unwrap();
                    let action = o.action.to_ascii_lowercase();
                    prop_assert!(r.actions.iter().any(|a| a.matches(&action)));
                    prop_assert!(!r.not_actions.iter().any(|a| a.matches(&action)));
                } else {
                    let granted = rules.iter().any(|r| r.actions.iter().any(|a| a.matches(&o.action.to_ascii_lowercase())) && !r.not_actions.iter().any(|a| a.matches(&o.action.to_ascii_lowercase())));
                    prop_assert!(!granted, "a granting rule exists but the decision was {:?}", d);
                }
            }
        }
    }
}
