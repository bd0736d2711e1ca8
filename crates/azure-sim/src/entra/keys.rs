//! The tenant's token-signing keys and the JWKS that publishes them.
//!
//! Entra ID publishes several keys at once and rotates them without notice; relying parties
//! choose by `kid` and must not assume order. The simulator starts with two published keys,
//! signs with the first, and can rotate at runtime (a new signer; the previous ones stay
//! published unless retired), which is what a JWKS cache must survive.
//! <https://learn.microsoft.com/entra/identity-platform/signing-key-rollover>

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How many keys stay published after a rotation that does not retire the old ones.
const MAX_PUBLISHED: usize = 4;

pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    n: String,
    e: String,
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        // Entra's signing keys are 2048-bit RSA.
        let private =
            rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("the system RNG works");
        let der = private
            .to_pkcs1_der()
            .expect("a freshly generated key encodes");
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .expect("an RSA key has public components");
        let (n, e) = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => (p.n.clone(), p.e.clone()),
            _ => unreachable!("generated an RSA key"),
        };
        let decoding = DecodingKey::from_rsa_components(&n, &e).expect("valid components");
        // Entra's kids look like certificate thumbprints; a digest of the modulus plays that role.
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(n.as_bytes())[..20]);
        SigningKey {
            kid,
            encoding,
            decoding,
            n,
            e,
        }
    }

    fn jwk(&self, issuer: Option<&str>) -> Value {
        let mut k = json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": self.n,
            "e": self.e,
        });
        if let Some(issuer) = issuer {
            k["issuer"] = json!(issuer);
        }
        k
    }
}

/// The published keys; the first one signs.
pub struct KeyRing {
    /// Written only by `rotate`; read on every token issued or checked.
    published: RwLock<Vec<Arc<SigningKey>>>,
    /// Never published: tokens it signs have a `kid` no JWKS knows.
    unpublished: Arc<SigningKey>,
}

impl KeyRing {
    pub fn new() -> KeyRing {
        KeyRing {
            published: RwLock::new(vec![
                Arc::new(SigningKey::generate()),
                Arc::new(SigningKey::generate()),
            ]),
            unpublished: Arc::new(SigningKey::generate()),
        }
    }

    pub fn signer(&self) -> Arc<SigningKey> {
        self.published.read().expect("key ring lock")[0].clone()
    }

    pub fn unpublished(&self) -> Arc<SigningKey> {
        self.unpublished.clone()
    }

    pub fn find(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.published
            .read()
            .expect("key ring lock")
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
    }

    pub fn kids(&self) -> Vec<String> {
        let keys = self.published.read().expect("key ring lock");
        keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// A new signing key. With `retire_previous`, only it stays published, so tokens signed
    /// before no longer verify; otherwise the old keys stay published (up to a bound).
    pub fn rotate(&self, retire_previous: bool) -> String {
        let key = Arc::new(SigningKey::generate());
        let kid = key.kid.clone();
        let mut keys = self.published.write().expect("key ring lock");
        if retire_previous {
            keys.clear();
        }
        keys.insert(0, key);
        keys.truncate(MAX_PUBLISHED);
        kid
    }

    /// The JWKS document. The v2 document carries each key's `issuer`, as Entra's does.
    pub fn jwks(&self, issuer: Option<&str>) -> Value {
        let keys = self.published.read().expect("key ring lock");
        // Publish in a different order from signing order: clients must pick by kid.
        let mut list: Vec<Value> = keys.iter().map(|k| k.jwk(issuer)).collect();
        list.reverse();
        json!({ "keys": list })
    }
}

impl Default for KeyRing {
    fn default() -> Self {
        Self::new()
    }
}
