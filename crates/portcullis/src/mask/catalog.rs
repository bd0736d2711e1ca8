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
        paths: &["*"],
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

/// A profile from the configuration.
#[derive(Debug, Clone)]
pub struct OwnedProfile {
    pub name: String,
    pub actions: Vec<String>,
    pub paths: Vec<String>,
}

impl OwnedProfile {
    /// Made `'static` once at start (masking settings are not reloaded), so built-in and
    /// configured profiles are one type.
    pub fn leak(self) -> &'static Profile {
        let name: &'static str = Box::leak(self.name.into_boxed_str());
        let actions: Vec<&'static str> = self
            .actions
            .into_iter()
            .map(|a| &*Box::leak(a.into_boxed_str()))
            .collect();
        let paths: Vec<&'static str> = self
            .paths
            .into_iter()
            .map(|p| &*Box::leak(p.into_boxed_str()))
            .collect();
        Box::leak(Box::new(Profile {
            name,
            actions: Box::leak(actions.into_boxed_slice()),
            paths: Box::leak(paths.into_boxed_slice()),
        }))
    }
}

/// The profiles that apply to an action (lowercased).
pub fn profiles_for(action_lower: &str) -> Vec<&'static Profile> {
    profiles_among(PROFILES.iter(), action_lower)
}

/// The profiles among `profiles` that apply to an action (lowercased).
pub fn profiles_among<'p>(
    profiles: impl Iterator<Item = &'p Profile>,
    action_lower: &str,
) -> Vec<&'p Profile> {
    profiles
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

/// Each profile against the answer shape its REST reference documents: every planted secret
/// is masked, and the fields that are not secrets stay readable.
#[cfg(test)]
mod shapes {
    use serde_json::{Value, json};

    use crate::mask::detect::Detector;
    use crate::mask::{Masked, Masker};

    const S: &str = "/subscriptions/s/resourceGroups/rg/providers";

    /// (request, answer with secrets named SECRETn, a field that must survive).
    fn cases() -> Vec<(&'static str, String, Value, (&'static str, Value))> {
        vec![
            (
                "GET",
                "/keyvault/kv/secrets/x".into(),
                json!({"value": "SECRET1", "id": "https://kv.vault.azure.net/secrets/x/v1", "attributes": {"enabled": true}}),
                ("/id", json!("https://kv.vault.azure.net/secrets/x/v1")),
            ),
            (
                "POST",
                "/keyvault/kv/keys/k/v1/release".into(),
                json!({"value": "SECRET1"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Storage/storageAccounts/sa/listKeys"),
                json!({"keys": [{"keyName": "key1", "value": "SECRET1", "permissions": "FULL"}, {"keyName": "key2", "value": "SECRET2", "permissions": "FULL"}]}),
                ("/keys/1/keyName", json!("key2")),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Storage/storageAccounts/sa/listAccountSas"),
                json!({"accountSasToken": "SECRET1"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Storage/storageAccounts/sa/listServiceSas"),
                json!({"serviceSasToken": "SECRET1"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.DocumentDB/databaseAccounts/db/listKeys"),
                json!({"primaryMasterKey": "SECRET1", "secondaryMasterKey": "SECRET2", "primaryReadonlyMasterKey": "SECRET3", "secondaryReadonlyMasterKey": "SECRET4"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.DocumentDB/databaseAccounts/db/listConnectionStrings"),
                json!({"connectionStrings": [{"connectionString": "SECRET1", "description": "Primary SQL Connection String"}]}),
                (
                    "/connectionStrings/0/description",
                    json!("Primary SQL Connection String"),
                ),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Web/sites/app/config/appsettings/list"),
                json!({"id": "x", "name": "appsettings", "properties": {"DB_PASSWORD": "SECRET1", "API_KEY": "SECRET2"}}),
                ("/name", json!("appsettings")),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Web/sites/app/config/connectionstrings/list"),
                json!({"name": "connectionstrings", "properties": {"db": {"value": "SECRET1", "type": "SQLAzure"}}}),
                ("/name", json!("connectionstrings")),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Web/sites/app/config/publishingcredentials/list"),
                json!({"name": "app", "properties": {"publishingUserName": "$app", "publishingPassword": "SECRET1", "scmUri": "SECRET2"}}),
                ("/name", json!("app")),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Web/sites/app/host/default/listkeys"),
                json!({"masterKey": "SECRET1", "functionKeys": {"default": "SECRET2"}, "systemKeys": {"durabletask_extension": "SECRET3"}}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Web/sites/app/functions/f/listkeys"),
                json!({"default": "SECRET1"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!(
                    "{S}/Microsoft.ContainerService/managedClusters/aks/listClusterAdminCredential"
                ),
                json!({"kubeconfigs": [{"name": "clusterAdmin", "value": "SECRET1"}]}),
                ("/kubeconfigs/0/name", json!("clusterAdmin")),
            ),
            (
                "POST",
                format!(
                    "{S}/Microsoft.ServiceBus/namespaces/ns/authorizationRules/RootManageSharedAccessKey/listKeys"
                ),
                json!({"primaryConnectionString": "SECRET1", "secondaryConnectionString": "SECRET2", "primaryKey": "SECRET3", "secondaryKey": "SECRET4", "keyName": "RootManageSharedAccessKey"}),
                ("/keyName", json!("RootManageSharedAccessKey")),
            ),
            (
                "POST",
                format!(
                    "{S}/Microsoft.EventHub/namespaces/ns/eventhubs/h/authorizationRules/r/listKeys"
                ),
                json!({"primaryConnectionString": "SECRET1", "aliasPrimaryConnectionString": "SECRET2", "primaryKey": "SECRET3", "keyName": "r"}),
                ("/keyName", json!("r")),
            ),
            (
                "POST",
                format!("{S}/Microsoft.ContainerRegistry/registries/reg/listCredentials"),
                json!({"username": "reg", "passwords": [{"name": "password", "value": "SECRET1"}, {"name": "password2", "value": "SECRET2"}]}),
                ("/username", json!("reg")),
            ),
            (
                "POST",
                format!("{S}/Microsoft.CognitiveServices/accounts/oai/listKeys"),
                json!({"key1": "SECRET1", "key2": "SECRET2"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.AppConfiguration/configurationStores/cfg/ListKeys"),
                json!({"value": [{"id": "k1", "name": "Primary", "value": "SECRET1", "connectionString": "SECRET2", "readOnly": false}]}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.OperationalInsights/workspaces/ws/sharedKeys"),
                json!({"primarySharedKey": "SECRET1", "secondarySharedKey": "SECRET2"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Cache/redis/r/listKeys"),
                json!({"primaryKey": "SECRET1", "secondaryKey": "SECRET2"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Search/searchServices/srch/listAdminKeys"),
                json!({"primaryKey": "SECRET1", "secondaryKey": "SECRET2"}),
                ("", json!(null)),
            ),
            (
                "POST",
                format!("{S}/Microsoft.Search/searchServices/srch/listQueryKeys"),
                json!({"value": [{"name": "q", "key": "SECRET1"}]}),
                ("/value/0/name", json!("q")),
            ),
            (
                "GET",
                format!("{S}/Microsoft.Resources/deployments/d"),
                json!({"name": "d", "properties": {"provisioningState": "Succeeded", "outputs": {"key": {"type": "String", "value": "SECRET1"}}}}),
                ("/properties/provisioningState", json!("Succeeded")),
            ),
        ]
    }

    #[test]
    fn every_profile_masks_its_documented_shape() {
        let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
        let mut covered = std::collections::BTreeSet::new();
        for (method, path, body, (keep, expected)) in cases() {
            let method: http::Method = method.parse().unwrap();
            let op = match path.strip_prefix("/keyvault/kv") {
                Some(below) => {
                    crate::azure::operation::name_keyvault(&method, "kv", below, "api-version=7.4")
                }
                None => crate::azure::operation::name_arm(&method, &path, "api-version=2023-05-01"),
            }
            .unwrap_or_else(|e| panic!("{path}: {e}"));
            let plan = m.plan(&op, &[]);
            let Masked::Changed {
                body: out, kinds, ..
            } = m.mask_json(&plan, body.to_string().as_bytes()).unwrap()
            else {
                panic!("{path}: nothing masked")
            };
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("SECRET"), "{path}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            if !keep.is_empty() {
                assert_eq!(v.pointer(keep), Some(&expected), "{path}: {text}");
            }
            covered.extend(kinds);
        }
        for p in super::PROFILES {
            assert!(
                covered.contains(p.name),
                "profile {} has no shape test",
                p.name
            );
        }
    }
}
