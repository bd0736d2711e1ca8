//! Display names from the directory, for principals whose token names nobody (a service
//! principal calling an organisation's API gets ids only) and for groups: Microsoft Graph
//! `GET /v1.0/servicePrincipals/{id}` and `GET /v1.0/groups/{id}`, with the credential the
//! groups-overage lookup uses, which needs `Application.Read.All` and `GroupMember.Read.All`
//! (or `Directory.Read.All`), application permissions (docs/deployment.md).
//! <https://learn.microsoft.com/graph/api/serviceprincipal-get>
//! <https://learn.microsoft.com/graph/api/group-get>
//!
//! Names are for people: they are looked up where something is shown (an approval created,
//! a refusal's message, the admin API and console reads), never to decide and never on every
//! request. A lookup is bounded ([`LOOKUP_BOUND`]); one that fails or is slow leaves the id
//! alone, "(name unavailable)", and Graph is left alone for [`NEGATIVE_TTL`] after an error,
//! so an outage costs at most one bounded wait per minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::sync::OnceCell;

use super::names::clean;
use super::principal::{Principal, PrincipalKind};
use super::settings::OverageConfig;
use crate::upstream::client::{ClientError, HttpClient};
use crate::upstream::credential::TokenProvider;

/// The longest a lookup may delay what waits for it (a token from the credential included).
pub const LOOKUP_BOUND: Duration = Duration::from_millis(1500);
/// How long a name found is kept: names change rarely, and a stale one is still beside its id.
pub const TTL: Duration = Duration::from_secs(3600);
/// How long "no name" is kept: an object Graph does not know, or any failure.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Entries kept at most, so ids an agent makes up cannot grow memory unbounded.
pub const MAX_ENTRIES: usize = 10_000;

/// What the directory calls an object, and what kind it is ("app", "managed identity",
/// "group").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryName {
    pub name: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Collection {
    ServicePrincipals,
    Groups,
}

/// An object: which collection, and its lowercased id.
type Key = (Collection, String);

/// A lookup under way; everyone who asks for the same object waits on it.
type Lookup = Arc<OnceCell<Option<DirectoryName>>>;

struct Entry {
    at: Instant,
    found: Option<DirectoryName>,
}

impl Entry {
    fn fresh(&self) -> bool {
        self.at.elapsed()
            < if self.found.is_some() {
                TTL
            } else {
                NEGATIVE_TTL
            }
    }
}

/// How Graph is reached: where, with which credential.
struct Graph {
    cfg: OverageConfig,
    http: HttpClient,
    tokens: Arc<TokenProvider>,
}

pub struct Directory {
    /// `None`: no Graph configured (`identity.groups_overage`); names come from tokens and
    /// policy aliases only.
    graph: Option<Graph>,
    /// Names by (collection, lowercased object id), found or not. Filled by lookups, read by
    /// every place that shows a name; bounded by [`MAX_ENTRIES`].
    cache: Mutex<HashMap<(Collection, String), Entry>>,
    /// Until when Graph is not asked at all, after a lookup failed (not a 404).
    resting_until: Mutex<Option<Instant>>,
    /// Lookups under way, by object: callers of the same one share its answer. The first
    /// caller to finish removes it (after the answer is cached).
    in_flight: Mutex<HashMap<Key, Lookup>>,
}

impl Directory {
    pub fn new(graph: Option<(OverageConfig, HttpClient, Arc<TokenProvider>)>) -> Directory {
        Directory {
            graph: graph.map(|(cfg, http, tokens)| Graph { cfg, http, tokens }),
            cache: Mutex::new(HashMap::new()),
            resting_until: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// No Graph: every lookup answers `None` at once.
    pub fn none() -> Directory {
        Directory::new(None)
    }

    /// A service principal's (app's or managed identity's) display name.
    pub async fn service_principal(&self, object_id: &str) -> Option<DirectoryName> {
        self.lookup(Collection::ServicePrincipals, object_id).await
    }

    /// A principal's name for people: its token's, else, for an app or managed identity,
    /// the directory's (a person's is never looked up: that needs User.Read.All).
    pub async fn principal_name(&self, p: &Principal) -> Option<String> {
        match (&p.display_name, p.kind) {
            (Some(n), _) => Some(n.clone()),
            (None, PrincipalKind::User) => None,
            (None, _) => self.service_principal(&p.object_id).await.map(|d| d.name),
        }
    }

    /// A group's display name.
    pub async fn group(&self, object_id: &str) -> Option<DirectoryName> {
        self.lookup(Collection::Groups, object_id).await
    }

    /// A service principal's name if one is already known (no lookup): what a record
    /// written on the request path may use.
    pub fn known_service_principal(&self, object_id: &str) -> Option<DirectoryName> {
        let key = (
            Collection::ServicePrincipals,
            object_id.to_ascii_lowercase(),
        );
        self.cache
            .lock()
            .expect("directory cache lock")
            .get(&key)
            .filter(|e| e.fresh())
            .and_then(|e| e.found.clone())
    }

    /// Looks a service principal's name up in the background, unless it is known, being
    /// looked up, or Graph is not configured: the first request of a principal whose token
    /// names nobody is not delayed, and the records after it carry the name.
    pub fn warm(self: &Arc<Self>, object_id: &str) {
        if self.graph.is_none() {
            return;
        }
        let id = object_id.to_ascii_lowercase();
        let key = (Collection::ServicePrincipals, id.clone());
        if self
            .cache
            .lock()
            .expect("directory cache lock")
            .get(&key)
            .is_some_and(Entry::fresh)
            || self
                .in_flight
                .lock()
                .expect("directory in-flight lock")
                .contains_key(&key)
        {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.service_principal(&id).await;
        });
    }

    /// Entries held (for tests).
    pub fn cached(&self) -> usize {
        self.cache.lock().expect("directory cache lock").len()
    }

    async fn lookup(&self, collection: Collection, object_id: &str) -> Option<DirectoryName> {
        let graph = self.graph.as_ref()?;
        let id = object_id.to_ascii_lowercase();
        if !crate::ids::is_guid(&id) {
            return None;
        }
        let key = (collection, id);
        if let Some(e) = self.cache.lock().expect("directory cache lock").get(&key)
            && e.fresh()
        {
            return e.found.clone();
        }
        if self
            .resting_until
            .lock()
            .expect("directory rest lock")
            .is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        // One lookup per object at a time: a burst of held requests from one new agent
        // waits for the same answer instead of each asking Graph.
        let cell = self
            .in_flight
            .lock()
            .expect("directory in-flight lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let found = cell
            .get_or_init(|| self.fetch_bounded(graph, collection, &key.1))
            .await
            .clone();
        {
            let mut in_flight = self.in_flight.lock().expect("directory in-flight lock");
            if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                in_flight.remove(&key);
            }
        }
        let mut cache = self.cache.lock().expect("directory cache lock");
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, e| e.fresh());
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Entry {
                at: Instant::now(),
                found: found.clone(),
            },
        );
        found
    }

    /// One Graph read within [`LOOKUP_BOUND`]; a failure or a timeout rests Graph.
    async fn fetch_bounded(
        &self,
        graph: &Graph,
        collection: Collection,
        id: &str,
    ) -> Option<DirectoryName> {
        match tokio::time::timeout(LOOKUP_BOUND, fetch(graph, collection, id)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a display name could not be read from Graph; ids are shown alone for a while");
                self.rest();
                None
            }
            Err(_) => {
                tracing::warn!(
                    bound_ms = LOOKUP_BOUND.as_millis() as u64,
                    "Graph did not answer a display-name lookup in time; ids are shown alone for a while"
                );
                self.rest();
                None
            }
        }
    }

    fn rest(&self) {
        *self.resting_until.lock().expect("directory rest lock") =
            Some(Instant::now() + NEGATIVE_TTL);
    }
}

/// One Graph read: `Ok(None)` when Graph does not know the object (404, or a 400 for an id
/// it refuses), `Err` for anything else.
async fn fetch(
    graph: &Graph,
    collection: Collection,
    id: &str,
) -> Result<Option<DirectoryName>, String> {
    let token = graph
        .tokens
        .token(&graph.cfg.credential, &graph.cfg.graph_resource)
        .await
        .map_err(|e| e.to_string())?;
    let (segment, select) = match collection {
        Collection::ServicePrincipals => {
            ("servicePrincipals", "id,displayName,servicePrincipalType")
        }
        Collection::Groups => ("groups", "id,displayName"),
    };
    let url = format!(
        "{}/v1.0/{segment}/{id}?$select={select}",
        graph.cfg.graph_url.trim_end_matches('/')
    );
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| "the Graph token is not header text".to_owned())?;
    headers.insert(http::header::AUTHORIZATION, bearer);
    let answer = match graph.http.json(Method::GET, &url, headers, None).await {
        Ok(a) => a,
        Err(ClientError::Status { status, .. })
            if status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    };
    let Some(name) = answer["displayName"].as_str().and_then(clean) else {
        return Ok(None);
    };
    let kind = match collection {
        Collection::Groups => "group",
        Collection::ServicePrincipals
            if answer["servicePrincipalType"].as_str() == Some("ManagedIdentity") =>
        {
            "managed identity"
        }
        Collection::ServicePrincipals => "app",
    };
    Ok(Some(DirectoryName { name, kind }))
}

#[cfg(test)]
mod tests {
    //! Lookups against the simulator's Graph over TLS, with the gateway's own credential.

    use std::collections::HashMap;
    use std::path::PathBuf;

    use azure_sim::{Faults, SimOptions, Simulator};

    use super::*;
    use crate::secret::Secret;
    use crate::upstream::settings::CredentialConfig;

    struct Setup {
        sim: Simulator,
        directory: Directory,
        dir: PathBuf,
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn setup() -> Setup {
        let sim = Simulator::start(SimOptions::default()).await.unwrap();
        let dir = std::env::temp_dir().join(format!("pc-directory-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, sim.ca_pem()).unwrap();
        let http = HttpClient::new(&[ca], Duration::from_secs(10)).unwrap();
        let app = sim
            .config()
            .principal("portcullis-baseline")
            .unwrap()
            .clone();
        let credentials = HashMap::from([(
            "baseline".to_owned(),
            CredentialConfig::ClientSecret {
                authority: sim.url().to_owned(),
                tenant: sim.tenant_id(),
                client_id: app.app_id.unwrap().to_string(),
                secret: Secret::new(app.secret.unwrap()),
            },
        )]);
        let tokens = Arc::new(TokenProvider::new(http.clone(), credentials));
        let cfg = OverageConfig {
            graph_url: sim.url().to_owned(),
            graph_resource: "https://graph.microsoft.com".into(),
            credential: "baseline".into(),
            cache_ttl: Duration::from_secs(60),
        };
        Setup {
            directory: Directory::new(Some((cfg, http, tokens))),
            sim,
            dir,
        }
    }

    /// A simulated principal's object id.
    fn oid(s: &Setup, name: &str) -> String {
        s.sim
            .config()
            .principal(name)
            .unwrap()
            .object_id
            .to_string()
    }

    fn graph_calls(s: &Setup) -> usize {
        s.sim
            .calls_since(0)
            .iter()
            .filter(|c| c.path.starts_with("/v1.0/"))
            .count()
    }

    #[tokio::test]
    async fn names_are_found_cached_and_absent_ones_remembered() {
        let s = setup().await;
        let agent = oid(&s, "agent");
        let mi = oid(&s, "gateway-identity");
        let alice = oid(&s, "alice");
        let group = azure_sim::config::derived_id("group", "approvers").to_string();

        let found = s.directory.service_principal(&agent.to_uppercase()).await;
        assert_eq!(
            found,
            Some(DirectoryName {
                name: "build-agent".into(),
                kind: "app"
            })
        );
        assert_eq!(
            s.directory.service_principal(&mi).await.unwrap().kind,
            "managed identity"
        );
        assert_eq!(
            s.directory.group(&group).await,
            Some(DirectoryName {
                name: "Cloud Approvers".into(),
                kind: "group"
            })
        );
        // A person is not a service principal: Graph's 404, remembered.
        assert_eq!(s.directory.service_principal(&alice).await, None);
        let calls = graph_calls(&s);
        assert_eq!(calls, 4);
        // Every answer, found or not, is served from the cache.
        s.directory.service_principal(&agent).await;
        s.directory.service_principal(&alice).await;
        s.directory.group(&group).await;
        assert_eq!(graph_calls(&s), calls);
        assert_eq!(
            s.directory.known_service_principal(&agent).unwrap().name,
            "build-agent"
        );
        assert_eq!(s.directory.cached(), 4);
        // What is not an object id is never sent to Graph.
        assert_eq!(s.directory.group("../users").await, None);
        assert_eq!(graph_calls(&s), calls);
    }

    #[tokio::test]
    async fn a_slow_graph_costs_one_bounded_wait_then_rests() {
        let s = setup().await;
        let agent = oid(&s, "agent");
        let other = oid(&s, "other-agent");
        // Get the credential's token first: the bound is for Graph itself here.
        let group = azure_sim::config::derived_id("group", "approvers").to_string();
        s.directory.group(&group).await.unwrap();
        s.sim
            .set_faults(Faults {
                path_prefix: Some("/v1.0/".into()),
                latency_ms: 10_000,
                ..Default::default()
            })
            .unwrap();
        let started = Instant::now();
        assert_eq!(s.directory.service_principal(&agent).await, None);
        let waited = started.elapsed();
        assert!(
            waited >= LOOKUP_BOUND && waited < LOOKUP_BOUND + Duration::from_secs(1),
            "{waited:?}"
        );
        // Resting: another id is not even asked for.
        let started = Instant::now();
        assert_eq!(s.directory.service_principal(&other).await, None);
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_for_one_object_asks_graph_once() {
        let s = Arc::new(setup().await);
        let agent = oid(&s, "agent");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (s, agent) = (s.clone(), agent.clone());
                tokio::spawn(async move { s.directory.service_principal(&agent).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().name, "build-agent");
        }
        assert_eq!(graph_calls(&s), 1);
    }

    #[tokio::test]
    async fn without_graph_nothing_is_looked_up() {
        let d = Directory::none();
        assert_eq!(
            d.service_principal("93eb7a24-0000-4000-8000-000000000001")
                .await,
            None
        );
        assert_eq!(d.cached(), 0);
    }
}
