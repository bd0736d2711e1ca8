//! Long-running operations as ARM presents them: the initial 201/202 with
//! `Azure-AsyncOperation` and/or `Location` and `Retry-After`, a status endpoint answering
//! `InProgress` for a configured number of polls and then `Succeeded`, and a result endpoint.
//! <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/async-api-reference.md>
//!
//! Completion is driven by polls, not by a clock, so tests are deterministic: with
//! `lro_polls: 1` the first poll says `InProgress` and the second `Succeeded`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::arm::Ctx;
use crate::wire::{SimResponse, arm_error};
use crate::world::{Effect, Operation, World, now_rfc3339};

/// Which headers the initial answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `Azure-AsyncOperation` only (PUT of compute resources, deployments).
    AsyncOperation,
    /// `Location` only (storage account create, resource group delete).
    Location,
    /// Both (compute DELETE and POST actions).
    Both,
}

pub fn start(
    world: &mut World,
    namespace: &str,
    location: &str,
    polls: u32,
    effect: Effect,
) -> Operation {
    let op = Operation {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: namespace.to_owned(),
        location: location.to_ascii_lowercase().replace(' ', ""),
        polls_left: polls,
        done: false,
        effect,
        start_time: now_rfc3339(),
        end_time: None,
    };
    world.operations.insert(op.id.clone(), op.clone());
    op
}

fn url(ctx: &Ctx<'_>, op: &Operation, kind: &str) -> String {
    format!(
        "{}/subscriptions/{}/providers/{}/locations/{}/{kind}/{}?api-version={}",
        ctx.req.base_url,
        ctx.sim.config.subscription_id,
        op.namespace,
        op.location,
        op.id,
        ctx.api_version
    )
}

/// Adds the polling headers of `style` to an initial answer.
pub fn headers(ctx: &Ctx<'_>, mut r: SimResponse, op: &Operation, style: Style) -> SimResponse {
    if matches!(style, Style::AsyncOperation | Style::Both) {
        r = r.header("azure-asyncoperation", url(ctx, op, "operations"));
    }
    if matches!(style, Style::Location | Style::Both) {
        r = r.header("location", url(ctx, op, "operationResults"));
    }
    r.header("retry-after", ctx.sim.config.retry_after_secs.to_string())
}

/// Applies an operation's effect on the world.
fn complete(world: &mut World, op: &Operation) {
    match &op.effect {
        Effect::Provision { resource } => {
            if let Some(body) = world.resources.get_mut(resource)
                && let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut)
            {
                props.insert("provisioningState".into(), json!("Succeeded"));
            }
            world.power.entry(resource.clone()).or_insert("running");
        }
        Effect::Delete { resource } => crate::arm::resources::remove_with_children(world, resource),
        Effect::DeleteGroup { group } => {
            let prefix = format!("{}/", world.group_id(group).to_ascii_lowercase());
            let doomed: Vec<String> = world
                .resources
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in doomed {
                crate::arm::resources::remove_with_children(world, &k);
            }
            world.groups.remove(&group.to_ascii_lowercase());
        }
        Effect::Power { resource, state } => {
            if world.resources.contains_key(resource) {
                world.power.insert(resource.clone(), state);
            }
        }
    }
}

/// `GET .../operations/{id}` (async style) and `.../operationResults/{id}` (location style).
pub fn status(ctx: &Ctx<'_>, id: &str, location_style: bool) -> SimResponse {
    let mut world = ctx.sim.world();
    let Some(mut op) = world.operations.get(id).cloned() else {
        return arm_error(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            format!("The operation '{id}' could not be found."),
        );
    };
    if !op.done {
        if op.polls_left == 0 {
            complete(&mut world, &op);
            op.done = true;
            op.end_time = Some(now_rfc3339());
        } else {
            op.polls_left -= 1;
        }
        world.operations.insert(op.id.clone(), op.clone());
    }
    if location_style {
        if !op.done {
            return headers(
                ctx,
                SimResponse::empty(StatusCode::ACCEPTED),
                &op,
                Style::Location,
            );
        }
        return match &op.effect {
            Effect::Provision { resource } => match world.resources.get(resource) {
                Some(body) => SimResponse::json(StatusCode::OK, body),
                None => SimResponse::empty(StatusCode::NO_CONTENT),
            },
            _ => SimResponse::empty(StatusCode::OK),
        };
    }
    let mut body = json!({
        "id": format!("/subscriptions/{}/providers/{}/locations/{}/operations/{}", ctx.sim.config.subscription_id, op.namespace, op.location, op.id),
        "name": op.id,
        "status": if op.done { "Succeeded" } else { "InProgress" },
        "startTime": op.start_time,
    });
    if let Some(end) = &op.end_time {
        body["endTime"] = json!(end);
    }
    let r = SimResponse::json(StatusCode::OK, &body);
    if op.done {
        r
    } else {
        r.header("retry-after", ctx.sim.config.retry_after_secs.to_string())
    }
}
