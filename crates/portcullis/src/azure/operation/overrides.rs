//! The operations whose RBAC name is not what the generic ARM rule gives, or which are
//! pinned because they hand out secrets.

use super::{At, Verb, is};

/// An operation whose RBAC name is not what the generic rule gives (or which the generic
/// rule refuses), or one pinned here because it hands out secrets and must not move if the
/// generic rule changes.
pub(super) struct Override {
    method: Verb,
    /// Where the block must sit; `None` for anywhere.
    at: Option<At>,
    /// `{Namespace}/{segments after it}`, `*` for any single name segment; matched
    /// case-insensitively against the block after the last `providers`.
    pub(super) pattern: &'static str,
    pub(super) action: &'static str,
    /// Why this entry exists, with its source: for the next reader of the table (a test
    /// checks every entry has one).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) why: &'static str,
}

/// Sources: the resource provider operations list
/// (learn.microsoft.com/azure/role-based-access-control/resource-provider-operations) unless
/// an entry says otherwise.
pub(super) static OVERRIDES: &[Override] = &[
    Override {
        method: Verb::Post,
        at: Some(At::Tenant),
        pattern: "Microsoft.ResourceGraph/resources",
        action: "Microsoft.ResourceGraph/resources/read",
        why: "a Resource Graph query is a POST that reads; RBAC lists it as resources/read \
              (azure-notes §4: tenant-wide, the pipeline restricts it)",
    },
    Override {
        method: Verb::Post,
        at: Some(At::Subscription),
        pattern: "Microsoft.Storage/checkNameAvailability",
        action: "Microsoft.Storage/checknameavailability/read",
        why: "POST that reads; RBAC: Microsoft.Storage/checknameavailability/read",
    },
    Override {
        method: Verb::Post,
        at: Some(At::Subscription),
        pattern: "Microsoft.KeyVault/checkNameAvailability",
        action: "Microsoft.KeyVault/checkNameAvailability/read",
        why: "POST that reads; RBAC: Microsoft.KeyVault/checkNameAvailability/read",
    },
    Override {
        method: Verb::Post,
        at: Some(At::Subscription),
        pattern: "Microsoft.Web/checknameavailability",
        action: "Microsoft.Web/checknameavailability/read",
        why: "POST that reads; RBAC: microsoft.web/checknameavailability/read",
    },
    Override {
        method: Verb::Post,
        at: None,
        pattern: "Microsoft.Web/sites/*/config/appsettings/list",
        action: "Microsoft.Web/sites/config/list/action",
        why: "returns app settings (secrets); azure-notes §3 names it config/list/action",
    },
    Override {
        method: Verb::Post,
        at: None,
        pattern: "Microsoft.Web/sites/*/config/connectionstrings/list",
        action: "Microsoft.Web/sites/config/list/action",
        why: "returns connection strings (secrets); same RBAC operation as appsettings/list",
    },
    Override {
        method: Verb::Post,
        at: None,
        pattern: "Microsoft.Web/sites/*/config/publishingcredentials/list",
        action: "Microsoft.Web/sites/config/list/action",
        why: "returns deployment credentials (secrets); same RBAC operation as appsettings/list",
    },
    Override {
        method: Verb::Post,
        at: None,
        pattern: "Microsoft.Web/sites/*/slots/*/config/appsettings/list",
        action: "Microsoft.Web/sites/slots/config/list/action",
        why: "a deployment slot's app settings (secrets); RBAC: sites/slots/config/list/action",
    },
];

pub(super) fn find_override(
    verb: Verb,
    at: At,
    ns: &str,
    tail: &[&str],
) -> Option<&'static Override> {
    OVERRIDES.iter().find(|o| {
        if o.method != verb || o.at.is_some_and(|a| a != at) {
            return false;
        }
        let mut pattern = o.pattern.split('/');
        let ns_matches = pattern.next().is_some_and(|p| is(ns, p));
        let rest: Vec<&str> = pattern.collect();
        ns_matches
            && rest.len() == tail.len()
            && rest.iter().zip(tail).all(|(p, s)| *p == "*" || is(s, p))
    })
}
