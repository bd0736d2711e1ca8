//! Signed checkpoints: the gateway periodically signs the head of its chain with Ed25519.
//! A chain rewritten from some record on (hashes recomputed) no longer matches the signed
//! head, and a chain cut short is missing records a checkpoint covers. Verification needs
//! only the public key, so the private key can live away from the store.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::chain::hex;

/// A signed statement: "record `seq` of `instance`'s chain has hash `hash`". Seq 0 (hash
/// [`GENESIS`](super::chain::GENESIS)) is the one a writer signs when it starts a chain, so
/// every chain has a signed checkpoint before its first record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub instance: String,
    pub seq: i64,
    pub hash: String,
    pub time: String,
    /// Hex Ed25519 public key.
    pub public_key: String,
    /// Hex Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

/// Records 1..=`through_seq` of an instance's chain were removed by retention; the chain
/// now starts after `through_hash`. Signed like a checkpoint: whoever can write the store
/// can insert a mark at a signed checkpoint (the triggers then let the records under it be
/// deleted), but only the holder of the signing key can sign one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pruned {
    pub instance: String,
    pub through_seq: i64,
    pub through_hash: String,
    pub time: String,
    pub records: i64,
    /// Hex Ed25519 public key; `None` for a mark nobody signed (written by hand, or by a
    /// version before marks were signed).
    pub public_key: Option<String>,
    /// Hex Ed25519 signature over [`Pruned::message`].
    pub signature: Option<String>,
}

impl Pruned {
    fn message(&self) -> String {
        format!(
            "portcullis-audit-pruned/v1\n{}\n{}\n{}\n{}\n{}",
            self.instance, self.through_seq, self.through_hash, self.time, self.records
        )
    }

    pub fn sign(
        key: &SigningKey,
        instance: &str,
        through_seq: i64,
        through_hash: &str,
        records: i64,
    ) -> Pruned {
        let mut mark = Pruned {
            instance: instance.to_owned(),
            through_seq,
            through_hash: through_hash.to_owned(),
            time: crate::audit_time(),
            records,
            public_key: Some(hex(key.verifying_key().as_bytes())),
            signature: None,
        };
        mark.signature = Some(hex(&key.sign(mark.message().as_bytes()).to_bytes()));
        mark
    }

    /// Checks the mark's signature; a mark without one is an error.
    pub fn check_signature(&self) -> Result<(), String> {
        let (Some(public_key), Some(signature)) = (&self.public_key, &self.signature) else {
            return Err("the retention mark is not signed".to_owned());
        };
        check(&self.message(), public_key, signature)
            .map_err(|e| format!("the retention mark: {e}"))
    }
}

impl Checkpoint {
    fn message(instance: &str, seq: i64, hash: &str, time: &str) -> String {
        format!("portcullis-audit-checkpoint/v1\n{instance}\n{seq}\n{hash}\n{time}")
    }

    pub fn sign(key: &SigningKey, instance: &str, seq: i64, hash: &str) -> Checkpoint {
        let time = crate::audit_time();
        let signature = key.sign(Self::message(instance, seq, hash, &time).as_bytes());
        Checkpoint {
            instance: instance.to_owned(),
            seq,
            hash: hash.to_owned(),
            time,
            public_key: hex(key.verifying_key().as_bytes()),
            signature: hex(&signature.to_bytes()),
        }
    }

    /// Signed by one of the `trusted` keys (hex), and not edited since.
    pub fn check_trusted(&self, trusted: &[String]) -> Result<(), String> {
        if !is_trusted(&self.public_key, trusted) {
            return Err(format!(
                "signed by a key that is not trusted ({})",
                self.public_key
            ));
        }
        self.check_signature()
    }

    pub fn check_signature(&self) -> Result<(), String> {
        check(
            &Self::message(&self.instance, self.seq, &self.hash, &self.time),
            &self.public_key,
            &self.signature,
        )
        .map_err(|e| format!("{e} (the checkpoint was edited)"))
    }
}

/// Whether `public_key` (hex) is one of the `trusted` keys (hex, in either case).
pub fn is_trusted(public_key: &str, trusted: &[String]) -> bool {
    trusted.iter().any(|k| k.eq_ignore_ascii_case(public_key))
}

/// Whether `signature` (hex) is `public_key`'s (hex) signature of `message`.
fn check(message: &str, public_key: &str, signature: &str) -> Result<(), String> {
    let key: [u8; 32] = unhex(public_key)
        .and_then(|k| k.try_into().ok())
        .ok_or("the public key is not 32 hex bytes")?;
    let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("bad public key: {e}"))?;
    let sig: [u8; 64] = unhex(signature)
        .and_then(|s| s.try_into().ok())
        .ok_or("the signature is not 64 hex bytes")?;
    key.verify(message.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| "the signature does not match".to_owned())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not an Ed25519 signing key (expected 64 hex characters)")]
    Format(PathBuf),
}

/// The checkpoint signing key at `path` (64 hex characters: the 32-byte seed). When
/// `create` and the file does not exist, a key is generated and kept there (mode 0600),
/// with its public half beside it in `<path>.pub` for verifiers.
pub fn load_or_create(path: &Path, create: bool) -> Result<SigningKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed: [u8; 32] = unhex(text.trim())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Format(path.to_path_buf()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut seed = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut seed);
            let key = SigningKey::from_bytes(&seed);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            write_private(path, &hex(&seed)).map_err(io)?;
            let public = public_path(path);
            std::fs::write(&public, hex(key.verifying_key().as_bytes())).map_err(|source| {
                KeyError::Io {
                    path: public.clone(),
                    source,
                }
            })?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Where the public half of the key at `path` is kept.
pub fn public_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_and_an_edit_is_caught() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let c = Checkpoint::sign(&key, "gw-1", 42, "ab");
        assert_eq!(c.check_signature(), Ok(()));
        let mut edited = c.clone();
        edited.seq = 41;
        assert!(edited.check_signature().is_err());
        let mut edited = c;
        edited.signature.replace_range(0..2, "00");
        assert!(edited.check_signature().is_err());
    }

    #[test]
    fn a_retention_mark_verifies_only_signed_and_unedited() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mark = Pruned::sign(&key, "gw-1", 40, "ab", 40);
        assert_eq!(mark.check_signature(), Ok(()));
        let mut edited = mark.clone();
        edited.through_seq = 50;
        assert!(edited.check_signature().is_err());
        let mut unsigned = mark;
        unsigned.signature = None;
        assert_eq!(
            unsigned.check_signature(),
            Err("the retention mark is not signed".to_owned())
        );
    }

    #[test]
    fn keys_are_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("pc-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("audit-signing.key");
        assert!(load_or_create(&path, false).is_err());
        let a = load_or_create(&path, true).unwrap();
        let b = load_or_create(&path, true).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let public = std::fs::read_to_string(public_path(&path)).unwrap();
        assert_eq!(public, hex(a.verifying_key().as_bytes()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
