//! Identify: the agent's Entra ID token, validated, becomes a `Principal`.

pub mod cache;
pub mod directory;
pub mod jwks;
pub mod jwt;
pub mod names;
pub mod overage;
pub mod principal;
pub mod settings;

use std::sync::Arc;
use std::time::Instant;

use cache::TokenCache;
use jwks::KeyCache;
use jwt::TokenError;
use overage::GroupResolver;
use principal::Principal;
use settings::IdentityConfig;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the caller's group membership could not be resolved: {0}")]
    Groups(String),
}

pub struct Authenticator {
    pub cfg: IdentityConfig,
    pub keys: Arc<KeyCache>,
    groups: Option<GroupResolver>,
    /// Tokens already verified (`cache.rs`): a repeat is answered without RS256.
    cache: TokenCache,
    /// Display names from Graph for people to read (`directory.rs`); never consulted by
    /// `authenticate`.
    pub directory: Arc<directory::Directory>,
}

impl Authenticator {
    pub fn new(
        cfg: IdentityConfig,
        keys: Arc<KeyCache>,
        groups: Option<GroupResolver>,
    ) -> Authenticator {
        Self::with_cache_size(cfg, keys, groups, cache::MAX_ENTRIES)
    }

    /// With a token cache of at most `max_entries` entries.
    pub fn with_cache_size(
        cfg: IdentityConfig,
        keys: Arc<KeyCache>,
        groups: Option<GroupResolver>,
        max_entries: usize,
    ) -> Authenticator {
        Authenticator {
            cfg,
            keys,
            groups,
            cache: TokenCache::new(max_entries),
            directory: Arc::new(directory::Directory::none()),
        }
    }

    /// With display names looked up in `directory`.
    pub fn with_directory(mut self, directory: directory::Directory) -> Authenticator {
        self.directory = Arc::new(directory);
        self
    }

    /// Tokens held in the cache (for tests and benchmarks).
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        // Read before verifying: keys that change meanwhile make the result unservable.
        let generation = self.keys.generation();
        if token.len() <= jwt::MAX_TOKEN_LEN
            && let Some(p) = self.cache.get(token, generation)
        {
            return Ok(Principal::clone(&p));
        }
        let jwt::Validated {
            mut principal,
            overage,
            expires,
        } = jwt::validate(&self.cfg, &self.keys, token).await?;
        // A name for the records' readers, fetched beside the request, never before it.
        if principal.display_name.is_none() && principal.kind != principal::PrincipalKind::User {
            self.directory.warm(&principal.object_id);
        }
        let mut fresh_until = Instant::now() + cache::LIFETIME;
        if overage {
            // Without the groups, group rules cannot be judged: refuse rather than guess.
            let resolver = self.groups.as_ref().ok_or_else(|| {
                AuthError::Groups(
                    "the token has a groups overage and identity.groups_overage is not configured"
                        .into(),
                )
            })?;
            let (groups, groups_until) = resolver
                .groups(&principal)
                .await
                .map_err(AuthError::Groups)?;
            principal.groups = groups;
            fresh_until = fresh_until.min(groups_until);
        }
        // Keys that changed while this token was being verified: it is not kept, and the
        // next request verifies it again under the new ones.
        if let Some(exp) = expires
            && self.keys.generation() == generation
        {
            self.cache
                .insert(token, principal.clone(), exp, fresh_until, generation);
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    //! The token cache through `authenticate`, with real tokens: the simulator signs them and
    //! publishes its keys over TLS, as Entra does.

    use std::path::PathBuf;
    use std::time::Duration;

    use azure_sim::{MintRequest, SimOptions, Simulator};

    use super::*;
    use crate::identity::settings::TenantMode;
    use crate::upstream::client::HttpClient;

    const API: &str = "api://portcullis";

    struct Setup {
        sim: Simulator,
        auth: Authenticator,
        dir: PathBuf,
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Setup {
        async fn start(clock_skew: Duration, max_entries: usize) -> Setup {
            let sim = Simulator::start(SimOptions::default()).await.unwrap();
            let dir = std::env::temp_dir().join(format!(
                "pc-identity-test-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let ca = dir.join("ca.pem");
            std::fs::write(&ca, sim.ca_pem()).unwrap();
            let http = HttpClient::new(&[ca], Duration::from_secs(10)).unwrap();
            let cfg = IdentityConfig {
                authority: sim.url().to_owned(),
                tenant: TenantMode::Single(sim.tenant_id()),
                allowed_tenants: vec![sim.tenant_id()],
                audiences: vec![
                    API.to_owned(),
                    sim.config().api_for(API).unwrap().app_id.to_string(),
                ],
                versions: vec![1, 2],
                clock_skew,
                ca_file: None,
                overage: None,
            };
            let keys = Arc::new(KeyCache::new(http));
            let auth = Authenticator::with_cache_size(cfg, keys, None, max_entries);
            Setup { sim, auth, dir }
        }

        fn token(&self, lifetime_secs: Option<i64>) -> String {
            self.sim
                .mint(MintRequest {
                    principal: "agent".into(),
                    audience: API.into(),
                    version: None,
                    lifetime_secs,
                    not_before_offset_secs: 0,
                    client_app: None,
                    claims: Default::default(),
                    unpublished_key: false,
                })
                .unwrap()
        }

        async fn jwks_uri(&self) -> String {
            let url = format!(
                "{}/{}/v2.0/.well-known/openid-configuration",
                self.sim.url(),
                self.sim.tenant_id()
            );
            self.auth.keys.metadata(&url).await.unwrap().jwks_uri
        }
    }

    fn exp_of(token: &str) -> u64 {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["exp"]
            .as_u64()
            .unwrap()
    }

    #[tokio::test]
    async fn a_verified_token_is_served_from_the_cache() {
        let mut s = Setup::start(Duration::from_secs(60), 100).await;
        let token = s.token(None);
        let first = s.auth.authenticate(&token).await.unwrap();
        assert_eq!(s.auth.cached_tokens(), 1);
        // A near miss of the cached token (one character of its signature changed) is
        // verified in full, and refused.
        let mut altered: Vec<char> = token.chars().collect();
        let i = altered.len() - 10;
        altered[i] = if altered[i] == 'A' { 'B' } else { 'A' };
        let altered: String = altered.into_iter().collect();
        assert!(matches!(
            s.auth.authenticate(&altered).await,
            Err(AuthError::Token(TokenError::Signature))
        ));
        assert_eq!(s.auth.cached_tokens(), 1);
        // From here a full check refuses every token (the audience is no longer ours);
        // the cached one still passes: it was not verified again.
        s.auth.cfg.audiences = vec!["api://somebody-else".into()];
        let again = s.auth.authenticate(&token).await.unwrap();
        assert_eq!(again.object_id, first.object_id);
        assert_eq!(again.tenant_id, first.tenant_id);
        assert_eq!(again.groups, first.groups);
        let other = s.token(None);
        assert!(matches!(
            s.auth.authenticate(&other).await,
            Err(AuthError::Token(TokenError::Audience))
        ));
        // A failure is not kept.
        assert_eq!(s.auth.cached_tokens(), 1);
    }

    #[tokio::test]
    async fn a_cached_token_is_not_served_past_its_exp() {
        // No clock skew: the full check refuses the token a second after its exp.
        let s = Setup::start(Duration::ZERO, 100).await;
        let token = s.token(Some(2));
        s.auth.authenticate(&token).await.unwrap();
        assert_eq!(s.auth.cached_tokens(), 1);
        let exp = exp_of(&token);
        while super::cache::tests_unix_now() <= exp {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(
            s.auth.authenticate(&token).await,
            Err(AuthError::Token(TokenError::Expired))
        ));
        assert_eq!(s.auth.cached_tokens(), 0);
    }

    #[tokio::test]
    async fn already_expired_tokens_are_refused_and_never_cached() {
        let s = Setup::start(Duration::from_secs(60), 100).await;
        let token = s.token(Some(-600));
        for _ in 0..2 {
            assert!(matches!(
                s.auth.authenticate(&token).await,
                Err(AuthError::Token(TokenError::Expired))
            ));
        }
        assert_eq!(s.auth.cached_tokens(), 0);
    }

    #[tokio::test]
    async fn a_key_rotation_empties_the_cache() {
        let s = Setup::start(Duration::from_secs(60), 100).await;
        let old = s.token(None);
        s.auth.authenticate(&old).await.unwrap();
        let jwks_uri = s.jwks_uri().await;

        // A refresh that finds the same keys changes nothing.
        let generation = s.auth.keys.generation();
        s.auth.keys.refresh(&jwks_uri).await.unwrap();
        assert_eq!(s.auth.keys.generation(), generation);
        s.auth.authenticate(&old).await.unwrap();
        assert_eq!(s.auth.cached_tokens(), 1);

        // A new key beside the old one: the cache is emptied, the token verified again.
        s.sim.rotate_keys(false);
        s.auth.keys.refresh(&jwks_uri).await.unwrap();
        assert!(s.auth.keys.generation() > generation);
        s.auth.authenticate(&old).await.unwrap();
        assert_eq!(
            s.auth.cached_tokens(),
            1,
            "emptied, then the token cached again"
        );

        // The old key retired: the token it signed is refused from the next refresh on.
        s.sim.rotate_keys(true);
        s.auth.keys.refresh(&jwks_uri).await.unwrap();
        assert!(matches!(
            s.auth.authenticate(&old).await,
            Err(AuthError::Token(TokenError::Key(_)))
        ));
        assert_eq!(s.auth.cached_tokens(), 0);
        let new = s.token(None);
        s.auth.authenticate(&new).await.unwrap();
        assert_eq!(s.auth.cached_tokens(), 1);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bound() {
        let s = Setup::start(Duration::from_secs(60), 3).await;
        let tokens: Vec<String> = (0..8).map(|_| s.token(None)).collect();
        for t in &tokens {
            s.auth.authenticate(t).await.unwrap();
            assert!(s.auth.cached_tokens() <= 3);
        }
        // Evicted tokens are verified again, not refused.
        for t in &tokens {
            s.auth.authenticate(t).await.unwrap();
        }
        assert_eq!(s.auth.cached_tokens(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_agree() {
        let s = Arc::new(Setup::start(Duration::from_secs(60), 100).await);
        let tokens: Arc<Vec<String>> = Arc::new((0..4).map(|_| s.token(None)).collect());
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    for j in 0..25 {
                        let t = &tokens[(i + j) % tokens.len()];
                        let p = s.auth.authenticate(t).await.unwrap();
                        assert_eq!(p.tenant_id, s.sim.tenant_id());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.auth.cached_tokens(), 4);
    }
}
