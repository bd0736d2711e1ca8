//! Namespaces and types rendered in the casing the RBAC operations list uses, for audit and
//! explain; matching never depends on it.

use super::is;

/// Well-known namespaces and types in the casing the RBAC operations list uses. Only for
/// readable output (audit, explain): matching is case-insensitive regardless. A prefix of an
/// entry applies on its own, so "Microsoft.KeyVault/vaults/keys" is cased by the secrets entry
/// up to `vaults`.
pub const CANONICAL_TYPES: &[&str] = &[
    "Microsoft.Authorization/locks",
    "Microsoft.Authorization/policyAssignments",
    "Microsoft.Authorization/policyDefinitions",
    "Microsoft.Authorization/roleAssignments",
    "Microsoft.Authorization/roleDefinitions",
    "Microsoft.Compute/disks",
    "Microsoft.Compute/snapshots",
    "Microsoft.Compute/virtualMachineScaleSets",
    "Microsoft.Compute/virtualMachines/extensions",
    "Microsoft.ContainerRegistry/registries",
    "Microsoft.ContainerService/managedClusters",
    "Microsoft.DocumentDB/databaseAccounts",
    "Microsoft.Insights/diagnosticSettings",
    "Microsoft.KeyVault/deletedVaults",
    "Microsoft.KeyVault/vaults/accessPolicies",
    "Microsoft.KeyVault/vaults/keys",
    "Microsoft.KeyVault/vaults/secrets",
    "Microsoft.ManagedIdentity/userAssignedIdentities",
    "Microsoft.Management/managementGroups",
    "Microsoft.Network/loadBalancers",
    "Microsoft.Network/networkInterfaces",
    "Microsoft.Network/networkSecurityGroups",
    "Microsoft.Network/privateEndpoints",
    "Microsoft.Network/publicIPAddresses",
    "Microsoft.Network/virtualNetworks/subnets",
    "Microsoft.ResourceGraph/resources",
    "Microsoft.Resources/deployments",
    "Microsoft.Resources/deploymentScripts",
    "Microsoft.Sql/servers/databases",
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Web/serverfarms",
    "Microsoft.Web/sites/config",
    "Microsoft.Web/sites/slots",
];

/// `{Namespace}/{type}/{subtype}...` with well-known parts in canonical casing.
pub(super) fn canonical_type(ns: &str, types: &[&str]) -> String {
    let mut out_ns = ns;
    let mut out: Vec<&str> = types.to_vec();
    for entry in CANONICAL_TYPES {
        let mut parts = entry.split('/');
        let Some(entry_ns) = parts.next() else {
            continue;
        };
        if !is(ns, entry_ns) {
            continue;
        }
        out_ns = entry_ns;
        for (k, part) in parts.enumerate() {
            match types.get(k) {
                Some(t) if is(t, part) => out[k] = part,
                _ => break,
            }
        }
    }
    let mut s = out_ns.to_string();
    for t in out {
        s.push('/');
        s.push_str(t);
    }
    s
}
