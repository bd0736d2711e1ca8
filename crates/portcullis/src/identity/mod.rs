//! Identify: the agent's Entra ID token, validated, becomes a `Principal`.

pub mod jwks;
pub mod jwt;
pub mod overage;
pub mod principal;

use std::sync::Arc;

use crate::config::IdentityConfig;
use jwks::KeyCache;
use jwt::TokenError;
use overage::GroupResolver;
use principal::Principal;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the caller's group membership could not be resolved: {0}")]
    Groups(String),
}

/// Whether `s` is a GUID in its canonical 8-4-4-4-12 form (tenant and object ids).
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

pub struct Authenticator {
    pub cfg: IdentityConfig,
    pub keys: Arc<KeyCache>,
    groups: Option<GroupResolver>,
}

impl Authenticator {
    pub fn new(
        cfg: IdentityConfig,
        keys: Arc<KeyCache>,
        groups: Option<GroupResolver>,
    ) -> Authenticator {
        Authenticator { cfg, keys, groups }
    }

    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let (mut principal, overage) = jwt::validate(&self.cfg, &self.keys, token).await?;
        if overage {
            // Without the groups, group rules cannot be judged: refuse rather than guess.
            let resolver = self.groups.as_ref().ok_or_else(|| {
                AuthError::Groups(
                    "the token has a groups overage and identity.groups_overage is not configured"
                        .into(),
                )
            })?;
            principal.groups = resolver
                .groups(&principal)
                .await
                .map_err(AuthError::Groups)?;
        }
        Ok(principal)
    }
}
