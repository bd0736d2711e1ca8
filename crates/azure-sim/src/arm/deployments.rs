//! `Microsoft.Resources/deployments` with inline templates: the template's resources are
//! created in the deployment's resource group as the caller, `mode: Complete` deletes the
//! group's resources the template omits, and outputs (which may call `listKeys()`) come back
//! on GET. `templateLink`, `copy` loops, nested deployments and deployment scripts are
//! refused: the simulator cannot fetch or run them.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/syntax>
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/deployment-modes>
//!
//! Resources are created one by one in template order, as ARM does without `dependsOn`
//! parallelism; a failure leaves the ones already created (deployments are not transactions)
//! and answers 400 `InvalidTemplateDeployment`.

use http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::arm::Ctx;
use crate::arm::lro::{self, Style};
use crate::arm::resources::{Located, create_or_replace, locate, remove_with_children};
use crate::arm::route::Address;
use crate::arm::template::{Context, TemplateHost};
use crate::wire::{SimResponse, arm_error};
use crate::world::{Effect, World, now_rfc3339};

/// What templates see of the world while one is evaluated.
struct Host<'a> {
    world: &'a World,
    group: Option<String>,
}

impl TemplateHost for Host<'_> {
    fn resource_group(&self) -> Value {
        match &self.group {
            Some(g) => self
                .world
                .groups
                .get(&g.to_ascii_lowercase())
                .cloned()
                .unwrap_or(Value::Null),
            None => Value::Null,
        }
    }

    fn subscription(&self) -> Value {
        json!({
            "id": format!("/subscriptions/{}", self.world.subscription_id),
            "subscriptionId": self.world.subscription_id,
            "tenantId": self.world.tenant_id,
            "displayName": self.world.subscription_name,
        })
    }

    fn list_keys(&self, resource_id: &str, _api_version: &str) -> Result<Value, String> {
        let key = resource_id.to_ascii_lowercase();
        match self.world.resources.get(&key) {
            Some(body)
                if body["type"].as_str().is_some_and(|t| {
                    t.eq_ignore_ascii_case("Microsoft.Storage/storageAccounts")
                }) =>
            {
                Ok(crate::arm::storage::keys_body(self.world, &key))
            }
            Some(body) => Err(format!(
                "listKeys is not supported for resources of type '{}'",
                body["type"].as_str().unwrap_or_default()
            )),
            None => Err(format!("the resource '{resource_id}' was not found")),
        }
    }

    fn reference(&self, resource_id: &str, full: bool) -> Result<Value, String> {
        let body = if resource_id.starts_with('/') {
            self.world.resources.get(&resource_id.to_ascii_lowercase())
        } else {
            // A bare name refers to a resource of the template, in the deployment's group.
            let prefix = self
                .group
                .as_ref()
                .map(|g| format!("{}/", self.world.group_id(g).to_ascii_lowercase()));
            self.world
                .resources
                .iter()
                .find(|(k, v)| {
                    prefix.as_ref().is_some_and(|p| k.starts_with(p.as_str()))
                        && v["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(resource_id))
                })
                .map(|(_, v)| v)
        };
        match body {
            Some(b) if full => Ok(b.clone()),
            Some(b) => Ok(b.get("properties").cloned().unwrap_or(Value::Null)),
            None => Err(format!("the resource '{resource_id}' was not found")),
        }
    }
}

fn invalid_template(message: impl Into<String>) -> SimResponse {
    arm_error(
        StatusCode::BAD_REQUEST,
        "InvalidTemplate",
        format!(
            "Deployment template validation failed: '{}'.",
            message.into()
        ),
    )
}

/// A template resource, evaluated and flattened (children carry their full type and name).
struct Planned {
    full_type: String,
    name: String,
    body: Map<String, Value>,
}

/// The parts of a deployment PUT the simulator needs.
struct Request {
    mode_complete: bool,
    template: Value,
    parameters: Value,
}

fn parse_request(body: &Value) -> Result<Request, SimResponse> {
    let props = body
        .get("properties")
        .filter(|p| p.is_object())
        .ok_or_else(|| {
            arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "The deployment must have properties.",
            )
        })?;
    if props.get("templateLink").is_some() {
        return Err(arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidContentLink",
            "The simulator cannot fetch linked templates; send the template inline.",
        ));
    }
    if props.get("parametersLink").is_some() {
        return Err(arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidContentLink",
            "The simulator cannot fetch linked parameters; send them inline.",
        ));
    }
    let mode = props.get("mode").and_then(Value::as_str).unwrap_or("");
    let mode_complete = match mode.to_ascii_lowercase().as_str() {
        "incremental" => false,
        "complete" => true,
        _ => {
            return Err(arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidDeploymentMode",
                format!(
                    "The deployment mode '{mode}' is not valid. Allowed values are 'Incremental' and 'Complete'."
                ),
            ));
        }
    };
    let template = props
        .get("template")
        .filter(|t| t.is_object())
        .cloned()
        .ok_or_else(|| {
            arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidDeployment",
                "The deployment must have an inline template.",
            )
        })?;
    Ok(Request {
        mode_complete,
        template,
        parameters: props
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({})),
    })
}

/// Evaluates one template resource (and its inline children) into plans.
fn plan(
    ctx: &Context<'_>,
    resource: &Value,
    parent: Option<(&str, &str)>,
    out: &mut Vec<Planned>,
) -> Result<(), String> {
    if resource.get("copy").is_some() {
        return Err("copy loops are not supported by the simulator".into());
    }
    if let Some(cond) = resource.get("condition") {
        match ctx.evaluate(cond).map_err(|e| e.to_string())? {
            Value::Bool(false) => return Ok(()),
            Value::Bool(true) => {}
            other => return Err(format!("condition must be a boolean, got {other}")),
        }
    }
    let evaluated = ctx.evaluate(resource).map_err(|e| e.to_string())?;
    let Value::Object(mut body) = evaluated else {
        return Err("a template resource must be an object".into());
    };
    let ty = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a template resource has no type")?
        .to_owned();
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a template resource has no name")?
        .to_owned();
    let (full_type, full_name) = match parent {
        Some((pt, pn)) if !ty.contains('/') || ty.matches('/').count() == 0 => {
            (format!("{pt}/{ty}"), format!("{pn}/{name}"))
        }
        _ => (ty, name),
    };
    let lower = full_type.to_ascii_lowercase();
    if lower == "microsoft.resources/deployments" {
        return Err("nested deployments are not supported by the simulator".into());
    }
    if lower == "microsoft.resources/deploymentscripts" {
        return Err("deployment scripts are not supported by the simulator".into());
    }
    let children = body.remove("resources");
    out.push(Planned {
        full_type: full_type.clone(),
        name: full_name.clone(),
        body,
    });
    if let Some(Value::Array(children)) = children {
        // Children were already evaluated with the parent; plan them without re-evaluating
        // expressions (they are plain values now).
        for child in children {
            plan(ctx, &child, Some((&full_type, &full_name)), out)?;
        }
    }
    Ok(())
}

fn address_of(group: Option<&str>, full_type: &str, name: &str) -> Result<Address, String> {
    let mut parts = full_type.split('/');
    let namespace = parts.next().unwrap_or_default().to_owned();
    let types: Vec<String> = parts.map(str::to_owned).collect();
    let names: Vec<String> = name.split('/').map(str::to_owned).collect();
    if types.is_empty() || types.len() != names.len() {
        return Err(format!(
            "the resource name '{name}' does not fit the type '{full_type}'"
        ));
    }
    Ok(Address {
        group: group.map(str::to_owned),
        namespace,
        types,
        names,
    })
}

/// Parameters as a deployment reports them: secure values are never echoed.
fn reported_parameters(template: &Value, given: &Value) -> Value {
    let mut out = Map::new();
    if let Some(params) = given.as_object() {
        for (k, v) in params {
            let ty = template["parameters"]
                .as_object()
                .and_then(|p| p.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)))
                .and_then(|(_, d)| d["type"].as_str())
                .unwrap_or("String")
                .to_owned();
            let mut entry = json!({"type": ty});
            if !ty.to_ascii_lowercase().starts_with("secure") {
                entry["value"] = v.get("value").cloned().unwrap_or(Value::Null);
            }
            out.insert(k.clone(), entry);
        }
    }
    Value::Object(out)
}

/// Evaluates and applies a template; returns the created ids and the outputs.
fn apply(
    ctx: &Ctx<'_>,
    world: &mut World,
    group: Option<&str>,
    name: &str,
    req: &Request,
    commit: bool,
) -> Result<(Vec<String>, Value), String> {
    let resources = match &req.template["resources"] {
        Value::Array(r) => r.clone(),
        Value::Null => Vec::new(),
        _ => {
            return Err(
                "the template's resources must be an array (symbolic names are not supported)"
                    .into(),
            );
        }
    };
    let mut created = Vec::new();
    for resource in &resources {
        let mut planned = Vec::new();
        {
            let host = Host {
                world,
                group: group.map(str::to_owned),
            };
            let tctx = Context::new(&req.template, &req.parameters, name, &host)
                .map_err(|e| e.to_string())?;
            plan(&tctx, resource, None, &mut planned)?;
        }
        for p in planned {
            let lower = p.full_type.to_ascii_lowercase();
            if lower == "microsoft.resources/resourcegroups" {
                if group.is_some() {
                    return Err("resource groups can only be deployed at subscription scope".into());
                }
                let location = p
                    .body
                    .get("location")
                    .and_then(Value::as_str)
                    .ok_or("a resource group needs a location")?;
                if commit {
                    let body = world.group_body(&p.name, location, p.body.get("tags"));
                    world.groups.insert(p.name.to_ascii_lowercase(), body);
                }
                created.push(world.group_id(&p.name));
                continue;
            }
            let Some(g) = group else {
                return Err(format!(
                    "'{}' cannot be deployed at subscription scope by the simulator",
                    p.full_type
                ));
            };
            let address = address_of(Some(g), &p.full_type, &p.name)?;
            let loc: Located = locate(world, &address).map_err(|r| error_text(&r))?;
            if commit {
                create_or_replace(ctx, world, &address, &loc, &p.body)
                    .map_err(|r| error_text(&r))?;
                // A deployment's resources are complete when the deployment is.
                if let Some(body) = world.resources.get_mut(&loc.key) {
                    body["properties"]["provisioningState"] = json!("Succeeded");
                }
                if lower == "microsoft.compute/virtualmachines" {
                    world.power.insert(loc.key.clone(), "running");
                }
            }
            created.push(loc.id);
        }
    }
    if commit
        && req.mode_complete
        && let Some(g) = group
    {
        let prefix = format!("{}/providers/", world.group_id(g).to_ascii_lowercase());
        let keep: Vec<String> = created.iter().map(|i| i.to_ascii_lowercase()).collect();
        let doomed: Vec<String> = world
            .resources
            .iter()
            .filter(|(k, v)| {
                k.starts_with(&prefix)
                    && v["type"].as_str().is_some_and(|t| {
                        t.matches('/').count() == 1
                            && !t.eq_ignore_ascii_case("Microsoft.Resources/deployments")
                    })
                    && !keep.contains(k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            remove_with_children(world, &k);
        }
    }
    let outputs = match req.template.get("outputs").and_then(Value::as_object) {
        Some(defs) => {
            let host = Host {
                world,
                group: group.map(str::to_owned),
            };
            let tctx = Context::new(&req.template, &req.parameters, name, &host)
                .map_err(|e| e.to_string())?;
            let mut out = Map::new();
            for (k, def) in defs {
                let ty = def
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("string")
                    .to_owned();
                let value = tctx
                    .evaluate(def.get("value").unwrap_or(&Value::Null))
                    .map_err(|e| e.to_string())?;
                out.insert(k.clone(), json!({"type": ty, "value": value}));
            }
            Value::Object(out)
        }
        None => json!({}),
    };
    Ok((created, outputs))
}

fn error_text(r: &SimResponse) -> String {
    r.body_json()
        .and_then(|b| b["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("status {}", r.status))
}

fn deployment_body(
    loc: &Located,
    req_body: &Value,
    req: &Request,
    created: &[String],
    outputs: Value,
    state: &str,
) -> Value {
    let hash = Sha256::digest(serde_json::to_vec(&req.template).unwrap_or_default());
    let hash: String = hash.iter().take(8).map(|b| format!("{b:02}")).collect();
    let mut body = json!({
        "id": loc.id,
        "name": loc.name,
        "type": "Microsoft.Resources/deployments",
        "properties": {
            "templateHash": hash,
            "parameters": reported_parameters(&req.template, &req.parameters),
            "mode": if req.mode_complete { "Complete" } else { "Incremental" },
            "provisioningState": state,
            "timestamp": now_rfc3339(),
            "duration": "PT1S",
            "correlationId": uuid::Uuid::new_v4(),
            "outputs": outputs,
            "outputResources": created.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            "dependencies": [],
        }
    });
    if let Some(tags) = req_body.get("tags") {
        body["tags"] = tags.clone();
    }
    if let Some(location) = req_body.get("location") {
        body["location"] = location.clone();
    }
    body
}

pub fn put(ctx: &Ctx<'_>, address: &Address, loc: &Located) -> SimResponse {
    let req_body = match ctx.req.json() {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
            );
        }
    };
    let req = match parse_request(&req_body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut world = ctx.sim.world();
    let (created, outputs) = match apply(
        ctx,
        &mut world,
        address.group.as_deref(),
        &loc.name,
        &req,
        true,
    ) {
        Ok(x) => x,
        Err(e) => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidTemplateDeployment",
                format!("The template deployment '{}' is not valid: {e}", loc.name),
            );
        }
    };
    let existed = world.resources.contains_key(&loc.key);
    let body = deployment_body(loc, &req_body, &req, &created, outputs, "Accepted");
    world.resources.insert(loc.key.clone(), body.clone());
    let op = lro::start(
        &mut world,
        "Microsoft.Resources",
        "global",
        ctx.sim.config.lro_polls,
        Effect::Provision {
            resource: loc.key.clone(),
        },
    );
    drop(world);
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    lro::headers(
        ctx,
        SimResponse::json(status, &body),
        &op,
        Style::AsyncOperation,
    )
}

/// `validate` (evaluates the template, creates nothing); `None` for other actions.
pub fn action(
    ctx: &Ctx<'_>,
    world: &mut World,
    loc: &Located,
    address: &Address,
    action: &str,
) -> Option<SimResponse> {
    if ctx.req.method != Method::POST {
        return None;
    }
    match action.to_ascii_lowercase().as_str() {
        "validate" => {
            let req_body = ctx.req.json().unwrap_or(Value::Null);
            let req = match parse_request(&req_body) {
                Ok(r) => r,
                Err(r) => return Some(r),
            };
            Some(
                match apply(ctx, world, address.group.as_deref(), &loc.name, &req, false) {
                    Ok((ids, _)) => {
                        let mut body =
                            deployment_body(loc, &req_body, &req, &[], json!({}), "Succeeded");
                        body["properties"]["validatedResources"] =
                            json!(ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>());
                        SimResponse::json(StatusCode::OK, &body)
                    }
                    Err(e) => invalid_template(e),
                },
            )
        }
        _ => None,
    }
}
