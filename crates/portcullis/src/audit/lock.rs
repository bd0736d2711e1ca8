//! One writer per chain. A chain is named by the state directory's `instance.id`, so two
//! gateways on one state directory would append to one chain (and share its keys): that
//! file is locked (an OS file lock, which goes with the process). On PostgreSQL, gateways
//! on different hosts can still name the same chain (a state directory copied with its
//! `instance.id`): a session advisory lock on the chain's name refuses the second. Neither is what keeps a chain linear: the store's key on (instance, seq) does;
//! these turn a second writer from a stream of failed commits into a clear refusal at start.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::store::{Db, Store, StoreError};

/// The file in the state directory that names this gateway's chain, and is locked while
/// the gateway runs.
pub const INSTANCE_FILE: &str = "instance.id";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another gateway holds the state directory {dir} (it has {lock} locked): \
         two gateways on one state directory would write one audit chain; stop the other, \
         or give this one a state_dir of its own",
        dir = .dir.display(), lock = .dir.join(INSTANCE_FILE).display()
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
         refused; remove the copied instance.id so this gateway starts a chain of its own"
    )]
    ChainHeld { instance: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state directory, locked exclusively for as long as this lives. Taken before anything
/// else in the directory is read or created (keys).
pub struct DirLock {
    /// The open `instance.id`: the OS lock is on it, and goes when it is closed.
    _file: File,
}

impl DirLock {
    /// Locks `dir`'s `instance.id` (the directory and file are created when missing, the
    /// file then given a new name) and returns the name of this gateway's chain; or says
    /// another gateway holds the directory.
    pub fn acquire(dir: &Path) -> Result<(DirLock, String), LockError> {
        use std::io::{Read, Seek, Write};
        let path = dir.join(INSTANCE_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::DirHeld {
                    dir: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Read only under the lock: two gateways starting at once never both name a chain.
        let mut id = String::new();
        file.read_to_string(&mut id).map_err(io)?;
        let mut id = id.trim().to_owned();
        if id.is_empty() {
            id = format!("gw-{}", uuid::Uuid::new_v4().simple());
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            file.write_all(id.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok((DirLock { _file: file }, id))
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
    fn a_state_directory_is_locked_once_at_a_time_and_keeps_its_name() {
        let dir = std::env::temp_dir().join(format!("pc-lock-{}", uuid::Uuid::new_v4()));
        let (first, id) = DirLock::acquire(&dir).unwrap();
        assert!(id.starts_with("gw-"), "{id}");
        let text = DirLock::acquire(&dir).err().unwrap().to_string();
        assert!(
            text.contains(&format!(
                "another gateway holds the state directory {}",
                dir.display()
            )),
            "{text}"
        );
        drop(first);
        let (_again, same) = DirLock::acquire(&dir).unwrap();
        assert_eq!(same, id);
        assert_eq!(
            std::fs::read_to_string(dir.join(INSTANCE_FILE)).unwrap(),
            id
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
