//! The gateway's own Azure credentials, and a cache of one token per credential and
//! resource, refreshed before it expires (azure-notes §2):
//!
//! - client secret and client certificate: the client-credentials grant,
//!   <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>;
//!   the certificate signs a client assertion,
//!   <https://learn.microsoft.com/entra/identity-platform/certificate-credentials>;
//! - workload identity: the same grant with the federated token file as the assertion, re-read
//!   on every request because the kubelet rotates it;
//! - managed identity over IMDS (`Metadata: true`) or the App Service endpoint
//!   (`X-IDENTITY-HEADER`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{ClientError, HttpClient};
use super::settings::{CredentialConfig, MiProtocol};
use crate::secret::Secret;

/// A token is renewed when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no upstream credential named '{0}'")]
    Unknown(String),
    #[error("credential '{name}': {source}")]
    Fetch { name: String, source: ClientError },
    #[error("credential '{name}': the token answer has no usable {field}")]
    Answer { name: String, field: &'static str },
    #[error("credential '{name}': {message}")]
    Setup { name: String, message: String },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    expires_on: u64,
}

/// One cached token; its lock is held by whoever is refreshing it.
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

pub struct TokenProvider {
    http: HttpClient,
    credentials: HashMap<String, CredentialConfig>,
    /// Tokens by (credential, resource). Each entry has its own lock so one slow refresh
    /// never blocks other resources, and concurrent requests wait for a single refresh.
    cache: std::sync::Mutex<HashMap<(String, String), Slot>>,
}

impl TokenProvider {
    pub fn new(http: HttpClient, credentials: HashMap<String, CredentialConfig>) -> TokenProvider {
        TokenProvider {
            http,
            credentials,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A token of `credential` for `resource` (e.g. `https://management.azure.com`).
    pub async fn token(&self, credential: &str, resource: &str) -> Result<Secret, CredentialError> {
        let cfg = self
            .credentials
            .get(credential)
            .ok_or_else(|| CredentialError::Unknown(credential.to_owned()))?;
        let slot = {
            let mut cache = self.cache.lock().expect("token cache lock");
            cache
                .entry((credential.to_owned(), resource.to_owned()))
                .or_default()
                .clone()
        };
        let mut entry = slot.lock().await;
        if let Some(c) = entry.as_ref()
            && c.expires_on > now() + REFRESH_MARGIN.as_secs()
        {
            return Ok(c.token.clone());
        }
        let fresh = self
            .fetch(credential, cfg, resource)
            .await
            .inspect_err(|_| {
                crate::metrics::METRICS.upstream_token_failures.inc();
            })?;
        let token = fresh.token.clone();
        *entry = Some(fresh);
        Ok(token)
    }

    /// The client-credentials grant; `proof` is `("client_secret", ..)` or
    /// `("client_assertion", ..)` (a JWT, whose type is then named too).
    async fn client_credentials(
        &self,
        url: &str,
        client_id: &str,
        scope: &str,
        proof: (&str, &str),
    ) -> Result<Value, ClientError> {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            proof,
            ("scope", scope),
        ];
        if proof.0 == "client_assertion" {
            pairs.push(("client_assertion_type", CLIENT_ASSERTION_TYPE));
        }
        let body = form(&pairs);
        self.http
            .json(
                Method::POST,
                url,
                HeaderMap::new(),
                Some(("application/x-www-form-urlencoded", body)),
            )
            .await
    }

    async fn fetch(
        &self,
        name: &str,
        cfg: &CredentialConfig,
        resource: &str,
    ) -> Result<Cached, CredentialError> {
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        let fetch_err = |source| CredentialError::Fetch {
            name: name.to_owned(),
            source,
        };
        let setup_err = |message: String| CredentialError::Setup {
            name: name.to_owned(),
            message,
        };
        let answer = match cfg {
            CredentialConfig::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => {
                let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
                self.client_credentials(&url, client_id, &scope, ("client_secret", secret.expose()))
                    .await
                    .map_err(fetch_err)?
            }
            CredentialConfig::ClientCertificate {
                authority,
                tenant,
                client_id,
                certificate_pem,
            } => {
                let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
                let assertion =
                    certificate_assertion(certificate_pem, client_id, &url).map_err(setup_err)?;
                self.client_credentials(
                    &url,
                    client_id,
                    &scope,
                    ("client_assertion", assertion.expose()),
                )
                .await
                .map_err(fetch_err)?
            }
            CredentialConfig::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                token_file,
            } => {
                let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    setup_err(format!(
                        "reading the federated token {}: {e}",
                        token_file.display()
                    ))
                })?;
                let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
                self.client_credentials(
                    &url,
                    client_id,
                    &scope,
                    ("client_assertion", assertion.trim()),
                )
                .await
                .map_err(fetch_err)?
            }
            CredentialConfig::ManagedIdentity {
                protocol,
                endpoint,
                client_id,
                identity_header,
            } => {
                let mut headers = HeaderMap::new();
                let url = {
                    let mut query = form_urlencoded::Serializer::new(String::new());
                    match protocol {
                        MiProtocol::Imds => {
                            query.append_pair("api-version", "2018-02-01");
                            headers.insert("metadata", HeaderValue::from_static("true"));
                        }
                        MiProtocol::AppService => {
                            query.append_pair("api-version", "2019-08-01");
                            let h = identity_header.as_ref().map(|s| s.expose()).unwrap_or("");
                            let value =
                                HeaderValue::from_str(h).map_err(|_| CredentialError::Setup {
                                    name: name.to_owned(),
                                    message: "the identity header is not valid header text".into(),
                                })?;
                            headers.insert("x-identity-header", value);
                        }
                    }
                    query.append_pair("resource", resource);
                    if let Some(id) = client_id {
                        query.append_pair("client_id", id);
                    }
                    format!("{endpoint}?{}", query.finish())
                };
                self.http
                    .json(Method::GET, &url, headers, None)
                    .await
                    .map_err(fetch_err)?
            }
        };
        parse_answer(name, &answer)
    }
}

fn form(pairs: &[(&str, &str)]) -> Bytes {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    Bytes::from(s.finish())
}

/// Reads a token answer in any of the shapes Entra and the managed-identity endpoints use
/// (`expires_in` or `expires_on`, as numbers or strings).
fn parse_answer(name: &str, v: &Value) -> Result<Cached, CredentialError> {
    let token =
        v["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or(CredentialError::Answer {
                name: name.to_owned(),
                field: "access_token",
            })?;
    let number = |k: &str| {
        v.get(k).and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let expires_on = match (number("expires_on"), number("expires_in")) {
        (Some(on), _) => on,
        (None, Some(within)) => now() + within,
        (None, None) => {
            return Err(CredentialError::Answer {
                name: name.to_owned(),
                field: "expires_in",
            });
        }
    };
    Ok(Cached {
        token: Secret::new(token),
        expires_on,
    })
}

/// A client assertion signed with the certificate's key, naming the certificate by its
/// SHA-256 thumbprint (`x5t#S256`), valid for ten minutes.
fn certificate_assertion(pem: &Secret, client_id: &str, token_url: &str) -> Result<Secret, String> {
    let der = CertificateDer::pem_slice_iter(pem.expose().as_bytes())
        .next()
        .ok_or("no certificate in the PEM")?
        .map_err(|e| format!("certificate: {e}"))?;
    let key_block = private_key_block(pem.expose()).ok_or("no private key in the PEM")?;
    let key = EncodingKey::from_rsa_pem(key_block.as_bytes())
        .map_err(|e| format!("private key (RSA expected): {e}"))?;
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_ref())));
    let t = now();
    let claims = json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": t,
        "iat": t,
        "exp": t + 600,
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Secret::new)
        .map_err(|e| format!("signing the assertion: {e}"))
}

/// The first `-----BEGIN ... PRIVATE KEY-----` block of a PEM bundle.
fn private_key_block(pem: &str) -> Option<&str> {
    let start = pem
        .match_indices("-----BEGIN ")
        .map(|(i, _)| i)
        .find(|&i| {
            pem[i..]
                .lines()
                .next()
                .is_some_and(|l| l.contains("PRIVATE KEY"))
        })?;
    let end_marker = pem[start..].find("-----END ")? + start;
    let end = pem[end_marker..]
        .find('\n')
        .map_or(pem.len(), |e| end_marker + e + 1);
    Some(&pem[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_key_in_a_bundle() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            private_key_block(pem),
            Some("-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n")
        );
        assert_eq!(
            private_key_block("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
            None
        );
    }

    #[test]
    fn answers_in_every_shape() {
        let a = parse_answer("c", &json!({"access_token": "t", "expires_in": 3599})).unwrap();
        assert!(a.expires_on > now() + 3500);
        let b = parse_answer(
            "c",
            &json!({"access_token": "t", "expires_on": "1900000000"}),
        )
        .unwrap();
        assert_eq!(b.expires_on, 1_900_000_000);
        assert!(parse_answer("c", &json!({"expires_in": 1})).is_err());
        assert!(parse_answer("c", &json!({"access_token": "t"})).is_err());
    }
}
