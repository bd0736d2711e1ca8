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

    /// Deletes every record and checkpoint of `instance` (guards dropped first).
    async fn remove_whole(&self, instance: &str) {
        for table in ["audit_records", "audit_checkpoints"] {
            self.sql(&format!(
                "DELETE FROM {table} WHERE instance = '{instance}'"
            ))
            .await;
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

/// A gateway restarted on a chain whose checkpoints were all removed would sign whatever is
/// left, laundering the attack for every later verification. It refuses to start instead.
#[tokio::test]
async fn a_gateway_will_not_seal_a_chain_whose_checkpoints_were_removed() {
    for backend in BOTH {
        let f = Fixture::new(backend).await;
        let instance = f.write_own(&[2], 1).await;
        f.drop_guards().await;
        f.sql("DELETE FROM audit_checkpoints").await;
        f.rewrite_from(&instance, 2).await;
        let restarted = Recorder::start(
            f.store.clone(),
            instance.clone(),
            WriterOptions {
                checkpoint_every: std::time::Duration::from_secs(3600),
                retention: None,
                signing_key: load_or_create(&f.dir.join("audit-signing.key"), false).unwrap(),
            },
        )
        .await;
        let Err(e) = restarted else {
            panic!("{backend:?}: a writer started on {instance} with its checkpoints removed")
        };
        assert!(
            e.to_string().contains(&format!(
                "audit chain {instance} holds records (through 3) but no signed checkpoint"
            )),
            "{backend:?}: {e}"
        );
        assert!(
            f.store.checkpoints(&instance).await.unwrap().is_empty(),
            "{backend:?}: nothing was signed"
        );
        let (ok, out) = f.verify(&[]);
        assert!(
            !ok && out.contains("no signed checkpoint"),
            "{backend:?}:\n{out}"
        );
    }
}

// === an instance removed whole ===

/// Every record and checkpoint of the state directory's own instance deleted: verify used
/// to find nothing to check and exit 0 without a word. Its `instance.id` says which chain
/// must be there; and a store with no chain at all fails whatever is given.
#[tokio::test]
async fn the_state_directorys_chain_removed_whole_is_caught() {
    for backend in BOTH {
        let f = Fixture::new(backend).await;
        let own = f.write_own(&[3], 1).await;
        let (ok, out) = f.verify(&[]);
        assert!(ok, "{backend:?}, before the attack:\n{out}");

        f.drop_guards().await;
        f.remove_whole(&own).await;
        let (ok, out) = f.verify(&[]);
        assert!(
            !ok && out.contains("TAMPERED: the store holds no audit chain at all"),
            "{backend:?}:\n{out}"
        );
        if backend == Backend::Sqlite {
            let (ok, out) = crate::verify_cli(&f.dir);
            assert!(
                !ok && out.contains(&format!(
                    "TAMPERED: {own}: the chain vanished: this state directory's instance.id names it"
                )),
                "{out}"
            );
        }
    }
}

/// One chain of several removed whole (a replica's, on a shared PostgreSQL): nothing in the
/// store says it was ever there, so verify without an anchor passes (the documented limit);
/// the anchor names every chain it saw.
#[tokio::test]
async fn a_chain_removed_whole_among_others_is_caught_by_the_anchor() {
    for backend in BOTH {
        let f = Fixture::new(backend).await;
        f.write_own(&[3], 0).await;
        f.write("gw-replica", &[2], 1).await;
        let anchor = f.dir.join("anchor.json");
        let (ok, out) = f.verify_anchored(&anchor);
        assert!(ok && out.contains("anchor"), "{backend:?}:\n{out}");

        f.drop_guards().await;
        f.remove_whole("gw-replica").await;
        let (ok, out) = f.verify(&[]);
        assert!(ok && !out.contains("gw-replica"), "{backend:?}:\n{out}");
        let (ok, out) = f.verify_anchored(&anchor);
        assert!(
            !ok && out.contains("TAMPERED: gw-replica: the chain vanished: the anchor pins")
                && out.contains("left as it was"),
            "{backend:?}:\n{out}"
        );
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

// === the anchor ===

/// The latest checkpoints deleted with the records after the ones that remain, or the whole
/// chain rewritten with only the first checkpoint kept: from inside the store this is a
/// shorter, older chain, and verify without an anchor passes it (the documented limit). A
/// verifier that pinned the last checkpoint it saw catches both.
#[tokio::test]
async fn cutting_back_or_rewriting_past_the_anchor_is_caught() {
    for backend in BOTH {
        for attack in ["cut back", "rewrite"] {
            let f = Fixture::new(backend).await;
            let instance = f.write_own(&[2, 2], 1).await;
            let anchor = f.dir.join("anchor.json");
            let (ok, out) = f.verify_anchored(&anchor);
            assert!(
                ok && out.contains("created (1 instance(s) pinned"),
                "{backend:?}:\n{out}"
            );
            // The chain grows and is sealed again: the anchor moves with it.
            f.write(&instance, &[2], 0).await;
            let (ok, out) = f.verify_anchored(&anchor);
            assert!(ok && out.contains("holds, updated"), "{backend:?}:\n{out}");
            let pinned = std::fs::read(&anchor).unwrap();
            assert!(
                String::from_utf8_lossy(&pinned).contains("\"seq\": 7"),
                "{}",
                String::from_utf8_lossy(&pinned)
            );

            f.drop_guards().await;
            match attack {
                "cut back" => {
                    f.sql("DELETE FROM audit_checkpoints WHERE seq > 2").await;
                    f.sql("DELETE FROM audit_records WHERE seq > 3").await;
                }
                _ => {
                    f.sql("DELETE FROM audit_checkpoints WHERE seq > 0").await;
                    f.rewrite_from(&instance, 1).await;
                }
            }
            let (ok, out) = f.verify(&[]);
            assert!(ok, "{backend:?}, {attack}, without the anchor:\n{out}");
            let (ok, out) = f.verify_anchored(&anchor);
            assert!(
                !ok && out.contains(&format!("TAMPERED: {instance}: the checkpoint at record 7"))
                    && out.contains("that the anchor pins is gone from the store"),
                "{backend:?}, {attack}:\n{out}"
            );
            assert_eq!(
                std::fs::read(&anchor).unwrap(),
                pinned,
                "a failed verification leaves the anchor as it was"
            );
        }
    }
}

// === one writer per chain ===

/// A second gateway on a running one's state directory would append to the same chain: it
/// is refused at start, naming the directory; once the first has stopped, it starts.
#[tokio::test]
async fn a_second_gateway_on_the_same_state_dir_is_refused() {
    let env = Env::start().await;
    let state = env.dir.join("state");
    let config = env.dir.join("portcullis.yaml");
    let second = portcullis::cli::serve::start(portcullis::config::load(&config).unwrap()).await;
    let Err(e) = second else {
        panic!("a second gateway started on {}", state.display())
    };
    let text = format!("{e:#}");
    assert!(
        text.contains(&format!(
            "another gateway holds the state directory {}",
            state.display()
        )),
        "{text}"
    );
    // Over a real process too: `portcullis serve` exits at once with the same words.
    let mut serve = crate::portcullis_cli()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            panic!(
                "a second `portcullis serve` on {} kept running",
                state.display()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !status.success() && err.contains("another gateway holds the state directory"),
        "{status}: {err}"
    );
    let Env { gw, .. } = env;
    gw.shutdown().await;
    let again = portcullis::cli::serve::start(portcullis::config::load(&config).unwrap())
        .await
        .unwrap_or_else(|e| panic!("after the first stopped: {e:#}"));
    again.shutdown().await;
}

/// On PostgreSQL, gateways on different hosts share the store: a state directory copied with
/// its `instance.id` would make two writers of one chain. The second is refused.
#[tokio::test]
async fn a_second_writer_of_one_chain_on_postgres_is_refused() {
    let schema = Schema::new();
    let env = Env::with(Setup {
        extra: crate::leak(format!(
            "store:\n  url: \"{}\"\n  schema: {}\n",
            pg_url(),
            schema.0
        )),
        ..Setup::default()
    })
    .await;
    let copy = env.dir.join("state-copy");
    std::fs::create_dir_all(&copy).unwrap();
    let instance = std::fs::read_to_string(env.dir.join("state/instance.id")).unwrap();
    std::fs::write(copy.join("instance.id"), &instance).unwrap();
    let mut cfg = portcullis::config::load(&env.dir.join("portcullis.yaml")).unwrap();
    cfg.state_dir = copy;
    let Err(e) = portcullis::cli::serve::start(cfg).await else {
        panic!("a second writer of {instance} started")
    };
    let text = format!("{e:#}");
    assert!(
        text.contains(&format!(
            "another gateway is writing the audit chain {instance}"
        )),
        "{text}"
    );
    env.gw.shutdown().await;
}
