//! Which Azure answers carry secrets, and where: operations (RBAC action patterns) and the
//! JSON paths of their secret fields (azure-notes §5). A path is dot-separated keys, where
//! `*` is any key or array index and `[*]` any array element; a selected object or array is
//! masked whole (every string inside it), unless the path starts with `=`: then only a
//! string there is masked (Key Vault's `value` is the secret in a bundle, but the list of
//! items in a list).
//!
//! Sources, per entry: the REST reference of each operation's response
//! (<https://learn.microsoft.com/rest/api/azure/>), cited below by service.

use crate::policy::ActionPattern;

/// One kind of secret-bearing answer.
pub struct Profile {
    /// The name placeholders and `unmask:` use.
    pub name: &'static str,
    pub actions: &'static [&'static str],
    pub paths: &'static [&'static str],
}

/// The catalog. Order does not matter: every matching profile applies.
pub const PROFILES: &[Profile] = &[
    // Key Vault: secret bundles, deleted secrets and backups carry `value`; so does key release.
    // https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret/get-secret
    Profile {
        name: "keyvault-secret",
        actions: &["Microsoft.KeyVault/vaults/secrets/*"],
        paths: &["=value"],
    },
    Profile {
        name: "keyvault-key-release",
        actions: &["Microsoft.KeyVault/vaults/keys/release/action"],
        paths: &["=value"],
    },
    // https://learn.microsoft.com/rest/api/storagerp/storage-accounts/list-keys
    Profile {
        name: "storage-keys",
        actions: &[
            "Microsoft.Storage/storageAccounts/listKeys/action",
            "Microsoft.Storage/storageAccounts/regenerateKey/action",
        ],
        paths: &["keys[*].value"],
    },
    Profile {
        name: "storage-sas",
        actions: &[
            "Microsoft.Storage/storageAccounts/listAccountSas/action",
            "Microsoft.Storage/storageAccounts/listServiceSas/action",
        ],
        paths: &["accountSasToken", "serviceSasToken"],
    },
    // https://learn.microsoft.com/rest/api/cosmos-db-resource-provider/database-accounts/list-keys
    Profile {
        name: "cosmos-keys",
        actions: &[
            "Microsoft.DocumentDB/databaseAccounts/listKeys/action",
            "Microsoft.DocumentDB/databaseAccounts/readonlykeys/*",
            "Microsoft.DocumentDB/databaseAccounts/listConnectionStrings/action",
            "Microsoft.DocumentDB/databaseAccounts/regenerateKey/action",
        ],
        paths: &[
            "primaryMasterKey",
            "secondaryMasterKey",
            "primaryReadonlyMasterKey",
            "secondaryReadonlyMasterKey",
            "connectionStrings[*].connectionString",
        ],
    },
    // https://learn.microsoft.com/rest/api/appservice/web-apps/list-application-settings
    Profile {
        name: "web-app-config",
        actions: &[
            "Microsoft.Web/sites/config/list/action",
            "Microsoft.Web/sites/slots/config/list/action",
        ],
        paths: &["properties"],
    },
    // https://learn.microsoft.com/rest/api/appservice/web-apps/list-host-keys
    Profile {
        name: "function-keys",
        actions: &[
            "Microsoft.Web/sites/host/listkeys/action",
            "Microsoft.Web/sites/host/listsecrets/action",
            "Microsoft.Web/sites/functions/listkeys/action",
            "Microsoft.Web/sites/functions/listsecrets/action",
            "Microsoft.Web/sites/slots/functions/listkeys/action",
            "Microsoft.Web/sites/slots/host/listkeys/action",
        ],
        paths: &[
            "masterKey",
            "functionKeys",
            "systemKeys",
            "key",
            "trigger_url",
            "value",
        ],
    },
    // https://learn.microsoft.com/rest/api/aks/managed-clusters/list-cluster-admin-credentials
    Profile {
        name: "aks-credentials",
        actions: &["Microsoft.ContainerService/managedClusters/listCluster*Credential/action"],
        paths: &["kubeconfigs[*].value"],
    },
    // https://learn.microsoft.com/rest/api/servicebus/controlplane-stable/namespaces-authorization-rules/list-keys
    Profile {
        name: "messaging-keys",
        actions: &[
            "Microsoft.ServiceBus/*/listKeys/action",
            "Microsoft.ServiceBus/*/regenerateKeys/action",
            "Microsoft.EventHub/*/listKeys/action",
            "Microsoft.EventHub/*/regenerateKeys/action",
            "Microsoft.Relay/*/listKeys/action",
            "Microsoft.Relay/*/regenerateKeys/action",
        ],
        paths: &[
            "primaryKey",
            "secondaryKey",
            "primaryConnectionString",
            "secondaryConnectionString",
            "aliasPrimaryConnectionString",
            "aliasSecondaryConnectionString",
        ],
    },
    // https://learn.microsoft.com/rest/api/containerregistry/registries/list-credentials
    Profile {
        name: "acr-credentials",
        actions: &[
            "Microsoft.ContainerRegistry/registries/listCredentials/action",
            "Microsoft.ContainerRegistry/registries/regenerateCredential/action",
        ],
        paths: &["passwords[*].value"],
    },
    // https://learn.microsoft.com/rest/api/aiservices/accountmanagement/accounts/list-keys
    Profile {
        name: "cognitive-keys",
        actions: &[
            "Microsoft.CognitiveServices/accounts/listKeys/action",
            "Microsoft.CognitiveServices/accounts/regenerateKey/action",
        ],
        paths: &["key1", "key2"],
    },
    // https://learn.microsoft.com/rest/api/appconfiguration/stable/configuration-stores/list-keys
    Profile {
        name: "appconfig-keys",
        actions: &[
            "Microsoft.AppConfiguration/configurationStores/ListKeys/action",
            "Microsoft.AppConfiguration/configurationStores/RegenerateKey/action",
        ],
        paths: &[
            "value[*].value",
            "value[*].connectionString",
            "value",
            "connectionString",
        ],
    },
    // https://learn.microsoft.com/rest/api/loganalytics/shared-keys/get-shared-keys
    Profile {
        name: "loganalytics-keys",
        actions: &[
            "Microsoft.OperationalInsights/workspaces/sharedKeys/action",
            "Microsoft.OperationalInsights/workspaces/regenerateSharedKey/action",
        ],
        paths: &["primarySharedKey", "secondarySharedKey"],
    },
    // https://learn.microsoft.com/rest/api/redis/redis/list-keys (azure-notes marks Redis and Search as inferred)
    Profile {
        name: "redis-keys",
        actions: &[
            "Microsoft.Cache/redis/listKeys/action",
            "Microsoft.Cache/redis/regenerateKey/action",
        ],
        paths: &["primaryKey", "secondaryKey"],
    },
    Profile {
        name: "search-keys",
        actions: &[
            "Microsoft.Search/searchServices/listAdminKeys/action",
            "Microsoft.Search/searchServices/regenerateAdminKey/action",
            "Microsoft.Search/searchServices/listQueryKeys/action",
            "Microsoft.Search/searchServices/createQueryKey/action",
        ],
        paths: &["primaryKey", "secondaryKey", "value[*].key", "key"],
    },
    // Deployment outputs can hold anything a template computed, listKeys() included.
    // https://learn.microsoft.com/rest/api/resources/deployments/get
    Profile {
        name: "deployment-outputs",
        actions: &["Microsoft.Resources/deployments/*"],
        paths: &[
            "properties.outputs.*.value",
            "value[*].properties.outputs.*.value",
        ],
    },
];

/// The profiles that apply to an action (lowercased).
pub fn profiles_for(action_lower: &str) -> Vec<&'static Profile> {
    PROFILES
        .iter()
        .filter(|p| {
            p.actions
                .iter()
                .any(|a| ActionPattern::parse(a).is_ok_and(|pat| pat.matches(action_lower)))
        })
        .collect()
}

/// Splits `a.b[*].c` into `["a", "b", "*", "c"]`, and says whether only a string may be
/// masked at the end (a leading `=`).
pub fn steps(path: &str) -> (Vec<&str>, bool) {
    let (path, strings_only) = match path.strip_prefix('=') {
        Some(p) => (p, true),
        None => (path, false),
    };
    let mut out = Vec::new();
    for part in path.split('.') {
        match part.strip_suffix("[*]") {
            Some(key) => {
                out.push(key);
                out.push("*");
            }
            None => out.push(part),
        }
    }
    (out, strings_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_and_the_catalog_matches_by_action() {
        for p in PROFILES {
            for a in p.actions {
                assert!(ActionPattern::parse(a).is_ok(), "{}: {a}", p.name);
            }
            assert!(!p.paths.is_empty());
        }
        let names = |a: &str| {
            profiles_for(&a.to_ascii_lowercase())
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("Microsoft.Storage/storageAccounts/listKeys/action"),
            ["storage-keys"]
        );
        assert_eq!(
            names("Microsoft.KeyVault/vaults/secrets/getSecret/action"),
            ["keyvault-secret"]
        );
        assert_eq!(
            names("Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action"),
            ["aks-credentials"]
        );
        assert_eq!(
            names("Microsoft.ServiceBus/namespaces/authorizationRules/listKeys/action"),
            ["messaging-keys"]
        );
        assert_eq!(
            names("Microsoft.Resources/deployments/read"),
            ["deployment-outputs"]
        );
        assert!(names("Microsoft.Compute/virtualMachines/read").is_empty());
        assert_eq!(steps("keys[*].value"), (vec!["keys", "*", "value"], false));
        assert_eq!(
            steps("properties.outputs.*.value"),
            (vec!["properties", "outputs", "*", "value"], false)
        );
        assert_eq!(steps("=value"), (vec!["value"], true));
    }
}
