//! What the evaluator's tests share: a fake host with one resource group `rg1` holding one
//! storage account `st1`, a sample template, and shorthands to evaluate against them.

use serde_json::{Value, json};

use super::{Context, TemplateError, TemplateHost};

pub(super) const SUB: &str = "00000000-0000-0000-0000-000000000001";
pub(super) const ST_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1";

/// A resource group `rg1` holding one storage account `st1`.
pub(super) struct FakeHost {
    in_group: bool,
}

impl TemplateHost for FakeHost {
    fn resource_group(&self) -> Value {
        if !self.in_group {
            return Value::Null;
        }
        json!({
            "id": format!("/subscriptions/{SUB}/resourceGroups/rg1"),
            "name": "rg1",
            "location": "westeurope",
            "type": "Microsoft.Resources/resourceGroups",
            "properties": {"provisioningState": "Succeeded"}
        })
    }

    fn subscription(&self) -> Value {
        json!({
            "id": format!("/subscriptions/{SUB}"),
            "subscriptionId": SUB,
            "tenantId": "tenant-1",
            "displayName": "Simulated"
        })
    }

    fn list_keys(&self, resource_id: &str, api_version: &str) -> Result<Value, String> {
        if resource_id.eq_ignore_ascii_case(ST_ID) && !api_version.is_empty() {
            Ok(json!({"keys": [
                {"keyName": "key1", "permissions": "FULL", "value": "secret-one"},
                {"keyName": "key2", "permissions": "FULL", "value": "secret-two"}
            ]}))
        } else {
            Err(format!("the resource '{resource_id}' was not found"))
        }
    }

    fn reference(&self, resource_id: &str, full: bool) -> Result<Value, String> {
        if resource_id.eq_ignore_ascii_case(ST_ID) || resource_id == "st1" {
            let props = json!({"primaryEndpoints": {"blob": "https://st1.blob.core.windows.net/"}});
            Ok(if full {
                json!({"id": ST_ID, "name": "st1", "location": "westeurope", "properties": props})
            } else {
                props
            })
        } else {
            Err(format!("the resource '{resource_id}' was not found"))
        }
    }
}

pub(super) const HOST: FakeHost = FakeHost { in_group: true };
pub(super) const SUB_SCOPE: FakeHost = FakeHost { in_group: false };

pub(super) fn sample_template() -> Value {
    json!({
        "contentVersion": "1.0.0.0",
        "parameters": {
            "storageName": {"type": "string"},
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
            "count": {"type": "int", "defaultValue": 2, "minValue": 1, "maxValue": 5},
            "sku": {"type": "string", "defaultValue": "Standard_LRS",
                    "allowedValues": ["Standard_LRS", "Standard_GRS"]},
            "prefix": {"type": "string", "defaultValue": "[toLower(parameters('Suffix'))]"},
            "suffix": {"type": "string", "defaultValue": "XY"},
            "tags": {"type": "object", "defaultValue": {"env": "dev"}}
        },
        "variables": {
            "fullName": "[concat(parameters('prefix'), '-', variables('base'))]",
            "base": "[parameters('storageName')]",
            "storageId": "[resourceId('Microsoft.Storage/storageAccounts', parameters('storageName'))]",
            "literal": "[[not an expression]",
            "nested": {"list": ["[variables('base')]", 1, true], "[key]": "[add(1, 2)]"}
        }
    })
}

pub(super) fn given() -> Value {
    json!({"storageName": {"value": "st1"}})
}

pub(super) fn eval_in(
    template: &Value,
    params: &Value,
    host: &FakeHost,
    expr: &str,
) -> Result<Value, TemplateError> {
    let ctx = Context::new(template, params, "deploy-1", host)?;
    ctx.evaluate_expression(expr)
}

pub(super) fn eval(expr: &str) -> Result<Value, TemplateError> {
    eval_in(&sample_template(), &given(), &HOST, expr)
}

pub(super) fn ok(expr: &str) -> Value {
    match eval(expr) {
        Ok(v) => v,
        Err(e) => panic!("{expr}: {e}"),
    }
}

pub(super) fn err(expr: &str) -> String {
    match eval(expr) {
        Ok(v) => panic!("{expr} should fail but gave {v}"),
        Err(e) => e.to_string(),
    }
}
