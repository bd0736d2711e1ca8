//! Approvals, votes and grant windows in the state store (SQLite or PostgreSQL). Each
//! transition is one conditional statement (`... WHERE status = 'pending'`), and votes
//! take a lock on their approval first, so concurrent deciders or redeemers (on any
//! replica) cannot both succeed.

use super::model::{Approval, Status, Vote};
use crate::audit::store::{Col, Db, Store, StoreError, on};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// What inserting an approval did.
#[derive(Debug, PartialEq)]
pub enum Inserted {
    New,
    /// A live approval of the same request by the same principal exists.
    Exists,
    /// The principal already has this many approvals pending, the most allowed.
    Capped {
        pending: i64,
    },
}

/// What a vote did.
#[derive(Debug, PartialEq)]
pub enum Voted {
    /// Recorded; the approval is now in this state.
    Now(Status),
    /// This voter had already voted.
    Twice,
    /// The approval was no longer pending.
    NotPending(Status),
    NotFound,
}

/// The columns an approval is read from, in this order.
const COLUMNS: &str = "id, status, decided, consumed, body";

type Row = (String, String, Option<String>, Option<String>, String);

/// An approval's `COLUMNS`, from either backend's row.
fn approval_row<'r, R>(r: &'r R) -> Row
where
    R: Col<'r, String> + Col<'r, Option<String>>,
{
    (r.col(0), r.col(1), r.col(2), r.col(3), r.col(4))
}

impl Store {
    /// How a decision locks: SQLite takes the database's write lock at once; PostgreSQL
    /// locks the approval's row (`FOR UPDATE`).
    fn locking(&self) -> (&'static str, &'static str) {
        match self.db {
            Db::Sqlite(_) => ("BEGIN IMMEDIATE", ""),
            Db::Postgres(_) => ("BEGIN", " FOR UPDATE"),
        }
    }

    /// Inserts a new approval unless its principal already has `max_pending` approvals
    /// pending (0: no cap), or a live one for the same principal and request exists (it
    /// was created concurrently: use that one).
    ///
    /// The count and the insert are one transaction under a lock per principal (SQLite's
    /// write lock; a PostgreSQL advisory lock keyed by the principal), so replicas
    /// accepting requests of one agent at the same moment cannot together pass the cap.
    pub async fn insert_approval(
        &self,
        a: &Approval,
        max_pending: u32,
        now: &str,
    ) -> Result<Inserted, StoreError> {
        let mut stored = a.clone();
        stored.votes.clear();
        let body = serde_json::to_string(&stored).map_err(corrupt)?;
        let (begin, _) = self.locking();
        Ok(on!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            if let Db::Postgres(_) = self.db {
                // Held until commit or rollback; other principals are not kept waiting
                // (but for a hash collision, which only serializes two of them).
                sqlx::query("SELECT pg_advisory_xact_lock(7243912, hashtext($1))")
                    .bind(&a.principal)
                    .execute(&mut *tx)
                    .await?;
            }
            let pending: i64 = sqlx::query(
                "SELECT COUNT(*) FROM approvals WHERE principal = $1 AND status = 'pending' AND expires > $2",
            )
            .bind(&a.principal)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .col(0);
            if max_pending > 0 && pending >= i64::from(max_pending) {
                tx.rollback().await?;
                Inserted::Capped { pending }
            } else {
                let done = sqlx::query("INSERT INTO approvals (id, status, principal, digest, created, expires, body) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
                    .bind(&a.id)
                    .bind(a.status.as_str())
                    .bind(&a.principal)
                    .bind(&a.digest)
                    .bind(&a.created)
                    .bind(&a.expires)
                    .bind(&body)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                if done == 1 { Inserted::New } else { Inserted::Exists }
            }
        }))
    }

    /// How many approvals are pending now, in the whole store (every replica's).
    pub async fn pending_approvals(&self, now: &str) -> Result<i64, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query("SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires > $1")
                .bind(now)
                .fetch_one(pool)
                .await?
                .col(0)
        }))
    }

    async fn approval_from(
        &self,
        (id, status, decided, consumed, body): Row,
    ) -> Result<Approval, StoreError> {
        let mut a: Approval = serde_json::from_str(&body).map_err(corrupt)?;
        a.status = Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("approval {id}: status '{status}'")))?;
        a.decided = decided;
        a.consumed = consumed;
        let votes: Vec<String> = on!(self, pool => {
            sqlx::query("SELECT body FROM approval_votes WHERE approval = $1 ORDER BY time")
                .bind(&id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| r.col(0))
                .collect()
        });
        a.votes = votes
            .iter()
            .map(|v| serde_json::from_str::<Vote>(v).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        Ok(a)
    }

    async fn approvals_from(&self, rows: Vec<Row>) -> Result<Vec<Approval>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.approval_from(r).await?);
        }
        Ok(out)
    }

    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let row: Option<Row> = on!(self, pool => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
                .map(|r| approval_row(&r))
        });
        match row {
            Some(r) => self.approval_from(r).await.map(Some),
            None => Ok(None),
        }
    }

    /// Approvals, newest first; `status` None lists all.
    pub async fn approvals(
        &self,
        status: Option<Status>,
        limit: i64,
    ) -> Result<Vec<Approval>, StoreError> {
        self.approvals_before(status, None, limit).await
    }

    /// Approvals (of `status`, or all), newest first, older than `before` (`created`, `id`)
    /// when given: one page of a walk through all of them.
    pub async fn approvals_before(
        &self,
        status: Option<Status>,
        before: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<Approval>, StoreError> {
        let (created, id) = before.unzip();
        let rows: Vec<Row> = on!(self, pool => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) \
                 AND (CAST($2 AS TEXT) IS NULL OR created < $2 OR (created = $2 AND id < $3)) \
                 ORDER BY created DESC, id DESC LIMIT $4"
            ))
            .bind(status.map(Status::as_str))
            .bind(created)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(approval_row)
            .collect()
        });
        self.approvals_from(rows).await
    }

    /// The newest approval of this exact request by this principal that is still in force:
    /// pending or approved (it may pass), or denied (the answer stands), until its expiry.
    pub async fn live_approval(
        &self,
        principal: &str,
        digest: &str,
        now: &str,
    ) -> Result<Option<Approval>, StoreError> {
        let row: Option<Row> = on!(self, pool => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE principal = $1 AND digest = $2 \
                 AND status IN ('pending', 'approved', 'denied') AND expires > $3 ORDER BY created DESC LIMIT 1"
            ))
            .bind(principal)
            .bind(digest)
            .bind(now)
            .fetch_optional(pool)
            .await?
            .map(|r| approval_row(&r))
        });
        match row {
            Some(r) => self.approval_from(r).await.map(Some),
            None => Ok(None),
        }
    }

    /// Records a vote and moves the approval on: one deny denies; `quorum` approvals approve.
    pub async fn vote(
        &self,
        id: &str,
        vote: &Vote,
        quorum: u32,
        now: &str,
    ) -> Result<Voted, StoreError> {
        let (begin, lock) = self.locking();
        let vote_body = serde_json::to_string(vote).map_err(corrupt)?;
        Ok(on!(self, pool => {
            // Lock first, so concurrent voters queue instead of deciding twice.
            let mut tx = pool.begin_with(begin).await?;
            let row: Option<(String, String)> = sqlx::query(&format!(
                "SELECT status, expires FROM approvals WHERE id = $1{lock}"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| (r.col(0), r.col(1)));
            match row {
                None => Voted::NotFound,
                Some((status, _)) if Status::parse(&status) != Some(Status::Pending) => {
                    Voted::NotPending(Status::parse(&status).unwrap_or(Status::Expired))
                }
                Some((_, expires)) if expires.as_str() <= now => Voted::NotPending(Status::Expired),
                Some(_) => {
                    let inserted = sqlx::query(
                        "INSERT INTO approval_votes (approval, voter, vote, time, body) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(&vote.voter)
                    .bind(&vote.vote)
                    .bind(&vote.time)
                    .bind(&vote_body)
                    .execute(&mut *tx)
                    .await?;
                    if inserted.rows_affected() == 0 {
                        Voted::Twice
                    } else {
                        let approvals: i64 = sqlx::query(
                            "SELECT COUNT(*) FROM approval_votes WHERE approval = $1 AND vote = 'approve'",
                        )
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?
                        .col(0);
                        let next = if vote.vote == "deny" {
                            Status::Denied
                        } else if approvals >= i64::from(quorum) {
                            Status::Approved
                        } else {
                            Status::Pending
                        };
                        if next != Status::Pending {
                            sqlx::query("UPDATE approvals SET status = $1, decided = $2 WHERE id = $3 AND status = 'pending'")
                                .bind(next.as_str())
                                .bind(now)
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                        Voted::Now(next)
                    }
                }
            }
        }))
    }

    /// Uses an approved approval for one forward. True for exactly one caller; with a grant
    /// window, the window opens in the same transaction.
    pub async fn consume(
        &self,
        a: &Approval,
        now: &str,
        grant_until: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (begin, _) = self.locking();
        Ok(on!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let done = sqlx::query(
                "UPDATE approvals SET status = 'consumed', consumed = $1 WHERE id = $2 AND status = 'approved' AND expires > $1",
            )
            .bind(now)
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                false
            } else {
                if let Some(until) = grant_until {
                    sqlx::query("INSERT INTO approval_grants (principal, action, scope, until, approval) VALUES ($1, $2, $3, $4, $5)")
                        .bind(&a.principal)
                        .bind(a.action.to_ascii_lowercase())
                        .bind(a.scope.to_ascii_lowercase())
                        .bind(until)
                        .bind(&a.id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                true
            }
        }))
    }

    /// The approval whose grant window lets this principal do this action on this scope now.
    pub async fn grant(
        &self,
        principal: &str,
        action: &str,
        scope: &str,
        now: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query(
                "SELECT approval FROM approval_grants WHERE principal = $1 AND action = $2 AND scope = $3 AND until > $4 ORDER BY until DESC LIMIT 1",
            )
            .bind(principal)
            .bind(action.to_ascii_lowercase())
            .bind(scope.to_ascii_lowercase())
            .bind(now)
            .fetch_optional(pool)
            .await?
            .map(|r| r.col(0))
        }))
    }

    /// Tells the other replicas sharing this store that an approval changed (PostgreSQL
    /// `NOTIFY`; a no-op on SQLite, which one process owns).
    pub async fn notify_approval(&self, origin: &str, id: &str) -> Result<(), StoreError> {
        if let Db::Postgres(pool) = &self.db {
            sqlx::query("SELECT pg_notify('portcullis_approvals', $1)")
                .bind(format!("{origin} {id}"))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// A listener for other replicas' approval changes (PostgreSQL only).
    pub async fn approval_listener(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen("portcullis_approvals").await?;
                Ok(Some(l))
            }
            Db::Sqlite(_) => Ok(None),
        }
    }

    /// Marks approvals past their expiry that were never used (pending, or approved and not
    /// redeemed) as expired; returns their ids.
    pub async fn expire_due(&self, now: &str) -> Result<Vec<String>, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query(
                "UPDATE approvals SET status = 'expired', decided = COALESCE(decided, $1) WHERE status IN ('pending', 'approved') AND expires <= $1 RETURNING id",
            )
            .bind(now)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.col(0))
            .collect()
        }))
    }

    // === approvals as long-running operations ===

    /// Keeps a held request (sealed) for the forward after approval, with who may poll.
    /// False when the approval already has one (the same request, answered 202 again).
    pub async fn insert_operation(
        &self,
        approval: &str,
        tenant: &str,
        principal: &str,
        sealed_request: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let done = on!(self, pool => {
            sqlx::query("INSERT INTO approval_operations (approval, tenant, principal, created, request) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(approval)
                .bind(tenant)
                .bind(principal)
                .bind(now)
                .bind(sealed_request)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    pub async fn operation(&self, approval: &str) -> Result<Option<OperationRow>, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query("SELECT tenant, principal, request IS NOT NULL, claimed, handover FROM approval_operations WHERE approval = $1")
                .bind(approval)
                .fetch_optional(pool)
                .await?
                .map(|r| OperationRow {
                    tenant: r.col(0),
                    principal: r.col(1),
                    has_request: r.col(2),
                    claimed: r.col(3),
                    handover: r.col(4),
                })
        }))
    }

    /// Takes the held request out of the store for its one forward: returns it to exactly
    /// one caller (whoever consumed the approval) and leaves nothing of it behind.
    pub async fn take_request(
        &self,
        approval: &str,
        now: &str,
    ) -> Result<Option<String>, StoreError> {
        let (begin, lock) = self.locking();
        Ok(on!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let sealed: Option<Option<String>> = sqlx::query(&format!(
                "SELECT request FROM approval_operations WHERE approval = $1{lock}"
            ))
            .bind(approval)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.col(0));
            match sealed.flatten() {
                None => None,
                Some(sealed) => {
                    sqlx::query("UPDATE approval_operations SET request = NULL, claimed = $1 WHERE approval = $2")
                        .bind(now)
                        .bind(approval)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Some(sealed)
                }
            }
        }))
    }

    /// Stores how polls continue after the forward (sealed).
    pub async fn set_handover(&self, approval: &str, sealed: &str) -> Result<(), StoreError> {
        on!(self, pool => {
            sqlx::query("UPDATE approval_operations SET handover = $1 WHERE approval = $2")
                .bind(sealed)
                .bind(approval)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Stores a handover unless one is stored already (a failure noted after the fact never
    /// overwrites Azure's answer).
    pub async fn set_handover_once(&self, approval: &str, sealed: &str) -> Result<(), StoreError> {
        on!(self, pool => {
            sqlx::query("UPDATE approval_operations SET handover = $1 WHERE approval = $2 AND handover IS NULL")
                .bind(sealed)
                .bind(approval)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// An approval presented as a long-running operation was used by a retry of the
    /// request itself (held, then released): its polls are answered from `sealed` and its
    /// held request goes. Never over a poll's own forward (claimed) or handover.
    pub async fn operation_used_elsewhere(
        &self,
        approval: &str,
        sealed: &str,
    ) -> Result<(), StoreError> {
        on!(self, pool => {
            sqlx::query("UPDATE approval_operations SET request = NULL, handover = $1 WHERE approval = $2 AND claimed IS NULL AND handover IS NULL")
                .bind(sealed)
                .bind(approval)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Drops the held requests of approvals that can no longer pass by a poll (denied,
    /// expired, or used before `used_before`): a request body is kept only while it may
    /// still be forwarded. Returns how many.
    pub async fn drop_settled_requests(&self, used_before: &str) -> Result<u64, StoreError> {
        Ok(on!(self, pool => {
            sqlx::query(
                "UPDATE approval_operations SET request = NULL WHERE request IS NOT NULL AND approval IN \
                 (SELECT id FROM approvals WHERE status IN ('denied', 'expired') OR (status = 'consumed' AND consumed < $1))",
            )
            .bind(used_before)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}

/// An approval presented as a long-running operation, as stored.
#[derive(Debug, Clone)]
pub struct OperationRow {
    /// The requester: only they may poll.
    pub tenant: String,
    pub principal: String,
    /// Whether the held request is still kept (not yet forwarded, nor dropped).
    pub has_request: bool,
    /// When a replica took the request to forward it.
    pub claimed: Option<String>,
    /// Sealed [`super::lro::Handover`], once forwarded.
    pub handover: Option<String>,
}
