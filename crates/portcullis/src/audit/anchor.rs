//! A verifier's pin on what it last saw: per instance, the latest signed checkpoint, kept in
//! a file outside the store (`audit verify --anchor FILE`).
//!
//! The store alone cannot show a chain cut back to an earlier checkpoint with the later
//! checkpoints removed too (it looks like the same chain, seen earlier), nor an instance
//! removed whole. Against a pin it can: the pinned checkpoint must still be in the store
//! (checkpoints are never pruned), and `chain::verify` has already tied every stored
//! checkpoint to its record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;

/// What the anchor file holds.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The file's format (1).
    pub version: u32,
    /// Each instance's latest signed checkpoint when the store last verified.
    pub instances: BTreeMap<String, Checkpoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("anchor {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("anchor {path}: not an anchor file: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Anchor {
    /// The anchor at `path`, or `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Anchor>, AnchorError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AnchorError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| AnchorError::Format {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Writes the anchor whole or not at all (a temporary file renamed over it), so a
    /// verifier stopped midway never leaves a pin that shows less than it saw.
    pub fn save(&self, path: &Path) -> Result<(), AnchorError> {
        let io = |source| AnchorError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_string_pretty(self).expect("an anchor serializes");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Whether the store still shows at least what was pinned for an instance it holds:
    /// its `checkpoints` (already verified against the chain) must include the pinned one.
    pub fn check(
        pinned: &Checkpoint,
        checkpoints: &[Checkpoint],
        trusted: &[String],
    ) -> Result<(), String> {
        let instance = &pinned.instance;
        pinned.check_trusted(trusted).map_err(|e| {
            format!(
                "{instance}: the anchor's checkpoint at record {}: {e}",
                pinned.seq
            )
        })?;
        if checkpoints.iter().any(|c| c == pinned) {
            return Ok(());
        }
        let latest = checkpoints
            .iter()
            .map(|c| c.seq)
            .max()
            .map_or("none".to_owned(), |s| format!("record {s}"));
        Err(format!(
            "{instance}: the checkpoint at record {} (signed {}) that the anchor pins is gone from the store \
             (its latest signed checkpoint is now {latest}): the chain was cut back or rewritten before it",
            pinned.seq, pinned.time
        ))
    }

    /// Why a pinned instance the store holds nothing of is a failure.
    pub fn vanished(pinned: &Checkpoint) -> String {
        format!(
            "{}: the chain vanished: the anchor pins its checkpoint at record {} (signed {}), \
             and the store holds no record, checkpoint or retention mark of it",
            pinned.instance, pinned.seq, pinned.time
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (ed25519_dalek::SigningKey, Vec<String>) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let trusted = vec![super::super::chain::hex(key.verifying_key().as_bytes())];
        (key, trusted)
    }

    #[test]
    fn a_pin_holds_while_its_checkpoint_is_in_the_store() {
        let (key, trusted) = key();
        let early = Checkpoint::sign(&key, "gw-1", 0, super::super::chain::GENESIS);
        let pinned = Checkpoint::sign(&key, "gw-1", 8, "ab");
        let later = Checkpoint::sign(&key, "gw-1", 12, "cd");
        let now = [early.clone(), pinned.clone(), later];
        assert_eq!(Anchor::check(&pinned, &now, &trusted), Ok(()));
        let cut = Anchor::check(&pinned, &[early], &trusted).unwrap_err();
        assert!(
            cut.contains("record 8") && cut.contains("cut back"),
            "{cut}"
        );
        let mut forged = pinned.clone();
        forged.seq = 2;
        assert!(Anchor::check(&forged, &now, &trusted).is_err());
        assert!(
            Anchor::check(&pinned, &now, &["00".repeat(32)])
                .unwrap_err()
                .contains("not trusted")
        );
    }

    #[test]
    fn an_anchor_is_saved_whole_and_read_back() {
        let (key, _) = key();
        let dir = std::env::temp_dir().join(format!("pc-anchor-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("anchor.json");
        assert_eq!(Anchor::load(&path).unwrap(), None);
        let mut anchor = Anchor {
            version: 1,
            ..Default::default()
        };
        anchor
            .instances
            .insert("gw-1".into(), Checkpoint::sign(&key, "gw-1", 3, "ab"));
        anchor.save(&path).unwrap();
        assert_eq!(Anchor::load(&path).unwrap(), Some(anchor));
        std::fs::write(&path, "{}").unwrap();
        assert!(Anchor::load(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
