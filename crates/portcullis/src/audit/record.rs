//! One audit record. Bodies in it are masked before they get here (the store never holds a
//! clear secret) and capped; a digest covers the whole body. Headers that carry credentials
//! are redacted. Every text field an agent could have written passes [`Keep`] on its way
//! to the store.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What part of an exchange a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// About to be forwarded: committed before anything reaches Azure.
    Request,
    /// Azure's answer, as the agent got it (masked): committed before the answer completes.
    Response,
    /// Refused by the gateway (unauthenticated, malformed, denied, an approval denied or
    /// expired).
    Refused,
    /// Held for approval and not decided within the hold: answered `202` with a status URL
    /// (a long-running operation) or refused `ApprovalPending` / `GatewayShuttingDown`.
    /// Nothing was sent to Azure, and the approval stays pending. Records written before
    /// this phase existed say `refused` (see [`AuditRecord::outcome`]).
    Held,
    /// Something happened to an approval: created, a vote, approved, denied, expired, used.
    Approval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub request_id: String,
    /// What a reviewer replays: the agent's `x-portcullis-session`, or else its token and an
    /// idle gap (one token's requests, with no long pause between them, form one session).
    pub session: String,
    pub phase: Phase,
    pub principal: Option<String>,
    /// For people reading the trail: the principal's name and kind as its token gave them
    /// ("build-agent (app)"), when it did. Never used to decide or to find records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_name: Option<String>,
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
    /// Total time in the gateway, until the record was written.
    pub latency_ms: Option<u64>,
    /// The request's headers (on request and refused records) or the answer's (on response
    /// records), with credentials redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The whole body's size in bytes (the stored body may be cut at the cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// Time until Azure's answer headers arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    /// Secret kinds the deciding rule let through to the agent unmasked (`unmask:`). The
    /// record itself still holds them masked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmasked: Vec<String>,
    /// The approval this record is about, or that let the request through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// A batch's inner requests, each named and judged as if sent alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner: Vec<crate::azure::batch::InnerSummary>,
}

/// What became of a request, as sessions, replay and the console count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to Azure; `after_approval` when an approval let it through.
    Allowed { after_approval: bool },
    /// Held for approval, not (yet) decided.
    Held,
    /// Refused by the gateway.
    Refused,
}

/// How the gateway's messages began for a held request before [`Phase::Held`] existed
/// (`ApprovalPending`, `GatewayShuttingDown`; pipeline/error.rs prefixes `Portcullis: `).
/// The store's session summary matches the same texts (audit/store.rs, `HELD`).
pub const LEGACY_HELD_REASONS: [&str; 2] = [
    "Portcullis: This request waits for approval",
    "Portcullis: This gateway is shutting down.",
];

impl AuditRecord {
    /// What this record says became of its request: `None` for answers and approval
    /// events. Records are hashed as written, so records from before [`Phase::Held`] are
    /// read here: a refusal decided `approve` that was answered `201`/`202` as a
    /// long-running operation, or with the `ApprovalPending`/`GatewayShuttingDown` text,
    /// was a held request.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.phase {
            Phase::Request => Some(Outcome::Allowed {
                after_approval: self.decision.as_deref() == Some("approve"),
            }),
            Phase::Held => Some(Outcome::Held),
            Phase::Refused if self.legacy_held() => Some(Outcome::Held),
            Phase::Refused => Some(Outcome::Refused),
            Phase::Response | Phase::Approval => None,
        }
    }

    fn legacy_held(&self) -> bool {
        self.decision.as_deref() == Some("approve")
            && (matches!(self.status, Some(201 | 202))
                || self.reason.as_deref().is_some_and(|r| {
                    LEGACY_HELD_REASONS
                        .iter()
                        .any(|p| r.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
                }))
    }
}

/// A session's requests counted by outcome. Held records count once per approval (an
/// agent retrying while it waits is still one held request); a request held and then let
/// through counts both ways, as it happened: once held, once allowed after approval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub requests: i64,
    pub allowed: i64,
    /// Approvals (distinct) that let a forwarded request through.
    pub after_approval: i64,
    pub held: i64,
    pub refused: i64,
}

impl Tally {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Tally {
        use std::collections::BTreeSet;
        let mut t = Tally::default();
        let (mut held, mut forwarded) = (BTreeSet::new(), BTreeSet::new());
        for r in records {
            match r.outcome() {
                Some(Outcome::Allowed { after_approval }) => {
                    t.allowed += 1;
                    if after_approval && let Some(a) = &r.approval {
                        forwarded.insert(a.as_str());
                    }
                }
                Some(Outcome::Held) => {
                    if let Some(a) = &r.approval {
                        held.insert(a.as_str());
                    }
                }
                Some(Outcome::Refused) => t.refused += 1,
                None => {}
            }
        }
        t.after_approval = forwarded.len() as i64;
        t.held = held.len() as i64;
        t.requests = t.allowed + t.held + t.refused;
        t
    }

    /// `N requests: A allowed (B after approval), H held, R refused`.
    pub fn line(&self) -> String {
        format!(
            "{} requests: {} allowed ({} after approval), {} held, {} refused",
            self.requests, self.allowed, self.after_approval, self.held, self.refused
        )
    }
}

impl AuditRecord {
    /// A record with only the fields every record has.
    pub fn new(
        request_id: String,
        session: String,
        phase: Phase,
        method: String,
        url: String,
    ) -> AuditRecord {
        AuditRecord {
            time: crate::audit_time(),
            request_id,
            session,
            phase,
            principal: None,
            principal_name: None,
            action: None,
            scope: None,
            decision: None,
            rule: None,
            reason: None,
            method,
            url,
            status: None,
            body: None,
            body_digest: None,
            latency_ms: None,
            headers: Vec::new(),
            body_bytes: None,
            upstream_ms: None,
            unmasked: Vec::new(),
            approval: None,
            inner: Vec::new(),
        }
    }
}

/// What the gateway keeps of text an agent wrote: its secret-shaped parts masked (issue 19,
/// finding 7: a `Password=` in a path, a session id or a reason was stored in clear). The
/// server builds it from the masker (every detector, placeholders tagged for keeping, never
/// like anything an agent is shown); the recorder applies it to every record it commits and
/// approvals to every request they hold, so no caller has to remember.
#[derive(Clone, Default)]
pub struct Keep(Option<Arc<MaskText>>);

/// Masks a text, answering `None` when there is nothing to mask.
type MaskText = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Keep {
    /// `mask` answers the masked text, or `None` when there is nothing to mask.
    pub fn new(mask: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Keep {
        Keep(Some(Arc::new(mask)))
    }

    pub fn text(&self, text: &mut String) {
        if let Some(mask) = &self.0
            && let Some(masked) = mask(text)
        {
            *text = masked;
        }
    }

    pub fn opt(&self, text: &mut Option<String>) {
        if let Some(t) = text {
            self.text(t);
        }
    }

    /// A batch's inner requests as kept: paths, scopes and names are the agent's.
    pub fn inner(&self, inner: &mut [crate::azure::batch::InnerSummary]) {
        for i in inner {
            for t in [
                &mut i.name,
                &mut i.method,
                &mut i.path,
                &mut i.action,
                &mut i.scope,
            ] {
                self.text(t);
            }
        }
    }
}

impl AuditRecord {
    /// Masks what the agent could have written into this record: the session id (its
    /// header), the URL, the action and scope (named from its path), the reason (refusals
    /// echo paths and names), headers and batch summaries. The body is masked by whoever
    /// captured it (its digest covers the masked form), so it is left alone here.
    pub fn keep(&mut self, keep: &Keep) {
        for t in [&mut self.session, &mut self.method, &mut self.url] {
            keep.text(t);
        }
        for t in [
            &mut self.principal,
            &mut self.principal_name,
            &mut self.action,
            &mut self.scope,
            &mut self.decision,
            &mut self.rule,
            &mut self.reason,
            &mut self.approval,
        ] {
            keep.opt(t);
        }
        for (_, v) in &mut self.headers {
            keep.text(v);
        }
        for u in &mut self.unmasked {
            keep.text(u);
        }
        keep.inner(&mut self.inner);
    }
}

/// Headers whose values are credentials, whatever their content.
const REDACTED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-ms-authorization-auxiliary",
    "x-ms-copy-source-authorization",
    "ocp-apim-subscription-key",
    "x-functions-key",
    "x-api-key",
];

/// A header as the audit store may hold it: the value of a credential header is replaced by
/// `[redacted]`; names that look like they carry one (`*token*`, `*secret*`, `*key*`,
/// `*signature*`) are redacted too.
pub fn redact_header(name: &str, value: &[u8]) -> String {
    let n = name.to_ascii_lowercase();
    let credential = REDACTED.contains(&n.as_str())
        || ["token", "secret", "key", "signature", "password", "auth"]
            .iter()
            .any(|w| n.contains(w));
    if credential {
        "[redacted]".to_owned()
    } else {
        String::from_utf8_lossy(value).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_an_agent_writes_is_kept_masked() {
        let keep = Keep::new(|t: &str| {
            t.contains("hunter2")
                .then(|| t.replace("hunter2", "[masked]"))
        });
        let mut r = AuditRecord::new(
            "r".into(),
            "Password=hunter2".into(),
            Phase::Refused,
            "GET".into(),
            "/x/Password=hunter2".into(),
        );
        r.scope = Some("/x/Password=hunter2".into());
        r.reason = Some("no rule allows read on /x/Password=hunter2".into());
        r.action = Some("Microsoft.X/Password=hunter2/read".into());
        r.headers = vec![("x-note".into(), "Password=hunter2".into())];
        r.keep(&keep);
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(r.session, "Password=[masked]");
    }

    #[test]
    fn credential_headers_are_redacted() {
        assert_eq!(redact_header("Authorization", b"Bearer eyJ"), "[redacted]");
        assert_eq!(redact_header("cookie", b"a=b"), "[redacted]");
        assert_eq!(
            redact_header("x-ms-authorization-auxiliary", b"Bearer x"),
            "[redacted]"
        );
        assert_eq!(redact_header("x-custom-token", b"abc"), "[redacted]");
        assert_eq!(
            redact_header("content-type", b"application/json"),
            "application/json"
        );
        assert_eq!(redact_header("x-ms-client-request-id", b"1"), "1");
    }
}
