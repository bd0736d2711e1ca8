//! Group membership for principals whose token carried the groups-overage claim: looked up
//! through Microsoft Graph `getMemberObjects` with the gateway's own credential, never at the
//! URL the token names, and cached for a while.
//! <https://learn.microsoft.com/graph/api/directoryobject-getmemberobjects>

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

use super::principal::{Principal, PrincipalKind};
use super::settings::OverageConfig;
use crate::upstream::client::HttpClient;
use crate::upstream::credential::TokenProvider;

/// Entries kept at most, so a flood of distinct principals cannot grow memory unbounded.
const MAX_ENTRIES: usize = 10_000;

/// A principal's groups, and when they were fetched.
type CachedGroups = (Instant, Vec<String>);

pub struct GroupResolver {
    cfg: OverageConfig,
    http: HttpClient,
    tokens: Arc<TokenProvider>,
    /// Groups by (tenant, object id), with when they were fetched.
    cache: Mutex<HashMap<(String, String), CachedGroups>>,
}

impl GroupResolver {
    pub fn new(cfg: OverageConfig, http: HttpClient, tokens: Arc<TokenProvider>) -> GroupResolver {
        GroupResolver {
            cfg,
            http,
            tokens,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The principal's groups, and until when they may be used (when they were fetched,
    /// plus `cache_ttl`): whatever keeps them must not keep them longer.
    pub async fn groups(&self, p: &Principal) -> Result<(Vec<String>, Instant), String> {
        let key = (p.tenant_id.clone(), p.object_id.clone());
        if let Some((at, groups)) = self.cache.lock().expect("group cache lock").get(&key)
            && at.elapsed() < self.cfg.cache_ttl
        {
            return Ok((groups.clone(), *at + self.cfg.cache_ttl));
        }
        let token = self
            .tokens
            .token(&self.cfg.credential, &self.cfg.graph_resource)
            .await
            .map_err(|e| e.to_string())?;
        let collection = match p.kind {
            PrincipalKind::User => "users",
            _ => "servicePrincipals",
        };
        let url = format!(
            "{}/v1.0/{collection}/{}/getMemberObjects",
            self.cfg.graph_url, p.object_id
        );
        let mut headers = HeaderMap::new();
        let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| "the Graph token is not header text".to_owned())?;
        headers.insert(http::header::AUTHORIZATION, bearer);
        let body = Bytes::from_static(br#"{"securityEnabledOnly":false}"#);
        let answer = self
            .http
            .json(
                Method::POST,
                &url,
                headers,
                Some(("application/json", body)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let groups: Vec<String> = answer["value"]
            .as_array()
            .ok_or("Graph's answer has no value list")?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_ascii_lowercase)
            .collect();
        let mut cache = self.cache.lock().expect("group cache lock");
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < self.cfg.cache_ttl);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        let at = Instant::now();
        cache.insert(key, (at, groups.clone()));
        Ok((groups, at + self.cfg.cache_ttl))
    }
}
