//! Attacks on the audit trail by someone who can write the store (the SQLite file, or the
//! PostgreSQL tables: triggers dropped at will) but does not hold the checkpoint signing
//! key. Each attack is played on a chain the real writer wrote, on both backends, and judged
//! by the real `portcullis audit verify`. And: one writer per chain, so a second gateway on
//! a state directory (or, on PostgreSQL, on a chain) is refused.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use portcullis::audit::checkpoint::{load_or_create, public_path};
use portcullis::audit::record::{AuditRecord, Phase};
use portcullis::audit::store::{Store, raw_execute};
use portcullis::audit::writer::{Recorder, WriterOptions};

use crate::store::{Schema, pg_url};
use crate::{Env, Setup};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A store filled by the real writer, laid out as a gateway's state directory (`audit.db`,
/// `audit-signing.key` and its `.pub`, `instance.id`), or on PostgreSQL in a schema of its own.
struct Fixture {
    backend: Backend,
    store: Store,
    dir: PathBuf,
    schema: Option<Schema>,
    /// Each instance's writer, kept for the fixture's life: a writer seals its chain's tail
    /// when it stops, and the tests need that tail unsealed while they attack.
    writers: std::sync::Mutex<std::collections::HashMap<String, Recorder>>,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let dir = std::env::temp_dir().join(format!("pc-attack-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        load_or_create(&dir.join("audit-signing.key"), true).unwrap();
        let (store, schema) = match backend {
            Backend::Sqlite => (Store::open(&dir.join("audit.db")).await.unwrap(), None),
            Backend::Postgres => {
                let schema = Schema::new();
                let store = Store::open_postgres(&pg_url(), Some(&schema.0))
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 (database test) is reachable");
                (store, Some(schema))
            }
        };
        Fixture {
            backend,
            store,
            dir,
            schema,
            writers: Default::default(),
        }
    }

    /// Writes `instance`'s chain through the real writer: for each count, that many records
    /// and then a signed checkpoint; then `tail` records no checkpoint covers yet.
    async fn write(&self, instance: &str, sealed: &[usize], tail: usize) {
        let running = self.writers.lock().unwrap().get(instance).cloned();
        let recorder = match running {
            Some(r) => r,
            None => {
                let key = load_or_create(&self.dir.join("audit-signing.key"), false).unwrap();
                let r = Recorder::start(
                    self.store.clone(),
                    instance.to_owned(),
                    WriterOptions {
                        checkpoint_every: std::time::Duration::from_secs(3600),
                        retention: None,
                        signing_key: key,
                    },
                )
                .await
                .unwrap();
                self.writers
                    .lock()
                    .unwrap()
                    .insert(instance.to_owned(), r.clone());
                r
            }
        };
        let mut n = self.store.head(instance).await.unwrap().0;
        for (i, count) in sealed.iter().chain([&tail]).enumerate() {
            for _ in 0..*count {
                n += 1;
                let r = AuditRecord::new(
                    format!("req-{n}"),
                    "s".into(),
                    Phase::Request,
                    "GET".into(),
                    format!("/subscriptions/s/resourceGroups/rg{n}?api-version=2022-09-01"),
                );
                recorder.record(r).await.unwrap();
            }
            if i < sealed.len() {
                recorder.checkpoint().await.unwrap();
            }
        }
    }

    /// Writes the one instance a gateway on this directory would have.
    async fn write_own(&self, sealed: &[usize], tail: usize) -> String {
        let instance = format!("gw-{}", uuid::Uuid::new_v4().simple());
        std::fs::write(self.dir.join("instance.id"), &instance).unwrap();
        self.write(&instance, sealed, tail).await;
        instance
    }

    /// `portcullis audit verify` on this store, trusting this directory's key.
    fn verify(&self, more: &[&OsStr]) -> (bool, String) {
        let mut cmd = crate::portcullis_cli();
        cmd.args(["audit", "verify"]);
        match &self.schema {
            None => cmd.arg("--db").arg(self.dir.join("audit.db")),
            Some(s) => cmd.args(["--store", &pg_url(), "--schema", &s.0]),
        };
        cmd.arg("--public-key")
            .arg(public_path(&self.dir.join("audit-signing.key")))
            .args(more);
        crate::outcome(&mut cmd)
    }

    /// `audit verify --anchor FILE`.
    fn verify_anchored(&self, anchor: &Path) -> (bool, String) {
        self.verify(&["--anchor".as_ref(), anchor.as_os_str()])
    }

    async fn sql(&self, sql: &str) {
        raw_execute(&self.store, sql)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {sql}: {e}", self.backend));
    }

    /// What an attacker with write access does first: takes the append-only guards away.
    async fn drop_guards(&self) {
        let drops: &[&str] = match self.backend {
            Backend::Sqlite => &[
                "DROP TRIGGER audit_records_no_update",
                "DROP TRIGGER audit_records_no_delete",
                "DROP TRIGGER audit_checkpoints_no_update",
                "DROP TRIGGER audit_checkpoints_no_delete",
            ],
            Backend::Postgres => &[
                "DROP TRIGGER audit_records_no_update ON audit_records",
                "DROP TRIGGER audit_records_no_delete ON audit_records",
                "DROP TRIGGER audit_checkpoints_no_change ON audit_checkpoints",
            ],
        };
        for d in drops {
            self.sql(d).await;
        }
    }

    /// Edits record `seq` of `instance` and recomputes every later link, as someone without
    /// the key but with the hash function would: the chain itself holds.
    async fn rewrite_from(&self, instance: &str, seq: i64) {
        let chain = self.store.chain(instance).await.unwrap();
        let mut prev = portcullis::audit::chain::GENESIS.to_owned();
        for l in chain {
            if l.seq < seq {
                prev = l.hash;
                continue;
            }
            let text = if l.seq == seq {
                l.text.replace("\"GET\"", "\"DELETE\"")
            } else {
                l.text
            };
            let hash = portcullis::audit::chain::hash(instance, l.seq, &prev, &text);
            self.sql(&format!(
                "UPDATE audit_records SET record = '{}', prev_hash = '{prev}', hash = '{hash}' \
                 WHERE instance = '{instance}' AND seq = {}",
                text.replace('\'', "''"),
                l.seq
            ))
            .await;
            prev = hash;
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// === checkpoints removed ===

/// Every checkpoint deleted, then the tail cut off, or a middle record rewritten with the
/// later hashes recomputed: nothing signed is left to contradict what remains, and verify
/// used to pass it ("no checkpoint yet"). A writer signs a checkpoint before a chain's first
/// record, so a chain with records and no signed checkpoint is a failure.
#[tokio::test]
async fn deleting_every_checkpoint_then_cutting_or_rewriting_the_chain_is_caught() {
    for backend in BOTH {
        for attack in ["cut the tail", "rewrite record 3"] {
            let f = Fixture::new(backend).await;
            let instance = f.write_own(&[4, 2], 1).await;
            let (ok, out) = f.verify(&[]);
            assert!(ok, "{backend:?}, before the attack:\n{out}");

            f.drop_guards().await;
            f.sql("DELETE FROM audit_checkpoints").await;
            match attack {
                "cut the tail" => f.sql("DELETE FROM audit_records WHERE seq > 3").await,
                _ => f.rewrite_from(&instance, 3).await,
            }
            let (ok, out) = f.verify(&[]);
            assert!(
                !ok && out.contains(&format!("TAMPERED: {instance}: no signed checkpoint")),
                "{backend:?}, {attack}:\n{out}"
            );
        }
    }
}

// === retention marks ===

/// A retention mark inserted at a signed checkpoint, and the records under it deleted: the
/// triggers allow both (deleting what a mark covers is what retention does), and verify used
/// to accept the mark because it matches a signed checkpoint. Marks are signed now; one the
/// key did not sign is a failure.
#[tokio::test]
async fn an_unsigned_retention_mark_at_a_signed_checkpoint_is_caught() {
    for backend in BOTH {
        let f = Fixture::new(backend).await;
        let instance = f.write_own(&[4, 2], 1).await;
        let sealed = f
            .store
            .checkpoints(&instance)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.seq == 4)
            .unwrap();
        // No guard dropped: the store itself lets this through.
        f.sql(&format!(
            "INSERT INTO audit_pruned (instance, through_seq, through_hash, time, records) \
             VALUES ('{instance}', 4, '{}', '2026-01-01T00:00:00.000000Z', 4)",
            sealed.hash
        ))
        .await;
        f.sql(&format!(
            "DELETE FROM audit_records WHERE instance = '{instance}' AND seq <= 4"
        ))
        .await;
        let (ok, out) = f.verify(&[]);
        assert!(
            !ok && out.contains(&format!(
                "TAMPERED: {instance}: records 1..=4 were removed under a mark retention did not make: \
                 the retention mark is not signed"
            )),
            "{backend:?}:\n{out}"
        );
    }
}

/// What retention does by hand (`audit prune`) signs its mark, and what remains verifies.
#[tokio::test]
async fn a_retention_mark_the_key_signed_verifies() {
    for backend in BOTH {
        let f = Fixture::new(backend).await;
        f.write_own(&[4, 2], 1).await;
        let mut cmd = crate::portcullis_cli();
        cmd.args(["audit", "prune", "--older-than", "2999-01-01T00:00:00Z"]);
        match &f.schema {
            None => cmd.arg("--state-dir").arg(&f.dir),
            Some(s) => cmd
                .args(["--store", &pg_url(), "--schema", &s.0])
                .arg("--signing-key")
                .arg(f.dir.join("audit-signing.key")),
        };
        let (ok, out) = crate::outcome(&mut cmd);
        assert!(ok && out.contains("removed records through 6"), "{out}");
        let (ok, out) = f.verify(&[]);
        assert!(
            ok && out.contains("records 1..=6 removed by retention (sealed)"),
            "{backend:?}:\n{out}"
        );
    }
}
