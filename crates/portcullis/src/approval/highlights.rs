//! What an approver should see first in a held write: the settings that decide how exposed a
//! resource will be (network reach, TLS, anonymous or key access, deletion protection, who
//! is granted which role), wherever they sit in the body. ARM compares property names
//! without regard to case, so this does too; a value that weakens the resource is flagged
//! and listed first. The whole body is shown beside them: these are where to look, not all
//! there is.
//!
//! Names and risky values follow the REST specs of the resource types agents touch most
//! (Storage `StorageAccountPropertiesCreateParameters`, Key Vault `VaultProperties`, Network
//! `SecurityRulePropertiesFormat`, SQL `FirewallRuleProperties`, Container Registry
//! `RegistryProperties`, Web `SiteConfig`, AKS `ManagedClusterAPIServerAccessProfile`,
//! Authorization `RoleAssignmentProperties`):
//! <https://github.com/Azure/azure-rest-api-specs/tree/main/specification>.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One setting in a held request's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Highlight {
    /// Where it is in the body (`properties.networkAcls.defaultAction`).
    pub path: String,
    /// Its value as JSON text, whole (a value longer than [`MAX_VALUE`] says so).
    pub value: String,
    /// What the value does, when it weakens the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
}

/// Longer values are cut here, and say so; the body below holds them whole.
pub const MAX_VALUE: usize = 400;

/// A setting worth a look, and the values that weaken the resource.
struct Setting {
    name: &'static str,
    risky: fn(&Value) -> Option<&'static str>,
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_ascii_lowercase).unwrap_or_default()
}

fn is_true(v: &Value, why: &'static str) -> Option<&'static str> {
    (v.as_bool() == Some(true) || text(v) == "true").then_some(why)
}

fn is_false(v: &Value, why: &'static str) -> Option<&'static str> {
    (v.as_bool() == Some(false) || text(v) == "false").then_some(why)
}

fn any_source(v: &Value) -> bool {
    let open = |s: &str| matches!(s.trim(), "*" | "internet" | "any" | "0.0.0.0/0" | "::/0");
    match v {
        Value::Array(items) => items.iter().any(|i| open(&text(i))),
        _ => open(&text(v)),
    }
}

/// Built-in roles that hand out everything, or the right to hand out anything.
const BROAD_ROLES: &[(&str, &str)] = &[
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "grants Owner"),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "grants Contributor"),
    (
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "grants User Access Administrator",
    ),
    (
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "grants Role Based Access Control Administrator",
    ),
];

const SETTINGS: &[Setting] = &[
    Setting {
        name: "allowBlobPublicAccess",
        risky: |v| is_true(v, "anyone on the internet may read public containers"),
    },
    Setting {
        name: "publicAccess",
        risky: |v| {
            matches!(text(v).as_str(), "blob" | "container")
                .then_some("the container is readable anonymously")
        },
    },
    Setting {
        name: "allowSharedKeyAccess",
        risky: |v| is_true(v, "account keys, not only Entra ID, open the data"),
    },
    Setting {
        name: "allowCrossTenantReplication",
        risky: |v| is_true(v, "data may be replicated to another tenant"),
    },
    Setting {
        name: "minimumTlsVersion",
        risky: |v| old_tls(v),
    },
    Setting {
        name: "minTlsVersion",
        risky: |v| old_tls(v),
    },
    Setting {
        name: "minimalTlsVersion",
        risky: |v| old_tls(v),
    },
    Setting {
        name: "supportsHttpsTrafficOnly",
        risky: |v| is_false(v, "plain HTTP is accepted"),
    },
    Setting {
        name: "httpsOnly",
        risky: |v| is_false(v, "plain HTTP is accepted"),
    },
    Setting {
        name: "ftpsState",
        risky: |v| (text(v) == "allallowed").then_some("unencrypted FTP is accepted"),
    },
    Setting {
        name: "publicNetworkAccess",
        risky: |v| (text(v) == "enabled").then_some("reachable from the public internet"),
    },
    Setting {
        name: "defaultAction",
        risky: |v| (text(v) == "allow").then_some("network rules let every address in"),
    },
    Setting {
        name: "bypass",
        risky: |_| None,
    },
    Setting {
        name: "ipRules",
        risky: |_| None,
    },
    Setting {
        name: "virtualNetworkRules",
        risky: |_| None,
    },
    Setting {
        name: "sourceAddressPrefix",
        risky: |v| any_source(v).then_some("open to every source address"),
    },
    Setting {
        name: "sourceAddressPrefixes",
        risky: |v| any_source(v).then_some("open to every source address"),
    },
    Setting {
        name: "destinationPortRange",
        risky: |v| (text(v).trim() == "*").then_some("every port"),
    },
    Setting {
        name: "destinationPortRanges",
        risky: |_| None,
    },
    Setting {
        name: "access",
        risky: |_| None,
    },
    Setting {
        name: "startIpAddress",
        risky: |_| None,
    },
    Setting {
        name: "endIpAddress",
        risky: |v| {
            (text(v) == "255.255.255.255").then_some("the firewall rule reaches the last address")
        },
    },
    Setting {
        name: "authorizedIPRanges",
        risky: |v| any_source(v).then_some("the API server is open to every address"),
    },
    Setting {
        name: "enablePrivateCluster",
        risky: |v| is_false(v, "the cluster's API server is public"),
    },
    Setting {
        name: "disableLocalAuth",
        risky: |v| is_false(v, "keys and local accounts, not only Entra ID, sign in"),
    },
    Setting {
        name: "disableLocalAccounts",
        risky: |v| is_false(v, "local accounts, not only Entra ID, sign in"),
    },
    Setting {
        name: "adminUserEnabled",
        risky: |v| is_true(v, "a shared admin password opens the registry"),
    },
    Setting {
        name: "anonymousPullEnabled",
        risky: |v| is_true(v, "anyone may pull images"),
    },
    Setting {
        name: "enablePurgeProtection",
        risky: |v| is_false(v, "deleted items can be purged at once"),
    },
    Setting {
        name: "enableSoftDelete",
        risky: |v| is_false(v, "deleted items cannot be recovered"),
    },
    Setting {
        name: "enableRbacAuthorization",
        risky: |v| {
            is_false(
                v,
                "access policies, not Azure RBAC, decide who reads secrets",
            )
        },
    },
    Setting {
        name: "accessPolicies",
        risky: |_| None,
    },
    Setting {
        name: "enabledForTemplateDeployment",
        risky: |v| is_true(v, "deployments may read the vault's secrets"),
    },
    Setting {
        name: "roleDefinitionId",
        risky: |v| {
            let id = text(v);
            BROAD_ROLES
                .iter()
                .find(|(guid, _)| id.ends_with(guid))
                .map(|(_, why)| *why)
        },
    },
    Setting {
        name: "principalId",
        risky: |_| None,
    },
    Setting {
        name: "principalType",
        risky: |_| None,
    },
    Setting {
        name: "condition",
        risky: |_| None,
    },
    Setting {
        name: "adminUsername",
        risky: |_| None,
    },
    Setting {
        name: "disablePasswordAuthentication",
        risky: |v| is_false(v, "password sign-in is allowed"),
    },
    Setting {
        name: "publicIPAddress",
        risky: |v| (!v.is_null()).then_some("a public IP address is attached"),
    },
    Setting {
        name: "customData",
        risky: |v| (!v.is_null()).then_some("runs as a script at first boot"),
    },
    Setting {
        name: "mode",
        risky: |v| (text(v) == "complete").then_some("deletes what the template does not name"),
    },
];

fn old_tls(v: &Value) -> Option<&'static str> {
    matches!(
        text(v).replace(['_', '.'], "").as_str(),
        "tls10" | "tls11" | "10" | "11"
    )
    .then_some("TLS older than 1.2 is accepted")
}

/// The settings in a held request's (masked) body, the risky ones first, each group in the
/// body's order. Tags are labels, not settings: their names are not read.
pub fn of(body: &Value) -> Vec<Highlight> {
    let mut found = Vec::new();
    walk(body, &mut String::new(), 0, &mut found);
    found.sort_by_key(|h: &Highlight| h.risk.is_none());
    found
}

fn walk(v: &Value, path: &mut String, depth: usize, out: &mut Vec<Highlight>) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if depth == 0 && k.eq_ignore_ascii_case("tags") {
                    continue;
                }
                let len = path.len();
                if simple(k) {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                } else {
                    path.push_str(&format!("[{}]", Value::String(k.clone())));
                }
                if let Some(s) = SETTINGS.iter().find(|s| s.name.eq_ignore_ascii_case(k)) {
                    out.push(Highlight {
                        path: path.clone(),
                        value: shown(x),
                        risk: (s.risky)(x).map(str::to_owned),
                    });
                }
                walk(x, path, depth + 1, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(x, path, depth + 1, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A key that reads unambiguously in a dotted path.
fn simple(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$' || b == b'@')
}

fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= MAX_VALUE {
        return s;
    }
    let cut: String = s.chars().take(MAX_VALUE).collect();
    format!(
        "{cut}… (cut here: {} characters in all; the body holds it whole)",
        s.chars().count()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn risky_storage_settings_come_first_wherever_they_are_and_in_any_case() {
        let body = json!({
            "location": "eastus",
            "tags": {"description": "x".repeat(70_000), "allowBlobPublicAccess": "decoy"},
            "properties": {
                "supportsHttpsTrafficOnly": true,
                "ALLOWBLOBPUBLICACCESS": true,
                "minimumTlsVersion": "TLS1_0",
                "networkAcls": {"defaultAction": "Allow", "bypass": "AzureServices"},
            }
        });
        let h = of(&body);
        let risky: Vec<&str> = h
            .iter()
            .take_while(|h| h.risk.is_some())
            .map(|h| h.path.as_str())
            .collect();
        assert_eq!(
            risky,
            [
                "properties.ALLOWBLOBPUBLICACCESS",
                "properties.minimumTlsVersion",
                "properties.networkAcls.defaultAction"
            ],
            "{h:?}"
        );
        assert!(
            h.iter()
                .any(|x| x.path == "properties.supportsHttpsTrafficOnly" && x.risk.is_none())
        );
        assert!(
            !h.iter().any(|x| x.path.starts_with("tags")),
            "tags are labels: {h:?}"
        );
        assert_eq!(h[0].value, "true");
    }

    #[test]
    fn rules_roles_and_long_values() {
        let body = json!({"properties": {
            "roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            "securityRules": [{"name": "ssh", "properties": {"sourceAddressPrefix": "*", "destinationPortRange": "22", "access": "Allow"}}],
            "accessPolicies": [{"permissions": {"secrets": ["x".repeat(500)]}}],
            "odd.key": {"publicNetworkAccess": "Enabled"},
        }});
        let h = of(&body);
        let get = |p: &str| {
            h.iter()
                .find(|x| x.path == p)
                .unwrap_or_else(|| panic!("{p}: {h:?}"))
        };
        assert_eq!(
            get("properties.roleDefinitionId").risk.as_deref(),
            Some("grants Owner")
        );
        assert!(
            get("properties.securityRules[0].properties.sourceAddressPrefix")
                .risk
                .is_some()
        );
        assert!(
            get("properties.securityRules[0].properties.destinationPortRange")
                .risk
                .is_none()
        );
        assert!(
            get(r#"properties["odd.key"].publicNetworkAccess"#)
                .risk
                .is_some()
        );
        let long = &get("properties.accessPolicies").value;
        assert!(
            long.contains("cut here") && long.contains("characters in all"),
            "{long}"
        );
    }
}
