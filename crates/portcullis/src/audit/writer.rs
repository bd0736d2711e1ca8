//! The one writer: records from every request are committed in batches (group commit), and
//! each request waits for its record's commit. A request whose record cannot be committed is
//! not forwarded (the caller fails closed). Between batches the writer signs checkpoints of
//! its chain and applies retention.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Checkpoint;
use super::record::{AuditRecord, Keep};
use super::store::{Store, StoreError};

/// Records waiting to be written; a full queue makes requests wait, never drops a record.
const QUEUE: usize = 4096;
const STOPPED: &str = "the audit writer has stopped";
/// Records committed in one transaction at most.
const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "audit chain {instance} holds records (through {head}) but no signed checkpoint: its \
         checkpoints were removed (`portcullis audit verify` says so), and this gateway will not \
         sign over what is left. Keep the store as evidence, then start this gateway on a new \
         chain (move state_dir/instance.id away)"
    )]
    Unsealed { instance: String, head: i64 },
}

/// How the writer keeps its chain.
pub struct WriterOptions {
    /// How often the chain's head is signed (when it moved).
    pub checkpoint_every: Duration,
    /// Records older than this are removed in sealed segments; `None` keeps everything.
    pub retention: Option<Duration>,
    pub signing_key: SigningKey,
}

enum Msg {
    Record(Box<AuditRecord>, oneshot::Sender<Result<(), String>>),
    /// Sign the head now (shutdown, or on demand) and say when done.
    Checkpoint(oneshot::Sender<Result<(), String>>),
}

#[derive(Clone)]
pub struct Recorder {
    /// `None`: records are dropped. Only benchmarks build such a recorder (to measure what
    /// recording costs); no configuration can.
    tx: Option<mpsc::Sender<Msg>>,
    /// Applied to every record before it is queued (in the caller's task, not the writer's).
    keep: Keep,
}

impl Recorder {
    /// Starts the writer for `instance`'s chain.
    pub async fn start(
        store: Store,
        instance: String,
        options: WriterOptions,
    ) -> Result<Recorder, StartError> {
        let head = store.head(&instance).await?;
        let last_signed = store.checkpoints(&instance).await?.last().map(|c| c.seq);
        let (tx, rx) = mpsc::channel::<Msg>(QUEUE);
        let mut writer = Writer {
            store,
            instance,
            options,
            head,
            last_signed,
            unreachable: None,
        };
        // Sign before the first record (a new chain's checkpoint is at record 0), so a chain
        // without any signed checkpoint is one whose checkpoints were removed. Such a chain
        // is not signed now: that would seal whatever was done to it.
        if writer.last_signed.is_none() {
            if writer.head.0 > 0 {
                return Err(StartError::Unsealed {
                    instance: writer.instance,
                    head: writer.head.0,
                });
            }
            writer.sign_head().await?;
        }
        tokio::spawn(writer.run(rx));
        Ok(Recorder {
            tx: Some(tx),
            keep: Keep::default(),
        })
    }

    /// This recorder, masking what agents wrote in every record with `keep`.
    pub fn keeping(self, keep: Keep) -> Recorder {
        Recorder { keep, ..self }
    }

    /// What this recorder keeps of agents' text (approvals keep held requests so too).
    pub fn keep(&self) -> &Keep {
        &self.keep
    }

    /// A recorder that keeps nothing: for benchmarks that measure what recording costs.
    #[doc(hidden)]
    pub fn discard() -> Recorder {
        Recorder {
            tx: None,
            keep: Keep::default(),
        }
    }

    /// Records and waits for the commit. The future owns what it needs (no borrow of the
    /// recorder), so it can be awaited anywhere, however deeply nested.
    pub fn record(
        &self,
        mut record: AuditRecord,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        record.keep(&self.keep);
        self.ask(|ack| Msg::Record(Box::new(record), ack))
    }

    /// Signs the chain's head now, after every record queued before this call.
    pub fn checkpoint(
        &self,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        self.ask(Msg::Checkpoint)
    }

    /// Sends the writer a message carrying an acknowledgement, and waits for it.
    fn ask(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Msg + Send + 'static,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let tx = self.tx.clone();
        async move {
            let Some(tx) = tx else {
                return Ok(());
            };
            let (ack, done) = oneshot::channel();
            tx.send(msg(ack)).await.map_err(|_| STOPPED.to_owned())?;
            done.await.map_err(|_| STOPPED.to_owned())?
        }
    }
}

struct Writer {
    store: Store,
    instance: String,
    options: WriterOptions,
    head: (i64, String),
    /// The latest signed checkpoint's record; `None` before the chain's first.
    last_signed: Option<i64>,
    /// After a commit found the store unreachable, commits fail at once until then (one
    /// waiter per interval pays the connection timeout; the rest are refused promptly).
    unreachable: Option<(std::time::Instant, String)>,
}

/// How long an unreachable store is not asked again.
const UNREACHABLE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut tick = tokio::time::interval(self.options.checkpoint_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = tick.tick() => {
                    if let Err(e) = self.sign_head().await {
                        tracing::error!(error = %e, "audit checkpoint failed");
                    }
                    self.retain().await;
                    continue;
                }
            };
            let mut jobs = Vec::new();
            let mut checkpoints = Vec::new();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Record(r, ack) => jobs.push((*r, ack)),
                    Msg::Checkpoint(ack) => checkpoints.push(ack),
                }
                if jobs.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !jobs.is_empty() {
                self.commit(jobs).await;
            }
            if !checkpoints.is_empty() {
                let result = self.sign_head().await.map_err(|e| e.to_string());
                for ack in checkpoints {
                    let _ = ack.send(result.clone());
                }
            }
        }
        // Every sender is gone: seal what was written.
        if let Err(e) = self.sign_head().await {
            tracing::error!(error = %e, "the final audit checkpoint failed");
        }
    }

    async fn commit(&mut self, jobs: Vec<(AuditRecord, oneshot::Sender<Result<(), String>>)>) {
        let m = &crate::metrics::METRICS;
        if let Some((until, why)) = &self.unreachable {
            if std::time::Instant::now() < *until {
                m.audit_commit_failures.inc();
                for (_, ack) in jobs {
                    let _ = ack.send(Err(why.clone()));
                }
                return;
            }
            self.unreachable = None;
        }
        let records: Vec<AuditRecord> = jobs.iter().map(|(r, _)| r.clone()).collect();
        let started = std::time::Instant::now();
        let appended = self
            .store
            .append(&self.instance, &self.head, &records)
            .await;
        m.audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match appended {
            Ok(new_head) => {
                m.audit_records.inc_by(records.len() as u64);
                self.head = new_head;
                for (_, ack) in jobs {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                m.audit_commit_failures.inc();
                tracing::error!(error = %e, "audit commit failed; the requests are refused");
                if e.unreachable() {
                    // Nothing was attempted: the head has not moved.
                    self.unreachable = Some((
                        std::time::Instant::now() + UNREACHABLE_BACKOFF,
                        format!("{e} (the store was unreachable moments ago)"),
                    ));
                } else if let Ok(h) = self.store.head(&self.instance).await {
                    // The chain head may have moved if the failure came after commit; read
                    // it back before the next batch.
                    self.head = h;
                }
                for (_, ack) in jobs {
                    let _ = ack.send(Err(e.to_string()));
                }
            }
        }
    }

    async fn sign_head(&mut self) -> Result<(), StoreError> {
        if self.last_signed.is_some_and(|s| self.head.0 <= s) {
            return Ok(());
        }
        let c = Checkpoint::sign(
            &self.options.signing_key,
            &self.instance,
            self.head.0,
            &self.head.1,
        );
        self.store.add_checkpoint(&c).await?;
        self.last_signed = Some(c.seq);
        Ok(())
    }

    async fn retain(&self) {
        let Some(age) = self.options.retention else {
            return;
        };
        let Ok(age) = chrono::Duration::from_std(age) else {
            return;
        };
        let before =
            (chrono::Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        match self
            .store
            .prune(&self.instance, &before, &self.options.signing_key)
            .await
        {
            Ok(Some(mark)) => tracing::info!(
                instance = %self.instance,
                through = mark.through_seq,
                records = mark.records,
                "audit retention removed a sealed segment"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "audit retention failed"),
        }
    }
}
