//! Who is calling, as a validated token says. Authorization keys on `tid` + `oid`, which are
//! immutable; names and e-mail addresses are for people to read, never to decide on.
//! <https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference>

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    App,
    ManagedIdentity,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Principal {
    /// Lowercased tenant id (`tid`).
    pub tenant_id: String,
    /// Lowercased object id (`oid`).
    pub object_id: String,
    pub kind: PrincipalKind,
    /// The calling application (`appid` in v1, `azp` in v2), lowercased.
    pub app_id: Option<String>,
    /// Group object ids, lowercased; resolved through Graph when the token had an overage.
    pub groups: Vec<String>,
    /// App roles (`roles`).
    pub roles: Vec<String>,
    /// For people to read: `name`, `upn` or `preferred_username`. Never used to decide.
    pub display_name: Option<String>,
    /// 1 or 2.
    pub token_version: u8,
}

impl Principal {
    /// How the principal is named in messages: the display name with the object id.
    pub fn describe(&self) -> String {
        match &self.display_name {
            Some(n) => format!("{n} ({})", self.object_id),
            None => self.object_id.clone(),
        }
    }
}
