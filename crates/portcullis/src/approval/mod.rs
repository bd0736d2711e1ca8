//! Just-in-time approval: a request policy holds (`effect: approve`) waits for enough of the
//! people allowed to consent, and reaches Azure at most once for that consent.
//!
//! - `model.rs`: an approval as stored and shown (the request as approvers see it, masked),
//!   its votes, and who may decide it.
//! - `store.rs`: approvals, votes and grant windows in the state database; every
//!   transition is a conditional update, so two deciders or two redeemers never both win.
//! - `service.rs`: holding (waiting for a decision with bounded memory), voting, redeeming,
//!   expiry, and the change feed the admin API streams.
//! - `notify.rs`: webhooks (signed JSON, Slack, Teams), retried, never blocking.
//! - `highlights.rs`: the settings in a held write an approver should see first.
//! - `names.rs`: the requester's and the approvers' names, from the token, the policy's
//!   aliases and the directory, kept with the approval for people to read.
//! - `lro.rs`: a pending approval presented as a long-running operation (which operations
//!   Azure clients poll, the held request and handover sealed at rest).

pub mod highlights;
pub mod lro;
pub mod model;
pub mod names;
pub mod notify;
pub mod service;
pub mod store;

pub use model::{Approval, HeldRequest, Status, Vote};
pub use service::{Approvals, Hold, VoteError};
