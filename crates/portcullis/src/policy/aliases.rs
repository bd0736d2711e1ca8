//! The names a policy is written with: readable names for object ids, so rules say
//! `group:ai-agents`, and named scope lists, so a shipped policy says `scope:agents` and the
//! configuration that includes it says where that is.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Aliases {
    /// Name → group object id.
    pub groups: BTreeMap<String, String>,
    /// Name → user object id.
    pub users: BTreeMap<String, String>,
    /// Name → application (client) id.
    pub apps: BTreeMap<String, String>,
    /// Name → ARM scope patterns.
    pub scopes: BTreeMap<String, Vec<String>>,
}

impl Aliases {
    /// The name the policy gives a matcher's id (`approvers` for `group:a56b…`), if any.
    pub fn name_of(&self, m: &super::PrincipalMatcher) -> Option<&str> {
        use super::PrincipalMatcher::*;
        let (map, id) = match m {
            Group(id) => (&self.groups, id),
            User(id) => (&self.users, id),
            App(id) => (&self.apps, id),
            _ => return None,
        };
        map.iter()
            .find(|(_, v)| v.eq_ignore_ascii_case(id))
            .map(|(k, _)| k.as_str())
    }
}
