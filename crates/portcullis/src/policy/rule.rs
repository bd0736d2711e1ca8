//! Rules in the shape of Azure RBAC role definitions: `actions` minus `not_actions` for the
//! control plane, `data_actions` minus `not_data_actions` for the data plane (`actions`
//! never grant data actions, as in RBAC), `*` wildcards, and scopes as ARM id prefixes.
//! <https://learn.microsoft.com/azure/role-based-access-control/role-definitions>
//!
//! Precedence: a matching deny beats any allow; no matching rule denies. Matching is
//! case-insensitive throughout, as Azure's names are.

use serde::Serialize;

use crate::azure::operation::{Operation, Plane};
use crate::identity::principal::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// Who a rule is about. Ids are lowercased at load; aliases are resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalMatcher {
    Any,
    Group(String),
    Role(String),
    App(String),
    User(String),
    Tenant(String),
}

impl PrincipalMatcher {
    pub fn matches(&self, p: &Principal) -> bool {
        match self {
            PrincipalMatcher::Any => true,
            PrincipalMatcher::Group(g) => p.groups.iter().any(|x| x == g),
            PrincipalMatcher::Role(r) => p.roles.iter().any(|x| x.eq_ignore_ascii_case(r)),
            PrincipalMatcher::App(a) => p.app_id.as_deref() == Some(a.as_str()),
            PrincipalMatcher::User(u) => p.object_id == *u,
            PrincipalMatcher::Tenant(t) => p.tenant_id == *t,
        }
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
                let segments: Vec<String> = id
                    .split('/')
                    .filter(|x| !x.is_empty())
                    .map(|x| x.to_ascii_lowercase())
                    .collect();
                segments.len() >= pattern.len()
                    && pattern
                        .iter()
                        .zip(&segments)
                        .all(|(p, s)| p == "*" || p == s)
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
    /// Where the rule is written (`file:line`), for explanations.
    pub origin: String,
}

/// Why a rule did or did not apply.
enum Miss {
    Principal,
    Action,
    Scope,
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

/// The outcome, with the rule that decided and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    /// `None` when no rule matched (the default deny).
    pub rule: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn decide(&self, p: &Principal, op: &Operation) -> Decision {
        let action = op.action.to_ascii_lowercase();
        let mut allow: Option<&Rule> = None;
        let mut near: Option<(&Rule, &'static str)> = None;
        for rule in &self.rules {
            match rule.check(p, op, &action) {
                Ok(()) if rule.effect == Effect::Deny => {
                    return Decision {
                        effect: Effect::Deny,
                        rule: Some(rule.name.clone()),
                        reason: format!(
                            "rule '{}' ({}) denies {} on {}",
                            rule.name,
                            rule.origin,
                            op.action,
                            scope_display(op)
                        ),
                    };
                }
                Ok(()) => {
                    allow.get_or_insert(rule);
                }
                Err(Miss::Scope) if rule.effect == Effect::Allow && near.is_none() => {
                    near = Some((rule, "allows this action, but not at this scope"));
                }
                Err(Miss::Action) if rule.effect == Effect::Allow && near.is_none() => {
                    near = Some((
                        rule,
                        "applies to this principal, but does not grant this action",
                    ));
                }
                Err(_) => {}
            }
        }
        match allow {
            Some(rule) => Decision {
                effect: Effect::Allow,
                rule: Some(rule.name.clone()),
                reason: format!(
                    "rule '{}' ({}) allows {} on {}",
                    rule.name,
                    rule.origin,
                    op.action,
                    scope_display(op)
                ),
            },
            None => {
                let mut reason = format!(
                    "no rule allows {} on {} (default deny)",
                    op.action,
                    scope_display(op)
                );
                if let Some((rule, why)) = near {
                    reason.push_str(&format!("; nearest: rule '{}' {why}", rule.name));
                }
                Decision {
                    effect: Effect::Deny,
                    rule: None,
                    reason,
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
            origin: "test:1".into(),
        }
    }

    const VM: &str =
        "/subscriptions/s1/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm1";

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
        let policy = Policy {
            rules: vec![
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
        };
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
        let policy = Policy {
            rules: vec![rule(
                "read",
                Effect::Allow,
                &["*/read"],
                &["/subscriptions/*/resourceGroups/demo-rg"],
            )],
        };
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
        let policy = Policy {
            rules: vec![rule("all", Effect::Allow, &["*"], &["*"])],
        };
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
        let policy = Policy { rules: vec![r] };
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
        let policy = Policy { rules: vec![r] };
        let p = principal(&["g1"]);
        assert_eq!(policy.decide(&p, &op("PUT", VM)).effect, Effect::Allow);
        assert_eq!(policy.decide(&p, &op("DELETE", VM)).effect, Effect::Deny);
    }
}
