//! Who a rule is about: `group:`, `role:`, `app:`, `user:`, `tenant:` or `*`, as policies,
//! approvals and `policy explain` write it. Parsed here with the policy's aliases resolved to
//! object ids, and printed back in the resolved form, which parses again.

use std::collections::BTreeMap;
use std::fmt;

use super::aliases::Aliases;
use crate::identity::principal::Principal;
use crate::ids::is_guid;

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
    /// Parses a matcher as rules write it (`group:ai-agents`, `role:Reader`, `*`); names are
    /// resolved through `aliases`, and ids must be GUIDs (lowercased here).
    pub fn parse(aliases: &Aliases, s: &str) -> Result<PrincipalMatcher, String> {
        if s.trim() == "*" {
            return Ok(PrincipalMatcher::Any);
        }
        let (kind, value) = s.split_once(':').ok_or_else(|| {
            format!("principal '{s}' must be kind:value (group:, role:, app:, user:, tenant:) or *")
        })?;
        let value = value.trim();
        let resolve = |map: &BTreeMap<String, String>| -> Result<String, String> {
            let id = map
                .get(value)
                .map(String::as_str)
                .unwrap_or(value)
                .to_ascii_lowercase();
            if is_guid(&id) {
                Ok(id)
            } else {
                Err(format!(
                    "principal '{s}': '{value}' is neither an object id nor a known alias"
                ))
            }
        };
        Ok(match kind.trim() {
            "group" => PrincipalMatcher::Group(resolve(&aliases.groups)?),
            "user" => PrincipalMatcher::User(resolve(&aliases.users)?),
            "app" => PrincipalMatcher::App(resolve(&aliases.apps)?),
            "tenant" => PrincipalMatcher::Tenant(resolve(&BTreeMap::new())?),
            "role" if !value.is_empty() => PrincipalMatcher::Role(value.to_owned()),
            other => return Err(format!("principal '{s}': unknown kind '{other}'")),
        })
    }

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

impl PrincipalMatcher {
    /// The matcher for people: `name` (the policy's alias or the directory's name) with the
    /// kind and id beside it ("approvers (group, a56b…)"), or the id with "(name
    /// unavailable)"; roles and tenants say what they are.
    pub fn shown(&self, name: Option<&str>) -> String {
        use crate::identity::names::with_id;
        match self {
            PrincipalMatcher::Any => "anyone".to_owned(),
            PrincipalMatcher::Group(g) => with_id(name, Some("group"), g),
            PrincipalMatcher::User(u) => with_id(name, Some("user"), u),
            PrincipalMatcher::App(a) => with_id(name, Some("app id"), a),
            PrincipalMatcher::Role(r) => format!("app role {r}"),
            PrincipalMatcher::Tenant(t) => format!("anyone in tenant {t}"),
        }
    }
}

/// The resolved form (`group:{object id}`): how an approval stores its approvers, read back
/// with [`PrincipalMatcher::parse`].
impl fmt::Display for PrincipalMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrincipalMatcher::Any => f.write_str("*"),
            PrincipalMatcher::Group(g) => write!(f, "group:{g}"),
            PrincipalMatcher::Role(r) => write!(f, "role:{r}"),
            PrincipalMatcher::App(a) => write!(f, "app:{a}"),
            PrincipalMatcher::User(u) => write!(f, "user:{u}"),
            PrincipalMatcher::Tenant(t) => write!(f, "tenant:{t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn aliases_resolve_and_the_text_parses_again() {
        let mut aliases = Aliases::default();
        aliases
            .groups
            .insert("agents".into(), GROUP.to_ascii_uppercase());
        let m = PrincipalMatcher::parse(&aliases, "group:agents").unwrap();
        assert_eq!(m, PrincipalMatcher::Group(GROUP.into()));
        for m in [
            m,
            PrincipalMatcher::Any,
            PrincipalMatcher::Role("Approver".into()),
            PrincipalMatcher::Tenant(GROUP.into()),
        ] {
            assert_eq!(
                PrincipalMatcher::parse(&Aliases::default(), &m.to_string()),
                Ok(m)
            );
        }
    }

    #[test]
    fn matchers_are_shown_by_name_with_their_ids() {
        let mut aliases = Aliases::default();
        aliases.groups.insert("approvers".into(), GROUP.into());
        let m = PrincipalMatcher::Group(GROUP.into());
        assert_eq!(aliases.name_of(&m), Some("approvers"));
        assert_eq!(
            m.shown(aliases.name_of(&m)),
            format!("approvers (group, {GROUP})")
        );
        assert_eq!(m.shown(None), format!("{GROUP} (group, name unavailable)"));
        let other = PrincipalMatcher::User(GROUP.into());
        assert_eq!(aliases.name_of(&other), None, "aliases are per kind");
        assert_eq!(
            PrincipalMatcher::Role("Approver".into()).shown(None),
            "app role Approver"
        );
        assert_eq!(PrincipalMatcher::Any.shown(None), "anyone");
    }

    #[test]
    fn names_that_are_not_ids_are_refused() {
        let e = PrincipalMatcher::parse(&Aliases::default(), "group:agents").unwrap_err();
        assert!(e.contains("neither an object id nor a known alias"), "{e}");
        assert!(PrincipalMatcher::parse(&Aliases::default(), "agents").is_err());
        assert!(PrincipalMatcher::parse(&Aliases::default(), "role:").is_err());
    }
}
