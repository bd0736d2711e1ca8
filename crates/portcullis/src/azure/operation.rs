//! Naming an Azure request as the RBAC operation it is.
//!
//! Policy is decided on this name, so the naming is exact, case-insensitive and refuses rather
//! than guesses: a request whose shape is not known here gets a [`NamingError`], never a
//! best-effort name that a rule might wrongly allow.
//!
//! Follows azure-notes §3 ("Naming an ARM request as an RBAC operation") and §4 (the batch,
//! deployment, Resource Graph and long-running-operation forms), which summarise:
//! - <https://learn.microsoft.com/azure/role-based-access-control/resource-provider-operations>
//!   (the operation strings and their casing),
//! - <https://learn.microsoft.com/azure/azure-resource-manager/management/extension-resource-types>
//!   (`{scope}/providers/{Namespace}/{type}/{name}` extension resources),
//! - <https://learn.microsoft.com/azure/key-vault/general/rbac-guide> (Key Vault data actions).
//!
//! Casing: Azure matches namespaces, types and operations case-insensitively, and so must
//! policy ([`Operation::action_lower`] is the form to match on). The action is still rendered
//! readably for audit and explain: the keywords this module knows (`subscriptions`,
//! `resourceGroups`, `read`, `getSecret/action`, ...) in their documented casing, well-known
//! namespaces and types from [`CANONICAL_TYPES`], anything else as the client spelled it.
//! Namespaces, types and POST action segments must be plain ASCII tokens, so that no Unicode
//! case folding (a Kelvin sign `K` lowering to `k`) can make two spellings compare differently
//! here and in policy, and no `*` can reach a pattern matcher.
//!
//! Here: the types, the entry points and the ARM path walk. Beside it: the Key Vault data
//! plane (`keyvault`), the table of deviating operations (`overrides`), canonical casing
//! (`casing`).

mod casing;
mod keyvault;
mod overrides;

use http::Method;
use serde::Serialize;

pub use casing::CANONICAL_TYPES;
use casing::canonical_type;
use keyvault::keyvault;
use overrides::find_override;

// === public types ===

/// Which RBAC permission list an operation is checked against: `Actions` (control) or
/// `DataActions` (data). `*` in `Actions` does not grant data actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    Control,
    Data,
}

impl Plane {
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Control => "control",
            Plane::Data => "data",
        }
    }
}

/// Where an operation applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// The ARM id RBAC evaluates the operation at, in canonical form:
    /// `/subscriptions/{s}/resourceGroups/{rg}/providers/{Ns}/{type}/{name}...` with canonical
    /// keywords (`subscriptions`, `resourceGroups`, `providers`) and every other segment as the
    /// client sent it. For a list (`GET .../virtualMachines`) it is the parent the list is read
    /// from; for a POST action it is the resource acted on (without the action segment);
    /// tenant-wide operations (`GET /subscriptions`, `POST /batch`, Resource Graph) have `/`.
    /// `None` on the Key Vault data plane, where `vault` is set instead.
    pub resource_id: Option<String>,
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    /// Provider namespace of the (last) provider segment, as sent, e.g. "Microsoft.Compute";
    /// "Microsoft.Resources" (or "Microsoft.KeyVault") when the path has no providers segment.
    pub provider: Option<String>,
    /// The operated-on type, cased like the action: "Microsoft.Compute/virtualMachines",
    /// "Microsoft.KeyVault/vaults/secrets".
    pub resource_type: Option<String>,
    /// The name of the resource or item operated on (the last name segment only, for nested
    /// resources); `None` for lists and tenant-wide operations.
    pub resource_name: Option<String>,
    /// Key Vault data plane: the vault name.
    pub vault: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub plane: Plane,
    /// RBAC action or data action: "Microsoft.Compute/virtualMachines/delete",
    /// "Microsoft.KeyVault/vaults/secrets/getSecret/action".
    pub action: String,
    pub scope: Scope,
    /// The api-version query parameter (required for ARM; Key Vault too).
    pub api_version: String,
}

impl Operation {
    /// An ARM batch (`Microsoft.Resources/batch/action`): it carries other requests.
    pub fn is_batch(&self) -> bool {
        self.action
            .eq_ignore_ascii_case("Microsoft.Resources/batch/action")
    }

    /// A deployment's write: it carries a template of other writes.
    pub fn is_deployment_write(&self) -> bool {
        self.action
            .eq_ignore_ascii_case("Microsoft.Resources/deployments/write")
    }

    /// The action in the form to match policy on. Azure compares operations
    /// case-insensitively, so policy must too; the action is ASCII by construction, so ASCII
    /// lowering is the whole of case folding here.
    pub fn action_lower(&self) -> String {
        self.action.to_ascii_lowercase()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error("the api-version query parameter is required")]
    MissingApiVersion,
    #[error("the api-version query parameter is given more than once with different values")]
    ConflictingApiVersion,
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("malformed path {path:?}: {reason}")]
    MalformedPath { path: String, reason: &'static str },
    #[error("'providers' is not followed by a resource provider namespace in {0}")]
    MissingNamespace(String),
    #[error("{segment:?} is not a valid {what} in {path}")]
    InvalidSegment {
        segment: String,
        what: &'static str,
        path: String,
    },
    #[error("no operation is known for {method} {path}")]
    UnknownShape { method: String, path: String },
    #[error("{0:?} is not a valid key vault name")]
    InvalidVault(String),
}

// === entry points ===

/// ARM (management plane): method + the request path (already percent-decoded & normalized by
/// the caller, starting with '/') + the raw query string.
pub fn name_arm(method: &Method, path: &str, query: &str) -> Result<Operation, NamingError> {
    let req = Req::new(method, path)?;
    let segs = segments(path)?;
    let (action, scope) = arm(&req, &segs)?;
    let api_version = api_version(query)?;
    Ok(Operation {
        plane: Plane::Control,
        action,
        scope,
        api_version,
    })
}

/// Key Vault data plane: `vault` name and the path below the vault ("/secrets/x/y"), decoded
/// and normalized like the ARM path.
pub fn name_keyvault(
    method: &Method,
    vault: &str,
    path: &str,
    query: &str,
) -> Result<Operation, NamingError> {
    if vault.is_empty()
        || !vault
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(NamingError::InvalidVault(vault.to_string()));
    }
    let req = Req::new(method, path)?;
    let segs = segments(path)?;
    let Some(kv) = keyvault(req.verb, &segs) else {
        return Err(req.no_operation(|v| keyvault(v, &segs).is_some()));
    };
    let api_version = api_version(query)?;
    let resource_type = format!("Microsoft.KeyVault/vaults/{}", kv.object);
    Ok(Operation {
        plane: Plane::Data,
        action: format!("{resource_type}/{}", kv.verb),
        scope: Scope {
            provider: Some("Microsoft.KeyVault".to_string()),
            resource_type: Some(resource_type),
            resource_name: kv.name.map(str::to_string),
            vault: Some(vault.to_string()),
            ..Scope::default()
        },
        api_version,
    })
}

// === the request ===

/// The methods Azure's REST APIs use. HEAD is an existence check and names as a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Head,
    Put,
    Patch,
    Delete,
    Post,
}

const VERBS: [Verb; 6] = [
    Verb::Get,
    Verb::Head,
    Verb::Put,
    Verb::Patch,
    Verb::Delete,
    Verb::Post,
];

impl Verb {
    fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::Head)
    }
}

/// What error messages need to know about the request being named.
struct Req<'a> {
    verb: Verb,
    method: &'a Method,
    path: &'a str,
}

impl<'a> Req<'a> {
    fn new(method: &'a Method, path: &'a str) -> Result<Self, NamingError> {
        let verb = match *method {
            Method::GET => Verb::Get,
            Method::HEAD => Verb::Head,
            Method::PUT => Verb::Put,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            Method::POST => Verb::Post,
            _ => {
                return Err(NamingError::MethodNotAllowed {
                    method: method.to_string(),
                    path: path.to_string(),
                });
            }
        };
        Ok(Req { verb, method, path })
    }

    fn not_allowed(&self) -> NamingError {
        NamingError::MethodNotAllowed {
            method: self.method.to_string(),
            path: self.path.to_string(),
        }
    }

    fn unknown(&self) -> NamingError {
        NamingError::UnknownShape {
            method: self.method.to_string(),
            path: self.path.to_string(),
        }
    }

    /// The path names nothing for this method: say whether another method would have named it.
    fn no_operation(&self, names_with: impl Fn(Verb) -> bool) -> NamingError {
        if VERBS.into_iter().any(names_with) {
            self.not_allowed()
        } else {
            self.unknown()
        }
    }

    fn invalid(&self, segment: &str, what: &'static str) -> NamingError {
        NamingError::InvalidSegment {
            segment: segment.to_string(),
            what,
            path: self.path.to_string(),
        }
    }

    /// Only a read is meaningful here.
    fn read(&self, action: &str, scope: Scope) -> Result<(String, Scope), NamingError> {
        if self.verb.is_read() {
            Ok((action.to_string(), scope))
        } else {
            Err(self.not_allowed())
        }
    }
}

/// The path's segments. The caller has normalized the path already; what would make it
/// ambiguous is refused again here so that naming never depends on that having happened.
fn segments(path: &str) -> Result<Vec<&str>, NamingError> {
    let malformed = |reason| NamingError::MalformedPath {
        path: path.to_string(),
        reason,
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| malformed("it does not start with '/'"))?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let segs: Vec<&str> = rest.split('/').collect();
    for seg in &segs {
        match *seg {
            "" => return Err(malformed("it has an empty segment")),
            "." | ".." => return Err(malformed("it has a dot segment")),
            _ => {}
        }
    }
    Ok(segs)
}

/// The `api-version` parameter, its name matched case-insensitively as ARM does. Two different
/// values are refused: the upstream might honour the other one.
fn api_version(query: &str) -> Result<String, NamingError> {
    let mut found: Option<String> = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if !key.eq_ignore_ascii_case("api-version") {
            continue;
        }
        match &found {
            Some(v) if *v != value => return Err(NamingError::ConflictingApiVersion),
            Some(_) => {}
            None => found = Some(value.into_owned()),
        }
    }
    match found {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(NamingError::MissingApiVersion),
    }
}

fn is(seg: &str, keyword: &str) -> bool {
    seg.eq_ignore_ascii_case(keyword)
}

/// Types and action segments are plain identifiers; anything else is refused (see the module
/// doc on casing and wildcards).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `Company.Service[.More]`: every resource provider namespace has at least one dot.
fn is_namespace(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        if !is_token(part) {
            return false;
        }
        parts += 1;
    }
    parts >= 2
}

// === ARM ===

const RESOURCES: &str = "Microsoft.Resources";

/// A scope defined by Microsoft.Resources itself (tenant, subscription, resource group).
fn resources_scope(
    id: &str,
    subscription: Option<&str>,
    resource_group: Option<&str>,
    resource_type: &str,
    name: Option<&str>,
) -> Scope {
    Scope {
        resource_id: Some(id.to_string()),
        subscription: subscription.map(str::to_string),
        resource_group: resource_group.map(str::to_string),
        provider: Some(RESOURCES.to_string()),
        resource_type: Some(resource_type.to_string()),
        resource_name: name.map(str::to_string),
        vault: None,
    }
}

fn arm(req: &Req, segs: &[&str]) -> Result<(String, Scope), NamingError> {
    let Some((&first, rest)) = segs.split_first() else {
        return Err(req.unknown());
    };
    if is(first, "subscriptions") {
        return subscriptions(req, rest);
    }
    if is(first, "providers") {
        return match rest {
            // Providers - List / Get At Tenant Scope: provider metadata, no resources.
            [] => req.read(
                "Microsoft.Resources/providers/read",
                resources_scope("/", None, None, "Microsoft.Resources/providers", None),
            ),
            [ns] => {
                namespace(req, ns)?;
                req.read(
                    "Microsoft.Resources/providers/read",
                    Scope {
                        provider: Some(ns.to_string()),
                        ..resources_scope(
                            &format!("/providers/{ns}"),
                            None,
                            None,
                            "Microsoft.Resources/providers",
                            Some(ns),
                        )
                    },
                )
            }
            _ => provider_chain(req, &Base::default(), At::Tenant, segs),
        };
    }
    if is(first, "tenants") && rest.is_empty() {
        return req.read(
            "Microsoft.Resources/tenants/read",
            resources_scope("/", None, None, "Microsoft.Resources/tenants", None),
        );
    }
    if is(first, "batch") && rest.is_empty() {
        // azure-notes §4: the inner requests are named one by one by the caller; this names
        // the envelope only.
        return if req.verb == Verb::Post {
            Ok((
                "Microsoft.Resources/batch/action".to_string(),
                resources_scope("/", None, None, "Microsoft.Resources/batch", None),
            ))
        } else {
            Err(req.not_allowed())
        };
    }
    Err(req.unknown())
}

/// Everything after `/subscriptions`.
fn subscriptions(req: &Req, segs: &[&str]) -> Result<(String, Scope), NamingError> {
    const SUBSCRIPTIONS: &str = "Microsoft.Resources/subscriptions";
    let Some((&sub, rest)) = segs.split_first() else {
        return req.read(
            "Microsoft.Resources/subscriptions/read",
            resources_scope("/", None, None, SUBSCRIPTIONS, None),
        );
    };
    let id = format!("/subscriptions/{sub}");
    let s = Some(sub);
    let Some((&kw, rest)) = rest.split_first() else {
        return req.read(
            "Microsoft.Resources/subscriptions/read",
            resources_scope(&id, s, None, SUBSCRIPTIONS, s),
        );
    };
    if is(kw, "resourceGroups") {
        return resource_groups(req, sub, rest);
    }
    if is(kw, "providers") {
        return subscription_providers(req, sub, &segs[1..]);
    }
    let (action, ty, item) = match rest {
        [] if is(kw, "resources") => (
            "Microsoft.Resources/subscriptions/resources/read",
            "Microsoft.Resources/subscriptions/resources",
            None,
        ),
        [] if is(kw, "locations") => (
            "Microsoft.Resources/subscriptions/locations/read",
            "Microsoft.Resources/subscriptions/locations",
            None,
        ),
        // Where ARM's own long-running operations (a resource group delete) are polled.
        [op] if is(kw, "operationresults") => (
            "Microsoft.Resources/subscriptions/operationresults/read",
            "Microsoft.Resources/subscriptions/operationresults",
            Some(*op),
        ),
        _ => return Err(req.unknown()),
    };
    let id = match item {
        Some(op) => format!("{id}/operationresults/{op}"),
        None => id,
    };
    req.read(action, resources_scope(&id, s, None, ty, item))
}

/// Everything after `/subscriptions/{s}/resourceGroups`.
fn resource_groups(req: &Req, sub: &str, segs: &[&str]) -> Result<(String, Scope), NamingError> {
    const GROUPS: &str = "Microsoft.Resources/subscriptions/resourceGroups";
    let s = Some(sub);
    let Some((&rg, rest)) = segs.split_first() else {
        return req.read(
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            resources_scope(&format!("/subscriptions/{sub}"), s, None, GROUPS, None),
        );
    };
    let id = format!("/subscriptions/{sub}/resourceGroups/{rg}");
    let scope = resources_scope(&id, s, Some(rg), GROUPS, Some(rg));
    match rest {
        [] => {
            let verb = match req.verb {
                Verb::Get | Verb::Head => "read",
                Verb::Put | Verb::Patch => "write",
                Verb::Delete => "delete",
                Verb::Post => return Err(req.not_allowed()),
            };
            Ok((format!("{GROUPS}/{verb}"), scope))
        }
        [kw, ..] if is(kw, "providers") => {
            let base = Base {
                id,
                subscription: Some(sub),
                resource_group: Some(rg),
            };
            provider_chain(req, &base, At::ResourceGroup, rest)
        }
        [kw] if is(kw, "resources") => req.read(
            "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
            Scope {
                resource_type: Some(format!("{GROUPS}/resources")),
                resource_name: None,
                ..scope
            },
        ),
        // moveResources, validateMoveResources, exportTemplate: the generic POST rule.
        [action] if req.verb == Verb::Post => {
            if !is_token(action) {
                return Err(req.invalid(action, "action"));
            }
            Ok((format!("{GROUPS}/{action}/action"), scope))
        }
        [_] => Err(req.not_allowed()),
        _ => Err(req.unknown()),
    }
}

/// `/subscriptions/{s}/providers...`: provider registration, or a provider block at
/// subscription scope. `segs` starts at `providers`.
fn subscription_providers(
    req: &Req,
    sub: &str,
    segs: &[&str],
) -> Result<(String, Scope), NamingError> {
    const PROVIDERS: &str = "Microsoft.Resources/subscriptions/providers";
    let s = Some(sub);
    let id = format!("/subscriptions/{sub}");
    match &segs[1..] {
        [] => req.read(
            "Microsoft.Resources/subscriptions/providers/read",
            resources_scope(&id, s, None, PROVIDERS, None),
        ),
        [ns, rest @ ..] if rest.is_empty() || (rest.len() == 1 && is_registration(rest[0])) => {
            namespace(req, ns)?;
            let scope = Scope {
                provider: Some(ns.to_string()),
                ..resources_scope(
                    &format!("{id}/providers/{ns}"),
                    s,
                    None,
                    PROVIDERS,
                    Some(ns),
                )
            };
            match rest {
                [] => req.read("Microsoft.Resources/subscriptions/providers/read", scope),
                [verb] if req.verb == Verb::Post => {
                    let verb = if is(verb, "register") {
                        "register"
                    } else {
                        "unregister"
                    };
                    Ok((format!("{}/{verb}/action", canonical_type(ns, &[])), scope))
                }
                _ => Err(req.not_allowed()),
            }
        }
        _ => {
            let base = Base {
                id,
                subscription: s,
                resource_group: None,
            };
            provider_chain(req, &base, At::Subscription, segs)
        }
    }
}

fn is_registration(seg: &str) -> bool {
    is(seg, "register") || is(seg, "unregister")
}

fn namespace(req: &Req, seg: &str) -> Result<(), NamingError> {
    if is_namespace(seg) {
        Ok(())
    } else {
        Err(req.invalid(seg, "resource provider namespace"))
    }
}

/// The scope a provider block hangs off.
#[derive(Default)]
struct Base<'a> {
    /// Canonical id of the scope; empty for the tenant root.
    id: String,
    subscription: Option<&'a str>,
    resource_group: Option<&'a str>,
}

/// What a provider block is directly under. Overrides use it to pin where a deviating
/// operation exists (Resource Graph is tenant-level, name checks subscription-level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Tenant,
    Subscription,
    ResourceGroup,
    /// An extension resource: the block follows another resource.
    Resource,
}

/// How the tail after the last `/providers/{Namespace}` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{type}/{name}...`: ends on a name.
    Resource,
    /// `...{type}`: a list of resources of that type.
    Collection,
    /// POST `{type}/{name}.../{action}`.
    Action,
}

/// `segs` starts at a `providers` keyword. Names the block after the LAST provider segment;
/// the blocks before it are the scope of an extension resource. Type and name segments
/// alternate, so a `providers` keyword is only recognised where a type would be, and a
/// resource may be named "providers".
fn provider_chain(
    req: &Req,
    base: &Base,
    at: At,
    segs: &[&str],
) -> Result<(String, Scope), NamingError> {
    let ns_of = |i: usize| -> Result<&str, NamingError> {
        let ns = segs
            .get(i + 1)
            .ok_or_else(|| NamingError::MissingNamespace(req.path.to_string()))?;
        namespace(req, ns)?;
        Ok(ns)
    };
    let mut prefix = base.id.clone();
    let mut at = at;
    let mut ns = ns_of(0)?;
    let mut tail_start = 2;
    let mut i = tail_start;
    while i < segs.len() {
        if (i - tail_start).is_multiple_of(2) && is(segs[i], "providers") {
            if i == tail_start {
                // `/providers/{Ns}/providers/...`: an extension of nothing.
                return Err(req.unknown());
            }
            prefix = format!("{prefix}/providers/{ns}/{}", segs[tail_start..i].join("/"));
            at = At::Resource;
            ns = ns_of(i)?;
            tail_start = i + 2;
            i = tail_start;
        } else {
            i += 1;
        }
    }
    let tail = &segs[tail_start.min(segs.len())..];
    name_block(req, base, &prefix, at, ns, tail)
}

fn name_block(
    req: &Req,
    base: &Base,
    prefix: &str,
    at: At,
    ns: &str,
    tail: &[&str],
) -> Result<(String, Scope), NamingError> {
    let n = tail.len();
    if n == 0 {
        return Err(req.unknown());
    }
    for ty in tail.iter().step_by(2) {
        if !is_token(ty) {
            return Err(req.invalid(ty, "resource type"));
        }
    }
    let shape = if n.is_multiple_of(2) {
        Shape::Resource
    } else if req.verb == Verb::Post && n >= 3 {
        Shape::Action
    } else {
        Shape::Collection
    };
    let (resource, action_seg) = match shape {
        Shape::Action => (&tail[..n - 1], Some(tail[n - 1])),
        Shape::Resource | Shape::Collection => (tail, None),
    };
    let types: Vec<&str> = resource.iter().step_by(2).copied().collect();
    let type_path = canonical_type(ns, &types);

    let id_segs = match shape {
        Shape::Collection => &tail[..n - 1],
        Shape::Resource | Shape::Action => resource,
    };
    let resource_id = if id_segs.is_empty() {
        if prefix.is_empty() { "/" } else { prefix }.to_string()
    } else {
        format!("{prefix}/providers/{ns}/{}", id_segs.join("/"))
    };
    let resource_name = match shape {
        Shape::Collection => None,
        Shape::Resource | Shape::Action => resource.last().map(|s| s.to_string()),
    };

    let action = match find_override(req.verb, at, ns, tail) {
        Some(o) => o.action.to_string(),
        None => match (shape, req.verb) {
            (Shape::Action, _) => {
                let a = action_seg.unwrap_or_default();
                if !is_token(a) {
                    return Err(req.invalid(a, "action"));
                }
                format!("{type_path}/{a}/action")
            }
            (_, Verb::Get | Verb::Head) => format!("{type_path}/read"),
            (Shape::Resource, Verb::Put | Verb::Patch) => format!("{type_path}/write"),
            (Shape::Resource, Verb::Delete) => format!("{type_path}/delete"),
            // POST to a resource itself, POST/PUT/PATCH/DELETE to a list: no such operation.
            _ => return Err(req.not_allowed()),
        },
    };
    let scope = Scope {
        resource_id: Some(resource_id),
        subscription: base.subscription.map(str::to_string),
        resource_group: base.resource_group.map(str::to_string),
        provider: Some(ns.to_string()),
        resource_type: Some(type_path),
        resource_name,
        vault: None,
    };
    Ok((action, scope))
}

#[cfg(test)]
mod tests;
