//! Policy: which principal may perform which Azure operation where, and under what
//! condition. Rules allow, hold for approval, or deny; deny wins over approve over allow;
//! nothing matching means deny. Every decision names its rule and says why.

pub mod bundle;
pub mod condition;
mod index;
mod rule;

pub use rule::{
    ActionPattern, ApprovalSpec, DEFAULT_MAX_BODY, Decision, Effect, Mode, Near, Policy,
    PrincipalMatcher, Rule, ScopePattern, scope_display,
};
