//! The one writer: records from every request are committed in batches (group commit), and
//! each request waits for its record's commit. A request whose record cannot be committed is
//! not forwarded (the caller fails closed).

use tokio::sync::{mpsc, oneshot};

use super::record::AuditRecord;
use super::store::Store;

/// Records waiting to be written; a full queue makes requests wait, never drops a record.
const QUEUE: usize = 4096;
/// Records committed in one transaction at most.
const BATCH: usize = 256;

type Job = (AuditRecord, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Job>,
}

impl Recorder {
    /// Starts the writer for `instance`'s chain.
    pub async fn start(
        store: Store,
        instance: String,
    ) -> Result<Recorder, super::store::StoreError> {
        let mut head = store.head(&instance).await?;
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < BATCH {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let records: Vec<AuditRecord> = jobs.iter().map(|(r, _)| r.clone()).collect();
                match store.append(&instance, &head, &records).await {
                    Ok(new_head) => {
                        head = new_head;
                        for (_, ack) in jobs {
                            let _ = ack.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit commit failed; the requests are refused");
                        // The chain head may have moved if the failure came after commit;
                        // read it back before the next batch.
                        if let Ok(h) = store.head(&instance).await {
                            head = h;
                        }
                        for (_, ack) in jobs {
                            let _ = ack.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Ok(Recorder { tx })
    }

    /// Records and waits for the commit.
    pub async fn record(&self, record: AuditRecord) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((record, ack))
            .await
            .map_err(|_| "the audit writer has stopped".to_owned())?;
        done.await
            .map_err(|_| "the audit writer has stopped".to_owned())?
    }
}
