//! Client assertions at the token endpoint: an app proves itself with a JWT instead of a
//! secret, either signed by a certificate registered for it, or issued by a trusted identity
//! provider under a federated credential (workload identity).
//! <https://learn.microsoft.com/entra/identity-platform/certificate-credentials>
//! <https://learn.microsoft.com/entra/workload-id/workload-identity-federation>

use std::collections::HashMap;
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::sim::Sim;

/// The audience a federated token must have to be exchanged.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone)]
pub struct Federated {
    pub issuer: String,
    pub subject: String,
}

/// Credentials registered for apps at runtime (certificates, federated credentials).
#[derive(Default)]
pub struct AppCredentials {
    /// By app name: (SHA-256 thumbprint, public key) pairs.
    certificates: RwLock<HashMap<String, Vec<(String, DecodingKey)>>>,
    federated: RwLock<HashMap<String, Vec<Federated>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the certificate is not PEM: {0}")]
    Pem(String),
    #[error("the certificate cannot be parsed: {0}")]
    Parse(String),
}

impl AppCredentials {
    /// Registers a certificate (PEM) for an app; returns its `x5t#S256` thumbprint.
    pub fn add_certificate(&self, app: &str, pem: &str) -> Result<String, RegisterError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| RegisterError::Pem(e.to_string()))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| RegisterError::Parse(e.to_string()))?;
        let key = DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(&pem.contents));
        self.certificates
            .write()
            .expect("credentials lock")
            .entry(app.to_ascii_lowercase())
            .or_default()
            .push((thumbprint.clone(), key));
        Ok(thumbprint)
    }

    pub fn add_federated(&self, app: &str, f: Federated) {
        self.federated
            .write()
            .expect("credentials lock")
            .entry(app.to_ascii_lowercase())
            .or_default()
            .push(f);
    }
}

fn header_and_payload(token: &str) -> Result<(Value, Value), String> {
    let mut parts = token.split('.');
    let mut next = || -> Result<Value, String> {
        let p = parts.next().ok_or("the assertion is not a JWT")?;
        let bytes = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| "the assertion is not base64url")?;
        serde_json::from_slice(&bytes).map_err(|_| "the assertion is not JSON".to_owned())
    };
    Ok((next()?, next()?))
}

/// Checks an assertion presented by app `app` (by name) with client id `client_id`.
/// `token_urls` are the URLs a certificate assertion may name as its audience.
pub fn verify(
    sim: &Sim,
    app: &str,
    client_id: &str,
    assertion: &str,
    token_urls: &[String],
) -> Result<(), String> {
    let (header, payload) = header_and_payload(assertion)?;
    if header["alg"] != "RS256" {
        return Err("client assertions must be RS256".into());
    }
    if let Some(thumbprint) = header["x5t#S256"].as_str() {
        let certs = sim
            .credentials
            .certificates
            .read()
            .expect("credentials lock");
        let key = certs
            .get(&app.to_ascii_lowercase())
            .and_then(|list| list.iter().find(|(t, _)| t == thumbprint))
            .map(|(_, k)| k.clone())
            .ok_or("the assertion's certificate is not registered for the application")?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(token_urls);
        v.set_issuer(&[client_id]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        v.sub = Some(client_id.to_owned());
        jsonwebtoken::decode::<Value>(assertion, &key, &v)
            .map_err(|e| format!("the certificate assertion is invalid: {e}"))?;
        if payload["jti"].as_str().is_none_or(str::is_empty) {
            return Err("the certificate assertion has no jti".into());
        }
        return Ok(());
    }
    // A federated token: its issuer must be trusted for this app, and the simulator can
    // only check signatures of tokens it issued itself.
    let issuer = payload["iss"].as_str().unwrap_or_default().to_owned();
    let subject = payload["sub"].as_str().unwrap_or_default().to_owned();
    let trusted = sim
        .credentials
        .federated
        .read()
        .expect("credentials lock")
        .get(&app.to_ascii_lowercase())
        .is_some_and(|list| {
            list.iter()
                .any(|f| f.issuer == issuer && f.subject == subject)
        });
    if !trusted {
        return Err(format!(
            "no federated credential of the application matches issuer '{issuer}' and subject '{subject}'"
        ));
    }
    if issuer != sim.v2_issuer() && issuer != sim.config.v1_issuer() {
        return Err("the simulator verifies federated tokens it issued itself only".into());
    }
    let kid = header["kid"]
        .as_str()
        .ok_or("the federated token has no kid")?;
    let key = sim
        .keys
        .find(kid)
        .ok_or("the federated token's key is not published")?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[TOKEN_EXCHANGE_AUDIENCE]);
    v.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(assertion, &key.decoding, &v)
        .map_err(|e| format!("the federated token is invalid: {e}"))?;
    Ok(())
}
