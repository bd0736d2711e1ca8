//! `Microsoft.Storage/storageAccounts`: create (202 + `Location`), keys, key regeneration and
//! SAS tokens signed with the account key, as the Storage resource provider returns them.
//! <https://learn.microsoft.com/rest/api/storagerp/storage-accounts>

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::arm::Ctx;
use crate::arm::resources::Located;
use crate::wire::{SimResponse, arm_error};
use crate::world::{World, now_rfc3339};

/// The SAS service version the simulator signs for.
const SAS_VERSION: &str = "2022-11-02";

/// The account's body as the provider completes it.
pub fn account_body(id: &str, name: &str, location: &str, given: &Value, created: &str) -> Value {
    let endpoint = |svc: &str| format!("https://{name}.{svc}.core.windows.net/");
    let mut props = given
        .get("properties")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    for (k, v) in [
        ("provisioningState", json!("Succeeded")),
        ("creationTime", json!(created)),
        ("primaryLocation", json!(location)),
        ("statusOfPrimary", json!("available")),
        (
            "primaryEndpoints",
            json!({
                "blob": endpoint("blob"), "queue": endpoint("queue"), "table": endpoint("table"),
                "file": endpoint("file"), "dfs": endpoint("dfs"), "web": endpoint("z13.web"),
            }),
        ),
    ] {
        props[k] = v;
    }
    if props.get("minimumTlsVersion").is_none() {
        props["minimumTlsVersion"] = json!("TLS1_2");
    }
    let mut body = json!({
        "id": id,
        "name": name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": location,
        "kind": given.get("kind").cloned().unwrap_or(json!("StorageV2")),
        "sku": given.get("sku").cloned().unwrap_or(json!({"name": "Standard_LRS", "tier": "Standard"})),
        "properties": props,
    });
    if let Some(tags) = given.get("tags") {
        body["tags"] = tags.clone();
    }
    body
}

fn valid_name(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub fn on_put(
    world: &mut World,
    loc: &Located,
    stored: &mut Value,
    existed: bool,
) -> Result<(), SimResponse> {
    if !valid_name(&loc.name) {
        return Err(arm_error(
            StatusCode::BAD_REQUEST,
            "AccountNameInvalid",
            format!(
                "{} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only.",
                loc.name
            ),
        ));
    }
    let created = world
        .resources
        .get(&loc.key)
        .and_then(|b| b["properties"]["creationTime"].as_str().map(str::to_owned))
        .unwrap_or_else(now_rfc3339);
    let location = stored["location"].as_str().unwrap_or("eastus").to_owned();
    let mut body = account_body(&loc.id, &loc.name, &location, stored, &created);
    if !existed {
        body["properties"]["provisioningState"] = json!("Creating");
        let keys = vec![
            world.new_storage_key(&loc.id, "key1"),
            world.new_storage_key(&loc.id, "key2"),
        ];
        world.storage_keys.insert(loc.key.clone(), keys);
    }
    *stored = body;
    Ok(())
}

pub fn keys_body(world: &World, key: &str) -> Value {
    let keys = world.storage_keys.get(key).cloned().unwrap_or_default();
    json!({"keys": keys.iter().map(|k| json!({
        "creationTime": k.created, "keyName": k.name, "value": k.value, "permissions": "FULL",
    })).collect::<Vec<_>>()})
}

fn sign(key_b64: &str, string_to_sign: &str) -> String {
    let key = STANDARD.decode(key_b64).unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

pub fn action(
    ctx: &Ctx<'_>,
    world: &mut World,
    loc: &Located,
    action: &str,
) -> Option<SimResponse> {
    if ctx.req.method != Method::POST {
        return None;
    }
    let bad = |m: String| {
        arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidValuesForRequestParameters",
            m,
        )
    };
    let body = ctx.req.json().unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let key1 = world
        .storage_keys
        .get(&loc.key)
        .and_then(|k| k.first())
        .map(|k| k.value.clone())
        .unwrap_or_default();
    Some(match action.to_ascii_lowercase().as_str() {
        "listkeys" => SimResponse::json(StatusCode::OK, &keys_body(world, &loc.key)),
        "regeneratekey" => {
            let Some(name) = field("keyName") else {
                return Some(bad(
                    "Values for request parameters are invalid: keyName.".into()
                ));
            };
            let slot = match name.to_ascii_lowercase().as_str() {
                "key1" => 0,
                "key2" => 1,
                _ => {
                    return Some(bad(format!(
                        "Values for request parameters are invalid: keyName '{name}'."
                    )));
                }
            };
            let fresh = world.new_storage_key(&loc.id, if slot == 0 { "key1" } else { "key2" });
            if let Some(keys) = world.storage_keys.get_mut(&loc.key) {
                keys[slot] = fresh;
            }
            SimResponse::json(StatusCode::OK, &keys_body(world, &loc.key))
        }
        "listaccountsas" => {
            let (Some(ss), Some(srt), Some(sp), Some(se)) = (
                field("signedServices"),
                field("signedResourceTypes"),
                field("signedPermission"),
                field("signedExpiry"),
            ) else {
                return Some(bad("Values for request parameters are invalid: signedServices, signedResourceTypes, signedPermission and signedExpiry are required.".into()));
            };
            let st = field("signedStart").unwrap_or_default();
            let spr = field("signedProtocol").unwrap_or_default();
            let sip = field("signedIp").unwrap_or_default();
            // https://learn.microsoft.com/rest/api/storageservices/create-account-sas#construct-the-signature-string
            let to_sign = format!(
                "{}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n{sip}\n{spr}\n{SAS_VERSION}\n\n",
                loc.name
            );
            let sig = sign(&key1, &to_sign);
            let mut token = format!("sv={SAS_VERSION}&ss={ss}&srt={srt}&sp={sp}&se={}", enc(&se));
            if !st.is_empty() {
                token.push_str(&format!("&st={}", enc(&st)));
            }
            if !spr.is_empty() {
                token.push_str(&format!("&spr={spr}"));
            }
            token.push_str(&format!("&sig={}", enc(&sig)));
            SimResponse::json(StatusCode::OK, &json!({"accountSasToken": token}))
        }
        "listservicesas" => {
            let (Some(resource), Some(sr), Some(se)) = (
                field("canonicalizedResource"),
                field("signedResource"),
                field("signedExpiry"),
            ) else {
                return Some(bad("Values for request parameters are invalid: canonicalizedResource, signedResource and signedExpiry are required.".into()));
            };
            let sp = field("signedPermission").unwrap_or_default();
            let to_sign =
                format!("{sp}\n\n{se}\n{resource}\n\n\n\n{SAS_VERSION}\n{sr}\n\n\n\n\n\n");
            let sig = sign(&key1, &to_sign);
            let token = format!(
                "sv={SAS_VERSION}&sr={sr}&sp={sp}&se={}&sig={}",
                enc(&se),
                enc(&sig)
            );
            SimResponse::json(StatusCode::OK, &json!({"serviceSasToken": token}))
        }
        _ => return None,
    })
}

/// `checkNameAvailability`: whether a storage account name is valid and free (names are
/// global in Azure; here, within the simulated world).
pub fn check_name(ctx: &super::Ctx<'_>) -> crate::wire::SimResponse {
    let name = serde_json::from_slice::<Value>(&ctx.req.body)
        .ok()
        .and_then(|b| b.get("name").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let body = if !valid_name(&name) {
        serde_json::json!({"nameAvailable": false, "reason": "AccountNameInvalid",
            "message": format!("{name} is not a valid storage account name.")})
    } else {
        let suffix = format!(
            "/providers/microsoft.storage/storageaccounts/{}",
            name.to_ascii_lowercase()
        );
        let taken = ctx
            .sim
            .world()
            .resources
            .keys()
            .any(|k| k.ends_with(&suffix));
        if taken {
            serde_json::json!({"nameAvailable": false, "reason": "AlreadyExists",
                "message": format!("The storage account named {name} is already taken.")})
        } else {
            serde_json::json!({"nameAvailable": true})
        }
    };
    crate::wire::SimResponse::json(http::StatusCode::OK, &body)
}
