//! The names an approval is shown with: the requester's (the token's, else the directory's)
//! and each approver matcher's (the policy's alias, else the directory's group name), each
//! with its id. Looked up once, when the approval is drafted, so every later reader (the
//! console, the admin API, webhooks, refusal messages) shows the same names without asking
//! Graph again. Never read to decide: `Approval::may_decide` uses the matchers.

use futures_util::future::join_all;

use super::Approval;
use crate::identity::directory::Directory;
use crate::identity::principal::Principal;
use crate::policy::{Aliases, PrincipalMatcher};

/// Fills `draft`'s requester name (when the token had none) and its approvers' names.
/// Bounded: every lookup together waits at most `directory::LOOKUP_BOUND` (they run at once).
pub async fn name(
    directory: &Directory,
    aliases: &Aliases,
    principal: &Principal,
    matchers: &[PrincipalMatcher],
    draft: &mut Approval,
) {
    draft.principal_kind = Some(principal.kind);
    let requester = directory.principal_name(principal);
    let approvers = join_all(matchers.iter().map(|m| shown(directory, aliases, m)));
    let (requester, approvers) = tokio::join!(requester, approvers);
    draft.principal_name = requester;
    draft.approver_names = approvers;
}

/// One matcher for people: by the policy's alias, else (groups) the directory's name.
pub async fn shown(directory: &Directory, aliases: &Aliases, m: &PrincipalMatcher) -> String {
    if let Some(alias) = aliases.name_of(m) {
        return m.shown(Some(alias));
    }
    let found = match m {
        PrincipalMatcher::Group(g) => directory.group(g).await.map(|d| d.name),
        _ => None,
    };
    m.shown(found.as_deref())
}
