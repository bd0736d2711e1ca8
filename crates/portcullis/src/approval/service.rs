//! Holding, voting, redeeming and expiring approvals.
//!
//! A held request waits on a per-approval watch channel (woken by a vote or by expiry) with
//! a deadline; what it holds is its own request (bounded by the policy body cap) and a
//! receiver, and at most `max_held` requests wait at once; beyond that the agent is told
//! to retry at once. The store is the truth: a waiter re-reads it when woken, and
//! every transition is conditional, so an approval is consumed by exactly one forward.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, watch};

use super::model::{Approval, Status, Vote};
use super::notify::Notifier;
use super::store::Inserted;
use crate::audit::record::{AuditRecord, Phase};
use crate::audit::store::{Store, StoreError};
use crate::audit::writer::Recorder;
use crate::identity::principal::Principal;

/// How often overdue approvals are marked expired.
const SWEEP: Duration = Duration::from_secs(2);

pub struct ApprovalsConfig {
    /// The longest a request is held open waiting for a decision.
    pub hold: Duration,
    /// The most requests held open at once.
    pub max_held: usize,
    /// The most approvals one principal may have pending (0: no cap), counted in the
    /// shared store: one agent cannot bury everyone else's approvals.
    pub max_pending_per_principal: u32,
    /// How often a waiter re-reads its approval even without a wake-up, so a lost
    /// notification from another replica only delays a release.
    pub recheck: Duration,
    /// `Retry-After` on the gateway's own answers to polls of a pending approval.
    pub retry_after: Duration,
    /// Which operations Azure clients poll (`approval.style: auto`).
    pub long_running: super::lro::LroTable,
    /// Seals held requests and handovers at rest.
    pub sealer: super::lro::Sealer,
}

pub struct Approvals {
    pub(crate) store: Store,
    recorder: Recorder,
    notifier: Notifier,
    pub config: ApprovalsConfig,
    held: Arc<Semaphore>,
    watchers: Mutex<HashMap<String, watch::Sender<Status>>>,
    feed: broadcast::Sender<Arc<Approval>>,
    /// This process, in notifications to replicas (so it can skip its own).
    origin: String,
    /// True once shutdown began: held requests are let go with a retryable answer (their
    /// approvals stay in the store for the retry, on any replica).
    draining: watch::Sender<bool>,
    /// Held requests let go because of shutdown, undecided: answered `202` with a status
    /// URL, and answered `503 GatewayShuttingDown`. Counted by the pipeline as it answers
    /// them, read once by `serve` for its last line.
    let_go: [std::sync::atomic::AtomicU64; 2],
}

/// What became of the requests held when shutdown began ([`Approvals::let_go`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetGo {
    /// Answered `202` with a status URL (a long-running operation): the client polls on.
    pub accepted: u64,
    /// Answered `503 GatewayShuttingDown` with `Retry-After`: the client retries.
    pub unavailable: u64,
}

/// A held request that may now go to Azure.
#[derive(Debug)]
pub struct Hold {
    /// The approval consumed (or whose grant window let this through).
    pub approval: String,
    pub credential: Option<String>,
    /// For the audit record: how consent was given.
    pub how: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error("no approval '{0}'")]
    NotFound(String),
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the pipeline knows about a request policy holds.
pub struct Request {
    pub principal: Principal,
    pub draft: Approval,
    /// The approval the agent names (`x-portcullis-approval`).
    pub named: Option<String>,
    /// How long this agent is willing to wait (`x-portcullis-wait`), at most the hold.
    pub wait: Duration,
}

fn now() -> String {
    crate::audit_time()
}

fn earlier(d: Duration) -> String {
    (chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn later(d: Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Approvals {
    pub fn new(
        store: Store,
        recorder: Recorder,
        notifier: Notifier,
        config: ApprovalsConfig,
    ) -> Arc<Approvals> {
        let (feed, _) = broadcast::channel(1024);
        Arc::new(Approvals {
            store,
            recorder,
            notifier,
            held: Arc::new(Semaphore::new(config.max_held)),
            config,
            watchers: Mutex::new(HashMap::new()),
            feed,
            origin: uuid::Uuid::new_v4().simple().to_string(),
            draining: watch::Sender::new(false),
            let_go: Default::default(),
        })
    }

    /// Shutdown has begun: every held request answers now, retryably. Returns how many were
    /// held open at that moment.
    pub fn drain(&self) -> usize {
        self.draining.send_replace(true);
        self.config
            .max_held
            .saturating_sub(self.held.available_permits())
    }

    /// Counts a held request let go undecided because of shutdown (`accepted`: as a
    /// long-running operation's `202`; otherwise `503 GatewayShuttingDown`).
    pub fn let_go_at_shutdown(&self, accepted: bool) {
        self.let_go[usize::from(!accepted)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The held requests let go so far because of shutdown.
    pub fn let_go(&self) -> LetGo {
        let n = |i: usize| self.let_go[i].load(std::sync::atomic::Ordering::Relaxed);
        LetGo {
            accepted: n(0),
            unavailable: n(1),
        }
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Marks overdue approvals expired, every few seconds, until `stop`; with PostgreSQL,
    /// also listens for other replicas' changes and wakes this replica's waiters.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let listener = self.clone();
        let mut listener_stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = listener.listen() => {}
                _ = listener_stop.changed() => {}
            }
        });
        let mut stop = stop;
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                match this.store.expire_due(&now()).await {
                    Ok(ids) => {
                        for id in ids {
                            this.changed(&id, "expired", None).await;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "expiring approvals failed"),
                }
                // What every replica has pending, for operators (`approvals_pending`).
                match this.store.pending_approvals(&now()).await {
                    Ok(n) => {
                        crate::metrics::METRICS.approvals_pending.set(n);
                    }
                    Err(e) => tracing::error!(error = %e, "counting pending approvals failed"),
                }
                // A held request is kept only while it may still be forwarded.
                // (A used approval's request goes with its forward; this catches a replica
                // that stopped in between.)
                if let Err(e) = this
                    .store
                    .drop_settled_requests(&earlier(Duration::from_secs(600)))
                    .await
                {
                    tracing::error!(error = %e, "dropping the held requests of settled approvals failed");
                }
            }
        })
    }

    /// Wakes this replica's waiters (and event streams) when another replica changes an
    /// approval. A lost notification only delays a release until the waiter's recheck.
    async fn listen(self: Arc<Self>) {
        loop {
            let mut l = match self.store.approval_listener().await {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for approval changes failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                match l.recv().await {
                    Ok(n) => {
                        let Some((origin, id)) = n.payload().split_once(' ') else {
                            continue;
                        };
                        if origin == self.origin {
                            continue;
                        }
                        if let Ok(Some(a)) = self.store.approval(id).await {
                            if let Some(tx) = self.watchers.lock().expect("never poisoned").get(id)
                            {
                                tx.send_replace(a.status);
                            }
                            let _ = self.feed.send(Arc::new(a));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the approval listener lost its connection");
                        break;
                    }
                }
            }
        }
    }

    /// Changes to approvals, for the admin API's event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Approval>> {
        self.feed.subscribe()
    }

    /// Holds a request policy wants approved: passes it once consent is there, or refuses
    /// it saying why and how to retry.
    pub async fn hold(&self, mut req: Request) -> Result<Hold, HoldError> {
        let store_err = |e: StoreError| HoldError::Store(e.to_string());
        // Before anything is looked up or stored: grants and approvals are found by what
        // was kept, which is stable (the same request keeps to the same text).
        req.draft.keep(self.recorder.keep());
        let p = &req.principal;
        let draft = &req.draft;
        // An open grant window lets the same action on the same scope through.
        if draft.grant_window_secs.is_some()
            && let Some(id) = self
                .store
                .grant(&p.object_id, &draft.action, &draft.scope, &now())
                .await
                .map_err(store_err)?
        {
            return Ok(Hold {
                credential: draft.credential.clone(),
                how: format!("within the grant window of approval {id}"),
                approval: id,
            });
        }
        let existing = match &req.named {
            Some(id) => {
                let a = self.store.approval(id).await.map_err(store_err)?;
                match a {
                    Some(a) if a.principal == p.object_id && a.digest == draft.digest => Some(a),
                    Some(_) => {
                        return Err(HoldError::Named {
                            code: "ApprovalMismatch",
                            message: format!(
                                "approval {id} (x-portcullis-approval) is for another request or principal; send the same request, or none to ask anew"
                            ),
                        });
                    }
                    None => {
                        return Err(HoldError::Named {
                            code: "ApprovalNotFound",
                            message: format!("there is no approval {id} (x-portcullis-approval)"),
                        });
                    }
                }
            }
            None => self
                .store
                .live_approval(&p.object_id, &draft.digest, &now())
                .await
                .map_err(store_err)?,
        };
        let approval = match existing {
            Some(a) => a,
            None => {
                let a = req.draft.clone();
                let limit = self.config.max_pending_per_principal;
                let mut inserted = self
                    .store
                    .insert_approval(&a, limit, &now())
                    .await
                    .map_err(store_err)?;
                // The place is taken but by nothing live: an overdue approval of this request
                // the sweeper has not reached yet. Expire it now and ask again, once. (Not
                // before every insert: that is a second write transaction, a second fsync, for
                // every held request.)
                if inserted == Inserted::Exists
                    && self
                        .store
                        .live_approval(&p.object_id, &draft.digest, &now())
                        .await
                        .map_err(store_err)?
                        .is_none()
                {
                    self.expire_overdue().await;
                    inserted = self
                        .store
                        .insert_approval(&a, limit, &now())
                        .await
                        .map_err(store_err)?;
                }
                match inserted {
                    Inserted::New => {
                        tracing::info!(approval = %a.id, principal = %a.principal, action = %a.action, "request held for approval");
                        self.changed(&a.id, "created", None).await;
                        a
                    }
                    Inserted::Capped { pending } => {
                        tracing::warn!(principal = %a.principal, pending, limit, "a new approval refused: the principal has the most pending approvals allowed");
                        crate::metrics::METRICS.approvals_capped.inc();
                        return Err(HoldError::TooManyPending {
                            pending,
                            limit,
                            retry_after: self.config.retry_after.as_secs().max(1),
                        });
                    }
                    // The same request was held at the same moment: share its approval.
                    Inserted::Exists => self
                        .store
                        .live_approval(&p.object_id, &draft.digest, &now())
                        .await
                        .map_err(store_err)?
                        .ok_or_else(|| {
                            HoldError::Store(
                                "an approval for this request exists but cannot be read".into(),
                            )
                        })?,
                }
            }
        };
        self.settle(approval, &req).await
    }

    /// Waits (at most the agent's wait) for a pending approval, then passes or refuses.
    async fn settle(&self, mut a: Approval, req: &Request) -> Result<Hold, HoldError> {
        let store_err = |e: StoreError| HoldError::Store(e.to_string());
        let mut draining = self.draining.subscribe();
        if a.status == Status::Pending && !*draining.borrow_and_update() {
            // Beyond `max_held`, nobody waits: the agent is told to come back.
            if let Ok(_permit) = self.held.clone().try_acquire_owned() {
                let _gauge = crate::metrics::HeldGuard::enter();
                // Unregistered on drop, also when the agent goes away mid-wait.
                let mut watching = Watching {
                    approvals: self,
                    id: a.id.clone(),
                    rx: self.watch(&a.id),
                };
                let rx = &mut watching.rx;
                let deadline = tokio::time::Instant::now() + req.wait;
                loop {
                    if a.status != Status::Pending || a.expires <= now() {
                        break;
                    }
                    let until_expiry = chrono::DateTime::parse_from_rfc3339(&a.expires)
                        .ok()
                        .and_then(|e| {
                            (e.with_timezone(&chrono::Utc) - chrono::Utc::now())
                                .to_std()
                                .ok()
                        })
                        .unwrap_or_default();
                    let wake = tokio::time::Instant::now() + until_expiry.min(self.config.recheck);
                    tokio::select! {
                        _ = rx.changed() => {}
                        _ = tokio::time::sleep_until(wake.min(deadline)) => {}
                        _ = draining.changed() => {}
                    }
                    match self.store.approval(&a.id).await {
                        Ok(Some(fresh)) => a = fresh,
                        Ok(None) => break,
                        Err(e) => return Err(store_err(e)),
                    }
                    if tokio::time::Instant::now() >= deadline || *draining.borrow() {
                        break;
                    }
                }
            }
        }
        // Past its expiry, an approval that was not used can no longer pass, named or not.
        let expired = matches!(a.status, Status::Pending | Status::Approved) && a.expires <= now();
        if expired {
            self.expire_overdue().await;
            a.status = Status::Expired;
        }
        match a.status {
            Status::Approved => {
                if let Some(hold) = self.redeem(&a).await.map_err(store_err)? {
                    Ok(hold)
                } else {
                    Err(refusal(
                        "ApprovalConsumed",
                        format!(
                            "approval {} was already used by another forward of this request; an approval lets a request through once. Send it again to ask anew.",
                            a.id
                        ),
                        a,
                        None,
                    ))
                }
            }
            Status::Pending if self.is_draining() => Err(refusal(
                "GatewayShuttingDown",
                format!(
                    "This gateway is shutting down. Approval {} stays pending; nothing was sent to Azure. Retry the same request: it waits for the approval again, on whichever gateway answers.",
                    a.id
                ),
                a,
                Some(1),
            )),
            Status::Pending => {
                let left = a.quorum as usize - a.approvals().min(a.quorum as usize);
                Err(refusal(
                    "ApprovalPending",
                    format!(
                        "This request waits for approval {} ({} more approval(s) needed from {}; it expires at {}). Nothing was sent to Azure. Retry the same request (optionally with header x-portcullis-approval: {}) to wait again; once approved it goes through.",
                        a.id,
                        left,
                        a.approvers_shown().join(", "),
                        a.expires,
                        a.id
                    ),
                    a,
                    Some(10),
                ))
            }
            Status::Denied => Err(refusal("ApprovalDenied", denied_message(&a), a, None)),
            Status::Expired => Err(refusal("ApprovalExpired", expired_message(&a), a, None)),
            Status::Consumed => Err(refusal(
                "ApprovalConsumed",
                format!(
                    "approval {} was already used; an approval lets a request through once. Send the request without x-portcullis-approval to ask anew.",
                    a.id
                ),
                a,
                None,
            )),
        }
    }

    /// Uses an approved approval for one forward: `Some` for exactly one caller, on any
    /// replica (a conditional update in the store); `None` when it was used already or
    /// expired meanwhile.
    pub async fn redeem(&self, a: &Approval) -> Result<Option<Hold>, StoreError> {
        let grant_until = a.grant_window_secs.map(|s| later(Duration::from_secs(s)));
        if !self
            .store
            .consume(a, &now(), grant_until.as_deref())
            .await?
        {
            return Ok(None);
        }
        self.changed(&a.id, "consumed", None).await;
        let by: Vec<String> = a
            .votes
            .iter()
            .filter(|v| v.vote == "approve")
            .map(|v| crate::identity::names::with_id(v.voter_name.as_deref(), None, &v.voter))
            .collect();
        Ok(Some(Hold {
            credential: a.credential.clone(),
            how: format!("approved by {} (approval {})", by.join(", "), a.id),
            approval: a.id.clone(),
        }))
    }

    /// Expires what is overdue now, rather than at the sweeper's next pass.
    async fn expire_overdue(&self) {
        match self.store.expire_due(&now()).await {
            Ok(ids) => {
                for id in ids {
                    self.changed(&id, "expired", None).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "expiring approvals failed"),
        }
    }

    /// A vote by `voter`; returns the approval as it now is.
    pub async fn vote(
        &self,
        id: &str,
        voter: &Principal,
        approve: bool,
        comment: Option<String>,
    ) -> Result<Approval, VoteError> {
        let a = self
            .store
            .approval(id)
            .await?
            .ok_or_else(|| VoteError::NotFound(id.to_owned()))?;
        a.may_decide(voter).map_err(VoteError::NotAllowed)?;
        let vote = Vote {
            voter: voter.object_id.clone(),
            voter_name: voter.display_name.clone(),
            vote: if approve { "approve" } else { "deny" }.to_owned(),
            comment: comment.map(|c| c.chars().take(2000).collect()),
            time: now(),
        };
        use super::store::Voted;
        match self.store.vote(id, &vote, a.quorum, &now()).await? {
            Voted::Now(status) => {
                let event = match status {
                    Status::Approved => "approved",
                    Status::Denied => "denied",
                    _ => "voted",
                };
                let note = VoteNote {
                    voter_id: voter.object_id.clone(),
                    voter: voter.describe(),
                    vote,
                };
                if let Some(a) = self.changed(id, event, Some(note)).await {
                    return Ok((*a).clone());
                }
            }
            Voted::Twice => {
                return Err(VoteError::Conflict(format!(
                    "you have already voted on approval {id}"
                )));
            }
            Voted::NotPending(s) => {
                return Err(VoteError::Conflict(format!(
                    "approval {id} is {}, not pending",
                    s.as_str()
                )));
            }
            Voted::NotFound => return Err(VoteError::NotFound(id.to_owned())),
        }
        self.store
            .approval(id)
            .await?
            .ok_or_else(|| VoteError::NotFound(id.to_owned()))
    }

    fn watch(&self, id: &str) -> watch::Receiver<Status> {
        let mut m = self.watchers.lock().expect("never poisoned");
        m.entry(id.to_owned())
            .or_insert_with(|| watch::channel(Status::Pending).0)
            .subscribe()
    }

    /// Forgets an approval's channel once nobody waits on it.
    fn unwatch(&self, id: &str) {
        let mut m = self.watchers.lock().expect("never poisoned");
        if m.get(id).is_some_and(|tx| tx.receiver_count() == 0) {
            m.remove(id);
        }
    }

    /// After a transition: wake the waiters, tell the feed and the webhooks, record it.
    /// Returns the approval as it now is (None if it could not be read).
    async fn changed(
        &self,
        id: &str,
        event: &str,
        vote: Option<VoteNote>,
    ) -> Option<Arc<Approval>> {
        let a = match self.store.approval(id).await {
            Ok(Some(a)) => a,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(approval = id, error = %e, "reading an approval after a change failed");
                return None;
            }
        };
        if let Some(tx) = self.watchers.lock().expect("never poisoned").get(id) {
            tx.send_replace(a.status);
        }
        if let Err(e) = self.store.notify_approval(&self.origin, id).await {
            tracing::warn!(approval = id, error = %e, "other replicas could not be notified; they see the change at their next recheck");
        }
        let a = Arc::new(a);
        let _ = self.feed.send(a.clone());
        if matches!(event, "created" | "approved" | "denied" | "expired") {
            self.notifier.send(event, a.clone());
        }
        // The approval's history is part of the audit trail, in the requester's session.
        let mut r = AuditRecord::new(
            uuid::Uuid::new_v4().to_string(),
            a.session.clone(),
            Phase::Approval,
            a.request.method.clone(),
            format!(
                "{}{}{}",
                a.request.path,
                if a.request.query.is_empty() { "" } else { "?" },
                a.request.query
            ),
        );
        r.approval = Some(a.id.clone());
        r.action = Some(a.action.clone());
        r.scope = Some(a.scope.clone());
        r.rule = a.rule.clone();
        r.decision = Some("approve".into());
        r.principal = Some(match &vote {
            Some(n) => n.voter_id.clone(),
            None => a.principal.clone(),
        });
        if vote.is_none() {
            r.principal_name = a.principal_name.as_deref().map(|n| match a.principal_kind {
                Some(k) => crate::identity::names::labelled(n, k.label()),
                None => n.to_owned(),
            });
        }
        r.reason = Some(match &vote {
            Some(VoteNote { voter, vote: v, .. }) => format!(
                "approval {}: {} voted {}{} (now {})",
                a.id,
                voter,
                v.vote,
                v.comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default(),
                a.status.as_str()
            ),
            None => format!("approval {}: {event}", a.id),
        });
        if let Err(e) = self.recorder.record(r).await {
            tracing::error!(approval = id, error = %e, "an approval event could not be recorded");
        }
        Some(a)
    }
}

/// A waiter's registration; dropping it (the wait ended, or the agent went away)
/// unregisters it.
struct Watching<'a> {
    approvals: &'a Approvals,
    id: String,
    rx: watch::Receiver<Status>,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        // Replace the receiver so the count no longer includes ours.
        let (_, dummy) = watch::channel(Status::Pending);
        drop(std::mem::replace(&mut self.rx, dummy));
        self.approvals.unwatch(&self.id);
    }
}

/// Who voted what, for the audit record of a vote.
struct VoteNote {
    voter_id: String,
    voter: String,
    vote: Vote,
}

/// Why a denied approval does not pass: who denied it, and their comment.
pub fn denied_message(a: &Approval) -> String {
    let denial = a.votes.iter().find(|v| v.vote == "deny");
    let by = denial
        .map(|v| crate::identity::names::with_id(v.voter_name.as_deref(), None, &v.voter))
        .unwrap_or_else(|| "an approver".into());
    let comment = denial
        .and_then(|v| v.comment.clone())
        .unwrap_or_else(|| "no comment".into());
    format!(
        "{by} denied approval {}: {comment}. Nothing was sent to Azure.",
        a.id
    )
}

pub fn expired_message(a: &Approval) -> String {
    format!(
        "approval {} expired at {} without a decision. Nothing was sent to Azure; send the request again to ask anew.",
        a.id, a.expires
    )
}

/// Why a held request does not pass (yet), with its approval.
#[derive(Debug)]
pub struct Refusal {
    /// `ApprovalPending`, `ApprovalDenied`, `ApprovalExpired`, `ApprovalConsumed`, or
    /// `GatewayShuttingDown` (the approval stays pending for a retry elsewhere).
    pub code: &'static str,
    pub message: String,
    pub approval: Approval,
    /// Seconds, for pending approvals.
    pub retry_after: Option<u64>,
}

/// Why holding did not let a request through.
#[derive(Debug)]
pub enum HoldError {
    /// The approval does not let it through (yet).
    Refused(Box<Refusal>),
    /// `x-portcullis-approval` names an approval that does not exist, or is another
    /// request's or principal's.
    Named { code: &'static str, message: String },
    /// The principal has the most pending approvals allowed.
    TooManyPending {
        pending: i64,
        limit: u32,
        retry_after: u64,
    },
    /// The approval store could not be read or written.
    Store(String),
}

pub fn refusal(
    code: &'static str,
    message: String,
    a: Approval,
    retry_after: Option<u64>,
) -> HoldError {
    HoldError::Refused(Box::new(Refusal {
        code,
        message,
        approval: a,
        retry_after,
    }))
}
