//! OIDC metadata and signing keys, cached per issuer, refreshed by the rules Entra's key
//! rollover guidance asks of relying parties (azure-notes §1):
//! <https://learn.microsoft.com/entra/identity-platform/signing-key-rollover>
//!
//! - keys are chosen by `kid`; several are published and order means nothing;
//! - a background task refreshes every known key set (hourly by default);
//! - an unknown `kid` triggers an immediate refresh, at most once per 5 minutes per set;
//! - a failed fetch keeps the last good keys; with none, verification fails closed.
//!
//! Every change to what is trusted (a key set or a discovery document that differs from
//! the one held) bumps a generation counter; what was verified under an older generation
//! (the authenticator's token cache) is not trusted any more.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use jsonwebtoken::DecodingKey;
use serde_json::Value;

use crate::upstream::client::HttpClient;

/// How often an unknown `kid` may force a refresh of one key set.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KeyError {
    #[error("signing key '{0}' is not published by the issuer")]
    UnknownKid(String),
    #[error("the issuer's keys could not be fetched and none are cached: {0}")]
    Unavailable(String),
    #[error("the issuer's metadata could not be fetched: {0}")]
    Metadata(String),
}

/// What a discovery document says that validation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// May contain `{tenantid}` (multi-tenant authorities).
    pub issuer: String,
    pub jwks_uri: String,
}

/// What a JWKS publishes that is trusted: `kid` to the key's `(n, e)`. Compared across
/// refreshes to tell whether the keys changed (`DecodingKey` cannot be compared).
type Published = BTreeMap<String, (String, String)>;

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    published: Published,
    /// When an unknown `kid` (or a failed first fetch) last forced a fetch: the rate
    /// limit's clock. Scheduled refreshes do not set it.
    forced: Option<Instant>,
}

pub struct KeyCache {
    http: HttpClient,
    /// Discovery documents by URL. Filled on first use, refreshed with the keys.
    metadata: RwLock<HashMap<String, Metadata>>,
    /// Key sets by JWKS URL. Read on every token; written by refreshes only.
    sets: RwLock<HashMap<String, KeySet>>,
    /// Serialises fetches so a burst of unknown kids makes one request, not hundreds.
    fetching: tokio::sync::Mutex<()>,
    min_refresh: Duration,
    /// Bumped whenever a key set or a discovery document changes.
    generation: AtomicU64,
}

fn parse_jwks(doc: &Value) -> (HashMap<String, DecodingKey>, Published) {
    let mut keys = HashMap::new();
    let mut published = Published::new();
    for k in doc["keys"].as_array().into_iter().flatten() {
        // Only RSA signing keys; anything else in the set is ignored, not trusted.
        if k["kty"] != "RSA" || k.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let (Some(kid), Some(n), Some(e)) = (k["kid"].as_str(), k["n"].as_str(), k["e"].as_str())
        else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_rsa_components(n, e) {
            keys.insert(kid.to_owned(), key);
            published.insert(kid.to_owned(), (n.to_owned(), e.to_owned()));
        }
    }
    (keys, published)
}

impl KeyCache {
    pub fn new(http: HttpClient) -> KeyCache {
        Self::with_min_refresh(http, MIN_REFRESH_INTERVAL)
    }

    pub fn with_min_refresh(http: HttpClient, min_refresh: Duration) -> KeyCache {
        KeyCache {
            http,
            metadata: RwLock::new(HashMap::new()),
            sets: RwLock::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            min_refresh,
            generation: AtomicU64::new(0),
        }
    }

    /// Changes whenever the trusted keys or metadata change (a key added, removed or
    /// replaced; an issuer or `jwks_uri` that moved). Read it before verifying a token: a
    /// result kept under an older generation must be verified again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Stores a discovery document; a changed one bumps the generation.
    fn store_metadata(&self, url: String, m: Metadata) {
        let previous = self
            .metadata
            .write()
            .expect("metadata lock")
            .insert(url, m.clone());
        if previous.is_some_and(|p| p != m) {
            self.bump_generation();
        }
    }

    /// The discovery document at `url`, fetched once and then served from memory.
    pub async fn metadata(&self, url: &str) -> Result<Metadata, KeyError> {
        if let Some(m) = self.metadata.read().expect("metadata lock").get(url) {
            return Ok(m.clone());
        }
        let m = self.fetch_metadata(url).await?;
        self.store_metadata(url.to_owned(), m.clone());
        Ok(m)
    }

    async fn fetch_metadata(&self, url: &str) -> Result<Metadata, KeyError> {
        let doc = self
            .http
            .json(Method::GET, url, HeaderMap::new(), None)
            .await
            .map_err(|e| KeyError::Metadata(e.to_string()))?;
        match (doc["issuer"].as_str(), doc["jwks_uri"].as_str()) {
            (Some(i), Some(j)) if j.starts_with("https://") => Ok(Metadata {
                issuer: i.to_owned(),
                jwks_uri: j.to_owned(),
            }),
            _ => Err(KeyError::Metadata(format!(
                "{url} has no issuer or https jwks_uri"
            ))),
        }
    }

    /// The key `kid` of the set at `jwks_uri`.
    pub async fn key(&self, jwks_uri: &str, kid: &str) -> Result<DecodingKey, KeyError> {
        if let Some(k) = self.cached(jwks_uri, kid) {
            return Ok(k);
        }
        let _guard = self.fetching.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(k) = self.cached(jwks_uri, kid) {
            return Ok(k);
        }
        let may_fetch = self
            .sets
            .read()
            .expect("key lock")
            .get(jwks_uri)
            .and_then(|s| s.forced)
            .is_none_or(|t| t.elapsed() >= self.min_refresh);
        if may_fetch {
            let known = self.has_keys(jwks_uri);
            let outcome = self.refresh(jwks_uri).await;
            if (known || outcome.is_err())
                && let Some(set) = self.sets.write().expect("key lock").get_mut(jwks_uri)
            {
                set.forced = Some(Instant::now());
            }
            outcome?;
            if let Some(k) = self.cached(jwks_uri, kid) {
                return Ok(k);
            }
        } else if !self.has_keys(jwks_uri) {
            return Err(KeyError::Unavailable(
                "the last fetch failed and the retry interval has not passed".into(),
            ));
        }
        Err(KeyError::UnknownKid(kid.to_owned()))
    }

    fn cached(&self, jwks_uri: &str, kid: &str) -> Option<DecodingKey> {
        self.sets
            .read()
            .expect("key lock")
            .get(jwks_uri)
            .and_then(|s| s.keys.get(kid).cloned())
    }

    fn has_keys(&self, jwks_uri: &str) -> bool {
        self.sets
            .read()
            .expect("key lock")
            .get(jwks_uri)
            .is_some_and(|s| !s.keys.is_empty())
    }

    /// Fetches a key set. On failure the previous keys stay; the error is returned only
    /// when there are none to fall back on.
    pub async fn refresh(&self, jwks_uri: &str) -> Result<(), KeyError> {
        let fetched = self
            .http
            .json(Method::GET, jwks_uri, HeaderMap::new(), None)
            .await;
        let mut sets = self.sets.write().expect("key lock");
        let set = sets.entry(jwks_uri.to_owned()).or_insert_with(|| KeySet {
            keys: HashMap::new(),
            published: Published::new(),
            forced: None,
        });
        match fetched {
            Ok(doc) => {
                let (keys, published) = parse_jwks(&doc);
                if keys.is_empty() {
                    tracing::warn!(
                        jwks_uri,
                        "key set has no usable RSA signing key; keeping the previous keys"
                    );
                } else {
                    // A first fill changes nothing verified before; any later change does.
                    // Bumped while the write lock is held: whoever reads the new generation
                    // reads the keys only after they are replaced, so nothing verified with
                    // the old keys can carry the new generation.
                    if !set.published.is_empty() && published != set.published {
                        self.bump_generation();
                    }
                    set.keys = keys;
                    set.published = published;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(jwks_uri, error = %e, "key set refresh failed; keeping the previous keys");
                crate::metrics::METRICS.jwks_refresh_failures.inc();
                if set.keys.is_empty() {
                    Err(KeyError::Unavailable(e.to_string()))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Refreshes every metadata document and key set seen so far, forever.
    pub fn spawn_background_refresh(
        self: &Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let urls: Vec<String> = cache
                    .metadata
                    .read()
                    .expect("metadata lock")
                    .keys()
                    .cloned()
                    .collect();
                for url in urls {
                    if let Ok(m) = cache.fetch_metadata(&url).await {
                        cache.store_metadata(url, m);
                    }
                }
                let sets: Vec<String> = cache
                    .sets
                    .read()
                    .expect("key lock")
                    .keys()
                    .cloned()
                    .collect();
                for uri in sets {
                    let _guard = cache.fetching.lock().await;
                    let _ = cache.refresh(&uri).await;
                }
            }
        })
    }
}
