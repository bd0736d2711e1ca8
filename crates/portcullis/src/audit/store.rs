//! The state store: the audit chains (append-only by trigger, one hash chain per
//! instance), the signed checkpoints, the segments retention removed, and approvals.
//!
//! Two backends behind the same functions: SQLite (embedded, WAL; the default) and
//! PostgreSQL (shared by replicas). The SQL is written once, in the subset both speak
//! (`$N` parameters, `CAST`, `ON CONFLICT`, `RETURNING`); each backend has its own
//! migrations (types and triggers differ) and its own way to lock for a decision.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::chain::{GENESIS, Link, hash};
use super::checkpoint::{Checkpoint, Pruned};
use super::record::AuditRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("audit store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("audit store: a stored record is not readable: {0}")]
    Corrupt(String),
    #[error("audit store: no answer in time")]
    Timeout,
}

impl StoreError {
    /// No connection could be had: nothing was attempted, so nothing changed.
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Sql(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
        )
    }
}

/// Records per INSERT statement (5 parameters each, well under SQLite's limit).
const INSERT_ROWS: usize = 200;

/// Versioned migrations, applied in order, each once.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE audit_records (
    instance  TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    record    TEXT    NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
"#,
    // Time and session are read from the record itself (virtual columns), so indexing them
    // adds nothing an attacker could edit apart from the hashed text.
    r#"
ALTER TABLE audit_records ADD COLUMN time TEXT
    GENERATED ALWAYS AS (json_extract(record, '$.time')) VIRTUAL;
ALTER TABLE audit_records ADD COLUMN session TEXT
    GENERATED ALWAYS AS (json_extract(record, '$.session')) VIRTUAL;
CREATE INDEX audit_records_by_time ON audit_records (time, instance, seq);
CREATE INDEX audit_records_by_session ON audit_records (session, time);

CREATE TABLE audit_checkpoints (
    instance   TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    hash       TEXT    NOT NULL,
    time       TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    signature  TEXT    NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

CREATE TABLE audit_pruned (
    instance     TEXT    NOT NULL,
    through_seq  INTEGER NOT NULL,
    through_hash TEXT    NOT NULL,
    time         TEXT    NOT NULL,
    records      INTEGER NOT NULL,
    PRIMARY KEY (instance, through_seq)
);
CREATE TRIGGER audit_pruned_no_update BEFORE UPDATE ON audit_pruned
BEGIN SELECT RAISE(ABORT, 'audit retention marks are append-only'); END;
CREATE TRIGGER audit_pruned_no_delete BEFORE DELETE ON audit_pruned
BEGIN SELECT RAISE(ABORT, 'audit retention marks are append-only'); END;

-- Records may be deleted only once a retention mark covers them.
DROP TRIGGER audit_records_no_delete;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
WHEN OLD.seq > COALESCE(
    (SELECT MAX(through_seq) FROM audit_pruned WHERE instance = OLD.instance), 0)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
"#,
    // Just-in-time approvals: the held request as approvers see it, the votes, and the
    // windows granted. (Their history is in the audit chain; these tables are state.)
    r#"
CREATE TABLE approvals (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    principal  TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    created    TEXT    NOT NULL,
    expires    TEXT    NOT NULL,
    decided    TEXT,
    consumed   TEXT,
    body       TEXT    NOT NULL
);
CREATE INDEX approvals_by_request ON approvals (principal, digest, created);
-- At most one live (pending or approved) approval per principal and exact request, so
-- identical requests sent at once share one approval.
CREATE UNIQUE INDEX approvals_live ON approvals (principal, digest)
    WHERE status IN ('pending', 'approved');
CREATE INDEX approvals_by_status ON approvals (status, expires);
CREATE TABLE approval_votes (
    approval TEXT NOT NULL,
    voter    TEXT NOT NULL,
    vote     TEXT NOT NULL,
    time     TEXT NOT NULL,
    body     TEXT NOT NULL,
    PRIMARY KEY (approval, voter)
);
CREATE TABLE approval_grants (
    principal TEXT NOT NULL,
    action    TEXT NOT NULL,
    scope     TEXT NOT NULL,
    until     TEXT NOT NULL,
    approval  TEXT NOT NULL
);
CREATE INDEX approval_grants_by_key ON approval_grants (principal, action, scope, until);
"#,
    // What session listings filter on, as columns both backends share.
    r#"
ALTER TABLE audit_records ADD COLUMN phase TEXT
    GENERATED ALWAYS AS (json_extract(record, '$.phase')) VIRTUAL;
ALTER TABLE audit_records ADD COLUMN principal TEXT
    GENERATED ALWAYS AS (json_extract(record, '$.principal')) VIRTUAL;
ALTER TABLE audit_records ADD COLUMN decision TEXT
    GENERATED ALWAYS AS (json_extract(record, '$.decision')) VIRTUAL;
"#,
    CONSOLE_SESSIONS,
    APPROVAL_OPERATIONS,
    PRUNED_SIGNED,
];

/// Retention marks are signed (`Pruned::sign`): a mark anyone with write access could insert
/// would let them delete the records under it. Marks from before this have none, and fail
/// verification. The same SQL on both backends.
const PRUNED_SIGNED: &str = r#"
ALTER TABLE audit_pruned ADD COLUMN public_key TEXT;
ALTER TABLE audit_pruned ADD COLUMN signature TEXT;
"#;

/// The approver console's sign-in sessions: the cookie's SHA-256, never the cookie. The
/// same SQL on both backends.
const CONSOLE_SESSIONS: &str = r#"
CREATE TABLE console_sessions (
    id_hash   TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    expires   TEXT NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires);
"#;

/// Approvals presented as long-running operations (`approval/lro.rs`): who may poll, the
/// held request sealed until it is forwarded (then gone), and the handover to Azure's own
/// operation, sealed too. The same SQL on both backends.
const APPROVAL_OPERATIONS: &str = r#"
CREATE TABLE approval_operations (
    approval  TEXT PRIMARY KEY,
    tenant    TEXT NOT NULL,
    principal TEXT NOT NULL,
    created   TEXT NOT NULL,
    request   TEXT,
    claimed   TEXT,
    handover  TEXT
);
"#;

/// The PostgreSQL schema, versioned like SQLite's. Columns read from the record are
/// generated from it, so they add nothing an attacker could edit apart from the hashed text.
const PG_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE audit_records (
    instance  TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL,
    record    TEXT   NOT NULL,
    time      TEXT GENERATED ALWAYS AS ((record::jsonb) ->> 'time') STORED,
    session   TEXT GENERATED ALWAYS AS ((record::jsonb) ->> 'session') STORED,
    phase     TEXT GENERATED ALWAYS AS ((record::jsonb) ->> 'phase') STORED,
    principal TEXT GENERATED ALWAYS AS ((record::jsonb) ->> 'principal') STORED,
    decision  TEXT GENERATED ALWAYS AS ((record::jsonb) ->> 'decision') STORED,
    PRIMARY KEY (instance, seq)
);
CREATE INDEX audit_records_by_time ON audit_records (time, instance, seq);
CREATE INDEX audit_records_by_session ON audit_records (session, time);
CREATE TABLE audit_checkpoints (
    instance   TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    hash       TEXT   NOT NULL,
    time       TEXT   NOT NULL,
    public_key TEXT   NOT NULL,
    signature  TEXT   NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE TABLE audit_pruned (
    instance     TEXT   NOT NULL,
    through_seq  BIGINT NOT NULL,
    through_hash TEXT   NOT NULL,
    time         TEXT   NOT NULL,
    records      BIGINT NOT NULL,
    PRIMARY KEY (instance, through_seq)
);
CREATE FUNCTION portcullis_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE FUNCTION portcullis_sealed_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq > COALESCE((SELECT MAX(through_seq) FROM audit_pruned WHERE instance = OLD.instance), 0) THEN
        RAISE EXCEPTION 'audit records are append-only';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION portcullis_append_only();
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION portcullis_sealed_delete();
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION portcullis_append_only();
CREATE TRIGGER audit_pruned_no_change BEFORE UPDATE OR DELETE ON audit_pruned
    FOR EACH ROW EXECUTE FUNCTION portcullis_append_only();

CREATE TABLE approvals (
    id        TEXT PRIMARY KEY,
    status    TEXT NOT NULL,
    principal TEXT NOT NULL,
    digest    TEXT NOT NULL,
    created   TEXT NOT NULL,
    expires   TEXT NOT NULL,
    decided   TEXT,
    consumed  TEXT,
    body      TEXT NOT NULL
);
CREATE INDEX approvals_by_request ON approvals (principal, digest, created);
CREATE INDEX approvals_by_status ON approvals (status, expires);
CREATE UNIQUE INDEX approvals_live ON approvals (principal, digest)
    WHERE status IN ('pending', 'approved');
CREATE TABLE approval_votes (
    approval TEXT NOT NULL,
    voter    TEXT NOT NULL,
    vote     TEXT NOT NULL,
    time     TEXT NOT NULL,
    body     TEXT NOT NULL,
    PRIMARY KEY (approval, voter)
);
CREATE TABLE approval_grants (
    principal TEXT NOT NULL,
    action    TEXT NOT NULL,
    scope     TEXT NOT NULL,
    until     TEXT NOT NULL,
    approval  TEXT NOT NULL
);
CREATE INDEX approval_grants_by_key ON approval_grants (principal, action, scope, until);
"#,
    CONSOLE_SESSIONS,
    APPROVAL_OPERATIONS,
    PRUNED_SIGNED,
];

/// Runs `$body` with `$pool` bound to the store's concrete pool, whichever backend it is:
/// the same code, compiled once per backend.
macro_rules! on {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.db {
            $crate::audit::store::Db::Sqlite($pool) => $body,
            $crate::audit::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on;

/// Reads a column, whichever backend the row comes from.
pub(crate) trait Col<'r, T> {
    fn col(&'r self, i: usize) -> T;
}

impl<'r, R, T> Col<'r, T> for R
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn col(&'r self, i: usize) -> T {
        self.get(i)
    }
}

/// What [`Store::find_session`] found.
#[derive(Debug)]
pub enum FoundSession {
    /// The session (its whole id) and its records.
    One(String, Vec<Link>),
    /// Several principals named a session so: their sessions' ids.
    Several(Vec<String>),
    None,
}

/// One session, as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub principal: Option<String>,
    /// The principal's name and kind, as a record of the session keeps them
    /// (`AuditRecord::principal_name`), for people to read beside the id.
    pub principal_name: Option<String>,
    pub started: String,
    pub last: String,
    /// What the agent asked for: `allowed + held + refused` (answers and approval events
    /// are not requests). A request held, then approved and let through, is two: held
    /// (once, however often it was retried while pending) and allowed after approval.
    pub requests: i64,
    /// Forwarded to Azure.
    pub allowed: i64,
    /// Of those, let through by an approval (distinct approvals).
    pub after_approval: i64,
    /// Held for approval (distinct approvals), whether or not later let through.
    pub held: i64,
    /// Refused by the gateway (held requests are not refusals).
    pub refused: i64,
    /// Of those, denied by policy.
    pub denied: i64,
}

/// What [`SessionFilter::decision`] takes (the CLI, the admin API and the console offer
/// exactly these).
pub const DECISIONS: [&str; 5] = ["allow", "deny", "approve", "held", "refused"];

/// Filters for listing sessions.
#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    pub principal: Option<String>,
    /// Sessions with a request at or after this time (RFC 3339).
    pub since: Option<String>,
    /// `allow`, `deny`, `approve` (decided so), `held` (a request held for approval) or `refused`
    /// (anything the gateway refused).
    pub decision: Option<String>,
    /// Only the newest this many, newest first (default: all, oldest first).
    pub newest: Option<i64>,
}

/// A position in the merged, time-ordered record stream (for paging exports).
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    pub time: String,
    pub instance: String,
    pub seq: i64,
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
}

impl Store {
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, None).await
    }

    /// Opens (creating and migrating) the store; `max_bytes` caps the database file, so the
    /// audit trail cannot fill the disk: past it, commits fail and the gateway fails closed.
    pub async fn open_with(path: &Path, max_bytes: Option<u64>) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable at commit: a record acknowledged is a record kept.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5))
            // The write-ahead log is truncated back to this after each checkpoint, so it
            // does not keep the space of its largest burst.
            .pragma("journal_size_limit", "4194304");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A file on this machine: no connection to test. (The test is a round trip to
            // the connection's worker thread on every acquire, in the path of every commit.)
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(bytes) = max_bytes {
                        let page: i64 = sqlx::query("PRAGMA page_size")
                            .fetch_one(&mut *conn)
                            .await?
                            .get(0);
                        let pages = (bytes as i64 / page.max(512)).max(1);
                        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store {
            db: Db::Sqlite(pool),
        };
        store.migrate(MIGRATIONS).await?;
        Ok(store)
    }

    /// Opens a store by URL: `postgres://...` (or `postgresql://`) for PostgreSQL, else a
    /// SQLite file path.
    pub async fn connect(url: &str, max_bytes: Option<u64>) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url, None).await
        } else {
            Self::open_with(Path::new(url.trim_start_matches("sqlite://")), max_bytes).await
        }
    }

    /// Opens (and migrates) a PostgreSQL store; `schema` (created if missing) keeps it apart
    /// from other users of the database, e.g. in tests.
    pub async fn open_postgres(url: &str, schema: Option<&str>) -> Result<Store, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            let admin = PgPool::connect_with(options.clone()).await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&admin)
                .await?;
            admin.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let store = Store {
            db: Db::Postgres(pool),
        };
        store.migrate(PG_MIGRATIONS).await?;
        Ok(store)
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn migrate(&self, migrations: &[&str]) -> Result<(), StoreError> {
        on!(self, pool => {
            // Replicas may start together: one migrates, the others wait for its lock.
            let mut tx = pool.begin().await?;
            if let Db::Postgres(_) = self.db {
                sqlx::query("SELECT pg_advisory_xact_lock(7243911)").execute(&mut *tx).await?;
            }
            sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_version")
                .fetch_one(&mut *tx)
                .await?;
            let current: i64 = row.col(0);
            for (i, m) in migrations.iter().enumerate().skip(current as usize) {
                sqlx::raw_sql(m).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                    .bind(i as i32 + 1)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The last (seq, hash) of an instance's chain (after what retention removed).
    pub async fn head(&self, instance: &str) -> Result<(i64, String), StoreError> {
        let found: Option<(i64, String)> = on!(self, pool => {
            sqlx::query(
                "SELECT seq, hash FROM audit_records WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(instance)
            .fetch_optional(pool)
            .await?
            .map(|r| (r.col(0), r.col(1)))
        });
        if let Some(h) = found {
            return Ok(h);
        }
        Ok(self
            .pruned(instance)
            .await?
            .map_or((0, GENESIS.to_owned()), |p| (p.through_seq, p.through_hash)))
    }

    /// Appends records after `head` in one transaction; returns the new head.
    pub async fn append(
        &self,
        instance: &str,
        head: &(i64, String),
        records: &[AuditRecord],
    ) -> Result<(i64, String), StoreError> {
        let (mut seq, mut prev) = head.clone();
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            seq += 1;
            let text = serde_json::to_string(r).expect("a record serializes");
            let h = hash(instance, seq, &prev, &text);
            rows.push((seq, std::mem::replace(&mut prev, h.clone()), h, text));
        }
        // One multi-row INSERT per chunk: a round trip per batch, not per record.
        on!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(INSERT_ROWS) {
                let mut b = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_records (instance, seq, prev_hash, hash, record) ",
                );
                b.push_values(chunk, |mut row, (seq, prev, h, text)| {
                    row.push_bind(instance)
                        .push_bind(*seq)
                        .push_bind(prev.as_str())
                        .push_bind(h.as_str())
                        .push_bind(text.as_str());
                });
                b.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok((seq, prev))
    }

    /// Every instance with a chain (records, checkpoints or retention marks).
    pub async fn instances(&self) -> Result<Vec<String>, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query(
                "SELECT instance FROM audit_records UNION SELECT instance FROM audit_checkpoints \
                 UNION SELECT instance FROM audit_pruned ORDER BY 1",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.col(0))
            .collect()
        }))
    }

    /// An instance's chain, in sequence order.
    pub async fn chain(&self, instance: &str) -> Result<Vec<Link>, StoreError> {
        on!(self, pool => {
            sqlx::query(
                "SELECT instance, seq, prev_hash, hash, record FROM audit_records WHERE instance = $1 ORDER BY seq",
            )
            .bind(instance)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| link(r.col(0), r.col(1), r.col(2), r.col(3), r.col(4)))
            .collect()
        })
    }

    pub async fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        on!(self, pool => {
            sqlx::query("INSERT INTO audit_checkpoints (instance, seq, hash, time, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&c.instance)
                .bind(c.seq)
                .bind(&c.hash)
                .bind(&c.time)
                .bind(&c.public_key)
                .bind(&c.signature)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query("SELECT seq, hash, time, public_key, signature FROM audit_checkpoints WHERE instance = $1 ORDER BY seq")
                .bind(instance)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| Checkpoint {
                    instance: instance.to_owned(),
                    seq: r.col(0),
                    hash: r.col(1),
                    time: r.col(2),
                    public_key: r.col(3),
                    signature: r.col(4),
                })
                .collect()
        }))
    }

    /// The latest retention mark of an instance's chain.
    pub async fn pruned(&self, instance: &str) -> Result<Option<Pruned>, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query("SELECT through_seq, through_hash, time, records, public_key, signature FROM audit_pruned WHERE instance = $1 ORDER BY through_seq DESC LIMIT 1")
                .bind(instance)
                .fetch_optional(pool)
                .await?
                .map(|r| Pruned {
                    instance: instance.to_owned(),
                    through_seq: r.col(0),
                    through_hash: r.col(1),
                    time: r.col(2),
                    records: r.col(3),
                    public_key: r.col(4),
                    signature: r.col(5),
                })
        }))
    }

    /// Retention: removes the oldest records of `instance`'s chain, up to the latest signed
    /// checkpoint whose record is older than `before` (RFC 3339), as one sealed segment
    /// whose mark `key` signs. What remains still verifies: it starts after the checkpointed
    /// hash. Returns the mark, or `None` when nothing is old enough to be sealed.
    pub async fn prune(
        &self,
        instance: &str,
        before: &str,
        key: &ed25519_dalek::SigningKey,
    ) -> Result<Option<Pruned>, StoreError> {
        let already = self.pruned(instance).await?.map_or(0, |p| p.through_seq);
        let found: Option<(i64, String)> = on!(self, pool => {
            sqlx::query(
                "SELECT c.seq, c.hash FROM audit_checkpoints c JOIN audit_records r \
                 ON r.instance = c.instance AND r.seq = c.seq \
                 WHERE c.instance = $1 AND r.time < $2 AND c.seq > $3 ORDER BY c.seq DESC LIMIT 1",
            )
            .bind(instance)
            .bind(before)
            .bind(already)
            .fetch_optional(pool)
            .await?
            .map(|r| (r.col(0), r.col(1)))
        });
        let Some((through_seq, through_hash)) = found else {
            return Ok(None);
        };
        let mark = Pruned::sign(
            key,
            instance,
            through_seq,
            &through_hash,
            through_seq - already,
        );
        on!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO audit_pruned (instance, through_seq, through_hash, time, records, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&mark.instance)
                .bind(mark.through_seq)
                .bind(&mark.through_hash)
                .bind(&mark.time)
                .bind(mark.records)
                .bind(&mark.public_key)
                .bind(&mark.signature)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM audit_records WHERE instance = $1 AND seq <= $2")
                .bind(instance)
                .bind(through_seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(Some(mark))
    }

    /// Sessions, oldest first, their requests counted as [`Tally::of`] counts a timeline
    /// (the same rules in SQL; a test holds them together).
    ///
    /// [`Tally::of`]: super::record::Tally::of
    pub async fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionSummary>, StoreError> {
        let order = match f.newest {
            Some(n) => format!("ORDER BY MIN(time) DESC LIMIT {}", n.max(1)),
            None => "ORDER BY MIN(time)".to_owned(),
        };
        // Fields no generated column holds, read only for the few records that need them.
        let field = |name: &str| match self.db {
            Db::Sqlite(_) => format!("json_extract(record, '$.{name}')"),
            Db::Postgres(_) => format!("((record::jsonb) ->> '{name}')"),
        };
        let (status, reason, approval) = (field("status"), field("reason"), field("approval"));
        let [pending, shutting] = super::record::LEGACY_HELD_REASONS;
        // 1 for a held record: phase `held`, or a refusal from before that phase that
        // `AuditRecord::outcome` reads as held.
        let held = format!(
            "CASE WHEN phase = 'held' THEN 1 \
                  WHEN phase = 'refused' AND decision = 'approve' \
                   AND (CAST({status} AS TEXT) IN ('201', '202') \
                        OR substr({reason}, 1, {}) = '{pending}' \
                        OR substr({reason}, 1, {}) = '{shutting}') THEN 1 \
                  ELSE 0 END",
            pending.len(),
            shutting.len()
        );
        let forwarded = format!(
            "COUNT(DISTINCT CASE WHEN phase = 'request' AND decision = 'approve' THEN {approval} END)"
        );
        // Approvals that held a request in the session (retries of one held request count
        // once), whether or not it was later let through.
        let held_count = format!("COUNT(DISTINCT CASE WHEN ({held}) = 1 THEN {approval} END)");
        let refused = format!("SUM(CASE WHEN phase = 'refused' THEN 1 - ({held}) ELSE 0 END)");
        // Not a column: only this list reads it, from the record's own text.
        let name = match &self.db {
            Db::Sqlite(_) => "json_extract(record, '$.principal_name')",
            Db::Postgres(_) => "((record::jsonb) ->> 'principal_name')",
        };
        Ok(on!(self, pool => {
            sqlx::query(&format!(
                "SELECT session, MIN(time), MAX(time), \
                        CAST(SUM(CASE WHEN phase = 'request' THEN 1 ELSE 0 END) AS BIGINT), \
                        CAST({forwarded} AS BIGINT), \
                        CAST({held_count} AS BIGINT), \
                        CAST({refused} AS BIGINT), \
                        CAST(SUM(CASE WHEN phase = 'refused' AND decision = 'deny' THEN 1 ELSE 0 END) AS BIGINT), \
                        MAX(principal), MAX({name}) \
                 FROM audit_records \
                 GROUP BY session \
                 HAVING (CAST($1 AS TEXT) IS NULL OR MAX(time) >= $1) \
                    AND (CAST($2 AS TEXT) IS NULL OR SUM(CASE WHEN principal = $2 THEN 1 ELSE 0 END) > 0) \
                    AND (CAST($3 AS TEXT) IS NULL \
                         OR ($3 = 'held' AND {held_count} > 0) \
                         OR ($3 = 'refused' AND {refused} > 0) \
                         OR ($3 NOT IN ('held', 'refused') \
                             AND SUM(CASE WHEN decision = $3 THEN 1 ELSE 0 END) > 0)) \
                 {order}"
            ))
            .bind(&f.since)
            .bind(&f.principal)
            .bind(&f.decision)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let (allowed, held, refused): (i64, i64, i64) = (r.col(3), r.col(5), r.col(6));
                SessionSummary {
                    id: r.col(0),
                    started: r.col(1),
                    last: r.col(2),
                    requests: allowed + held + refused,
                    allowed,
                    after_approval: r.col(4),
                    held,
                    refused,
                    denied: r.col(7),
                    principal: r.col(8),
                    principal_name: r.col(9),
                }
            })
            .collect()
        }))
    }

    /// A session's records, in time order across instances.
    pub async fn session(&self, id: &str) -> Result<Vec<Link>, StoreError> {
        on!(self, pool => {
            sqlx::query(
                "SELECT instance, seq, prev_hash, hash, record FROM audit_records WHERE session = $1 ORDER BY time, instance, seq",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| link(r.col(0), r.col(1), r.col(2), r.col(3), r.col(4)))
            .collect()
        })
    }

    /// A session by its id or, failing that, by the name an agent gave it
    /// (`x-portcullis-session`; kept as `{name}@{object id}`, audit/session.rs): readers may
    /// ask for `incident-42` when one principal used that name.
    pub async fn find_session(&self, id: &str) -> Result<FoundSession, StoreError> {
        let links = self.session(id).await?;
        if !links.is_empty() {
            return Ok(FoundSession::One(id.to_owned(), links));
        }
        // Not indexed: a reader's lookup by a bare name scans the sessions' ids.
        let mut named: Vec<String> = on!(self, pool => {
            sqlx::query(
                "SELECT DISTINCT session FROM audit_records WHERE substr(session, 1, length($1) + 1) = $1 || '@'",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.col(0))
            .collect()
        });
        named.retain(|s: &String| crate::audit::session::name_of(s).is_some_and(|(n, _)| n == id));
        named.sort();
        Ok(match named.len() {
            0 => FoundSession::None,
            1 => {
                let only = named.remove(0);
                let links = self.session(&only).await?;
                FoundSession::One(only, links)
            }
            _ => FoundSession::Several(named),
        })
    }

    /// How many records fall in `[since, until)`.
    pub async fn count(&self, since: &str, until: Option<&str>) -> Result<i64, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query(
                "SELECT COUNT(*) FROM audit_records WHERE time >= $1 AND (CAST($2 AS TEXT) IS NULL OR time < $2)",
            )
            .bind(since)
            .bind(until)
            .fetch_one(pool)
            .await?
            .col(0)
        }))
    }

    /// The next page of records in `[since, until)` after `after`, merged across instances in
    /// time order. Page until it comes back empty.
    pub async fn page(
        &self,
        since: &str,
        until: Option<&str>,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<Link>, StoreError> {
        let c = after.cloned().unwrap_or_default();
        on!(self, pool => {
            sqlx::query(
                "SELECT instance, seq, prev_hash, hash, record FROM audit_records \
                 WHERE time >= $1 AND (CAST($2 AS TEXT) IS NULL OR time < $2) \
                   AND ($3 = 0 OR (time, instance, seq) > ($4, $5, $6)) \
                 ORDER BY time, instance, seq LIMIT $7",
            )
            .bind(since)
            .bind(until)
            .bind(i64::from(after.is_some()))
            .bind(&c.time)
            .bind(&c.instance)
            .bind(c.seq)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| link(r.col(0), r.col(1), r.col(2), r.col(3), r.col(4)))
            .collect()
        })
    }
}

/// Runs one statement as is (tests use it to prove the tables refuse edits).
#[doc(hidden)]
pub async fn raw_execute(store: &Store, sql: &str) -> Result<u64, StoreError> {
    Ok(on!(store, pool => sqlx::query(sql).execute(pool).await?.rows_affected()))
}

fn link(
    instance: String,
    seq: i64,
    prev_hash: String,
    hash: String,
    text: String,
) -> Result<Link, StoreError> {
    let record = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Link {
        instance,
        seq,
        prev_hash,
        hash,
        text,
        record,
    })
}

impl Link {
    /// The record as one export line: its place in the chain and the record as stored.
    pub fn to_json_line(&self) -> String {
        format!(
            "{{\"instance\":{},\"seq\":{},\"prev_hash\":\"{}\",\"hash\":\"{}\",\"record\":{}}}",
            serde_json::to_string(&self.instance).expect("a string serializes"),
            self.seq,
            self.prev_hash,
            self.hash,
            self.text
        )
    }

    pub fn cursor(&self) -> Cursor {
        Cursor {
            time: self.record.time.clone(),
            instance: self.instance.clone(),
            seq: self.seq,
        }
    }
}
