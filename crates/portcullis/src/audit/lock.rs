//! One writer per chain. A chain is named by the state directory's `instance.id`, so two
//! gateways on one state directory would append to one chain (and share its keys): the
//! directory is locked (`gateway.lock`, an OS file lock that goes with the process). On
//! PostgreSQL, gateways on different hosts can still name the same chain (a state directory
//! copied with its `instance.id`): a session advisory lock on the chain's name refuses the
//! second. Neither is what keeps a chain linear: the store's key on (instance, seq) does;
//! these turn a second writer from a stream of failed commits into a clear refusal at start.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::store::{Db, Store, StoreError};

/// The lock file in the state directory.
pub const LOCK_FILE: &str = "gateway.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another gateway holds the state directory {dir} (its lock file {lock} is locked): \
         two gateways on one state directory would write one audit chain; stop the other, \
         or give this one a state_dir of its own",
        dir = .dir.display(), lock = .dir.join(LOCK_FILE).display()
    )]
    DirHeld { dir: PathBuf },
    #[error("locking the state directory: {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another gateway is writing the audit chain {instance} in this PostgreSQL store \
         (a state directory copied with its instance.id?): two writers on one chain are \
         refused; give each gateway a state_dir of its own"
    )]
    ChainHeld { instance: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state directory, locked exclusively for as long as this lives. Taken before anything
/// in the directory is read or created (`instance.id`, keys).
pub struct DirLock {
    /// The open lock file: the OS lock is on it, and goes when it is closed.
    _file: File,
}

impl DirLock {
    /// Locks `dir` (created if missing), or says another gateway holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::DirHeld {
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// Adds the lock on `instance`'s chain in `store` (PostgreSQL; a SQLite store's chains
    /// are this directory's).
    pub async fn with_chain(self, store: &Store, instance: &str) -> Result<WriterLock, LockError> {
        let chain = match &store.db {
            Db::Sqlite(_) => None,
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(StoreError::from)?.detach();
                // Keyed by schema and instance: advisory locks are per database.
                let got: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock(hashtextextended('portcullis-audit-chain/' || current_schema() || '/' || $1, 0))",
                )
                .bind(instance)
                .fetch_one(&mut conn)
                .await
                .map_err(StoreError::from)?;
                if !got {
                    let _ = conn.close().await;
                    return Err(LockError::ChainHeld {
                        instance: instance.to_owned(),
                    });
                }
                Some(conn)
            }
        };
        Ok(WriterLock {
            _dir: self,
            _chain: chain,
        })
    }
}

/// Held while the gateway runs (`Running` drops it when shutdown is done); dropping it lets
/// another gateway start on the same state directory and chain.
pub struct WriterLock {
    _dir: DirLock,
    /// The connection holding the chain's advisory lock (PostgreSQL only); the lock lasts
    /// as long as that session. If PostgreSQL restarts, the session and the lock are gone
    /// until the gateway restarts (the chain's key still refuses a second writer's seqs).
    _chain: Option<PgConnection>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_is_locked_once_at_a_time() {
        let dir = std::env::temp_dir().join(format!("pc-lock-{}", uuid::Uuid::new_v4()));
        let first = DirLock::acquire(&dir).unwrap();
        let second = DirLock::acquire(&dir).err().unwrap();
        let text = second.to_string();
        assert!(
            text.contains("another gateway holds the state directory")
                && text.contains(&dir.display().to_string()),
            "{text}"
        );
        drop(first);
        drop(DirLock::acquire(&dir).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
