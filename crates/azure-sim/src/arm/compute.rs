//! `Microsoft.Compute/virtualMachines`: long-running create and delete, power actions, and
//! the instance view. Passwords sent at creation are never returned, as in Azure.
//! <https://learn.microsoft.com/rest/api/compute/virtual-machines>

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::arm::Ctx;
use crate::arm::lro::{self, Style};
use crate::arm::resources::Located;
use crate::wire::SimResponse;
use crate::world::{Effect, World, now_rfc3339};

/// Fields Azure accepts on a VM but never returns.
pub fn scrub(body: &mut Value) {
    if let Some(os) = body
        .get_mut("properties")
        .and_then(|p| p.get_mut("osProfile"))
        .and_then(Value::as_object_mut)
    {
        os.remove("adminPassword");
        os.remove("customData");
    }
}

pub fn on_put(stored: &mut Value, existed: bool) {
    scrub(stored);
    let id = stored["id"].as_str().unwrap_or_default().to_owned();
    let props = &mut stored["properties"];
    props["vmId"] = json!(crate::config::derived_id("vm", &id.to_ascii_lowercase()));
    props["provisioningState"] = json!(if existed { "Updating" } else { "Creating" });
    if !existed {
        props["timeCreated"] = json!(now_rfc3339());
    }
}

pub fn instance_view(world: &World, key: &str) -> Value {
    let power = world.power.get(key).copied().unwrap_or("starting");
    let provisioning = world
        .resources
        .get(key)
        .and_then(|b| b["properties"]["provisioningState"].as_str())
        .unwrap_or("Succeeded")
        .to_ascii_lowercase();
    let display = match power {
        "running" => "VM running",
        "stopped" => "VM stopped",
        "deallocated" => "VM deallocated",
        _ => "VM starting",
    };
    json!({
        "statuses": [
            {"code": format!("ProvisioningState/{provisioning}"), "level": "Info", "displayStatus": format!("Provisioning {provisioning}")},
            {"code": format!("PowerState/{power}"), "level": "Info", "displayStatus": display},
        ]
    })
}

pub fn action(
    ctx: &Ctx<'_>,
    world: &mut World,
    loc: &Located,
    action: &str,
) -> Option<SimResponse> {
    let method = &ctx.req.method;
    let a = action.to_ascii_lowercase();
    if a == "instanceview" {
        return Some(if *method == Method::GET {
            SimResponse::json(StatusCode::OK, &instance_view(world, &loc.key))
        } else {
            crate::wire::arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "instanceView is read with GET.",
            )
        });
    }
    let state = match a.as_str() {
        "start" | "restart" => "running",
        "poweroff" => "stopped",
        "deallocate" => "deallocated",
        _ => return None,
    };
    let location = world.resources[&loc.key]["location"]
        .as_str()
        .unwrap_or("eastus")
        .to_owned();
    let op = lro::start(
        world,
        "Microsoft.Compute",
        &location,
        ctx.sim.config.lro_polls,
        Effect::Power {
            resource: loc.key.clone(),
            state,
        },
    );
    Some(lro::headers(
        ctx,
        SimResponse::empty(StatusCode::ACCEPTED),
        &op,
        Style::Both,
    ))
}
