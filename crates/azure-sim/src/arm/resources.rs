//! The generic resource engine: subscriptions, tenants, providers, resource groups, and CRUD
//! and lists for any resource type, with the per-provider behaviours (long-running PUT and
//! DELETE, actions, derived properties) plugged in by type.

use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::arm::lro::{self, Style};
use crate::arm::route::{Address, Route};
use crate::arm::{Ctx, compute, deployments, keyvault, page, storage};
use crate::wire::{SimResponse, arm_error};
use crate::world::{Effect, World};

/// Types the simulator knows by their canonical spelling; ARM answers with it whatever case
/// the client used. Tracked types require a `location`.
const KNOWN_TYPES: &[(&str, bool)] = &[
    ("Microsoft.Compute/virtualMachines", true),
    ("Microsoft.Compute/disks", true),
    ("Microsoft.Storage/storageAccounts", true),
    ("Microsoft.KeyVault/vaults", true),
    ("Microsoft.KeyVault/vaults/secrets", false),
    ("Microsoft.Resources/deployments", false),
    ("Microsoft.Network/virtualNetworks", true),
    ("Microsoft.Network/virtualNetworks/subnets", false),
    ("Microsoft.Network/networkInterfaces", true),
    ("Microsoft.Network/publicIPAddresses", true),
    ("Microsoft.Network/networkSecurityGroups", true),
    ("Microsoft.Authorization/roleAssignments", false),
    ("Microsoft.Authorization/locks", false),
    ("Microsoft.ManagedIdentity/userAssignedIdentities", true),
    ("Microsoft.Web/sites", true),
    ("Microsoft.Web/serverfarms", true),
];

/// The canonical spelling of a type, and whether it is tracked (has a location).
fn canonical(full_type: &str) -> (String, bool) {
    KNOWN_TYPES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(full_type))
        .map_or((full_type.to_owned(), false), |(t, tracked)| {
            ((*t).to_owned(), *tracked)
        })
}

fn method_not_allowed(method: &Method) -> SimResponse {
    arm_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The HTTP method '{method}' is not supported at this path."),
    )
}

pub fn group_not_found(name: &str) -> SimResponse {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{name}' could not be found."),
    )
}

fn resource_not_found(address: &Address) -> SimResponse {
    let group = address.group.as_deref().unwrap_or("");
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{}/{}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            address.full_type(),
            address.names.join("/")
        ),
    )
}

fn invalid_content(message: impl std::fmt::Display) -> SimResponse {
    arm_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
        format!("The request content was invalid and could not be deserialized: '{message}'."),
    )
}

/// A resolved address: the canonical id and the map key it is stored under.
pub struct Located {
    pub id: String,
    pub key: String,
    pub full_type: String,
    pub tracked: bool,
    pub name: String,
}

/// Resolves an address against the world; the group must exist.
pub fn locate(world: &World, address: &Address) -> Result<Located, SimResponse> {
    let scope = match &address.group {
        Some(g) => {
            let body = world
                .groups
                .get(&g.to_ascii_lowercase())
                .ok_or_else(|| group_not_found(g))?;
            body["id"].as_str().unwrap_or_default().to_owned()
        }
        None => format!("/subscriptions/{}", world.subscription_id),
    };
    let (full_type, tracked) = canonical(&address.full_type());
    let mut parts = full_type.split('/');
    let namespace = parts.next().unwrap_or_default().to_owned();
    let types: Vec<&str> = parts.collect();
    let mut id = format!("{scope}/providers/{namespace}");
    for (t, n) in types.iter().zip(&address.names) {
        id.push('/');
        id.push_str(t);
        id.push('/');
        id.push_str(n);
    }
    Ok(Located {
        key: id.to_ascii_lowercase(),
        id,
        full_type,
        tracked: tracked && address.types.len() == 1,
        name: address.names.last().cloned().unwrap_or_default(),
    })
}

/// Removes a resource and every resource nested below it.
pub fn remove_with_children(world: &mut World, key: &str) {
    let prefix = format!("{key}/");
    let doomed: Vec<String> = world
        .resources
        .keys()
        .filter(|k| k.as_str() == key || k.starts_with(&prefix))
        .cloned()
        .collect();
    for k in doomed {
        if let Some(body) = world.resources.remove(&k)
            && body["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.KeyVault/vaults"))
        {
            let name = body["name"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            world.vaults.remove(&name);
        }
        world.storage_keys.remove(&k);
        world.power.remove(&k);
    }
}

pub fn serve(ctx: &Ctx<'_>, route: Route) -> SimResponse {
    let sim = ctx.sim;
    let method = &ctx.req.method;
    let check_sub = |s: &str| {
        if s.eq_ignore_ascii_case(&sim.config.subscription_id.to_string()) {
            Ok(())
        } else {
            Err(arm_error(
                StatusCode::NOT_FOUND,
                "SubscriptionNotFound",
                format!("The subscription '{s}' could not be found."),
            ))
        }
    };
    let sub_of = |r: &Route| match r {
        Route::Tenants | Route::Subscriptions => None,
        Route::Subscription { id } => Some(id.clone()),
        Route::Providers { subscription, .. }
        | Route::Groups { subscription }
        | Route::Group { subscription, .. }
        | Route::GroupResources { subscription, .. }
        | Route::SubscriptionResources { subscription }
        | Route::OperationStatus { subscription, .. }
        | Route::Collection { subscription, .. }
        | Route::Resource { subscription, .. }
        | Route::Action { subscription, .. } => Some(subscription.clone()),
    };
    if let Some(s) = sub_of(&route)
        && let Err(r) = check_sub(&s)
    {
        return r;
    }
    // `POST /subscriptions/{s}/providers/Microsoft.Storage/checkNameAvailability`, which
    // `az storage account create` asks first.
    if *method == Method::POST
        && ctx
            .req
            .path
            .to_ascii_lowercase()
            .ends_with("/providers/microsoft.storage/checknameavailability")
    {
        return super::storage::check_name(ctx);
    }
    let get_only = |f: &dyn Fn() -> SimResponse| {
        if *method == Method::GET {
            f()
        } else {
            method_not_allowed(method)
        }
    };
    match route {
        Route::Tenants => get_only(&|| tenants(ctx)),
        Route::Subscriptions => get_only(&|| {
            let body = subscription_body(ctx);
            SimResponse::json(
                StatusCode::OK,
                &json!({"value": [body], "count": {"type": "Total", "value": 1}}),
            )
        }),
        Route::Subscription { .. } => {
            get_only(&|| SimResponse::json(StatusCode::OK, &subscription_body(ctx)))
        }
        Route::Providers { namespace, .. } => get_only(&|| providers(ctx, namespace.as_deref())),
        Route::Groups { .. } => get_only(&|| {
            let items: Vec<Value> = sim.world().groups.values().cloned().collect();
            listed(ctx, items)
        }),
        Route::Group { name, .. } => group(ctx, &name),
        Route::GroupResources { group, .. } => get_only(&|| {
            let world = sim.world();
            let Some(g) = world.groups.get(&group.to_ascii_lowercase()) else {
                return group_not_found(&group);
            };
            let prefix = format!(
                "{}/providers/",
                g["id"].as_str().unwrap_or_default().to_ascii_lowercase()
            );
            let items = top_level(&world, Some(&prefix));
            drop(world);
            listed(ctx, items)
        }),
        Route::SubscriptionResources { .. } => get_only(&|| {
            let items = top_level(&sim.world(), None);
            listed(ctx, items)
        }),
        Route::OperationStatus {
            id, location_style, ..
        } => get_only(&|| lro::status(ctx, &id, location_style)),
        Route::Collection { address, .. } => get_only(&|| collection(ctx, &address)),
        Route::Resource { address, .. } => resource(ctx, &address),
        Route::Action {
            address, action, ..
        } => action_on(ctx, &address, &action),
    }
}

fn listed(ctx: &Ctx<'_>, items: Vec<Value>) -> SimResponse {
    match page(ctx, items) {
        Ok(body) => SimResponse::json(StatusCode::OK, &body),
        Err(r) => r,
    }
}

/// Top-level resources (not nested ones, not deployments) below a lowercased prefix.
fn top_level(world: &World, prefix: Option<&str>) -> Vec<Value> {
    world
        .resources
        .iter()
        .filter(|(k, _)| prefix.is_none_or(|p| k.starts_with(p)))
        .filter(|(_, v)| {
            let t = v["type"].as_str().unwrap_or_default();
            t.matches('/').count() == 1
                && !t.eq_ignore_ascii_case("Microsoft.Resources/deployments")
        })
        .map(|(_, v)| v.clone())
        .collect()
}

fn tenants(ctx: &Ctx<'_>) -> SimResponse {
    let c = &ctx.sim.config;
    SimResponse::json(
        StatusCode::OK,
        &json!({"value": [{
            "id": format!("/tenants/{}", c.tenant_id),
            "tenantId": c.tenant_id,
            "tenantCategory": "Home",
            "country": "US",
            "countryCode": "US",
            "displayName": c.tenant_name,
            "domains": [c.tenant_domain],
            "defaultDomain": c.tenant_domain,
            "tenantType": "AAD",
        }]}),
    )
}

fn subscription_body(ctx: &Ctx<'_>) -> Value {
    let c = &ctx.sim.config;
    json!({
        "id": format!("/subscriptions/{}", c.subscription_id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": c.subscription_id,
        "tenantId": c.tenant_id,
        "displayName": c.subscription_name,
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
    })
}

fn providers(ctx: &Ctx<'_>, namespace: Option<&str>) -> SimResponse {
    let mut by_ns: Vec<(String, Vec<String>)> = Vec::new();
    for (t, _) in KNOWN_TYPES {
        let (ns, ty) = t.split_once('/').expect("known types have a namespace");
        match by_ns.iter_mut().find(|(n, _)| n == ns) {
            Some((_, types)) => types.push(ty.to_owned()),
            None => by_ns.push((ns.to_owned(), vec![ty.to_owned()])),
        }
    }
    let body = |ns: &str, types: &[String]| {
        json!({
            "id": format!("/subscriptions/{}/providers/{ns}", ctx.sim.config.subscription_id),
            "namespace": ns,
            "registrationState": "Registered",
            "registrationPolicy": "RegistrationRequired",
            "resourceTypes": types.iter().map(|t| json!({
                "resourceType": t,
                "locations": ["East US", "West Europe"],
                "apiVersions": ["2024-07-01", "2023-09-01", "2023-01-01", "2022-09-01"],
            })).collect::<Vec<_>>(),
        })
    };
    match namespace {
        Some(ns) => match by_ns.iter().find(|(n, _)| n.eq_ignore_ascii_case(ns)) {
            Some((n, types)) => SimResponse::json(StatusCode::OK, &body(n, types)),
            None => arm_error(
                StatusCode::NOT_FOUND,
                "InvalidResourceNamespace",
                format!("The resource namespace '{ns}' is invalid."),
            ),
        },
        None => {
            let items = by_ns.iter().map(|(n, t)| body(n, t)).collect();
            listed(ctx, items)
        }
    }
}

// === resource groups ===

fn group(ctx: &Ctx<'_>, name: &str) -> SimResponse {
    let req = ctx.req;
    let key = name.to_ascii_lowercase();
    let mut world = ctx.sim.world();
    match req.method {
        Method::GET => match world.groups.get(&key) {
            Some(body) => SimResponse::json(StatusCode::OK, body),
            None => group_not_found(name),
        },
        Method::HEAD => {
            let status = if world.groups.contains_key(&key) {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            };
            SimResponse::empty(status)
        }
        Method::PUT => {
            let body = match req.json() {
                Ok(Value::Object(o)) => o,
                Ok(_) => return invalid_content("a resource group body must be a JSON object"),
                Err(e) => return invalid_content(e),
            };
            let Some(location) = body.get("location").and_then(Value::as_str) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "LocationRequired",
                    "The location property is required for this definition.",
                );
            };
            if !valid_group_name(name) {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidResourceGroup",
                    format!(
                        "The provided resource group name '{name}' has these invalid characters or is too long."
                    ),
                );
            }
            let existed = world.groups.get(&key).cloned();
            if let Some(old) = &existed
                && !old["location"]
                    .as_str()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case(location)
            {
                return arm_error(
                    StatusCode::CONFLICT,
                    "InvalidResourceGroupLocation",
                    format!(
                        "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                        old["location"].as_str().unwrap_or_default()
                    ),
                );
            }
            let stored_name = existed
                .as_ref()
                .and_then(|o| o["name"].as_str().map(str::to_owned))
                .unwrap_or_else(|| name.to_owned());
            let group = world.group_body(&stored_name, location, body.get("tags"));
            world.groups.insert(key, group.clone());
            let status = if existed.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            SimResponse::json(status, &group)
        }
        Method::PATCH => {
            let patch = match req.json() {
                Ok(Value::Object(o)) => o,
                Ok(_) => return invalid_content("a resource group patch must be a JSON object"),
                Err(e) => return invalid_content(e),
            };
            let Some(group) = world.groups.get_mut(&key) else {
                return group_not_found(name);
            };
            if let Some(tags) = patch.get("tags") {
                group["tags"] = tags.clone();
            }
            SimResponse::json(StatusCode::OK, group)
        }
        Method::DELETE => {
            let Some(group) = world.groups.get_mut(&key) else {
                return group_not_found(name);
            };
            group["properties"]["provisioningState"] = json!("Deleting");
            let location = group["location"].as_str().unwrap_or("eastus").to_owned();
            let op = lro::start(
                &mut world,
                "Microsoft.Resources",
                &location,
                ctx.sim.config.lro_polls,
                Effect::DeleteGroup { group: key },
            );
            drop(world);
            lro::headers(
                ctx,
                SimResponse::empty(StatusCode::ACCEPTED),
                &op,
                Style::Location,
            )
        }
        _ => method_not_allowed(&req.method),
    }
}

fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

// === resources ===

fn collection(ctx: &Ctx<'_>, address: &Address) -> SimResponse {
    let world = ctx.sim.world();
    if let Some(g) = &address.group
        && !world.groups.contains_key(&g.to_ascii_lowercase())
    {
        return group_not_found(g);
    }
    let want_type = address.full_type_lower();
    if want_type == "microsoft.keyvault/vaults/secrets" {
        let items = keyvault::list_secrets(ctx, &world, address);
        drop(world);
        return match items {
            Ok(items) => listed(ctx, items),
            Err(r) => r,
        };
    }
    // The parent (for nested collections) must exist; its id prefixes the children's.
    let prefix = if address.names.is_empty() {
        address.group.as_ref().map(|_| {
            let mut parent = address.clone();
            parent.types.clear();
            locate_scope(&world, &parent)
        })
    } else {
        let mut parent = address.clone();
        parent.types.pop();
        match locate(&world, &parent) {
            Ok(l) if world.resources.contains_key(&l.key) => Some(format!("{}/", l.key)),
            Ok(_) => return resource_not_found(&parent),
            Err(r) => return r,
        }
    };
    let items: Vec<Value> = world
        .resources
        .iter()
        .filter(|(k, _)| prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
        .filter(|(_, v)| {
            v["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(&want_type))
        })
        .map(|(k, v)| decorate_body(&world, k, v.clone(), ctx))
        .collect();
    drop(world);
    listed(ctx, items)
}

/// `/subscriptions/{s}/resourceGroups/{rg}/` (lowercased) for a group-scoped address.
fn locate_scope(world: &World, address: &Address) -> String {
    let g = address.group.as_deref().unwrap_or_default();
    format!("{}/", world.group_id(g).to_ascii_lowercase())
}

/// What GET shows beyond the stored body (the VM's instance view, on request).
fn decorate_body(world: &World, key: &str, mut body: Value, ctx: &Ctx<'_>) -> Value {
    if body["type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.Compute/virtualMachines"))
        && ctx
            .req
            .query("$expand")
            .is_some_and(|e| e.eq_ignore_ascii_case("instanceView"))
    {
        body["properties"]["instanceView"] = compute::instance_view(world, key);
    }
    body
}

fn resource(ctx: &Ctx<'_>, address: &Address) -> SimResponse {
    let req = ctx.req;
    let mut world = ctx.sim.world();
    let loc = match locate(&world, address) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let type_lower = loc.full_type.to_ascii_lowercase();
    if type_lower == "microsoft.keyvault/vaults/secrets" {
        return keyvault::secret(ctx, &mut world, address, &loc);
    }
    match req.method {
        Method::GET => match world.resources.get(&loc.key) {
            Some(body) => SimResponse::json(
                StatusCode::OK,
                &decorate_body(&world, &loc.key, body.clone(), ctx),
            ),
            None => resource_not_found(address),
        },
        Method::HEAD => {
            let status = if world.resources.contains_key(&loc.key) {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            };
            SimResponse::empty(status)
        }
        Method::PUT if type_lower == "microsoft.resources/deployments" => {
            drop(world);
            deployments::put(ctx, address, &loc)
        }
        Method::PUT => put(ctx, &mut world, address, &loc),
        Method::PATCH => {
            let patch = match req.json() {
                Ok(Value::Object(o)) => o,
                Ok(_) => return invalid_content("a patch must be a JSON object"),
                Err(e) => return invalid_content(e),
            };
            let Some(body) = world.resources.get_mut(&loc.key) else {
                return resource_not_found(address);
            };
            for (k, v) in patch {
                if k == "properties" {
                    merge(&mut body["properties"], &v);
                } else if !matches!(k.as_str(), "id" | "name" | "type" | "location") {
                    body[k.as_str()] = v;
                }
            }
            if type_lower == "microsoft.compute/virtualmachines" {
                compute::scrub(body);
            }
            SimResponse::json(StatusCode::OK, body)
        }
        Method::DELETE => {
            let Some(body) = world.resources.get_mut(&loc.key) else {
                return SimResponse::empty(StatusCode::NO_CONTENT);
            };
            match type_lower.as_str() {
                "microsoft.compute/virtualmachines" | "microsoft.resources/deployments" => {
                    body["properties"]["provisioningState"] = json!("Deleting");
                    let location = body["location"].as_str().unwrap_or("eastus").to_owned();
                    let ns = loc
                        .full_type
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let op = lro::start(
                        &mut world,
                        &ns,
                        &location,
                        ctx.sim.config.lro_polls,
                        Effect::Delete {
                            resource: loc.key.clone(),
                        },
                    );
                    drop(world);
                    let style = if type_lower.starts_with("microsoft.compute") {
                        Style::Both
                    } else {
                        Style::Location
                    };
                    lro::headers(ctx, SimResponse::empty(StatusCode::ACCEPTED), &op, style)
                }
                _ => {
                    remove_with_children(&mut world, &loc.key);
                    SimResponse::empty(StatusCode::OK)
                }
            }
        }
        _ => method_not_allowed(&req.method),
    }
}

/// JSON merge patch (RFC 7396) of `patch` into `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Builds a stored body from a PUT body: ARM's envelope fields, then the properties.
pub fn envelope(loc: &Located, body: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(loc.id));
    out.insert("name".into(), json!(loc.name));
    out.insert("type".into(), json!(loc.full_type));
    for k in [
        "kind",
        "location",
        "tags",
        "sku",
        "identity",
        "zones",
        "plan",
        "extendedLocation",
    ] {
        if let Some(v) = body.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let props = body
        .get("properties")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    out.insert("properties".into(), props);
    Value::Object(out)
}

/// Creates or replaces a resource. Used by PUT and by deployments.
pub fn create_or_replace(
    ctx: &Ctx<'_>,
    world: &mut World,
    address: &Address,
    loc: &Located,
    body: &Map<String, Value>,
) -> Result<(StatusCode, Value, Option<Style>), SimResponse> {
    if loc.tracked && body.get("location").and_then(Value::as_str).is_none() {
        return Err(arm_error(
            StatusCode::BAD_REQUEST,
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    }
    if address.names.len() > 1 {
        let mut parent = address.clone();
        parent.types.pop();
        parent.names.pop();
        let ploc = locate(world, &parent)?;
        if !world.resources.contains_key(&ploc.key) {
            return Err(arm_error(
                StatusCode::NOT_FOUND,
                "ParentResourceNotFound",
                format!(
                    "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                    parent.names.join("/")
                ),
            ));
        }
    }
    let existed = world.resources.contains_key(&loc.key);
    let mut stored = envelope(loc, body);
    let type_lower = loc.full_type.to_ascii_lowercase();
    let style = match type_lower.as_str() {
        "microsoft.compute/virtualmachines" => {
            compute::on_put(&mut stored, existed);
            Some(Style::AsyncOperation)
        }
        "microsoft.storage/storageaccounts" => {
            storage::on_put(world, loc, &mut stored, existed)?;
            (!existed).then_some(Style::Location)
        }
        "microsoft.keyvault/vaults" => {
            keyvault::on_put(ctx.sim, world, loc, &mut stored)?;
            None
        }
        _ => None,
    };
    if style.is_none() {
        stored["properties"]["provisioningState"] = json!("Succeeded");
    }
    world.resources.insert(loc.key.clone(), stored.clone());
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, stored, style))
}

fn put(ctx: &Ctx<'_>, world: &mut World, address: &Address, loc: &Located) -> SimResponse {
    let body = match ctx.req.json() {
        Ok(Value::Object(o)) => o,
        Ok(_) => return invalid_content("a resource body must be a JSON object"),
        Err(e) => return invalid_content(e),
    };
    let (status, stored, style) = match create_or_replace(ctx, world, address, loc, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(style) = style else {
        return SimResponse::json(status, &stored);
    };
    let location = stored["location"].as_str().unwrap_or("eastus").to_owned();
    let ns = loc
        .full_type
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let op = lro::start(
        world,
        &ns,
        &location,
        ctx.sim.config.lro_polls,
        Effect::Provision {
            resource: loc.key.clone(),
        },
    );
    let initial = match style {
        // Storage's create answers 202 with no body; the result comes from Location.
        Style::Location => SimResponse::empty(StatusCode::ACCEPTED),
        _ => SimResponse::json(status, &stored),
    };
    lro::headers(ctx, initial, &op, style)
}

fn action_on(ctx: &Ctx<'_>, address: &Address, action: &str) -> SimResponse {
    let mut world = ctx.sim.world();
    let loc = match locate(&world, address) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let type_lower = loc.full_type.to_ascii_lowercase();
    // A deployment is validated before it exists; every other action needs its resource.
    let validating =
        type_lower == "microsoft.resources/deployments" && action.eq_ignore_ascii_case("validate");
    if !validating && !world.resources.contains_key(&loc.key) {
        return resource_not_found(address);
    }
    let answer = match type_lower.as_str() {
        "microsoft.compute/virtualmachines" => compute::action(ctx, &mut world, &loc, action),
        "microsoft.storage/storageaccounts" => storage::action(ctx, &mut world, &loc, action),
        "microsoft.resources/deployments" => {
            deployments::action(ctx, &mut world, &loc, address, action)
        }
        _ => None,
    };
    answer.unwrap_or_else(|| {
        arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            format!("The resource type '{}/{action}' could not be found in the namespace '{}' for api version '{}'.", address.types.join("/"), address.namespace, ctx.api_version),
        )
    })
}
