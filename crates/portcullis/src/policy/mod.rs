//! Policy: which principal may perform which Azure operation where. Rules allow or deny;
//! deny wins; nothing matching means deny. Every decision names its rule and says why.

mod rule;

pub use rule::{
    ActionPattern, Decision, Effect, Policy, PrincipalMatcher, Rule, ScopePattern, scope_display,
};
