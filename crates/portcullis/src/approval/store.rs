//! Approvals, votes and grant windows in the state database. Each transition is one
//! conditional statement (`... WHERE status = 'pending'`), so concurrent deciders or
//! redeemers cannot both succeed.

use sqlx::Row;

use super::model::{Approval, Status, Vote};
use crate::audit::store::{Store, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
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

impl Store {
    /// Inserts a new approval; false when a live one for the same principal and request
    /// already exists (it was created concurrently: use that one).
    pub async fn insert_approval(&self, a: &Approval) -> Result<bool, StoreError> {
        let mut stored = a.clone();
        stored.votes.clear();
        let done = sqlx::query("INSERT INTO approvals (id, status, principal, digest, created, expires, body) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(&a.id)
            .bind(a.status.as_str())
            .bind(&a.principal)
            .bind(&a.digest)
            .bind(&a.created)
            .bind(&a.expires)
            .bind(serde_json::to_string(&stored).map_err(corrupt)?)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn approval_from(&self, row: &sqlx::sqlite::SqliteRow) -> Result<Approval, StoreError> {
        let text: String = row.get("body");
        let mut a: Approval = serde_json::from_str(&text).map_err(corrupt)?;
        let status: String = row.get("status");
        a.status = Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("approval status '{status}'")))?;
        a.decided = row.get("decided");
        a.consumed = row.get("consumed");
        let votes = sqlx::query("SELECT body FROM approval_votes WHERE approval = ? ORDER BY time")
            .bind(&a.id)
            .fetch_all(self.pool())
            .await?;
        a.votes = votes
            .iter()
            .map(|r| serde_json::from_str::<Vote>(&r.get::<String, _>(0)).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        Ok(a)
    }

    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query("SELECT * FROM approvals WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok(Some(self.approval_from(&r).await?)),
            None => Ok(None),
        }
    }

    /// Approvals, newest first; `status` None lists all.
    pub async fn approvals(
        &self,
        status: Option<Status>,
        limit: i64,
    ) -> Result<Vec<Approval>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM approvals WHERE (?1 IS NULL OR status = ?1) ORDER BY created DESC LIMIT ?2",
        )
        .bind(status.map(Status::as_str))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.approval_from(r).await?);
        }
        Ok(out)
    }

    /// The newest approval of this exact request by this principal that is still in force:
    /// pending or approved (it may pass), or denied (the answer stands), until its expiry.
    pub async fn live_approval(
        &self,
        principal: &str,
        digest: &str,
        now: &str,
    ) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM approvals WHERE principal = ? AND digest = ? \
             AND status IN ('pending', 'approved', 'denied') AND expires > ? ORDER BY created DESC LIMIT 1",
        )
        .bind(principal)
        .bind(digest)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => Ok(Some(self.approval_from(&r).await?)),
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
        // Take the write lock first, so concurrent voters queue instead of deadlocking.
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT status, expires FROM approvals WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(Voted::NotFound);
        };
        let status = Status::parse(&row.get::<String, _>(0)).unwrap_or(Status::Expired);
        let expires: String = row.get(1);
        if status != Status::Pending {
            return Ok(Voted::NotPending(status));
        }
        if expires.as_str() <= now {
            return Ok(Voted::NotPending(Status::Expired));
        }
        let inserted = sqlx::query(
            "INSERT OR IGNORE INTO approval_votes (approval, voter, vote, time, body) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&vote.voter)
        .bind(&vote.vote)
        .bind(&vote.time)
        .bind(serde_json::to_string(vote).map_err(corrupt)?)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Voted::Twice);
        }
        let approvals: i64 = sqlx::query(
            "SELECT COUNT(*) FROM approval_votes WHERE approval = ? AND vote = 'approve'",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let next = if vote.vote == "deny" {
            Status::Denied
        } else if approvals >= i64::from(quorum) {
            Status::Approved
        } else {
            Status::Pending
        };
        if next != Status::Pending {
            sqlx::query(
                "UPDATE approvals SET status = ?, decided = ? WHERE id = ? AND status = 'pending'",
            )
            .bind(next.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Voted::Now(next))
    }

    /// Uses an approved approval for one forward. True for exactly one caller; with a grant
    /// window, the window opens in the same transaction.
    pub async fn consume(
        &self,
        a: &Approval,
        now: &str,
        grant_until: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE approvals SET status = 'consumed', consumed = ?1 WHERE id = ?2 AND status = 'approved' AND expires > ?1",
        )
        .bind(now)
        .bind(&a.id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(until) = grant_until {
            sqlx::query("INSERT INTO approval_grants (principal, action, scope, until, approval) VALUES (?, ?, ?, ?, ?)")
                .bind(&a.principal)
                .bind(a.action.to_ascii_lowercase())
                .bind(a.scope.to_ascii_lowercase())
                .bind(until)
                .bind(&a.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The approval whose grant window lets this principal do this action on this scope now.
    pub async fn grant(
        &self,
        principal: &str,
        action: &str,
        scope: &str,
        now: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query(
            "SELECT approval FROM approval_grants WHERE principal = ? AND action = ? AND scope = ? AND until > ? ORDER BY until DESC LIMIT 1",
        )
        .bind(principal)
        .bind(action.to_ascii_lowercase())
        .bind(scope.to_ascii_lowercase())
        .bind(now)
        .fetch_optional(self.pool())
        .await?
        .map(|r| r.get(0)))
    }

    /// Marks approvals past their expiry that were never used (pending, or approved and not
    /// redeemed) as expired; returns their ids.
    pub async fn expire_due(&self, now: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "UPDATE approvals SET status = 'expired', decided = COALESCE(decided, ?1) WHERE status IN ('pending', 'approved') AND expires <= ?1 RETURNING id",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
