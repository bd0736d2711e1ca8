//! `Microsoft.KeyVault/vaults` on the control plane: a vault created through ARM gets a data
//! plane; `vaults/{v}/secrets/{s}` is ARM's view of the vault's secrets (PUT sets a value,
//! GET and list never return one).
//! <https://learn.microsoft.com/rest/api/keyvault/keyvault/secrets>

use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::arm::Ctx;
use crate::arm::resources::{Located, locate};
use crate::arm::route::Address;
use crate::keyvault::{Secret, Vault};
use crate::sim::Sim;
use crate::wire::{SimResponse, arm_error};
use crate::world::World;

pub fn vault_body(world: &World, id: &str, name: &str, location: &str, given: &Value) -> Value {
    let mut props = given
        .get("properties")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    props["vaultUri"] = json!(format!(
        "https://{}.{}/",
        name.to_ascii_lowercase(),
        world.keyvault_dns_suffix
    ));
    if props.get("tenantId").is_none() {
        props["tenantId"] = json!(world.tenant_id);
    }
    if props.get("sku").is_none() {
        props["sku"] = json!({"family": "A", "name": "standard"});
    }
    if props.get("enableRbacAuthorization").is_none() {
        props["enableRbacAuthorization"] = json!(true);
    }
    props["enableSoftDelete"] = json!(true);
    props["softDeleteRetentionInDays"] = json!(90);
    props["provisioningState"] = json!("Succeeded");
    let mut body = json!({"id": id, "name": name, "type": "Microsoft.KeyVault/vaults", "location": location, "properties": props});
    if let Some(tags) = given.get("tags") {
        body["tags"] = tags.clone();
    }
    body
}

fn valid_name(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub fn on_put(
    _sim: &Sim,
    world: &mut World,
    loc: &Located,
    stored: &mut Value,
) -> Result<(), SimResponse> {
    if !valid_name(&loc.name) {
        return Err(arm_error(
            StatusCode::BAD_REQUEST,
            "VaultNameNotValid",
            format!(
                "The vault name '{}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens.",
                loc.name
            ),
        ));
    }
    let location = stored["location"].as_str().unwrap_or("eastus").to_owned();
    *stored = vault_body(world, &loc.id, &loc.name, &location, stored);
    world
        .vaults
        .entry(loc.name.to_ascii_lowercase())
        .or_insert_with(|| Vault::new(&loc.name));
    Ok(())
}

fn secret_body(vault_id: &str, vault_uri: &str, location: &str, s: &Secret) -> Value {
    let v = s.versions.last().expect("a secret has a version");
    let mut props = json!({
        "attributes": {"enabled": v.enabled, "created": v.created, "updated": v.updated},
        "secretUri": format!("{vault_uri}secrets/{}", s.name),
        "secretUriWithVersion": format!("{vault_uri}secrets/{}/{}", s.name, v.version),
    });
    if let Some(ct) = &v.content_type {
        props["contentType"] = json!(ct);
    }
    json!({
        "id": format!("{vault_id}/secrets/{}", s.name),
        "name": s.name,
        "type": "Microsoft.KeyVault/vaults/secrets",
        "location": location,
        "properties": props,
    })
}

/// The vault (ARM body and key) an address under `vaults/{v}` names.
fn parent(world: &World, address: &Address) -> Result<(String, String, String), SimResponse> {
    let mut vault = address.clone();
    vault.types.truncate(1);
    vault.names.truncate(1);
    let loc = locate(world, &vault)?;
    let Some(body) = world.resources.get(&loc.key) else {
        return Err(arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.KeyVault/vaults/{}' under resource group '{}' was not found.",
                vault.names[0],
                address.group.as_deref().unwrap_or("")
            ),
        ));
    };
    Ok((
        body["id"].as_str().unwrap_or_default().to_owned(),
        body["properties"]["vaultUri"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["location"].as_str().unwrap_or_default().to_owned(),
    ))
}

pub fn list_secrets(
    _ctx: &Ctx<'_>,
    world: &World,
    address: &Address,
) -> Result<Vec<Value>, SimResponse> {
    let (id, uri, location) = parent(world, address)?;
    let name = address.names[0].to_ascii_lowercase();
    Ok(world
        .vaults
        .get(&name)
        .map(|v| {
            v.secrets
                .values()
                .map(|s| secret_body(&id, &uri, &location, s))
                .collect()
        })
        .unwrap_or_default())
}

pub fn secret(ctx: &Ctx<'_>, world: &mut World, address: &Address, loc: &Located) -> SimResponse {
    let (id, uri, location) = match parent(world, address) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let vault_key = address.names[0].to_ascii_lowercase();
    let Some(vault) = world.vaults.get_mut(&vault_key) else {
        return arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The vault's data plane is gone.",
        );
    };
    match ctx.req.method {
        Method::GET => match vault.get(&loc.name) {
            Some(s) => SimResponse::json(StatusCode::OK, &secret_body(&id, &uri, &location, s)),
            None => arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!(
                    "The Resource 'Microsoft.KeyVault/vaults/{}/secrets/{}' under resource group '{}' was not found.",
                    address.names[0],
                    loc.name,
                    address.group.as_deref().unwrap_or("")
                ),
            ),
        },
        Method::PUT => {
            let body: Map<String, Value> = match ctx.req.json() {
                Ok(Value::Object(o)) => o,
                _ => {
                    return arm_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestContent",
                        "The request content was invalid and could not be deserialized.",
                    );
                }
            };
            let props = body.get("properties").cloned().unwrap_or(Value::Null);
            let Some(value) = props.get("value").and_then(Value::as_str) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "The secret's properties.value is required.",
                );
            };
            if !loc
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                || loc.name.is_empty()
            {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("The secret name '{}' is invalid.", loc.name),
                );
            }
            let existed = vault.get(&loc.name).is_some();
            let tags = body.get("tags").cloned().unwrap_or(json!({}));
            vault.set(
                &loc.name,
                value,
                props.get("contentType").and_then(Value::as_str),
                tags,
            );
            let s = vault.get(&loc.name).expect("just set");
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            SimResponse::json(status, &secret_body(&id, &uri, &location, s))
        }
        ref m => arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The HTTP method '{m}' is not supported for vault secrets."),
        ),
    }
}
