//! How the simulated services check the bearer tokens they receive: signed by one of the
//! tenant's published keys, from this tenant's v1 or v2 issuer, for the service's own
//! audience, within its lifetime. The answer names the caller, which the call log keeps.

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::calls::Caller;
use crate::sim::Sim;
use crate::wire::SimRequest;

/// Azure's services accept five minutes of clock skew.
const LEEWAY_SECS: u64 = 300;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("the Authorization header is missing")]
    Missing,
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    #[error("the token's signing key '{0}' is not published by the tenant")]
    UnknownKey(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's audience '{0}' is not accepted by this service")]
    Audience(String),
    #[error("the token's issuer is not trusted: {0}")]
    Issuer(String),
    #[error("the token's signature is invalid")]
    Signature,
}

/// Checks the request's bearer token for any of the named APIs (see `SimConfig::apis`).
pub fn authenticate(sim: &Sim, req: &SimRequest, apis: &[&str]) -> Result<Caller, AuthError> {
    let header = req.header("authorization").ok_or(AuthError::Missing)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| AuthError::Malformed("not a Bearer authorization".into()))?
        .trim();
    let jwt_header =
        jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
    if jwt_header.alg != Algorithm::RS256 {
        return Err(AuthError::Malformed(format!(
            "algorithm {:?} is not accepted",
            jwt_header.alg
        )));
    }
    let kid = jwt_header
        .kid
        .ok_or_else(|| AuthError::Malformed("no kid in the header".into()))?;
    let key = sim.keys.find(&kid).ok_or(AuthError::UnknownKey(kid))?;
    let mut audiences: Vec<String> = Vec::new();
    for api in sim
        .config
        .apis
        .iter()
        .filter(|a| apis.contains(&a.name.as_str()))
    {
        audiences.extend(api.identifiers.iter().cloned());
        audiences.push(api.app_id.to_string());
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(&audiences);
    validation.set_issuer(&[sim.config.v1_issuer(), sim.v2_issuer()]);
    validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
    let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind::*;
        let claims = unverified_claims(token);
        match e.kind() {
            ExpiredSignature => AuthError::Expired,
            ImmatureSignature => AuthError::NotYetValid,
            InvalidAudience => AuthError::Audience(
                claims
                    .get("aud")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ),
            InvalidIssuer => AuthError::Issuer(
                claims
                    .get("iss")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ),
            InvalidSignature => AuthError::Signature,
            other => AuthError::Malformed(format!("{other:?}")),
        }
    })?;
    let c = data.claims;
    let s = |name: &str| c.get(name).and_then(Value::as_str).map(str::to_owned);
    let object_id = s("oid").ok_or_else(|| AuthError::Malformed("no oid claim".into()))?;
    let tenant_id = s("tid").ok_or_else(|| AuthError::Malformed("no tid claim".into()))?;
    if !tenant_id.eq_ignore_ascii_case(&sim.config.tenant_id.to_string()) {
        return Err(AuthError::Issuer(format!("tenant {tenant_id}")));
    }
    Ok(Caller {
        name: sim
            .config
            .principal_by_object_id(&object_id)
            .map(|p| p.name.clone()),
        app_id: s("appid").or_else(|| s("azp")),
        audience: s("aud").unwrap_or_default(),
        object_id,
        tenant_id,
    })
}

/// The payload of a token whose checks failed, only to say what was wrong with it.
fn unverified_claims(token: &str) -> Value {
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}
