//! The hash chain: each record carries the hash of the one before it in its instance's
//! chain, so a record modified, removed, inserted or reordered breaks the chain at that
//! place. One chain per gateway instance, so replicas never contend.
//!
//! The hash covers the record's stored text byte for byte, so records written by older
//! versions (with fewer fields) still verify.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::checkpoint::{Checkpoint, Pruned, is_trusted};
use super::record::AuditRecord;

/// The hash the first record of a chain points back to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record at `seq` in `instance`'s chain, after `prev`; `text` is the record
/// as stored.
pub fn hash(instance: &str, seq: i64, prev: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(instance.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(text.as_bytes());
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored record with its place in the chain.
#[derive(Debug, Clone)]
pub struct Link {
    pub instance: String,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    /// The record as stored (what the hash covers).
    pub text: String,
    pub record: AuditRecord,
}

/// What a verified chain holds.
#[derive(Debug, PartialEq)]
pub struct Verified {
    pub records: usize,
    pub checkpoints: usize,
    /// Records 1..=n were removed by retention, sealed by a signed checkpoint.
    pub pruned_through: Option<i64>,
    /// The chain's last record (0 for a chain with none yet).
    pub head: i64,
    /// The latest signed checkpoint: what a verifier pins (`audit verify --anchor`) so that
    /// history cut back or rewritten before it is caught later. Records after it are held
    /// by the hash chain alone.
    pub last_checkpoint: Option<Checkpoint>,
}

/// Checks one instance's chain, in sequence order, against its signed checkpoints and the
/// segments retention removed; names the first thing that is wrong. `trusted` are the
/// public keys (hex) whose checkpoints and retention marks count; one signed by any other
/// key, or not signed, is an error, not a pass.
///
/// A chain with records or a retention mark must have a signed checkpoint: the writer signs
/// one (at record 0) before it writes a chain's first record, so none at all means they
/// were removed. What this cannot see is the latest checkpoints removed together with the
/// records after the ones that remain: that chain looks like an older, shorter one. Only a
/// pin from outside the store ([`super::anchor`]) catches that.
pub fn verify(
    instance: &str,
    links: &[Link],
    checkpoints: &[Checkpoint],
    pruned: Option<&Pruned>,
    trusted: &[String],
) -> Result<Verified, String> {
    for c in checkpoints {
        c.check_trusted(trusted)
            .map_err(|e| format!("{instance}: the checkpoint at record {}: {e}", c.seq))?;
    }
    if checkpoints.is_empty() && (!links.is_empty() || pruned.is_some()) {
        let last = links.last().map_or(0, |l| l.seq);
        return Err(format!(
            "{instance}: no signed checkpoint, yet the chain holds records (through {last}): \
             the gateway signs one before a chain's first record, so its checkpoints were removed \
             and nothing vouches for what remains"
        ));
    }
    let (mut expected_seq, mut prev) = match pruned {
        None => (1, GENESIS.to_owned()),
        Some(p) => {
            // Anyone who can write the store can insert a mark at a signed checkpoint (and
            // the triggers then allow deleting what it covers); only the key signs one.
            p.check_signature().map_err(|e| {
                format!(
                    "{instance}: records 1..={} were removed under a mark retention did not make: {e}",
                    p.through_seq
                )
            })?;
            let signer = p.public_key.as_deref().unwrap_or_default();
            if !is_trusted(signer, trusted) {
                return Err(format!(
                    "{instance}: records 1..={} were removed under a retention mark signed by a key that is not trusted ({signer})",
                    p.through_seq
                ));
            }
            // What retention removed must end at a signed checkpoint, else "removed by
            // retention" would cover any deletion.
            if !checkpoints
                .iter()
                .any(|c| c.seq == p.through_seq && c.hash == p.through_hash)
            {
                return Err(format!(
                    "{instance}: records 1..={} were removed, and no signed checkpoint seals them",
                    p.through_seq
                ));
            }
            (p.through_seq + 1, p.through_hash.clone())
        }
    };
    let mut hashes: HashMap<i64, &str> = HashMap::new();
    for l in links {
        if l.seq != expected_seq {
            return Err(format!(
                "{instance}: record {expected_seq} is missing (found {} in its place): removed or reordered",
                l.seq
            ));
        }
        if l.prev_hash != prev {
            return Err(format!(
                "{instance}: record {} does not follow record {} (removed, inserted or reordered)",
                l.seq,
                l.seq - 1
            ));
        }
        if hash(instance, l.seq, &l.prev_hash, &l.text) != l.hash {
            return Err(format!("{instance}: record {} was modified", l.seq));
        }
        hashes.insert(l.seq, &l.hash);
        prev = l.hash.clone();
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    let first_kept = pruned.map_or(1, |p| p.through_seq + 1);
    for c in checkpoints {
        if c.seq < first_kept {
            continue;
        }
        if c.seq > last {
            return Err(format!(
                "{instance}: records {}..={} are missing: the chain was truncated (a checkpoint signed at {} covers record {})",
                last + 1,
                c.seq,
                c.time,
                c.seq
            ));
        }
        if hashes.get(&c.seq) != Some(&c.hash.as_str()) {
            return Err(format!(
                "{instance}: record {} is not the record its signed checkpoint ({}) covers: the chain was rewritten",
                c.seq, c.time
            ));
        }
    }
    Ok(Verified {
        records: links.len(),
        checkpoints: checkpoints.len(),
        pruned_through: pruned.map(|p| p.through_seq),
        head: last,
        last_checkpoint: checkpoints.iter().max_by_key(|c| c.seq).cloned(),
    })
}
