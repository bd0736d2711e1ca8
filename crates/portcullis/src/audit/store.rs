//! The audit store: SQLite (WAL), append-only by trigger, one hash chain per instance, the
//! signed checkpoints, and the segments retention removed. (PostgreSQL arrives with the
//! high-availability work, behind the same functions.)

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
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
];

/// One session, as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub principal: Option<String>,
    pub started: String,
    pub last: String,
    /// Requests (forwarded or refused), not counting answer records.
    pub requests: i64,
    pub refused: i64,
    pub denied: i64,
}

/// Filters for listing sessions.
#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    pub principal: Option<String>,
    /// Sessions with a request at or after this time (RFC 3339).
    pub since: Option<String>,
    /// `allow`, `deny`, `approve`, or `refused` (anything the gateway refused).
    pub decision: Option<String>,
}

/// A position in the merged, time-ordered record stream (for paging exports).
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    pub time: String,
    pub instance: String,
    pub seq: i64,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
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
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&pool)
            .await?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&pool)
            .await?
            .get(0);
        for (i, m) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let mut tx = pool.begin().await?;
            sqlx::raw_sql(m).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(i as i64 + 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(Store { pool })
    }

    /// The pool, for the other state kept in the same database (approvals).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The last (seq, hash) of an instance's chain (after what retention removed).
    pub async fn head(&self, instance: &str) -> Result<(i64, String), StoreError> {
        let row = sqlx::query(
            "SELECT seq, hash FROM audit_records WHERE instance = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(instance)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            return Ok((r.get(0), r.get(1)));
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
        // One multi-row INSERT per chunk: a round trip to SQLite per batch, not per record.
        let mut tx = self.pool.begin().await?;
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
        Ok((seq, prev))
    }

    /// Every instance with a chain (records, checkpoints or retention marks).
    pub async fn instances(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance FROM audit_records UNION SELECT instance FROM audit_checkpoints \
             UNION SELECT instance FROM audit_pruned ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// An instance's chain, in sequence order.
    pub async fn chain(&self, instance: &str) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, seq, prev_hash, hash, record FROM audit_records WHERE instance = ? ORDER BY seq",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(link).collect()
    }

    pub async fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_checkpoints (instance, seq, hash, time, public_key, signature) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&c.instance)
            .bind(c.seq)
            .bind(&c.hash)
            .bind(&c.time)
            .bind(&c.public_key)
            .bind(&c.signature)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT seq, hash, time, public_key, signature FROM audit_checkpoints WHERE instance = ? ORDER BY seq")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Checkpoint {
                instance: instance.to_owned(),
                seq: r.get(0),
                hash: r.get(1),
                time: r.get(2),
                public_key: r.get(3),
                signature: r.get(4),
            })
            .collect())
    }

    /// The latest retention mark of an instance's chain.
    pub async fn pruned(&self, instance: &str) -> Result<Option<Pruned>, StoreError> {
        let row = sqlx::query("SELECT through_seq, through_hash, time, records FROM audit_pruned WHERE instance = ? ORDER BY through_seq DESC LIMIT 1")
            .bind(instance)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| Pruned {
            instance: instance.to_owned(),
            through_seq: r.get(0),
            through_hash: r.get(1),
            time: r.get(2),
            records: r.get(3),
        }))
    }

    /// Retention: removes the oldest records of `instance`'s chain, up to the latest signed
    /// checkpoint whose record is older than `before` (RFC 3339), as one sealed segment.
    /// What remains still verifies: it starts after the checkpointed hash. Returns the mark,
    /// or `None` when nothing is old enough to be sealed.
    pub async fn prune(&self, instance: &str, before: &str) -> Result<Option<Pruned>, StoreError> {
        let already = self.pruned(instance).await?.map_or(0, |p| p.through_seq);
        let row = sqlx::query(
            "SELECT c.seq, c.hash FROM audit_checkpoints c JOIN audit_records r \
             ON r.instance = c.instance AND r.seq = c.seq \
             WHERE c.instance = ? AND r.time < ? AND c.seq > ? ORDER BY c.seq DESC LIMIT 1",
        )
        .bind(instance)
        .bind(before)
        .bind(already)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (through_seq, through_hash): (i64, String) = (row.get(0), row.get(1));
        let mut tx = self.pool.begin().await?;
        let mark = Pruned {
            instance: instance.to_owned(),
            through_seq,
            through_hash,
            time: crate::audit_time(),
            records: through_seq - already,
        };
        sqlx::query("INSERT INTO audit_pruned (instance, through_seq, through_hash, time, records) VALUES (?, ?, ?, ?, ?)")
            .bind(&mark.instance)
            .bind(mark.through_seq)
            .bind(&mark.through_hash)
            .bind(&mark.time)
            .bind(mark.records)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM audit_records WHERE instance = ? AND seq <= ?")
            .bind(instance)
            .bind(through_seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(mark))
    }

    /// Sessions, oldest first.
    pub async fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT session, MIN(time), MAX(time), \
                    SUM(json_extract(record, '$.phase') IN ('request', 'refused')), \
                    SUM(json_extract(record, '$.phase') = 'refused'), \
                    SUM(json_extract(record, '$.phase') = 'refused' AND json_extract(record, '$.decision') = 'deny'), \
                    MAX(json_extract(record, '$.principal')) \
             FROM audit_records \
             GROUP BY session \
             HAVING (?1 IS NULL OR MAX(time) >= ?1) \
                AND (?2 IS NULL OR SUM(json_extract(record, '$.principal') = ?2) > 0) \
                AND (?3 IS NULL OR SUM(json_extract(record, '$.decision') = ?3 \
                     OR (?3 = 'refused' AND json_extract(record, '$.phase') = 'refused')) > 0) \
             ORDER BY MIN(time)",
        )
        .bind(&f.since)
        .bind(&f.principal)
        .bind(&f.decision)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SessionSummary {
                id: r.get(0),
                started: r.get(1),
                last: r.get(2),
                requests: r.get(3),
                refused: r.get(4),
                denied: r.get(5),
                principal: r.get(6),
            })
            .collect())
    }

    /// A session's records, in time order across instances.
    pub async fn session(&self, id: &str) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, seq, prev_hash, hash, record FROM audit_records WHERE session = ? ORDER BY time, instance, seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(link).collect()
    }

    /// How many records fall in `[since, until)`.
    pub async fn count(&self, since: &str, until: Option<&str>) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM audit_records WHERE time >= ? AND (? IS NULL OR time < ?)",
        )
        .bind(since)
        .bind(until)
        .bind(until)
        .fetch_one(&self.pool)
        .await?
        .get(0))
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
        let rows = sqlx::query(
            "SELECT instance, seq, prev_hash, hash, record FROM audit_records \
             WHERE time >= ?1 AND (?2 IS NULL OR time < ?2) \
               AND (?3 = 0 OR (time, instance, seq) > (?4, ?5, ?6)) \
             ORDER BY time, instance, seq LIMIT ?7",
        )
        .bind(since)
        .bind(until)
        .bind(after.is_some())
        .bind(&c.time)
        .bind(&c.instance)
        .bind(c.seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(link).collect()
    }
}

fn link(r: &SqliteRow) -> Result<Link, StoreError> {
    let text: String = r.get(4);
    let record = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Link {
        instance: r.get(0),
        seq: r.get(1),
        prev_hash: r.get(2),
        hash: r.get(3),
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
