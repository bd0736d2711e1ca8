//! An approval as stored and as approvers see it.

use serde::{Deserialize, Serialize};

use crate::identity::names;
use crate::identity::principal::{Principal, PrincipalKind};
use crate::policy::PrincipalMatcher;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for votes.
    Pending,
    /// Enough approvers said yes; not yet used.
    Approved,
    /// Someone allowed to decide said no.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Approved and used by one forward.
    Consumed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            "expired" => Status::Expired,
            "consumed" => Status::Consumed,
            _ => return None,
        })
    }
}

/// The request as the approver sees it: no credential, secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// Masked and whole; `None` when there is none. A body that cannot be shown whole is
    /// never held (the pipeline refuses it).
    pub body: Option<String>,
    /// The settings in the body an approver should look at first (`approval/highlights.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub highlights: Vec<super::highlights::Highlight>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub voter: String,
    pub voter_name: Option<String>,
    /// `approve` or `deny`.
    pub vote: String,
    pub comment: Option<String>,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub status: Status,
    /// The requester's object id, app (client) id and name.
    pub principal: String,
    pub principal_app: Option<String>,
    /// For people: the token's name, or the directory's (`identity/directory.rs`), cleaned.
    pub principal_name: Option<String>,
    /// What kind of principal asked (absent in approvals stored before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<PrincipalKind>,
    pub action: String,
    pub scope: String,
    /// The rule that asked for approval, and its reason.
    pub rule: Option<String>,
    pub rule_reason: String,
    pub request: HeldRequest,
    /// SHA-256 of the exact request (method, path, query, body and the headers that change
    /// its meaning): a retry redeems this approval only if it is the same request.
    pub digest: String,
    /// What the agent said it is for (`x-portcullis-reason`).
    pub reason: Option<String>,
    /// Who may decide, as resolved matchers (`group:<id>`, `role:<name>`...).
    pub approvers: Vec<String>,
    /// The same, for people: each by the policy's alias or the directory's name, with its id
    /// ("approvers (group, a56b…)"), in the order of `approvers`. Never read to decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approver_names: Vec<String>,
    pub quorum: u32,
    /// The upstream credential an approved forward uses.
    pub credential: Option<String>,
    /// With a grant window, the approval lets the same action on the same scope through
    /// for this long, instead of once.
    pub grant_window_secs: Option<u64>,
    pub session: String,
    pub created: String,
    pub expires: String,
    pub decided: Option<String>,
    pub consumed: Option<String>,
    #[serde(default)]
    pub votes: Vec<Vote>,
    /// For a batch: every inner request, and what policy said of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner: Vec<crate::azure::batch::InnerSummary>,
}

impl Approval {
    /// Masks what the agent wrote into the held request (path, query, headers, reason,
    /// session, and the scope, action and batch summaries named from its paths) before it
    /// is stored or shown; see `audit::record::Keep`.
    pub fn keep(&mut self, keep: &crate::audit::record::Keep) {
        for t in [
            &mut self.action,
            &mut self.scope,
            &mut self.rule_reason,
            &mut self.session,
            &mut self.request.method,
            &mut self.request.path,
            &mut self.request.query,
        ] {
            keep.text(t);
        }
        for t in [&mut self.principal_name, &mut self.reason] {
            keep.opt(t);
        }
        for (_, v) in &mut self.request.headers {
            keep.text(v);
        }
        keep.inner(&mut self.inner);
    }

    /// Whether `p` is among those who may decide: an approver, not the requester, and not
    /// another principal of the requester's application.
    pub fn may_decide(&self, p: &Principal) -> Result<(), &'static str> {
        if p.object_id == self.principal {
            return Err("the requester cannot approve its own request");
        }
        // Another principal of the same application (a user signed in through the agent's
        // app, another instance of it) is the requester by another name. Strict on purpose:
        // approvers sign in with their own client.
        if let (Some(a), Some(b)) = (&self.principal_app, &p.app_id)
            && a == b
        {
            return Err(
                "a principal of the requester's own application cannot approve its request",
            );
        }
        if !self.matchers().iter().any(|m| m.matches(p)) {
            return Err("not among this request's approvers");
        }
        Ok(())
    }

    pub fn matchers(&self) -> Vec<PrincipalMatcher> {
        self.approvers
            .iter()
            .filter_map(|s| PrincipalMatcher::parse(&Default::default(), s).ok())
            .collect()
    }

    /// The requester for people: "build-agent (app, 93eb…)", or the id with "(name
    /// unavailable)".
    pub fn requester(&self) -> String {
        names::with_id(
            self.principal_name.as_deref(),
            self.principal_kind.map(PrincipalKind::label),
            &self.principal,
        )
    }

    /// Who may decide, for people: the names kept with the approval, or (for one stored
    /// before names were kept) the matchers themselves.
    pub fn approvers_shown(&self) -> Vec<String> {
        if self.approver_names.len() == self.approvers.len() {
            self.approver_names.clone()
        } else {
            self.approvers.clone()
        }
    }

    pub fn approvals(&self) -> usize {
        self.votes.iter().filter(|v| v.vote == "approve").count()
    }

    /// The operation in words: "delete virtual machine vm1 in demo-rg" reads better than the
    /// action, but the action is exact; both are shown.
    pub fn summary(&self) -> String {
        format!("{} {} on {}", self.request.method, self.action, self.scope)
    }
}

/// A matcher as stored in an approval: resolved ids, parseable again (policy prints it).
pub fn matcher_text(m: &PrincipalMatcher) -> String {
    m.to_string()
}
