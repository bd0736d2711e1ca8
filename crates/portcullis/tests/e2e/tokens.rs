//! A corpus of hostile tokens (hardening issue, point 7). Each one is refused with 401 in the
//! native error shape of the service addressed (ARM, or Key Vault for a few), reaches nothing
//! in "Azure" (the simulator's call log), and leaves a refusal record with status 401 in the
//! audit trail, under the request id its answer carries.
//!
//! Tokens an attacker can make (its own keys, `alg` tricks, key-location headers, mangled
//! encodings) sit beside tokens only Entra's key could sign (the simulator's mint and
//! `Simulator::sign_compact`): those check that the gateway refuses a token for its shape and
//! its claims, not merely because some signature fails to verify.
//!
//! Every case runs to the end and the failures are reported together, by name.
//!
//! Decisions the corpus takes (azure-notes §1):
//! - `bearer` in lower case is accepted (auth schemes are case-insensitive): a control.
//! - An `aud` array naming the gateway and another API is refused: it is also the other
//!   API's token (the confused deputy the notes warn about), and Entra issues one string.
//! - Duplicate JSON keys anywhere are refused: parsers disagree on which one counts.
//! - Two `Authorization` fields are refused, whatever their order: the field is a singleton.
//! - `typ` is what Entra issues (`JWT`); `cty` (nesting) is never accepted.
//! - `iat` in the future is not a case: the gateway does not validate `iat` (nor does Entra's
//!   own guidance ask for it); `exp` and `nbf` are the time checks.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{Method, StatusCode};
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use sha2::Digest;

use crate::{Env, GATEWAY_API, Setup};

const ARM_PATH_QUERY: &str = "?api-version=2022-09-01";
const KV_PATH: &str = "/keyvault/demo-kv/secrets/db-password?api-version=7.4";
const OTHER_TENANT: &str = "99999999-9999-9999-9999-999999999999";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn mint(env: &Env, body: Value) -> String {
    let m: azure_sim::MintRequest = serde_json::from_value(body).unwrap();
    env.sim.mint(m).unwrap()
}

/// A token's payload, decoded.
fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// `header.payload.signature` with `alg` over exactly these header and payload bytes.
fn sign(alg: Algorithm, key: &EncodingKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

// === DER, by hand: enough to turn a JWKS `n`/`e` into an RSA public key ===

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

fn der_uint(be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::new();
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// The gateway's real signing key, public half, in every form an HMAC confusion might use.
struct RealKey {
    kid: String,
    /// The JWKS `n`, as text.
    n_text: String,
    n_bytes: Vec<u8>,
    spki_pem: String,
    pkcs1_pem: String,
    spki_der: Vec<u8>,
}

async fn real_key(env: &Env) -> RealKey {
    let kid = env.sim.published_kids()[0].clone();
    let sim_http = crate::client(env.sim.ca_path().unwrap(), None);
    let jwks: Value = sim_http
        .get(format!(
            "{}/{}/discovery/v2.0/keys",
            env.sim.url(),
            env.sim.tenant_id()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the signing key is published")
        .clone();
    let n_text = jwk["n"].as_str().unwrap().to_owned();
    let n_bytes = URL_SAFE_NO_PAD.decode(&n_text).unwrap();
    let e_bytes = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let mut seq = der_uint(&n_bytes);
    seq.extend(der_uint(&e_bytes));
    let pkcs1 = der(0x30, &seq);
    let public = rsa::PublicKey::from_pkcs1_der(&pkcs1).unwrap();
    RealKey {
        kid,
        n_text,
        n_bytes,
        spki_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
        pkcs1_pem: public.to_pkcs1_pem(LineEnding::LF).unwrap(),
        spki_der: public.to_public_key_der().unwrap().as_bytes().to_vec(),
    }
}

/// The attacker's own RSA key, its JWK and a self-signed certificate for it.
struct Attacker {
    key: EncodingKey,
    kid: String,
    jwk: Value,
    cert_der: Vec<u8>,
}

fn attacker() -> Attacker {
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let key = EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
    let kid = "attacker-key-1".to_owned();
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap(),
    )
    .unwrap();
    jwk["kid"] = json!(kid);
    let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["login.microsoftonline.com".to_owned()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    Attacker {
        key,
        kid,
        jwk,
        cert_der: cert.der().to_vec(),
    }
}

// === the cases ===

/// How a case presents its token.
enum Present {
    /// `Authorization: Bearer {token}`.
    Bearer(String),
    /// These `Authorization` header values, as given, in order.
    Authorization(Vec<Vec<u8>>),
    /// No `Authorization` header: the token as an `access_token` query parameter.
    Query(String),
}

struct Case {
    name: String,
    present: Present,
    /// Sent to a Key Vault path (else ARM).
    keyvault: bool,
}

impl Case {
    fn arm(name: impl Into<String>, token: String) -> Case {
        Case {
            name: name.into(),
            present: Present::Bearer(token),
            keyvault: false,
        }
    }

    fn kv(name: impl Into<String>, token: String) -> Case {
        Case {
            keyvault: true,
            ..Case::arm(name, token)
        }
    }

    fn headers(name: impl Into<String>, values: Vec<Vec<u8>>) -> Case {
        Case {
            name: name.into(),
            present: Present::Authorization(values),
            keyvault: false,
        }
    }

    /// Text that must never appear in an answer or an audit record: the token's signature
    /// part (or the token, when it has none), if long enough to be telling.
    fn secrets(&self) -> Vec<String> {
        let tokens: Vec<String> = match &self.present {
            Present::Bearer(t) | Present::Query(t) => vec![t.clone()],
            Present::Authorization(vs) => vs
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect(),
        };
        tokens
            .iter()
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned())
            .filter(|s| s.len() >= 40)
            .collect()
    }
}

/// What one case got back.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn present(env: &Env, http: &reqwest::Client, case: &Case) -> Result<Answer, String> {
    let path = if case.keyvault {
        KV_PATH.to_owned()
    } else {
        format!("{}{ARM_PATH_QUERY}", env.rg())
    };
    let mut req = match &case.present {
        Present::Query(t) => http.get(env.url(&format!("{path}&access_token={t}"))),
        Present::Bearer(t) => http.get(env.url(&path)).header(
            AUTHORIZATION,
            reqwest::header::HeaderValue::from_bytes(format!("Bearer {t}").as_bytes())
                .map_err(|e| format!("the test cannot send this header: {e}"))?,
        ),
        Present::Authorization(_) => http.get(env.url(&path)),
    };
    if let Present::Authorization(values) = &case.present {
        for v in values {
            // `header` appends: two values are two header fields.
            req = req.header(
                AUTHORIZATION,
                reqwest::header::HeaderValue::from_bytes(v)
                    .map_err(|e| format!("the test cannot send this header: {e}"))?,
            );
        }
    }
    let resp = req.send().await.map_err(|e| format!("no answer: {e:?}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(|e| format!("no body: {e}"))?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// What is wrong with a refusal's answer: status, error shape, headers, challenge. Returns
/// the request id it names.
fn check_refusal(case: &Case, a: &Answer, problems: &mut Vec<(String, String)>) -> Option<String> {
    let mut wrong = |what: String| problems.push((case.name.clone(), what));
    if a.status != StatusCode::UNAUTHORIZED {
        wrong(format!("status {} (want 401): {}", a.status, a.body));
        return None;
    }
    let h = |n: &str| a.headers.get(n).and_then(|v| v.to_str().ok());
    let code = a.body["error"]["code"].as_str().unwrap_or("");
    let allowed: &[&str] = if case.keyvault {
        &["Unauthorized"]
    } else {
        &["InvalidAuthenticationToken", "AuthenticationFailed"]
    };
    if !allowed.contains(&code) {
        wrong(format!(
            "error code '{code}', want one of {allowed:?}: {}",
            a.body
        ));
    }
    if !a.body["error"]["message"].is_string() {
        wrong(format!("no error.message: {}", a.body));
    }
    let error_keys: Vec<&String> = a.body["error"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    if error_keys.iter().any(|k| *k != "code" && *k != "message") {
        wrong(format!(
            "unexpected fields in a 401's error: {error_keys:?}"
        ));
    }
    if h("x-ms-error-code") != Some(code) {
        wrong(format!("x-ms-error-code {:?}", h("x-ms-error-code")));
    }
    if !h("content-type").is_some_and(|c| c.starts_with("application/json")) {
        wrong(format!("content-type {:?}", h("content-type")));
    }
    let challenge = h("www-authenticate").unwrap_or("");
    let native = if case.keyvault {
        challenge.starts_with("Bearer authorization=\"") && challenge.contains("resource=\"")
    } else {
        challenge.starts_with("Bearer authorization_uri=\"")
    };
    if !native {
        wrong(format!("WWW-Authenticate '{challenge}'"));
    }
    let text = format!("{} {challenge}", a.body);
    for s in case.secrets() {
        if text.contains(&s) {
            wrong("the answer echoes the token".into());
        }
    }
    match (h("x-ms-request-id"), h("x-portcullis-request-id")) {
        (Some(ms), Some(pc)) if ms == pc && !ms.is_empty() => Some(ms.to_owned()),
        other => {
            wrong(format!("request id headers {other:?}"));
            None
        }
    }
}

/// Runs the cases: each must be refused (answer, call log, audit trail); every failure is
/// collected and reported by case name.
async fn run(env: &Env, cases: &[Case]) {
    assert!(
        cases.len()
            == cases
                .iter()
                .map(|c| &c.name)
                .collect::<std::collections::HashSet<_>>()
                .len(),
        "case names are unique"
    );
    let mut problems = Vec::new();
    let mut ids = Vec::new();
    for case in cases {
        let before = env.sim.last_call_seq();
        let answer = present(env, &env.http, case).await;
        // Nothing reaches a service; the gateway may fetch the authority's metadata and
        // keys (an unknown kid forces one refresh), and nothing else.
        for call in env.sim.calls_since(before) {
            let own_fetch = call.service == azure_sim::Service::Entra
                && call.method == "GET"
                && (call.path.contains("/discovery/")
                    || call.path.ends_with("/.well-known/openid-configuration"));
            if !own_fetch {
                problems.push((
                    case.name.clone(),
                    format!(
                        "reached the simulator: {:?} {} {} ({}) -> {}",
                        call.service, call.method, call.path, call.query, call.status
                    ),
                ));
            }
        }
        match answer {
            Ok(a) => {
                if let Some(id) = check_refusal(case, &a, &mut problems) {
                    ids.push((case, id));
                }
            }
            Err(e) => problems.push((case.name.clone(), e)),
        }
    }
    // Every refusal is in the audit trail, as a refusal with status 401, and no record
    // holds the token.
    let records = env.audit_records().await;
    use portcullis::audit::record::Phase;
    for (case, id) in &ids {
        let mine: Vec<_> = records.iter().filter(|r| &r.request_id == id).collect();
        if !mine
            .iter()
            .any(|r| r.phase == Phase::Refused && r.status == Some(401))
        {
            problems.push((
                case.name.clone(),
                format!("no refusal record with status 401 for request {id}: {mine:?}"),
            ));
        }
        if mine.iter().any(|r| r.phase == Phase::Request) {
            problems.push((case.name.clone(), "recorded as forwarded".into()));
        }
        for r in &mine {
            let text = serde_json::to_string(r).unwrap();
            if case.secrets().iter().any(|s| text.contains(s)) {
                problems.push((
                    case.name.clone(),
                    format!("the audit record holds the token: {text}"),
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} hostile tokens were not refused as they should be:\n{}",
        problems
            .iter()
            .map(|(name, _)| name)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        cases.len(),
        problems
            .iter()
            .map(|(name, what)| format!("[{name}] {what}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The same claims, with `changes` applied (`null` removes a claim).
fn with(base: &Value, changes: Value) -> Value {
    let mut c = base.clone();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// JSON object text with `extra` (raw `"key":value` text) inserted first or last: duplicate
/// keys survive, as no JSON library would write them.
fn duplicate(object: &Value, extra: &str, first: bool) -> String {
    let text = object.to_string();
    let inner = &text[1..text.len() - 1];
    if first {
        format!("{{{extra},{inner}}}")
    } else {
        format!("{{{inner},{extra}}}")
    }
}

#[tokio::test]
async fn hostile_tokens_are_refused_recorded_and_reach_nothing() {
    let env = Env::start().await;
    let arm_path = format!("{}{ARM_PATH_QUERY}", env.rg());
    // Controls, which also warm the key cache: a valid token passes on both paths, and the
    // scheme's case does not matter (RFC 9110 §11.1: auth schemes are case-insensitive).
    let good = env.token("agent");
    for (path, scheme) in [
        (arm_path.as_str(), "Bearer"),
        (KV_PATH, "Bearer"),
        (arm_path.as_str(), "bearer"),
    ] {
        let resp = env
            .http
            .get(env.url(path))
            .header(AUTHORIZATION, format!("{scheme} {good}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "control: {scheme} on {path}");
    }
    let real = real_key(&env).await;
    let evil = attacker();
    let tid = env.sim.tenant_id();
    let v2_issuer = env.sim.v2_issuer();
    let v1_issuer = env.sim.config().v1_issuer();
    let gateway_app = env.sim.config().api_for(GATEWAY_API).unwrap().app_id;
    let claims = claims_of(&good);
    let payload = claims.to_string();
    let rs256 = json!({"typ": "JWT", "alg": "RS256", "kid": real.kid});
    let header = rs256.to_string();
    // A token the real key signs over this header and payload text.
    let signed_real = |header: &str, payload: &str| {
        env.sim
            .sign_compact(&format!("{}.{}", b64(header), b64(payload)))
    };
    // The attacker's key over this header (the agent's valid claims).
    let signed_evil = |header: Value| {
        sign(
            Algorithm::RS256,
            &evil.key,
            header.to_string().as_bytes(),
            payload.as_bytes(),
        )
    };
    let hmac = |alg: Algorithm, secret: &[u8]| {
        let h = json!({"typ": "JWT", "alg": format!("{alg:?}"), "kid": real.kid});
        sign(
            alg,
            &EncodingKey::from_secret(secret).unwrap(),
            h.to_string().as_bytes(),
            payload.as_bytes(),
        )
    };
    let none = |alg: &str| {
        format!(
            "{}.{}.",
            b64(json!({"typ": "JWT", "alg": alg, "kid": real.kid}).to_string()),
            b64(&payload)
        )
    };
    let [good_h, good_p, good_s]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let sim_url = env.sim.url().to_owned();
    let m = |body: Value| mint(&env, body);
    // The agent's valid claims with `changes` (null removes one), signed by the real key.
    let real_claims = |changes: Value| signed_real(&header, &with(&claims, changes).to_string());
    let claims_minted =
        |extra: Value| m(json!({"principal": "agent", "audience": GATEWAY_API, "claims": extra}));

    let mut cases = vec![
        // --- no token, or not a bearer token ---
        Case::headers("no Authorization header", vec![]),
        Case::headers("an empty bearer token", vec![b"Bearer ".to_vec()]),
        Case::headers(
            "Bearer misspelled (Baerer)",
            vec![format!("Baerer {good}").into_bytes()],
        ),
        Case::headers(
            "Bearer without a space",
            vec![format!("Bearer{good}").into_bytes()],
        ),
        Case::headers(
            "Bearer and a tab",
            vec![format!("Bearer\t{good}").into_bytes()],
        ),
        Case::headers(
            "the token without a scheme",
            vec![good.clone().into_bytes()],
        ),
        Case::headers(
            "Basic credentials",
            vec![format!("Basic {}", STANDARD.encode("agent:secret")).into_bytes()],
        ),
        Case::headers(
            "two Authorization headers: garbage, then a valid token",
            vec![
                b"Bearer not.a.jwt".to_vec(),
                format!("Bearer {good}").into_bytes(),
            ],
        ),
        Case::headers(
            "two Authorization headers: a valid token, then garbage",
            vec![
                format!("Bearer {good}").into_bytes(),
                b"Bearer not.a.jwt".to_vec(),
            ],
        ),
        Case::headers(
            "two Authorization headers: two principals' valid tokens",
            vec![
                format!("Bearer {good}").into_bytes(),
                format!("Bearer {}", env.token("alice")).into_bytes(),
            ],
        ),
        Case::headers(
            "a byte outside ASCII in the header",
            vec![[b"Bearer ".as_slice(), good.as_bytes(), b"\xff"].concat()],
        ),
        Case {
            name: "a valid token in the access_token query parameter, no header".into(),
            present: Present::Query(good.clone()),
            keyvault: false,
        },
        // --- alg: none and HMAC confusion ---
        Case::arm("alg none, no signature part", none("none")),
        Case::arm(
            "alg none with the original signature",
            format!("{}{good_s}", none("none")),
        ),
        Case::arm(
            "alg None (capitalised) with the original signature",
            format!("{}{good_s}", none("None")),
        ),
        Case::arm(
            "alg NONE with a signature part",
            format!("{}{good_s}", none("NONE")),
        ),
        Case::arm(
            "no alg at all, signed by the real key",
            signed_real(&json!({"typ": "JWT", "kid": real.kid}).to_string(), &payload),
        ),
        Case::arm(
            "HS256 keyed with the real public key, SPKI PEM",
            hmac(Algorithm::HS256, real.spki_pem.as_bytes()),
        ),
        Case::arm(
            "HS256 keyed with the real public key, PKCS#1 PEM",
            hmac(Algorithm::HS256, real.pkcs1_pem.as_bytes()),
        ),
        Case::arm(
            "HS256 keyed with the real public key, SPKI DER",
            hmac(Algorithm::HS256, &real.spki_der),
        ),
        Case::arm(
            "HS256 keyed with the JWKS n text",
            hmac(Algorithm::HS256, real.n_text.as_bytes()),
        ),
        Case::arm(
            "HS256 keyed with the modulus bytes",
            hmac(Algorithm::HS256, &real.n_bytes),
        ),
        Case::arm(
            "HS512 keyed with the real public key, SPKI PEM",
            hmac(Algorithm::HS512, real.spki_pem.as_bytes()),
        ),
        // --- keys: whose, and where from ---
        Case::arm(
            "RS256 by the attacker's key under the real kid",
            signed_evil(rs256.clone()),
        ),
        Case::arm(
            "an unknown kid (a key no JWKS publishes)",
            m(json!({"principal": "agent", "audience": GATEWAY_API, "unpublished_key": true})),
        ),
        Case::arm(
            "kid ../../x",
            signed_evil(json!({"typ": "JWT", "alg": "RS256", "kid": "../../x"})),
        ),
        Case::arm(
            "kid /etc/passwd",
            signed_evil(json!({"typ": "JWT", "alg": "RS256", "kid": "/etc/passwd"})),
        ),
        Case::arm(
            "kid a URL on the simulator",
            signed_evil(
                json!({"typ": "JWT", "alg": "RS256", "kid": format!("{sim_url}/attacker/kid")}),
            ),
        ),
        Case::arm(
            "kid the real kid plus a NUL and more",
            signed_evil(
                json!({"typ": "JWT", "alg": "RS256", "kid": format!("{}\u{0}x", real.kid)}),
            ),
        ),
        Case::arm(
            "kid 10000 characters long",
            signed_evil(json!({"typ": "JWT", "alg": "RS256", "kid": "k".repeat(10_000)})),
        ),
        Case::arm(
            "kid a number",
            signed_evil(json!({"typ": "JWT", "alg": "RS256", "kid": 1})),
        ),
        Case::arm(
            "no kid, signed by the real key",
            signed_real(&json!({"typ": "JWT", "alg": "RS256"}).to_string(), &payload),
        ),
        Case::arm(
            "jku to the attacker's key set, attacker's kid",
            signed_evil(
                json!({"typ": "JWT", "alg": "RS256", "kid": evil.kid, "jku": format!("{sim_url}/attacker/jwks")}),
            ),
        ),
        Case::arm(
            "jku to the attacker's key set, real kid",
            signed_evil(
                json!({"typ": "JWT", "alg": "RS256", "kid": real.kid, "jku": format!("{sim_url}/attacker/jwks")}),
            ),
        ),
        Case::arm(
            "x5u to the attacker's certificate",
            signed_evil(
                json!({"typ": "JWT", "alg": "RS256", "kid": evil.kid, "x5u": format!("{sim_url}/attacker/cert.pem")}),
            ),
        ),
        Case::arm(
            "embedded jwk with the attacker's key, attacker's kid",
            signed_evil(json!({"typ": "JWT", "alg": "RS256", "kid": evil.kid, "jwk": evil.jwk})),
        ),
        Case::arm(
            "embedded jwk with the attacker's key, real kid",
            signed_evil(json!({"typ": "JWT", "alg": "RS256", "kid": real.kid, "jwk": evil.jwk})),
        ),
        Case::arm(
            "x5c with the attacker's certificate",
            signed_evil(json!({
                "typ": "JWT", "alg": "RS256", "kid": real.kid,
                "x5c": [STANDARD.encode(&evil.cert_der)],
                "x5t#S256": b64(sha2::Sha256::digest(&evil.cert_der)),
            })),
        ),
        // --- time ---
        Case::arm(
            "expired",
            m(
                json!({"principal": "agent", "audience": GATEWAY_API, "lifetime_secs": -600, "not_before_offset_secs": -1200}),
            ),
        ),
        Case::arm(
            "not yet valid (nbf in 15 minutes)",
            m(
                json!({"principal": "agent", "audience": GATEWAY_API, "not_before_offset_secs": 900, "lifetime_secs": 3600}),
            ),
        ),
        Case::arm("no exp", real_claims(json!({"exp": null}))),
        Case::arm(
            "exp a string",
            claims_minted(json!({"exp": (chrono::Utc::now().timestamp() + 3600).to_string()})),
        ),
        // --- audience ---
        Case::arm(
            "another API's audience",
            m(json!({"principal": "agent", "audience": "api://portcullis-v1"})),
        ),
        Case::arm(
            "ARM audience https://management.azure.com/",
            env.sim
                .token("agent", "https://management.azure.com/")
                .unwrap(),
        ),
        Case::arm(
            "ARM audience https://management.core.windows.net/",
            env.sim
                .token("agent", "https://management.core.windows.net/")
                .unwrap(),
        ),
        Case::arm(
            "Key Vault audience https://vault.azure.net",
            env.sim.token("agent", "https://vault.azure.net").unwrap(),
        ),
        Case::arm(
            "Graph audience https://graph.microsoft.com",
            env.sim.token("agent", "https://graph.microsoft.com").unwrap(),
        ),
        Case::arm(
            "Graph audience by app id",
            env.sim
                .token("agent", "00000003-0000-0000-c000-000000000000")
                .unwrap(),
        ),
        Case::arm(
            "an audience array: the gateway's and ARM's",
            claims_minted(
                json!({"aud": [gateway_app.to_string(), "https://management.azure.com/"]}),
            ),
        ),
        Case::arm("no aud", real_claims(json!({"aud": null}))),
        Case::arm(
            "an id token (aud another app's client id, a nonce, no scp or roles)",
            signed_real(
                &header,
                &with(
                    &claims_of(&env.token("alice")),
                    json!({
                        "aud": azure_sim::entra::token::DEFAULT_USER_CLIENT_APP,
                        "nonce": "n-0S6_WzA2Mj",
                        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
                        "scp": null,
                        "roles": null,
                    }),
                )
                .to_string(),
            ),
        ),
        // --- issuer, tenant, version ---
        Case::arm(
            "issuer Microsoft's own for the tenant (not the configured authority)",
            claims_minted(
                json!({"iss": format!("https://login.microsoftonline.com/{tid}/v2.0")}),
            ),
        ),
        Case::arm(
            "issuer elsewhere",
            claims_minted(json!({"iss": format!("https://evil.example/{tid}/v2.0")})),
        ),
        Case::arm("no iss", real_claims(json!({"iss": null}))),
        Case::arm(
            "a tenant not allowed (tid and iss)",
            claims_minted(json!({
                "tid": OTHER_TENANT,
                "iss": v2_issuer.replace(&tid, OTHER_TENANT),
            })),
        ),
        Case::arm(
            "tid another tenant's, iss ours",
            claims_minted(json!({"tid": OTHER_TENANT})),
        ),
        Case::arm(
            "tid not a GUID",
            claims_minted(json!({"tid": "contoso.onmicrosoft.com"})),
        ),
        Case::arm("no tid", real_claims(json!({"tid": null}))),
        Case::arm(
            "v1 issuer on a v2 token",
            claims_minted(json!({"iss": v1_issuer})),
        ),
        Case::arm(
            "v2 issuer on a v1 token",
            m(json!({"principal": "agent", "audience": GATEWAY_API, "version": 1, "claims": {"iss": v2_issuer}})),
        ),
        Case::arm("ver 3.0", claims_minted(json!({"ver": "3.0"}))),
        Case::arm("ver a number", claims_minted(json!({"ver": 2.0}))),
        Case::arm("no ver", real_claims(json!({"ver": null}))),
        // --- the signature and the parts ---
        Case::arm(
            "a tampered payload (another principal's claims, the original signature)",
            format!(
                "{good_h}.{}.{good_s}",
                env.token("alice").split('.').nth(1).unwrap()
            ),
        ),
        Case::arm(
            "a tampered payload (a role added, the original signature)",
            format!(
                "{good_h}.{}.{good_s}",
                b64(with(&claims, json!({"roles": ["Agent.Invoke", "Owner"]})).to_string())
            ),
        ),
        Case::arm(
            "the signature stripped (trailing dot)",
            format!("{good_h}.{good_p}."),
        ),
        Case::arm("two parts only", format!("{good_h}.{good_p}")),
        Case::arm(
            "truncated in the signature",
            good[..good.len() - 10].to_owned(),
        ),
        Case::arm("truncated in the payload", good[..good_h.len() + 20].to_owned()),
        Case::arm("four parts", format!("{good}.{good_s}")),
        Case::arm(
            "five parts, JWE-shaped",
            format!(
                "{}.{}.{}.{}.{}",
                b64(json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": real.kid}).to_string()),
                b64([7u8; 256]),
                b64([1u8; 12]),
                b64(&payload),
                b64([2u8; 16])
            ),
        ),
        Case::arm(
            "a signature in base64 with padding",
            format!("{good_h}.{good_p}.{}", URL_SAFE.encode(URL_SAFE_NO_PAD.decode(good_s).unwrap())),
        ),
        Case::arm(
            "a signature in the +/ alphabet",
            format!("{good_h}.{good_p}.{}", STANDARD.encode(URL_SAFE_NO_PAD.decode(good_s).unwrap()).trim_end_matches('=')),
        ),
        Case::arm(
            "header and payload padded, the padded text signed by the real key",
            env.sim.sign_compact(&format!(
                "{}.{}",
                padded(&header),
                padded(&payload)
            )),
        ),
        Case::arm(
            "payload in the +/ alphabet, that text signed by the real key",
            env.sim
                .sign_compact(&format!("{}.{}", b64(&header), standard_alphabet(&claims))),
        ),
        Case::arm(
            "a space inside the token",
            format!("{good_h}.{} {}.{good_s}", &good_p[..10], &good_p[10..]),
        ),
        Case::arm(
            "a character outside any base64 alphabet",
            format!("{good_h}.{}*.{good_s}", good_p),
        ),
        Case::arm(
            "a header that is not JSON, signed by the real key",
            signed_real("RS256 please", &payload),
        ),
        Case::arm(
            "a payload that is not JSON, signed by the real key",
            signed_real(&header, "agent is an owner"),
        ),
        Case::arm(
            "a payload that is a JSON array, signed by the real key",
            signed_real(&header, &format!("[{payload}]")),
        ),
        Case::arm(
            "a header that is a JSON string, signed by the real key",
            signed_real(&Value::String(header.clone()).to_string(), &payload),
        ),
        // --- duplicate keys: no two parsers may disagree; refusing is the safe answer ---
        Case::arm(
            "two aud: ARM's first, the gateway's last",
            signed_real(
                &header,
                &duplicate(&claims, r#""aud":"https://management.azure.com/""#, true),
            ),
        ),
        Case::arm(
            "two aud: the gateway's first, ARM's last",
            signed_real(
                &header,
                &duplicate(&claims, r#""aud":"https://management.azure.com/""#, false),
            ),
        ),
        Case::arm(
            "two tid: another tenant's first, ours last",
            signed_real(
                &header,
                &duplicate(&claims, &format!(r#""tid":"{OTHER_TENANT}""#), true),
            ),
        ),
        Case::arm(
            "two tid: ours first, another tenant's last",
            signed_real(
                &header,
                &duplicate(&claims, &format!(r#""tid":"{OTHER_TENANT}""#), false),
            ),
        ),
        Case::arm(
            "two oid: alice's first, the agent's last",
            signed_real(
                &header,
                &duplicate(
                    &claims,
                    &format!(
                        r#""oid":"{}""#,
                        env.sim.config().principal("alice").unwrap().object_id
                    ),
                    true,
                ),
            ),
        ),
        Case::arm(
            "two exp: expired first, valid last",
            signed_real(&header, &duplicate(&claims, r#""exp":1000000000"#, true)),
        ),
        Case::arm(
            "two iss: elsewhere first, ours last",
            signed_real(
                &header,
                &duplicate(&claims, r#""iss":"https://evil.example/""#, true),
            ),
        ),
        Case::arm(
            "two alg in the header: none first, RS256 last",
            signed_real(&duplicate(&rs256, r#""alg":"none""#, true), &payload),
        ),
        Case::arm(
            "two kid in the header: an unknown one first, the real one last",
            signed_real(&duplicate(&rs256, r#""kid":"unknown""#, true), &payload),
        ),
        // --- header parameters Entra never sends ---
        Case::arm(
            "crit with an unknown extension, signed by the real key",
            signed_real(
                &json!({"typ": "JWT", "alg": "RS256", "kid": real.kid, "crit": ["exp"], "exp": 1}).to_string(),
                &payload,
            ),
        ),
        Case::arm(
            "crit b64 false (unencoded payload), signed by the real key",
            signed_real(
                &json!({"typ": "JWT", "alg": "RS256", "kid": real.kid, "crit": ["b64"], "b64": false}).to_string(),
                &payload,
            ),
        ),
        Case::arm(
            "typ dpop+jwt (a DPoP proof, not an access token), signed by the real key",
            signed_real(
                &json!({"typ": "dpop+jwt", "alg": "RS256", "kid": real.kid}).to_string(),
                &payload,
            ),
        ),
        Case::arm(
            "nested JWT: cty JWT wrapping a valid token, signed by the real key",
            signed_real(
                &json!({"typ": "JWT", "cty": "JWT", "alg": "RS256", "kid": real.kid}).to_string(),
                &good,
            ),
        ),
        Case::arm(
            "cty JWT over plain claims, signed by the real key",
            signed_real(
                &json!({"typ": "JWT", "cty": "JWT", "alg": "RS256", "kid": real.kid}).to_string(),
                &payload,
            ),
        ),
    ];
    // A few on the Key Vault path: its native 401 and challenge, and nothing reaching it.
    cases.extend([
        Case {
            keyvault: true,
            ..Case::headers("Key Vault: no Authorization header", vec![])
        },
        Case::kv("Key Vault: alg none", format!("{}{good_s}", none("none"))),
        Case::kv(
            "Key Vault: HS256 keyed with the real public key, SPKI PEM",
            hmac(Algorithm::HS256, real.spki_pem.as_bytes()),
        ),
        Case::kv(
            "Key Vault: a Key Vault token",
            env.sim.token("agent", "https://vault.azure.net").unwrap(),
        ),
        Case::kv(
            "Key Vault: embedded jwk with the attacker's key",
            signed_evil(json!({"typ": "JWT", "alg": "RS256", "kid": evil.kid, "jwk": evil.jwk})),
        ),
        Case::kv(
            "Key Vault: expired",
            m(
                json!({"principal": "agent", "audience": GATEWAY_API, "lifetime_secs": -600, "not_before_offset_secs": -1200}),
            ),
        ),
        Case::kv(
            "Key Vault: two tid, another tenant's first",
            signed_real(
                &header,
                &duplicate(&claims, &format!(r#""tid":"{OTHER_TENANT}""#), true),
            ),
        ),
    ]);
    run(&env, &cases).await;
    // The key-location headers were never followed.
    let followed: Vec<_> = env
        .sim
        .calls_since(0)
        .into_iter()
        .filter(|c| c.path.contains("attacker"))
        .collect();
    assert!(followed.is_empty(), "followed: {followed:?}");
}

/// Base64 with `=` padding (JSON text grown with trailing spaces until padding is needed).
fn padded(json: &str) -> String {
    let mut text = json.to_owned();
    while text.len() % 3 != 1 {
        text.push(' ');
    }
    let encoded = URL_SAFE.encode(text);
    assert!(encoded.ends_with("=="));
    encoded
}

/// The claims in the standard (`+/`) alphabet, unpadded: a filler claim makes sure both
/// characters occur (six equal bytes hold an aligned triple, whatever the offset).
fn standard_alphabet(claims: &Value) -> String {
    let text = with(claims, json!({"filler": ">>>>>>??????"})).to_string();
    let encoded = STANDARD.encode(text).trim_end_matches('=').to_owned();
    assert!(encoded.contains('+') && encoded.contains('/'), "{encoded}");
    encoded
}

/// With two allowed tenants on the multi-tenant authority, a token's `tid` and `iss` must
/// name the same one: either alone picks nothing.
#[tokio::test]
async fn issuer_and_tenant_must_name_the_same_allowed_tenant() {
    let ours = azure_sim::SimConfig::default().tenant_id.to_string();
    let env = Env::with(Setup {
        allowed_tenants: Some(vec![ours.clone(), OTHER_TENANT.to_owned()]),
        ..Setup::default()
    })
    .await;
    let good = env.token("agent");
    let (s, _, body) = env
        .call(
            Some(&good),
            Method::GET,
            &format!("{}{ARM_PATH_QUERY}", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "control: {body}");
    let v2 = env.sim.v2_issuer();
    let v1 = env.sim.config().v1_issuer();
    let minted = |version: u8, claims: Value| {
        mint(
            &env,
            json!({"principal": "agent", "audience": GATEWAY_API, "version": version, "claims": claims}),
        )
    };
    let cases = vec![
        Case::arm(
            "v2: tid the other allowed tenant, iss ours",
            minted(2, json!({"tid": OTHER_TENANT})),
        ),
        Case::arm(
            "v2: tid ours, iss the other allowed tenant's",
            minted(2, json!({"iss": v2.replace(&ours, OTHER_TENANT)})),
        ),
        Case::arm(
            "v1: tid the other allowed tenant, iss ours",
            minted(1, json!({"tid": OTHER_TENANT})),
        ),
        Case::arm(
            "v1: tid ours, iss the other allowed tenant's",
            minted(1, json!({"iss": v1.replace(&ours, OTHER_TENANT)})),
        ),
        Case::arm(
            "v2 token with the v1 issuer",
            minted(2, json!({"iss": v1.clone()})),
        ),
        Case::arm(
            "v1 token with the v2 issuer",
            minted(1, json!({"iss": v2.clone()})),
        ),
        Case::arm(
            "iss with the {tenantid} placeholder left in",
            minted(2, json!({"iss": v2.replace(&ours, "{tenantid}")})),
        ),
        Case::arm(
            "tid the placeholder itself",
            minted(
                2,
                json!({"tid": "{tenantid}", "iss": v2.replace(&ours, "{tenantid}")}),
            ),
        ),
    ];
    run(&env, &cases).await;
}

/// Oversized tokens are refused without harm, over HTTP/2 and HTTP/1.1: a 401 from the
/// gateway (recorded like any refusal), or a 431 from the HTTP layer before the gateway sees
/// the request (no record then: there is no request to record), or over HTTP/2 a GOAWAY for
/// a header block far over the limit. The gateway serves on after. As observed: HTTP/2 answers
/// 431 at 17 KiB (the 16 KiB header list limit) and GOAWAY at 64 KiB and 1 MiB; HTTP/1.1
/// lets 17 and 64 KiB through to the gateway (401, the token is over 16 KiB) and answers 431
/// at 1 MiB.
#[tokio::test]
async fn oversized_tokens_are_refused_and_the_gateway_serves_on() {
    let env = Env::start().await;
    let path = format!("{}{ARM_PATH_QUERY}", env.rg());
    let good = env.token("agent");
    let pem = std::fs::read(env.gw.ca_file.as_ref().unwrap()).unwrap();
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .http1_only()
        .build()
        .unwrap();
    let since = env.sim.last_call_seq();
    let mut outcomes = Vec::new();
    for (proto, http) in [("HTTP/2", &env.http), ("HTTP/1.1", &h1)] {
        for (size, label) in [
            (17 * 1024, "17 KiB"),
            (64 * 1024, "64 KiB"),
            (1024 * 1024, "1 MiB"),
        ] {
            // A well-formed JWT shape, its payload padded out with a claim.
            let filler = "A".repeat(size);
            let token = format!(
                "{}.{}.{}",
                good.split('.').next().unwrap(),
                b64(with(&claims_of(&good), json!({"filler": filler})).to_string()),
                good.rsplit('.').next().unwrap()
            );
            let case = Case::arm(format!("{label} token over {proto}"), token);
            let started = std::time::Instant::now();
            let answer = present(&env, http, &case).await;
            let took = started.elapsed();
            match answer {
                Ok(a) if a.status == StatusCode::UNAUTHORIZED => {
                    let mut problems: Vec<(String, String)> = Vec::new();
                    let id = check_refusal(&case, &a, &mut problems);
                    assert!(problems.is_empty(), "{problems:?}");
                    let id = id.unwrap();
                    let records = env.audit_records().await;
                    assert!(
                        records
                            .iter()
                            .any(|r| r.request_id == id && r.status == Some(401)),
                        "{}: a 401 is recorded",
                        case.name
                    );
                    outcomes.push(format!("{}: 401 recorded ({took:?})", case.name));
                }
                Ok(a) => {
                    assert!(
                        [
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            StatusCode::BAD_REQUEST
                        ]
                        .contains(&a.status),
                        "{}: {} {}",
                        case.name,
                        a.status,
                        a.body
                    );
                    outcomes.push(format!("{}: {} ({took:?})", case.name, a.status));
                }
                // HTTP/2 may refuse a header block far over its limit with GOAWAY
                // (ENHANCE_YOUR_CALM) instead of a 431; HTTP/1.1 always answers.
                Err(e) if proto == "HTTP/2" => {
                    outcomes.push(format!("{}: {e} ({took:?})", case.name))
                }
                Err(e) => panic!("{}: {e}", case.name),
            }
            // The gateway serves on.
            let (s, _, body) = env.call(Some(&good), Method::GET, &path, None).await;
            assert_eq!(s, StatusCode::OK, "after {}: {body}", case.name);
        }
    }
    eprintln!("oversized tokens:\n{}", outcomes.join("\n"));
    let reached = env.arm_calls(since).len();
    assert_eq!(reached, 6, "only the six control requests reached ARM");
}
