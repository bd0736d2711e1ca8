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
    /// For people to read: a user's `name`, `preferred_username` or `upn`, an app's
    /// `app_displayname`, cleaned (`names::clean`). Never used to decide.
    pub display_name: Option<String>,
    /// 1 or 2.
    pub token_version: u8,
}

impl Principal {
    /// How the principal is named in messages: the display name with its kind and the
    /// object id ("build-agent (app, 93eb…)"), or the id with "(name unavailable)".
    pub fn describe(&self) -> String {
        super::names::with_id(
            self.display_name.as_deref(),
            Some(self.kind.label()),
            &self.object_id,
        )
    }

    /// The name with its kind, as an audit record keeps it ("build-agent (app)"), when the
    /// token named the principal.
    pub fn labelled_name(&self) -> Option<String> {
        self.display_name
            .as_deref()
            .map(|n| super::names::labelled(n, self.kind.label()))
    }
}
