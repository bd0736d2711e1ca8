//! ARM paths, parsed. Type and name segments alternate after `/providers/{Namespace}`; an
//! odd tail is a collection (GET) or an action (POST). Matching is case-insensitive; names
//! keep the case the client sent.

use http::{Method, StatusCode};

use crate::wire::{SimResponse, arm_error};

/// A resource address below a subscription.
#[derive(Debug, Clone)]
pub struct Address {
    pub group: Option<String>,
    pub namespace: String,
    /// Resource types from the outermost (`virtualMachines`) to the innermost.
    pub types: Vec<String>,
    /// One name per type (for a collection, one fewer).
    pub names: Vec<String>,
}

impl Address {
    /// `Microsoft.Compute/virtualMachines`, as the client spelled it.
    pub fn full_type(&self) -> String {
        format!("{}/{}", self.namespace, self.types.join("/"))
    }

    pub fn full_type_lower(&self) -> String {
        self.full_type().to_ascii_lowercase()
    }
}

#[derive(Debug, Clone)]
pub enum Route {
    Tenants,
    Subscriptions,
    Subscription {
        id: String,
    },
    Providers {
        subscription: String,
        namespace: Option<String>,
    },
    Groups {
        subscription: String,
    },
    Group {
        subscription: String,
        name: String,
    },
    GroupResources {
        subscription: String,
        group: String,
    },
    SubscriptionResources {
        subscription: String,
    },
    OperationStatus {
        subscription: String,
        id: String,
        location_style: bool,
    },
    Collection {
        subscription: String,
        address: Address,
    },
    Resource {
        subscription: String,
        address: Address,
    },
    Action {
        subscription: String,
        address: Address,
        action: String,
    },
}

fn not_found() -> SimResponse {
    arm_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested path does not match any resource or operation the simulator serves.",
    )
}

/// GETs on a resource's sub-path that are operations, not child collections.
const GET_ACTIONS: &[&str] = &["instanceview"];

pub fn parse(segments: &[String], method: &Method) -> Result<Route, SimResponse> {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match l.as_slice() {
        ["tenants"] => return Ok(Route::Tenants),
        ["subscriptions"] => return Ok(Route::Subscriptions),
        ["subscriptions", ..] => {}
        _ => return Err(not_found()),
    }
    let subscription = segments[1].clone();
    let rest = &segments[2..];
    let lrest = &l[2..];
    let (group, after) = match lrest {
        [] => return Ok(Route::Subscription { id: subscription }),
        ["resourcegroups"] => return Ok(Route::Groups { subscription }),
        ["resourcegroups", _] => {
            return Ok(Route::Group {
                subscription,
                name: rest[1].clone(),
            });
        }
        ["resourcegroups", _, "resources"] => {
            return Ok(Route::GroupResources {
                subscription,
                group: rest[1].clone(),
            });
        }
        ["resources"] => return Ok(Route::SubscriptionResources { subscription }),
        ["providers"] => {
            return Ok(Route::Providers {
                subscription,
                namespace: None,
            });
        }
        ["providers", _] => {
            return Ok(Route::Providers {
                subscription,
                namespace: Some(rest[1].clone()),
            });
        }
        [
            "providers",
            _,
            "locations",
            _,
            kind @ ("operations" | "operationresults" | "asyncoperations"),
            _,
        ] => {
            return Ok(Route::OperationStatus {
                subscription,
                id: rest[5].clone(),
                location_style: *kind == "operationresults",
            });
        }
        ["resourcegroups", _, "providers", _, _, ..] => (Some(rest[1].clone()), &rest[3..]),
        ["providers", _, _, ..] => (None, &rest[1..]),
        _ => return Err(not_found()),
    };
    let namespace = after[0].clone();
    let tail = &after[1..];
    if tail.iter().any(|s| s.eq_ignore_ascii_case("providers")) {
        // Extension resources on resources are outside what the simulator models.
        return Err(not_found());
    }
    let mut types = Vec::new();
    let mut names = Vec::new();
    for (i, seg) in tail.iter().enumerate() {
        if i % 2 == 0 {
            types.push(seg.clone());
        } else {
            names.push(seg.clone());
        }
    }
    let address = |types: Vec<String>, names: Vec<String>| Address {
        group: group.clone(),
        namespace: namespace.clone(),
        types,
        names,
    };
    if tail.len() % 2 == 0 {
        return Ok(Route::Resource {
            subscription,
            address: address(types, names),
        });
    }
    let last = types.last().cloned().unwrap_or_default();
    let is_action = tail.len() >= 3
        && (*method == Method::POST || GET_ACTIONS.contains(&last.to_ascii_lowercase().as_str()));
    if is_action {
        types.pop();
        Ok(Route::Action {
            subscription,
            address: address(types, names),
            action: last,
        })
    } else {
        Ok(Route::Collection {
            subscription,
            address: address(types, names),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn resources_collections_and_actions() {
        let p =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
        assert!(matches!(
            parse(&segs(p), &Method::GET),
            Ok(Route::Resource { .. })
        ));
        let p = "/subscriptions/s/RESOURCEGROUPS/rg/providers/Microsoft.Compute/virtualMachines";
        assert!(matches!(
            parse(&segs(p), &Method::GET),
            Ok(Route::Collection { .. })
        ));
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1/start";
        match parse(&segs(p), &Method::POST) {
            Ok(Route::Action {
                address, action, ..
            }) => {
                assert_eq!(action, "start");
                assert_eq!(address.full_type(), "Microsoft.Compute/virtualMachines");
                assert_eq!(address.names, vec!["vm1"]);
            }
            other => panic!("{other:?}"),
        }
        let p =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/secrets/s1";
        match parse(&segs(p), &Method::PUT) {
            Ok(Route::Resource { address, .. }) => {
                assert_eq!(address.full_type(), "Microsoft.KeyVault/vaults/secrets");
                assert_eq!(address.names, vec!["kv", "s1"]);
            }
            other => panic!("{other:?}"),
        }
        let p = "/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/abc";
        assert!(matches!(
            parse(&segs(p), &Method::GET),
            Ok(Route::OperationStatus {
                location_style: false,
                ..
            })
        ));
    }

    #[test]
    fn unknown_shapes_are_not_found() {
        assert!(parse(&segs("/nothing"), &Method::GET).is_err());
        assert!(parse(&segs("/subscriptions/s/bogus"), &Method::GET).is_err());
    }
}
