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
