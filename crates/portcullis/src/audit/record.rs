//! One audit record. Bodies in it are masked before they get here (the store never holds a
//! clear secret) and capped; a digest covers the whole body.

use serde::{Deserialize, Serialize};

/// What part of an exchange a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// About to be forwarded: committed before anything reaches Azure.
    Request,
    /// Azure's answer, as the agent got it (masked).
    Response,
    /// Refused by the gateway (unauthenticated, malformed, denied, held).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub request_id: String,
    /// What a reviewer replays: the agent's `x-portcullis-session`, or else its principal and
    /// token (one token, one session).
    pub session: String,
    pub phase: Phase,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub scope: Option<String>,
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub method: String,
    /// Path and query as forwarded (the binding parameter removed).
    pub url: String,
    pub status: Option<u16>,
    /// Masked, capped.
    pub body: Option<String>,
    /// SHA-256 of the whole body as the gateway saw it (masked form).
    pub body_digest: Option<String>,
    pub latency_ms: Option<u64>,
}
