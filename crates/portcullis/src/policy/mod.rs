//! Policy: which principal may perform which Azure operation where, and under what
//! condition. Rules allow, hold for approval, or deny; deny wins over approve over allow;
//! nothing matching means deny. Every decision names its rule and says why.

mod aliases;
pub mod bundle;
pub mod condition;
pub mod explain;
mod index;
mod matcher;
mod rule;

pub use aliases::Aliases;
pub use matcher::PrincipalMatcher;
pub use rule::{
    ActionPattern, ApprovalSpec, DEFAULT_MAX_BODY, Decision, Effect, Mode, Near, Policy,
    ReasonParts, Rule, ScopePattern, Style, scope_display, split_reason,
};
