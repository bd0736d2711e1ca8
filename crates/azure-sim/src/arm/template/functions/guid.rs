//! Generated identifiers: `uniqueString()` and `guid()`, stable for the same arguments, and
//! `newGuid()`, random. Their values differ from Azure's
//! (see the notes on `arm::template`).
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-string#uniquestring>

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Deployment;
use super::args::{all_strs, arity, at_least};
use crate::arm::template::section::Section;

pub(super) fn unique_string(a: &[Value]) -> Result<Value, String> {
    at_least(a, 1)?;
    let parts = all_strs(a)?;
    Ok(Value::String(unique_string_of(&parts)))
}

pub(super) fn guid(a: &[Value]) -> Result<Value, String> {
    at_least(a, 1)?;
    let parts = all_strs(a)?;
    Ok(Value::String(stable_guid(&parts)))
}

pub(super) fn new_guid(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    d.section.require(&[Section::ParameterDefault])?;
    arity(a, 0, 0)?;
    Ok(Value::String(random_guid()))
}

fn sha256_of(parts: &[&str]) -> [u8; 32] {
    Sha256::digest(parts.join("-").as_bytes()).into()
}

/// 13 characters from a lowercase base32 alphabet, like Azure's, but from SHA-256 of the
/// arguments joined by `-` rather than Azure's hash: stable, not Azure-identical.
fn unique_string_of(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = sha256_of(parts);
    let mut head = [0u8; 16];
    head.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    let bits = u128::from_be_bytes(head);
    (0..13)
        .map(|i| {
            let shift = 128 - 5 * (i + 1);
            let ix = ((bits >> shift) & 31) as usize;
            ALPHABET.get(ix).map_or('a', |b| char::from(*b))
        })
        .collect()
}

fn uuid_text(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// Name-based (version 5 shaped) UUID from SHA-256 of the arguments; Azure uses SHA-1 with
/// its own namespace, so values differ from Azure's but are just as stable.
fn stable_guid(parts: &[&str]) -> String {
    let digest = sha256_of(parts);
    let mut b = [0u8; 16];
    b.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid_text(b, 5)
}

/// A random (version 4) UUID without a random-number crate: std's per-process random
/// hasher keys, the clock and a counter, through SHA-256.
fn random_guid() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let r1 = RandomState::new().hash_one((count, nanos));
    let r2 = RandomState::new().hash_one((nanos, count, r1));
    let seed = format!("{r1:016x}{r2:016x}{nanos}{count}");
    let digest = sha256_of(&[&seed]);
    let mut b = [0u8; 16];
    b.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid_text(b, 4)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::arm::template::fixture::{err, ok};

    #[test]
    fn hashes_are_stable() {
        let a = ok("[uniqueString(resourceGroup().id)]");
        let a = a.as_str().unwrap().to_owned();
        assert_eq!(a.len(), 13);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)),
            "{a}"
        );
        assert_eq!(ok("[uniqueString(resourceGroup().id)]"), json!(a));
        assert_ne!(ok("[uniqueString(resourceGroup().id, 'x')]"), json!(a));
        assert!(err("[uniqueString()]").contains("at least 1"));
        let g = ok("[guid('a', 'b')]");
        let g = g.as_str().unwrap();
        assert_eq!(g.len(), 36);
        assert_eq!(g.as_bytes()[14], b'5');
        assert_eq!(ok("[guid('a', 'b')]"), json!(g));
        assert_ne!(ok("[guid('a', 'c')]"), json!(g));
    }
}
