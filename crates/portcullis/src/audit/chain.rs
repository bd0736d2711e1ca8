//! The hash chain: each record carries the hash of the one before it in its instance's
//! chain, so a record modified, removed, inserted or reordered breaks the chain at that
//! place. One chain per gateway instance, so replicas never contend.

use sha2::{Digest, Sha256};

use super::record::AuditRecord;

/// The hash the first record of a chain points back to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record at `seq` in `instance`'s chain, after `prev`.
pub fn hash(instance: &str, seq: i64, prev: &str, record: &AuditRecord) -> String {
    let mut h = Sha256::new();
    h.update(instance.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(record).expect("a record serializes"));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored record with its place in the chain.
#[derive(Debug, Clone)]
pub struct Link {
    pub instance: String,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub record: AuditRecord,
}

/// Checks one instance's chain, in sequence order; names the first record that is wrong.
pub fn verify(links: &[Link]) -> Result<usize, String> {
    let mut prev = GENESIS.to_owned();
    for (i, l) in links.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if l.seq != expected_seq {
            return Err(format!(
                "{}: record {expected_seq} is missing (found {} in its place): removed or reordered",
                l.instance, l.seq
            ));
        }
        if l.prev_hash != prev {
            return Err(format!(
                "{}: record {} does not follow record {} (removed, inserted or reordered)",
                l.instance,
                l.seq,
                l.seq - 1
            ));
        }
        if hash(&l.instance, l.seq, &l.prev_hash, &l.record) != l.hash {
            return Err(format!("{}: record {} was modified", l.instance, l.seq));
        }
        prev = l.hash.clone();
    }
    Ok(links.len())
}
