//! Deployments: `PUT .../providers/Microsoft.Resources/deployments/{name}` at any scope asks
//! ARM to create every resource of a template (azure-notes §4). The gateway reads the inline
//! template so policy can judge each resource as the write it is, as if the agent had sent
//! it alone. `mode: Complete` also deletes the resource group's resources the template does
//! not name; it is judged as a delete of them.
//!
//! What the gateway cannot see is flagged, never guessed: a `templateLink` (the template is
//! elsewhere), a `parametersLink`, nested deployments and deployment scripts (code that runs
//! in Azure), resources aimed at another scope, and names made of template expressions it
//! cannot resolve. Policy reads all of it as `deployment.*` in conditions; the pipeline never
//! lets a deployment with uninspectable parts through on an allow alone.

use http::Method;
use serde_json::{Value, json};

use super::batch::Inner;
use super::operation::{self, Operation};
use crate::json::get;

/// The most resources read from one template (ARM's own limit is 800).
pub const MAX_RESOURCES: usize = 800;

/// The action a Complete-mode deployment is also judged as, at its resource group: it
/// deletes whatever there the template does not name (their types are unknown beforehand).
pub const COMPLETE_MODE_DELETE: &str =
    "Microsoft.Resources/subscriptions/resourceGroups/resources/delete";

#[derive(Debug, Clone)]
pub struct Deployment {
    /// `Incremental` or `Complete`.
    pub mode: String,
    /// Each resource's write, and a Complete-mode delete, as operations to judge.
    pub operations: Vec<Inner>,
    /// Why parts of it cannot be judged; empty when all of it can.
    pub uninspectable: Vec<String>,
}

impl Deployment {
    /// What conditions see as `deployment`.
    pub fn facts(&self) -> Value {
        json!({
            "mode": self.mode,
            "complete": self.mode.eq_ignore_ascii_case("Complete"),
            "resources": self.operations.iter().map(|o| json!({
                "name": o.name,
                "action": o.operation.action,
                "type": o.operation.scope.resource_type,
                "id": o.operation.scope.resource_id,
            })).collect::<Vec<_>>(),
            "uninspectable": self.uninspectable,
            "inspectable": self.uninspectable.is_empty(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("the deployment body is not a JSON object with 'properties'")]
    Shape,
    #[error("deployment mode '{0}' is not Incremental or Complete")]
    Mode(String),
    #[error("the template holds more than {MAX_RESOURCES} resources")]
    TooMany,
}

/// Reads a deployment PUT. `deployment_id` is the deployment's own normalized path, whose
/// scope (tenant, management group, subscription or resource group) the resources land in.
pub fn parse(deployment_id: &str, body: &Value) -> Result<Deployment, DeploymentError> {
    // ARM reads property names without regard to case; so does this (the body was read by
    // `json::parse`, which refuses names that differ only in case).
    let props = get(body, "properties")
        .filter(|p| p.is_object())
        .ok_or(DeploymentError::Shape)?;
    let mode = match get(props, "mode").and_then(Value::as_str) {
        None => "Incremental".to_owned(),
        Some(m) if m.eq_ignore_ascii_case("Incremental") => "Incremental".to_owned(),
        Some(m) if m.eq_ignore_ascii_case("Complete") => "Complete".to_owned(),
        Some(m) => return Err(DeploymentError::Mode(m.chars().take(40).collect())),
    };
    let scope = deployment_id
        .rsplit_once("/providers/")
        .map(|(s, _)| s)
        .unwrap_or("");
    let mut d = Deployment {
        mode,
        operations: Vec::new(),
        uninspectable: Vec::new(),
    };
    if get(props, "templateLink").is_some_and(|v| !v.is_null()) {
        d.uninspectable
            .push("templateLink: the template is fetched by Azure from elsewhere".into());
    }
    if get(props, "parametersLink").is_some_and(|v| !v.is_null()) {
        d.uninspectable
            .push("parametersLink: the parameters are fetched by Azure from elsewhere".into());
    }
    let template = get(props, "template").filter(|t| !t.is_null());
    match template {
        Some(t @ Value::Object(_)) => {
            let names = Names {
                parameters: get(props, "parameters"),
                template: t,
            };
            // `existing: true` means "only referenced" in languageVersion 2.0 templates;
            // elsewhere ARM does not know it, and the resource is deployed.
            let symbolic = get(t, "languageVersion")
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with("2."));
            let resources: Vec<(String, &Value)> = match get(t, "resources") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.iter().map(|r| (String::new(), r)).collect(),
                // languageVersion 2.0: resources by symbolic name.
                Some(Value::Object(o)) => o.iter().map(|(k, r)| (k.clone(), r)).collect(),
                Some(_) => {
                    d.uninspectable
                        .push("the template's resources are not a list or a map".into());
                    Vec::new()
                }
            };
            for (symbol, r) in resources {
                resource(&mut d, scope, &names, symbolic, &symbol, r, None)?;
            }
        }
        Some(_) => d
            .uninspectable
            .push("the template is not a JSON object".into()),
        None if d.uninspectable.is_empty() => d
            .uninspectable
            .push("the deployment has no template".into()),
        None => {}
    }
    if d.mode == "Complete" {
        let rg = resource_group_of(scope);
        match rg
            .and_then(|rg| operation::name_arm(&Method::DELETE, rg, "api-version=2022-09-01").ok())
        {
            Some(mut op) => {
                op.action = COMPLETE_MODE_DELETE.into();
                d.operations.push(Inner {
                    name: "(complete mode: the resource group's other resources)".into(),
                    method: Method::DELETE,
                    path: rg.unwrap_or_default().to_owned(),
                    query: String::new(),
                    operation: op,
                    content: None,
                });
            }
            None => d
                .uninspectable
                .push("complete mode outside a resource group".into()),
        }
    }
    Ok(d)
}

/// `/subscriptions/{s}/resourceGroups/{rg}` when `scope` is (in) a resource group.
fn resource_group_of(scope: &str) -> Option<&str> {
    let segs: Vec<&str> = scope.split('/').collect();
    (segs.len() == 5
        && segs[1].eq_ignore_ascii_case("subscriptions")
        && segs[3].eq_ignore_ascii_case("resourceGroups"))
    .then_some(scope)
}

/// Resolves the simplest template expressions in names: `[parameters('x')]` and
/// `[variables('x')]` with string values. Anything else stays unresolved.
struct Names<'a> {
    parameters: Option<&'a Value>,
    template: &'a Value,
}

impl Names<'_> {
    fn resolve(&self, raw: &str) -> Option<String> {
        let Some(expr) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
            // `[[` escapes a literal bracket.
            return Some(
                raw.strip_prefix("[[")
                    .map_or(raw.to_owned(), |r| format!("[{r}")),
            );
        };
        let arg = |f: &str| {
            expr.trim()
                .strip_prefix(f)?
                .strip_prefix("('")?
                .strip_suffix("')")
                .filter(|a| !a.contains('\''))
        };
        if let Some(p) = arg("parameters") {
            let given = self
                .parameters
                .and_then(|ps| get(ps, p))
                .and_then(|v| get(v, "value"));
            let default = get(self.template, "parameters")
                .and_then(|ps| get(ps, p))
                .and_then(|v| get(v, "defaultValue"));
            return given.or(default)?.as_str().map(str::to_owned);
        }
        if let Some(v) = arg("variables") {
            return get(self.template, "variables")
                .and_then(|vs| get(vs, v))?
                .as_str()
                .filter(|s| !s.starts_with('['))
                .map(str::to_owned);
        }
        None
    }
}

fn resource(
    d: &mut Deployment,
    scope: &str,
    names: &Names<'_>,
    symbolic: bool,
    symbol: &str,
    r: &Value,
    parent: Option<(&str, &str)>,
) -> Result<(), DeploymentError> {
    if d.operations.len() >= MAX_RESOURCES {
        return Err(DeploymentError::TooMany);
    }
    let text = |k: &str| get(r, k).and_then(Value::as_str);
    let existing = symbolic && get(r, "existing").and_then(Value::as_bool) == Some(true);
    let label = |what: &str| {
        if symbol.is_empty() {
            what.to_owned()
        } else {
            format!("{symbol} ({what})")
        }
    };
    let (Some(ty), Some(raw_name)) = (text("type"), text("name")) else {
        if existing {
            return Ok(());
        }
        d.uninspectable
            .push(label("a resource without a literal type and name"));
        return Ok(());
    };
    // A reference to an existing resource creates nothing.
    if existing {
        return Ok(());
    }
    let (ty, raw_name) = match parent {
        // A child declared inside its parent: its type and name are relative.
        Some((pt, pn)) if !ty.contains('/') || !ty.contains('.') => {
            (format!("{pt}/{ty}"), format!("{pn}/{raw_name}"))
        }
        _ => (ty.to_owned(), raw_name.to_owned()),
    };
    let what = format!("{ty} '{raw_name}'");
    if ty.eq_ignore_ascii_case("Microsoft.Resources/deployments") {
        d.uninspectable.push(label(&format!(
            "nested deployment {what}: its resources are not read"
        )));
    }
    if ty.eq_ignore_ascii_case("Microsoft.Resources/deploymentScripts") {
        d.uninspectable.push(label(&format!(
            "deployment script {what}: it runs code in Azure"
        )));
    }
    for k in [
        "scope",
        "resourceGroup",
        "subscriptionId",
        "managementGroup",
    ] {
        if get(r, k).is_some_and(|v| !v.is_null()) {
            d.uninspectable
                .push(label(&format!("{what} targets another scope ('{k}')")));
        }
    }
    let name = names.resolve(&raw_name).or_else(|| {
        // Each '/'-part of a child's name may be an expression of its own.
        let parts: Option<Vec<String>> = raw_name.split('/').map(|p| names.resolve(p)).collect();
        parts.map(|p| p.join("/"))
    });
    let Some(name) = name else {
        d.uninspectable.push(label(&format!(
            "{what}: its name is a template expression the gateway does not evaluate"
        )));
        return Ok(());
    };
    let Some((namespace, types)) = ty.split_once('/') else {
        d.uninspectable
            .push(label(&format!("{what}: not a resource type")));
        return Ok(());
    };
    let types: Vec<&str> = types.split('/').collect();
    let name_parts: Vec<&str> = name.split('/').collect();
    if types.len() != name_parts.len()
        || name_parts
            .iter()
            .any(|n| n.is_empty() || *n == "." || *n == "..")
    {
        d.uninspectable
            .push(label(&format!("{what}: its name does not fit its type")));
        return Ok(());
    }
    let mut id = if ty.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups") {
        format!("{scope}/resourceGroups")
    } else {
        format!("{scope}/providers/{namespace}")
    };
    let is_group = ty.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups");
    for (i, (t, n)) in types.iter().zip(&name_parts).enumerate() {
        if !(is_group && i == 0) {
            id.push('/');
            id.push_str(t);
        }
        id.push('/');
        id.push_str(n);
    }
    let api = text("apiVersion").unwrap_or("2024-01-01");
    let query = format!("api-version={api}");
    let operation: Operation = match route_and_name(&id, &query) {
        Some(op) => op,
        None => {
            d.uninspectable
                .push(label(&format!("{what}: cannot be named as an operation")));
            return Ok(());
        }
    };
    let mut content = r.clone();
    if let Some(o) = content.as_object_mut() {
        o.remove("resources");
    }
    d.operations.push(Inner {
        name: if symbol.is_empty() {
            format!("{ty}/{name}")
        } else {
            symbol.to_owned()
        },
        method: Method::PUT,
        path: id,
        query,
        operation,
        content: Some(content),
    });
    if let Some(children) = get(r, "resources").and_then(Value::as_array) {
        for c in children {
            resource(d, scope, names, symbolic, "", c, Some((&ty, &name)))?;
        }
    }
    Ok(())
}

/// The resource's id, normalized as a request path would be, then named as a write.
fn route_and_name(id: &str, query: &str) -> Option<Operation> {
    let (decoded, _) = super::route::normalize(id).ok()?;
    if decoded != id {
        return None;
    }
    operation::name_arm(&Method::PUT, &decoded, query).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg";

    fn dep(body: Value) -> Deployment {
        parse(
            &format!("{RG}/providers/Microsoft.Resources/deployments/d1"),
            &body,
        )
        .unwrap()
    }

    #[test]
    fn inline_resources_become_writes() {
        let d = dep(
            json!({"properties": {"mode": "Incremental", "parameters": {"sa": {"value": "mystore"}},
            "template": {"parameters": {"sa": {"type": "string"}, "vm": {"type": "string", "defaultValue": "vm9"}},
              "variables": {"kv": "vault1"},
              "resources": [
                {"type": "Microsoft.Storage/storageAccounts", "name": "[parameters('sa')]", "apiVersion": "2023-05-01",
                 "resources": [{"type": "blobServices", "name": "default"}]},
                {"type": "Microsoft.Compute/virtualMachines", "name": "[parameters('vm')]"},
                {"type": "Microsoft.KeyVault/vaults", "name": "[variables('kv')]"},
                {"type": "Microsoft.Authorization/roleAssignments", "name": "00000000-0000-0000-0000-0000000000aa"}
              ]}}}),
        );
        let actions: Vec<(&str, &str)> = d
            .operations
            .iter()
            .map(|o| {
                (
                    o.operation.action.as_str(),
                    o.operation.scope.resource_id.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                (
                    "Microsoft.Storage/storageAccounts/write",
                    &*format!("{RG}/providers/Microsoft.Storage/storageAccounts/mystore")
                ),
                (
                    "Microsoft.Storage/storageAccounts/blobServices/write",
                    &*format!(
                        "{RG}/providers/Microsoft.Storage/storageAccounts/mystore/blobServices/default"
                    )
                ),
                (
                    "Microsoft.Compute/virtualMachines/write",
                    &*format!("{RG}/providers/Microsoft.Compute/virtualMachines/vm9")
                ),
                (
                    "Microsoft.KeyVault/vaults/write",
                    &*format!("{RG}/providers/Microsoft.KeyVault/vaults/vault1")
                ),
                (
                    "Microsoft.Authorization/roleAssignments/write",
                    &*format!(
                        "{RG}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-0000-0000-0000000000aa"
                    )
                ),
            ]
        );
        assert!(d.uninspectable.is_empty(), "{:?}", d.uninspectable);
        assert_eq!(d.facts()["complete"], false);
    }

    #[test]
    fn what_cannot_be_seen_is_flagged() {
        let d = dep(json!({"properties": {"mode": "complete",
        "templateLink": {"uri": "https://example.com/t.json"},
        "template": {"resources": {
            "nested": {"type": "Microsoft.Resources/deployments", "name": "inner", "resourceGroup": "other-rg",
                       "properties": {"template": {"resources": []}}},
            "script": {"type": "Microsoft.Resources/deploymentScripts", "name": "s1"},
            "computed": {"type": "Microsoft.Storage/storageAccounts", "name": "[concat('sa', uniqueString(resourceGroup().id))]"},
            "odd": {"type": "Microsoft.Storage/storageAccounts", "name": "a/b"}
        }}}}));
        let flags = d.uninspectable.join("\n");
        for needle in [
            "templateLink",
            "nested deployment",
            "targets another scope",
            "deployment script",
            "template expression",
            "does not fit its type",
        ] {
            assert!(flags.contains(needle), "{needle} in {flags}");
        }
        assert_eq!(d.mode, "Complete");
        let last = d.operations.last().unwrap();
        assert_eq!(last.operation.action, COMPLETE_MODE_DELETE);
        assert_eq!(last.operation.scope.resource_id.as_deref(), Some(RG));
        assert_eq!(d.facts()["inspectable"], false);
    }

    #[test]
    fn subscription_scope_deployments_create_groups() {
        let sub = "/subscriptions/00000000-0000-0000-0000-000000000001";
        let d = parse(
            &format!("{sub}/providers/Microsoft.Resources/deployments/d1"),
            &json!({"properties": {"template": {"resources": [
                {"type": "Microsoft.Resources/resourceGroups", "name": "newrg", "apiVersion": "2022-09-01"}
            ]}}}),
        )
        .unwrap();
        assert_eq!(
            d.operations[0].operation.action,
            "Microsoft.Resources/subscriptions/resourceGroups/write"
        );
        assert_eq!(
            d.operations[0].operation.scope.resource_id.as_deref(),
            Some(&*format!("{sub}/resourceGroups/newrg"))
        );
        assert!(
            parse(
                &format!("{sub}/providers/Microsoft.Resources/deployments/d1"),
                &json!({"properties": {"mode": "Complete", "template": {"resources": []}}})
            )
            .unwrap()
            .uninspectable
            .iter()
            .any(|u| u.contains("outside a resource group"))
        );
    }

    #[test]
    fn bodies_that_are_not_deployments_are_refused() {
        for body in [
            json!([]),
            json!({"location": "x"}),
            json!({"properties": {"mode": "Sideways", "template": {}}}),
        ] {
            assert!(
                parse(
                    &format!("{RG}/providers/Microsoft.Resources/deployments/d"),
                    &body
                )
                .is_err(),
                "{body}"
            );
        }
        let many = json!({"properties": {"template": {"resources":
            vec![json!({"type": "Microsoft.Storage/storageAccounts", "name": "s"}); MAX_RESOURCES + 1]}}});
        assert!(matches!(
            parse(
                &format!("{RG}/providers/Microsoft.Resources/deployments/d"),
                &many
            ),
            Err(DeploymentError::TooMany)
        ));
    }
}
