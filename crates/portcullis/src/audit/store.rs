//! The audit store: SQLite (WAL), append-only by trigger, one hash chain per instance.
//! (PostgreSQL arrives with the high-availability work, behind the same functions.)

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::chain::{GENESIS, Link, hash};
use super::record::AuditRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("audit store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("audit store: a stored record is not readable: {0}")]
    Corrupt(String),
}

/// Versioned migrations, applied in order, each once.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable at commit: a record acknowledged is a record kept.
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
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

    /// The last (seq, hash) of an instance's chain.
    pub async fn head(&self, instance: &str) -> Result<(i64, String), StoreError> {
        let row = sqlx::query(
            "SELECT seq, hash FROM audit_records WHERE instance = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(instance)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map_or((0, GENESIS.to_owned()), |r| (r.get(0), r.get(1))))
    }

    /// Appends records after `head` in one transaction; returns the new head.
    pub async fn append(
        &self,
        instance: &str,
        head: &(i64, String),
        records: &[AuditRecord],
    ) -> Result<(i64, String), StoreError> {
        let (mut seq, mut prev) = head.clone();
        let mut tx = self.pool.begin().await?;
        for r in records {
            seq += 1;
            let h = hash(instance, seq, &prev, r);
            sqlx::query("INSERT INTO audit_records (instance, seq, prev_hash, hash, record) VALUES (?, ?, ?, ?, ?)")
                .bind(instance)
                .bind(seq)
                .bind(&prev)
                .bind(&h)
                .bind(serde_json::to_string(r).expect("a record serializes"))
                .execute(&mut *tx)
                .await?;
            prev = h;
        }
        tx.commit().await?;
        Ok((seq, prev))
    }

    pub async fn instances(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT instance FROM audit_records ORDER BY instance")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every record of every instance, in time order (replicas' chains merged).
    pub async fn all(&self) -> Result<Vec<Link>, StoreError> {
        let mut links = Vec::new();
        for instance in self.instances().await? {
            links.extend(self.chain(&instance).await?);
        }
        links.sort_by(|a, b| a.record.time.cmp(&b.record.time).then(a.seq.cmp(&b.seq)));
        Ok(links)
    }

    /// An instance's chain, in sequence order.
    pub async fn chain(&self, instance: &str) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query("SELECT seq, prev_hash, hash, record FROM audit_records WHERE instance = ? ORDER BY seq").bind(instance).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let text: String = r.get(3);
                let record =
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(Link {
                    instance: instance.to_owned(),
                    seq: r.get(0),
                    prev_hash: r.get(1),
                    hash: r.get(2),
                    record,
                })
            })
            .collect()
    }
}
