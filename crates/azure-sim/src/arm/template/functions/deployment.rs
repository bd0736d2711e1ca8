//! What a template asks of its deployment: the scope it is deployed into (`resourceGroup()`,
//! `subscription()`, `tenant()`, `deployment()`, `environment()`), resource ids in it, and the
//! keys and properties of deployed resources (`listKeys()`, `reference()`).
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-resource>
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-scope>
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-deployment>

use serde_json::{Map, Value, json};

use super::Deployment;
use super::args::{all_strs, arity, at_least, str_arg};
use crate::arm::template::section::Section;

pub(super) fn resource_group(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    match d.host.resource_group() {
        rg @ Value::Object(_) => Ok(rg),
        _ => {
            Err("there is no resource group: the deployment is not at resource group scope".into())
        }
    }
}

pub(super) fn subscription(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    Ok(d.host.subscription())
}

pub(super) fn tenant(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    let sub = d.host.subscription();
    let tenant = sub.get("tenantId").cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("tenantId".into(), tenant);
    Ok(Value::Object(out))
}

pub(super) fn deployment(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    let mut template = Map::new();
    if let Some(v) = d.template.get("contentVersion") {
        template.insert("contentVersion".into(), v.clone());
    }
    let mut props = Map::new();
    props.insert("template".into(), Value::Object(template));
    let mut out = Map::new();
    out.insert("name".into(), Value::String(d.name.to_owned()));
    out.insert("properties".into(), Value::Object(props));
    Ok(Value::Object(out))
}

/// `environment()`: the public Azure cloud, which is what templates written for Azure expect.
pub(super) fn environment(a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    Ok(json!({
        "name": "AzureCloud",
        "gallery": "https://gallery.azure.com/",
        "graph": "https://graph.windows.net/",
        "portal": "https://portal.azure.com",
        "graphAudience": "https://graph.windows.net/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "batch": "https://batch.core.windows.net/",
        "media": "https://rest.media.azure.net",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "resourceManager": "https://management.azure.com/",
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com/",
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD"
        },
        "suffixes": {
            "acrLoginServer": ".azurecr.io",
            "azureDatalakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "azureDatalakeStoreFileSystem": "azuredatalakestore.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "keyvaultDns": ".vault.azure.net",
            "sqlServerHostname": ".database.windows.net",
            "storage": "core.windows.net"
        }
    }))
}

pub(super) fn resource_id(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    let (ty_at, strs) = id_args(a, 2)?;
    let (sub, group) = match ty_at {
        0 => (default_subscription_id(d)?, default_group_name(d)),
        1 => (
            default_subscription_id(d)?,
            strs.first().map(|s| (*s).to_owned()),
        ),
        _ => (
            strs.first().map(|s| (*s).to_owned()).unwrap_or_default(),
            strs.get(1).map(|s| (*s).to_owned()),
        ),
    };
    let tail = provider_path(&strs, ty_at)?;
    Ok(Value::String(match group {
        Some(g) => format!("/subscriptions/{sub}/resourceGroups/{g}{tail}"),
        None => format!("/subscriptions/{sub}{tail}"),
    }))
}

pub(super) fn subscription_resource_id(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    let (ty_at, strs) = id_args(a, 1)?;
    let sub = match ty_at {
        0 => default_subscription_id(d)?,
        _ => strs.first().map(|s| (*s).to_owned()).unwrap_or_default(),
    };
    let tail = provider_path(&strs, ty_at)?;
    Ok(Value::String(format!("/subscriptions/{sub}{tail}")))
}

pub(super) fn tenant_resource_id(a: &[Value]) -> Result<Value, String> {
    let (ty_at, strs) = id_args(a, 0)?;
    Ok(Value::String(provider_path(&strs, ty_at)?))
}

pub(super) fn extension_resource_id(a: &[Value]) -> Result<Value, String> {
    at_least(a, 3)?;
    let base = str_arg(a, 0)?;
    if !base.starts_with('/') {
        return Err("argument 1 must be a resource id".into());
    }
    let rest = a.get(1..).unwrap_or_default();
    let (ty_at, strs) = id_args(rest, 0)?;
    let tail = provider_path(&strs, ty_at)?;
    Ok(Value::String(format!(
        "{}{tail}",
        base.trim_end_matches('/')
    )))
}

pub(super) fn list_keys(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    d.section.require(&[Section::Body])?;
    // The optional third argument is the action's request body; the host's
    // list-keys action takes none.
    arity(a, 2, 3)?;
    let id = str_arg(a, 0)?;
    let api = str_arg(a, 1)?;
    d.host.list_keys(id, api)
}

pub(super) fn reference(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    d.section.require(&[Section::Body])?;
    arity(a, 1, 3)?;
    let id = str_arg(a, 0)?;
    if a.len() >= 2 {
        str_arg(a, 1)?;
    }
    let full = match a.get(2) {
        None => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("full") => true,
        Some(other) => {
            return Err(format!("argument 3 must be 'Full', got {other}"));
        }
    };
    d.host.reference(id, full)
}

fn default_subscription_id(d: &Deployment<'_>) -> Result<String, String> {
    d.host
        .subscription()
        .get("subscriptionId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the deployment's subscription has no subscriptionId".to_owned())
}

fn default_group_name(d: &Deployment<'_>) -> Option<String> {
    d.host
        .resource_group()
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Builds `/providers/{namespace}/{type}/{name}/{childType}/{childName}...` from the type
/// at `strs[ty_at]` and the names after it (names may also be given joined by `/`).
fn provider_path(strs: &[&str], ty_at: usize) -> Result<String, String> {
    let ty = strs.get(ty_at).copied().unwrap_or_default();
    let segments: Vec<&str> = ty.split('/').collect();
    let (Some(namespace), types) = (segments.first(), segments.get(1..).unwrap_or_default()) else {
        return Err(format!("'{ty}' is not a resource type"));
    };
    if types.is_empty() || segments.iter().any(|s| s.trim().is_empty()) {
        return Err(format!(
            "'{ty}' is not a resource type such as 'Microsoft.Storage/storageAccounts'"
        ));
    }
    let names: Vec<&str> = strs
        .get(ty_at + 1..)
        .unwrap_or_default()
        .iter()
        .flat_map(|n| n.split('/'))
        .collect();
    if names.len() != types.len() {
        return Err(format!(
            "the type '{ty}' needs {} resource name(s) but {} were given",
            types.len(),
            names.len()
        ));
    }
    if names.iter().any(|n| n.is_empty()) {
        return Err("resource names must not be empty".into());
    }
    let mut out = format!("/providers/{namespace}");
    for (t, n) in types.iter().zip(&names) {
        out.push('/');
        out.push_str(t);
        out.push('/');
        out.push_str(n);
    }
    Ok(out)
}

/// String arguments of a resource-id function and the index of the resource type among
/// them: the first argument containing `/` (subscription ids and group names cannot).
fn id_args(a: &[Value], max_scope_args: usize) -> Result<(usize, Vec<&str>), String> {
    let strs = all_strs(a)?;
    let ty_at = strs
        .iter()
        .position(|s| s.contains('/'))
        .ok_or("no resource type (such as 'Microsoft.Storage/storageAccounts') was given")?;
    if ty_at > max_scope_args {
        return Err(format!(
            "expects at most {max_scope_args} scope argument(s) before the resource type, got {ty_at}"
        ));
    }
    Ok((ty_at, strs))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::arm::template::fixture::{ST_ID, SUB, SUB_SCOPE, err, eval_in, ok};

    #[test]
    fn list_keys_chaining() {
        assert_eq!(
            ok(
                "[listKeys(resourceId('Microsoft.Storage/storageAccounts', parameters('storageName')), '2023-01-01').keys[0].value]"
            ),
            json!("secret-one")
        );
        assert_eq!(
            ok("[listKeys(variables('storageId'), '2023-01-01').keys[1].keyName]"),
            json!("key2")
        );
        let e = err("[listKeys('/nope', '2023-01-01')]");
        assert!(
            e.contains("function 'listKeys'") && e.contains("'/nope' was not found"),
            "{e}"
        );
        assert!(err("[listKeys(variables('storageId'))]").contains("expects 2 to 3 arguments"));
    }

    #[test]
    fn reference_forms() {
        assert_eq!(
            ok("[reference(variables('storageId')).primaryEndpoints.blob]"),
            json!("https://st1.blob.core.windows.net/")
        );
        assert_eq!(
            ok("[reference(variables('storageId'), '2023-01-01', 'Full').location]"),
            json!("westeurope")
        );
        assert_eq!(
            ok("[reference('st1', '2023-01-01', 'full').name]"),
            json!("st1")
        );
        assert!(err("[reference('st1', '2023-01-01', 'Partial')]").contains("'Full'"));
        assert!(err("[reference('missing')]").contains("not found"));
    }

    #[test]
    fn resource_ids() {
        let rg = format!("/subscriptions/{SUB}/resourceGroups/rg1/providers");
        assert_eq!(
            ok("[resourceId('Microsoft.KeyVault/vaults/secrets', 'kv', 's1')]"),
            json!(format!("{rg}/Microsoft.KeyVault/vaults/kv/secrets/s1"))
        );
        assert_eq!(
            ok("[resourceId('Microsoft.KeyVault/vaults/secrets', 'kv/s1')]"),
            json!(format!("{rg}/Microsoft.KeyVault/vaults/kv/secrets/s1"))
        );
        assert_eq!(
            ok("[resourceId('other-rg', 'Microsoft.Storage/storageAccounts', 'st2')]"),
            json!(format!(
                "/subscriptions/{SUB}/resourceGroups/other-rg/providers/Microsoft.Storage/storageAccounts/st2"
            ))
        );
        assert_eq!(
            ok("[resourceId('S2', 'rg2', 'Microsoft.Storage/storageAccounts', 'st2')]"),
            json!(
                "/subscriptions/S2/resourceGroups/rg2/providers/Microsoft.Storage/storageAccounts/st2"
            )
        );
        assert_eq!(
            ok("[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'rg9')]"),
            json!(format!(
                "/subscriptions/{SUB}/providers/Microsoft.Resources/resourceGroups/rg9"
            ))
        );
        assert_eq!(
            ok("[subscriptionResourceId('S3', 'Microsoft.Authorization/roleDefinitions', 'r1')]"),
            json!("/subscriptions/S3/providers/Microsoft.Authorization/roleDefinitions/r1")
        );
        assert_eq!(
            ok("[tenantResourceId('Microsoft.Management/managementGroups', 'mg')]"),
            json!("/providers/Microsoft.Management/managementGroups/mg")
        );
        assert_eq!(
            ok(
                "[extensionResourceId(variables('storageId'), 'Microsoft.Authorization/locks', 'l1')]"
            ),
            json!(format!(
                "{ST_ID}/providers/Microsoft.Authorization/locks/l1"
            ))
        );
        assert!(
            err("[resourceId('Microsoft.KeyVault/vaults/secrets', 'kv')]")
                .contains("needs 2 resource name(s) but 1")
        );
        assert!(
            err("[resourceId('Microsoft.Storage/storageAccounts', 'a', 'b')]").contains("needs 1")
        );
        assert!(
            err("[resourceId('a', 'b', 'c', 'Microsoft.Storage/storageAccounts', 'x')]")
                .contains("at most 2")
        );
        assert!(err("[resourceId('st1')]").contains("no resource type"));
        assert!(err("[resourceId('Microsoft.Storage/', 'x')]").contains("not a resource type"));
        assert!(
            err("[resourceId('Microsoft.Storage/storageAccounts', 1)]")
                .contains("must be a string")
        );
        // At subscription scope the default id has no resource group, as in Azure.
        assert_eq!(
            eval_in(
                &json!({}),
                &Value::Null,
                &SUB_SCOPE,
                "[resourceId('Microsoft.Resources/resourceGroups', 'rg1')]"
            )
            .unwrap(),
            json!(format!(
                "/subscriptions/{SUB}/providers/Microsoft.Resources/resourceGroups/rg1"
            ))
        );
        let e = eval_in(&json!({}), &Value::Null, &SUB_SCOPE, "[resourceGroup()]").unwrap_err();
        assert!(e.to_string().contains("not at resource group scope"), "{e}");
    }

    #[test]
    fn scope_functions() {
        assert_eq!(ok("[deployment().name]"), json!("deploy-1"));
        assert_eq!(
            ok("[deployment().properties.template.contentVersion]"),
            json!("1.0.0.0")
        );
        assert_eq!(ok("[tenant().tenantId]"), json!("tenant-1"));
        assert_eq!(
            ok("[environment().suffixes.storage]"),
            json!("core.windows.net")
        );
        assert!(err("[subscription('x')]").contains("expects 0 arguments"));
    }
}
