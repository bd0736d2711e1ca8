//! The Key Vault data plane for secrets: set, get, list, versions, update, delete with soft
//! delete, recover, purge, backup and restore, and the bearer challenge clients start with.
//! <https://learn.microsoft.com/rest/api/keyvault/secrets/operation-groups>
//! <https://learn.microsoft.com/azure/key-vault/general/authentication-requests-and-responses>
//!
//! Reached by host (`{vault}.vault.{suffix}`, as clients address a vault) or, for loopback
//! use, by path prefix (`/keyvault/{vault}/...`). Secret ids in bodies always use the vault's
//! canonical URI (`https://{vault}.vault.azure.net/...`), which is what SDKs parse; `nextLink`
//! uses the address the request came through, so paging keeps reaching the simulator.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::{AuthError, authenticate};
use crate::calls::Caller;
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse, kv_error};

/// Days a deleted secret stays recoverable.
const RECOVERABLE_DAYS: i64 = 90;
/// Key Vault's upper bound for `maxresults`.
const MAX_RESULTS: usize = 25;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretVersion {
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub enabled: bool,
    pub created: i64,
    pub updated: i64,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub tags: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    /// Oldest first; the last one is the current version.
    pub versions: Vec<SecretVersion>,
}

impl Secret {
    fn current(&self) -> &SecretVersion {
        self.versions
            .last()
            .expect("a secret has at least one version")
    }

    fn version(&self, v: &str) -> Option<&SecretVersion> {
        if v.is_empty() {
            return Some(self.current());
        }
        self.versions
            .iter()
            .find(|x| x.version.eq_ignore_ascii_case(v))
    }
}

#[derive(Debug, Clone)]
pub struct DeletedSecret {
    pub secret: Secret,
    pub deleted: i64,
    pub purge: i64,
}

pub struct Vault {
    pub name: String,
    pub secrets: BTreeMap<String, Secret>,
    pub deleted: BTreeMap<String, DeletedSecret>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Vault {
    pub fn new(name: &str) -> Vault {
        Vault {
            name: name.to_owned(),
            secrets: BTreeMap::new(),
            deleted: BTreeMap::new(),
        }
    }

    /// Adds a new current version of a secret (creating the secret if needed).
    pub fn set(
        &mut self,
        name: &str,
        value: &str,
        content_type: Option<&str>,
        tags: Value,
    ) -> &SecretVersion {
        let t = now();
        let version = SecretVersion {
            version: uuid::Uuid::new_v4().simple().to_string(),
            value: value.to_owned(),
            content_type: content_type.map(str::to_owned),
            enabled: true,
            created: t,
            updated: t,
            exp: None,
            nbf: None,
            tags,
        };
        let secret = self
            .secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Secret {
                name: name.to_owned(),
                versions: Vec::new(),
            });
        secret.versions.push(version);
        secret.current()
    }

    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(&name.to_ascii_lowercase())
    }
}

// === bodies ===

fn attributes(v: &SecretVersion) -> Value {
    let mut a = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
    });
    if let Some(exp) = v.exp {
        a["exp"] = json!(exp);
    }
    if let Some(nbf) = v.nbf {
        a["nbf"] = json!(nbf);
    }
    a
}

/// A `SecretBundle`; `with_value` is false for answers that never carry the value.
fn bundle(uri: &str, s: &Secret, v: &SecretVersion, with_value: bool) -> Value {
    let mut b = Map::new();
    if with_value {
        b.insert("value".into(), json!(v.value));
    }
    b.insert(
        "id".into(),
        json!(format!("{uri}secrets/{}/{}", s.name, v.version)),
    );
    if let Some(ct) = &v.content_type {
        b.insert("contentType".into(), json!(ct));
    }
    b.insert("attributes".into(), attributes(v));
    if v.tags.as_object().is_some_and(|t| !t.is_empty()) {
        b.insert("tags".into(), v.tags.clone());
    }
    Value::Object(b)
}

/// A `SecretItem` (list entry): never a value.
fn item(uri: &str, s: &Secret, v: &SecretVersion, with_version: bool) -> Value {
    let mut b = bundle(uri, s, v, false);
    if !with_version {
        b["id"] = json!(format!("{uri}secrets/{}", s.name));
    }
    b
}

fn deleted_fields(uri: &str, d: &DeletedSecret, body: &mut Value) {
    body["recoveryId"] = json!(format!("{uri}deletedsecrets/{}", d.secret.name));
    body["deletedDate"] = json!(d.deleted);
    body["scheduledPurgeDate"] = json!(d.purge);
}

fn not_found(name: &str) -> SimResponse {
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn bad(message: impl Into<String>) -> SimResponse {
    kv_error(StatusCode::BAD_REQUEST, "BadParameter", message)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// One page of `items`, with Key Vault's `nextLink` (null on the last page).
fn page(sim: &Sim, req: &SimRequest, base: &str, items: Vec<Value>) -> Result<Value, SimResponse> {
    let max = match req.query("maxresults") {
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=MAX_RESULTS).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "invalid maxresults '{m}': it must be between 1 and {MAX_RESULTS}"
                )));
            }
        },
        None => MAX_RESULTS,
    };
    let size = max.min(sim.config.page_size);
    let skip: usize = req
        .query("$skiptoken")
        .map(|s| s.parse().map_err(|_| bad("invalid $skiptoken")))
        .transpose()?
        .unwrap_or(0);
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(size).collect();
    let next = if skip + size < total {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("api-version", &req.query("api-version").unwrap_or_default());
        q.append_pair("$skiptoken", &(skip + size).to_string());
        if let Some(m) = req.query("maxresults") {
            q.append_pair("maxresults", &m);
        }
        let path = req.path.split('?').next().unwrap_or_default();
        // The path as the client used it, under the base it used.
        let tail = path
            .rsplit_once("/secrets")
            .map(|(_, t)| format!("/secrets{t}"))
            .or_else(|| {
                path.rsplit_once("/deletedsecrets")
                    .map(|(_, t)| format!("/deletedsecrets{t}"))
            })
            .unwrap_or_default();
        json!(format!(
            "{base}{tail}?{}",
            q.finish().replace("%24skiptoken=", "$skiptoken=")
        ))
    } else {
        Value::Null
    };
    Ok(json!({"value": value, "nextLink": next}))
}

/// The 401 every unauthenticated request gets, naming where to get a token and for what.
fn challenge(sim: &Sim, message: &str) -> SimResponse {
    kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", message).header(
        "www-authenticate",
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
            sim.authority(),
            sim.config.tenant_id
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetBody {
    value: Option<Value>,
    content_type: Option<String>,
    attributes: Option<AttrBody>,
    tags: Option<Value>,
}

#[derive(Deserialize, Default)]
struct AttrBody {
    enabled: Option<bool>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct BackupBlob {
    format: String,
    vault: String,
    secret: Secret,
}

const BACKUP_FORMAT: &str = "azure-sim-secret-backup-1";

/// Serves `rest` (the path below the vault) for `vault`. `base` is how the client reached
/// the vault (`https://host` or `https://host/keyvault/{vault}`).
pub fn handle(
    sim: &Sim,
    vault: &str,
    rest: &[String],
    req: &SimRequest,
    base: &str,
) -> (SimResponse, Option<Caller>) {
    let caller = match authenticate(sim, req, &["keyvault"]) {
        Ok(c) => c,
        Err(AuthError::Missing) => {
            return (
                challenge(sim, "AKV10000: Request is missing a Bearer or PoP token."),
                None,
            );
        }
        Err(e) => return (challenge(sim, &format!("AKV10032: {e}")), None),
    };
    (serve(sim, vault, rest, req, base), Some(caller))
}

fn serve(
    sim: &Sim,
    vault_name: &str,
    rest: &[String],
    req: &SimRequest,
    base: &str,
) -> SimResponse {
    if req.query("api-version").is_none_or(|v| v.is_empty()) {
        return bad(
            "The api-version query parameter is missing. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125286",
        );
    }
    let uri = sim.vault_uri(vault_name);
    let mut world = sim.world();
    let Some(vault) = world.vaults.get_mut(&vault_name.to_ascii_lowercase()) else {
        return kv_error(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("The vault '{vault_name}' does not exist."),
        );
    };
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let keys: Vec<&str> = lower.iter().map(String::as_str).collect();
    // Key Vault answers a HEAD as the GET it names, headers and all, without the body
    // (the listener leaves the body out, RFC 9110 §9.3.2).
    let m = if req.method == Method::HEAD {
        &Method::GET
    } else {
        &req.method
    };
    match (m, keys.as_slice()) {
        (&Method::GET, ["secrets"]) => {
            let items = vault
                .secrets
                .values()
                .map(|s| item(&uri, s, s.current(), false))
                .collect();
            match page(sim, req, base, items) {
                Ok(v) => SimResponse::json(StatusCode::OK, &v),
                Err(r) => r,
            }
        }
        (&Method::POST, ["secrets", "restore"]) => restore(vault, req, &uri),
        (&Method::GET, ["secrets", _, "versions"]) => match vault.get(&rest[1]) {
            Some(s) => {
                let items = s.versions.iter().map(|v| item(&uri, s, v, true)).collect();
                match page(sim, req, base, items) {
                    Ok(v) => SimResponse::json(StatusCode::OK, &v),
                    Err(r) => r,
                }
            }
            None => not_found(&rest[1]),
        },
        (&Method::POST, ["secrets", _, "backup"]) => match vault.get(&rest[1]) {
            Some(s) => {
                let blob = BackupBlob {
                    format: BACKUP_FORMAT.into(),
                    vault: vault.name.clone(),
                    secret: s.clone(),
                };
                let encoded =
                    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&blob).expect("serializable"));
                SimResponse::json(StatusCode::OK, &json!({"value": encoded}))
            }
            None => not_found(&rest[1]),
        },
        (&Method::GET, ["secrets", _] | ["secrets", _, _]) => {
            let version = rest.get(2).map_or("", String::as_str);
            match vault
                .get(&rest[1])
                .and_then(|s| s.version(version).map(|v| (s, v)))
            {
                Some((_, v)) if !v.enabled => kv_error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                ),
                Some((s, v)) => SimResponse::json(StatusCode::OK, &bundle(&uri, s, v, true)),
                None => not_found(&rest[1]),
            }
        }
        (&Method::PUT, ["secrets", _]) => set(vault, &rest[1], req, &uri),
        (&Method::PATCH, ["secrets", _] | ["secrets", _, _]) => update(
            vault,
            &rest[1],
            rest.get(2).map_or("", String::as_str),
            req,
            &uri,
        ),
        (&Method::DELETE, ["secrets", _]) => {
            let key = rest[1].to_ascii_lowercase();
            match vault.secrets.remove(&key) {
                Some(secret) => {
                    let t = now();
                    let d = DeletedSecret {
                        secret,
                        deleted: t,
                        purge: t + RECOVERABLE_DAYS * 86_400,
                    };
                    let mut body = bundle(&uri, &d.secret, d.secret.current(), false);
                    deleted_fields(&uri, &d, &mut body);
                    vault.deleted.insert(key, d);
                    SimResponse::json(StatusCode::OK, &body)
                }
                None => not_found(&rest[1]),
            }
        }
        (&Method::GET, ["deletedsecrets"]) => {
            let items = vault
                .deleted
                .values()
                .map(|d| {
                    let mut b = item(&uri, &d.secret, d.secret.current(), false);
                    deleted_fields(&uri, d, &mut b);
                    b
                })
                .collect();
            match page(sim, req, base, items) {
                Ok(v) => SimResponse::json(StatusCode::OK, &v),
                Err(r) => r,
            }
        }
        (&Method::GET, ["deletedsecrets", _]) => match vault.deleted.get(&lower[1]) {
            Some(d) => {
                let mut body = bundle(&uri, &d.secret, d.secret.current(), true);
                deleted_fields(&uri, d, &mut body);
                SimResponse::json(StatusCode::OK, &body)
            }
            None => deleted_not_found(&rest[1]),
        },
        (&Method::DELETE, ["deletedsecrets", _]) => match vault.deleted.remove(&lower[1]) {
            Some(_) => SimResponse::empty(StatusCode::NO_CONTENT),
            None => deleted_not_found(&rest[1]),
        },
        (&Method::POST, ["deletedsecrets", _, "recover"]) => {
            match vault.deleted.remove(&lower[1]) {
                Some(d) => {
                    let body = bundle(&uri, &d.secret, d.secret.current(), false);
                    vault.secrets.insert(lower[1].clone(), d.secret);
                    SimResponse::json(StatusCode::OK, &body)
                }
                None => deleted_not_found(&rest[1]),
            }
        }
        (_, ["secrets", ..] | ["deletedsecrets", ..]) => kv_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The method {m} is not allowed on this resource."),
        ),
        _ => kv_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The simulator serves the secrets API of Key Vault only.",
        ),
    }
}

fn deleted_not_found(name: &str) -> SimResponse {
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        format!("Deleted Secret not found: {name}"),
    )
}

fn parse_body(req: &SimRequest) -> Result<SetBody, SimResponse> {
    serde_json::from_slice(&req.body)
        .map_err(|e| bad(format!("The request body is not valid: {e}")))
}

fn set(vault: &mut Vault, name: &str, req: &SimRequest, uri: &str) -> SimResponse {
    if !valid_name(name) {
        return bad(format!("The request URI contains an invalid name: {name}"));
    }
    if vault.deleted.contains_key(&name.to_ascii_lowercase()) {
        return kv_error(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
            ),
        );
    }
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(Value::String(value)) = body.value else {
        return bad("Secret value must be a string and must be provided.");
    };
    let attrs = body.attributes.unwrap_or_default();
    vault.set(
        name,
        &value,
        body.content_type.as_deref(),
        body.tags.unwrap_or(json!({})),
    );
    let secret = vault
        .secrets
        .get_mut(&name.to_ascii_lowercase())
        .expect("just set");
    let v = secret.versions.last_mut().expect("just set");
    v.enabled = attrs.enabled.unwrap_or(true);
    v.exp = attrs.exp;
    v.nbf = attrs.nbf;
    let secret = vault.get(name).expect("just set");
    SimResponse::json(StatusCode::OK, &bundle(uri, secret, secret.current(), true))
}

fn update(
    vault: &mut Vault,
    name: &str,
    version: &str,
    req: &SimRequest,
    uri: &str,
) -> SimResponse {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.value.is_some() {
        return bad("The value of a secret version cannot be updated; set a new version instead.");
    }
    let Some(secret) = vault.secrets.get_mut(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let idx = if version.is_empty() {
        secret.versions.len() - 1
    } else {
        match secret
            .versions
            .iter()
            .position(|v| v.version.eq_ignore_ascii_case(version))
        {
            Some(i) => i,
            None => return not_found(&format!("{name}/{version}")),
        }
    };
    let v = &mut secret.versions[idx];
    if let Some(a) = body.attributes {
        if let Some(e) = a.enabled {
            v.enabled = e;
        }
        if a.exp.is_some() {
            v.exp = a.exp;
        }
        if a.nbf.is_some() {
            v.nbf = a.nbf;
        }
    }
    if let Some(ct) = body.content_type {
        v.content_type = Some(ct);
    }
    if let Some(tags) = body.tags {
        v.tags = tags;
    }
    v.updated = now();
    let secret = vault.get(name).expect("present");
    SimResponse::json(
        StatusCode::OK,
        &bundle(uri, secret, &secret.versions[idx], false),
    )
}

fn restore(vault: &mut Vault, req: &SimRequest, uri: &str) -> SimResponse {
    let blob = req
        .json()
        .ok()
        .and_then(|b| b.get("value").and_then(Value::as_str).map(str::to_owned))
        .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
        .and_then(|raw| serde_json::from_slice::<BackupBlob>(&raw).ok())
        .filter(|b| b.format == BACKUP_FORMAT && !b.secret.versions.is_empty());
    let Some(blob) = blob else {
        return bad("Backup blob contains invalid or corrupt version.");
    };
    let key = blob.secret.name.to_ascii_lowercase();
    if vault.secrets.contains_key(&key) || vault.deleted.contains_key(&key) {
        return kv_error(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Secret {} already exists", blob.secret.name),
        );
    }
    vault.secrets.insert(key.clone(), blob.secret);
    let s = &vault.secrets[&key];
    SimResponse::json(StatusCode::OK, &bundle(uri, s, s.current(), false))
}
